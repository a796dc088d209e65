"""Programmes (issue 11): a core enterprise's funders, each with its own agreement, and the
rules that route an application to one of them and share repayments among them. Pure.

Routing, when a buyer confirms an application (the moment the request leaves, so the limits
are checked against everything in flight, under the programme's lock):

1. A funder is *eligible* for the application when the supplier is among its suppliers (or it
   takes all), the pool's discount rate is within its cap, and its *room* covers the amount.
   Room = min(limit − its exposure to the core enterprise, supplier limit − its exposure to
   this supplier); exposure = outstanding principal of its loans plus requests in flight.
2. `cheapest`: the eligible funder with the lowest rate (ties: the funder id). An application
   may name a funder (`funder_id`): then that one, if eligible.
   `named`: only the funder the application names.
   `split`: one application filled from several funders, the cheapest first, each up to its
   room (a funder whose room is less than the amount is still eligible for a part). The
   supplier pays the least interest the programme allows. Each part is its own request,
   contract and loan with its funder; a single part is exactly `cheapest`. An application that
   names a funder goes to that funder alone.
3. None eligible (for `split`: the rooms together fall short of the amount): refused
   `funder_limit_exceeded` (or `not_in_programme` when it names a funder outside the
   programme), with every candidate's room and reason published.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from shared.contracts import messages as m
from shared.money import ZERO


@dataclass(frozen=True, slots=True)
class Agreement:
    funder_id: str
    kind: str
    limit: Decimal
    supplier_limit: Decimal | None
    annual_interest_rate: Decimal
    discount_rate_cap: Decimal
    tenor_days: int
    suppliers: frozenset[str] | None
    partial_raise: bool = False


@dataclass(frozen=True, slots=True)
class Programme:
    core_enterprise_id: str
    funders: tuple[Agreement, ...]
    routing: m.Routing = m.Routing.CHEAPEST
    intercreditor: m.Intercreditor = m.Intercreditor.MATURITY_THEN_AGE

    @classmethod
    def of(cls, event: m.ProgrammeSet) -> Programme:
        return cls(
            event.core_enterprise_id,
            tuple(
                Agreement(
                    f.funder_id,
                    f.kind,
                    f.limit,
                    f.supplier_limit,
                    f.annual_interest_rate,
                    f.discount_rate_cap,
                    f.tenor_days,
                    frozenset(f.suppliers) if f.suppliers is not None else None,
                    f.partial_raise,
                )
                for f in event.funders
            ),
            event.routing,
            event.intercreditor,
        )

    def agreement(self, funder_id: str) -> Agreement | None:
        return next((f for f in self.funders if f.funder_id == funder_id), None)


@dataclass(frozen=True, slots=True)
class Route:
    parts: list[tuple[Agreement, Decimal]]  # the funders chosen and what each lends
    candidates: list[m.RouteCandidate]
    reason: m.Reason | None  # why none was chosen

    @property
    def chosen(self) -> Agreement | None:
        """The one funder of an application routed whole."""
        return self.parts[0][0] if len(self.parts) == 1 else None


def route(
    programme: Programme,
    amount: Decimal,
    *,
    supplier_id: str,
    discount_rate: Decimal,
    named: str | None,
    exposure: Mapping[str, Decimal],
    supplier_exposure: Mapping[str, Decimal],
) -> Route:
    """The funders an application goes to, with what each lends, and how every candidate
    stood."""
    if named is not None and programme.agreement(named) is None:
        return Route([], [], m.Reason.NOT_IN_PROGRAMME)
    splitting = programme.routing is m.Routing.SPLIT and named is None
    candidates = []
    parts: list[tuple[Agreement, Decimal]] = []
    left = amount
    for f in sorted(programme.funders, key=lambda f: (f.annual_interest_rate, f.funder_id)):
        room = f.limit - exposure.get(f.funder_id, ZERO)
        if f.supplier_limit is not None:
            room = min(room, f.supplier_limit - supplier_exposure.get(f.funder_id, ZERO))
        room = max(room, ZERO)
        why = None
        if f.suppliers is not None and supplier_id not in f.suppliers:
            why = f"does not fund supplier {supplier_id}"
        elif discount_rate > f.discount_rate_cap:
            why = f"the pool's discount rate {discount_rate} is above its cap {f.discount_rate_cap}"
        elif splitting and room <= ZERO:
            why = "no room under its limits"
        elif not splitting and room < amount:
            why = f"room {room} under its limits is less than {amount}"
        elif named is not None and f.funder_id != named:
            why = f"the application names {named}"
        elif programme.routing is m.Routing.NAMED and named is None:
            why = "the programme routes only to a funder the application names"
        eligible = why is None
        if eligible and left > ZERO:
            share = min(room, left) if splitting else amount
            parts.append((f, share))
            left -= share
        elif eligible:
            why = (
                "cheaper funders cover the amount"
                if splitting
                else f"{parts[0][0].funder_id} is cheaper"
            )
        candidates.append(
            m.RouteCandidate(
                funder_id=f.funder_id,
                annual_interest_rate=f.annual_interest_rate,
                room=room,
                eligible=eligible,
                reason=why,
            )
        )
    if not parts or left > ZERO:
        return Route([], candidates, m.Reason.FUNDER_LIMIT_EXCEEDED)
    return Route(parts, candidates, None)
