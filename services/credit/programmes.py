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
3. None eligible: refused `funder_limit_exceeded` (or `not_in_programme` when it names a
   funder outside the programme), with every candidate's room and reason published.
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
    chosen: Agreement | None
    candidates: list[m.RouteCandidate]
    reason: m.Reason | None  # why none was chosen


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
    """The funder an application goes to, and how every candidate stood."""
    if named is not None and programme.agreement(named) is None:
        return Route(None, [], m.Reason.NOT_IN_PROGRAMME)
    candidates = []
    chosen = None
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
        elif room < amount:
            why = f"room {room} under its limits is less than {amount}"
        elif named is not None and f.funder_id != named:
            why = f"the application names {named}"
        elif programme.routing is m.Routing.NAMED and named is None:
            why = "the programme routes only to a funder the application names"
        eligible = why is None
        if eligible and chosen is None:
            chosen = f
        elif eligible and chosen is not None:
            why = f"{chosen.funder_id} is cheaper"
        candidates.append(
            m.RouteCandidate(
                funder_id=f.funder_id,
                annual_interest_rate=f.annual_interest_rate,
                room=room,
                eligible=eligible,
                reason=why,
            )
        )
    return Route(chosen, candidates, None if chosen else m.Reason.FUNDER_LIMIT_EXCEEDED)
