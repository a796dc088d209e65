"""A pool driven through credit's handlers on the in-memory store, with a stand-in for the
splitter that posts each instruction later (so every ordering can be played)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from services.credit.handlers import handle
from services.credit.repository import CreditBatch, InMemoryCreditStore, PoolState
from shared.calendar import business_date
from shared.contracts import messages as m
from shared.money import ZERO
from tests.unit.batches import run_batch

TODAY = business_date()
D = Decimal


@dataclass
class Book:
    """One pool of one supplier; `emitted` keeps every message credit published."""

    pool_id: str = "CE-1/S-1"
    today: date = TODAY
    lead_days: int = 400
    store: InMemoryCreditStore = field(default_factory=InMemoryCreditStore)
    emitted: list[dict[str, Any]] = field(default_factory=list)
    unposted: list[dict[str, Any]] = field(default_factory=list)  # instructions not yet split
    slips: dict[str, Decimal] = field(default_factory=dict)
    counter: int = 0
    checked: int = 0  # how many of `emitted` a property test has looked at

    def event(self, model: type[m.Message], **fields: Any) -> m.Message:
        return m.new_event(model, source="test", pool_id=self.pool_id, **fields)

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    async def run(self, *events: m.Message) -> list[dict[str, Any]]:
        """Run one batch; refuse loudly (a test that expects a refusal uses `refused`)."""
        emitted, reasons = await self._batch(*events)
        assert reasons == [None] * len(events), reasons
        return emitted

    async def refused(self, *events: m.Message) -> list[str | None]:
        _, reasons = await self._batch(*events)
        return reasons

    async def _batch(self, *events: m.Message) -> tuple[list[dict[str, Any]], list[str | None]]:
        state = CreditBatch(store=self.store, day_close_lead_days=self.lead_days, today=self.today)
        emitted, reasons = await run_batch(state, handle, *events)
        bodies = [body for _, body in emitted]
        self.emitted.extend(bodies)
        self.unposted.extend(
            b for b in bodies if b["type"] in ("RepaymentInstruction", "HoldSettled")
        )
        return bodies, reasons

    # ------------------------------------------------------------ the ERP, the supplier, funders

    async def open(self, line: str = "10000000.00", rate: str = "0.8", **terms: Any) -> None:
        await self.run(
            self.event(m.PoolOpened, core_enterprise_id="CE-1", supplier_id="S-1"),
            self.facility(line, rate, **terms),
        )

    def facility(self, line: str, rate: str, **terms: Any) -> m.Message:
        fields: dict[str, Any] = {
            "credit_line": D(line),
            "discount_rate": D(rate),
            "annual_interest_rate": D("0.0435"),
            "funder_id": "bank-a",
        }
        fields.update(terms)
        return self.event(m.FacilitySet, **fields)

    def slip(self, amount: str, due_in: int | None = 60, issued_ago: int = 0) -> m.Message:
        receivable_id = self.next_id("R")
        self.slips[receivable_id] = D(amount)
        issued = self.today - timedelta(days=issued_ago)
        return self.event(
            m.ReceivableAdded,
            receivable_id=receivable_id,
            amount=D(amount),
            issued_on=issued,
            due_on=None if due_in is None else issued + timedelta(days=due_in),
        )

    def payment(self, amount: str, receivable_id: str | None = None) -> m.Message:
        """A buyer's payment of `amount` on one slip (the first with that much open)."""
        value = D(amount)
        rid = receivable_id or next(r for r, left in self.slips.items() if left >= value)
        self.slips[rid] -= value
        return self.event(
            m.ReceivablesSettled,
            payment_id=self.next_id("P"),
            amount=value,
            written_off=value,
            receivable_ids=[rid],
            allocations=[
                m.ReceivableAllocation(receivable_id=rid, amount=value, open_after=self.slips[rid])
            ],
            paid_on=self.today,
            value_date=self.today,
            core_enterprise_id="CE-1",
        )

    def adjusted(
        self, receivable_id: str, kind: m.AdjustmentKind, change: str, disputed: bool = False
    ) -> m.Message:
        self.slips[receivable_id] += D(change)
        return self.event(
            m.ReceivableAdjusted,
            receivable_id=receivable_id,
            kind=kind,
            change=D(change),
            open_after=self.slips[receivable_id],
            disputed=disputed,
            reason="test",
        )

    def applied(self, application_id: str, amount: str) -> m.Message:
        return self.event(m.FinancingApplied, application_id=application_id, amount=D(amount))

    def confirmed(self, application_id: str, yes: bool = True) -> m.Message:
        return self.event(m.BuyerConfirmedFinancing, application_id=application_id, confirmed=yes)

    def funded(
        self, request_id: str, amount: str, decision: m.FunderDecision = m.FunderDecision.DISBURSED
    ) -> m.Message:
        return self.event(
            m.FundingResult,
            request_id=request_id,
            funder_id="bank-a",
            decision=decision,
            amount=D(amount),
            value_date=self.today if decision is m.FunderDecision.DISBURSED else None,
        )

    def day_closed(self, day: date) -> m.Message:
        return self.event(m.DayClosed, business_date=day)

    async def borrow(self, application_id: str, amount: str) -> None:
        await self.run(
            self.applied(application_id, amount),
            self.confirmed(application_id),
            self.funded(application_id, amount),
        )

    async def post(self, count: int | None = None) -> list[dict[str, Any]]:
        """The splitter posts the oldest `count` instructions (all by default)."""
        todo = self.unposted[: count if count is not None else len(self.unposted)]
        del self.unposted[: len(todo)]
        posted = []
        for body in todo:
            paid = body.get("payment_id") or body["settlement_id"]
            parts = sum((D(r["principal"]) for r in body["repayments"]), ZERO)
            interest = sum(
                (D(r["interest"]) + D(r.get("penalty", "0")) for r in body["repayments"]), ZERO
            )
            posted += await self.run(
                self.event(
                    m.SettlementReleased,
                    payment_id=paid,
                    amount=D(body["amount"]),
                    repaid_principal=parts,
                    repaid_interest=interest,
                    fees=ZERO,
                    released=released_by(body),
                    ledger_hash="0" * 64,
                )
            )
        return posted

    # ------------------------------------------------------------ reading

    async def pool(self) -> PoolState:
        [pool] = await self.store.pools([self.pool_id], self.today)
        return pool

    def last(self, kind: str) -> dict[str, Any]:
        return [b for b in self.emitted if b["type"] == kind][-1]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [b for b in self.emitted if b["type"] == kind]


def released_by(body: dict[str, Any]) -> Decimal:
    """What an instruction (or a hold settlement) gives back to the supplier (no fee)."""
    if body["type"] == "HoldSettled":
        return D(body["released"])
    repaid = sum(
        (
            D(r["principal"]) + D(r["interest"]) + D(r.get("penalty", "0")) + D(r.get("fees", "0"))
            for r in body["repayments"]
        ),
        ZERO,
    )
    return D(body["amount"]) + D(body["from_held"]) - repaid - D(body["held"])
