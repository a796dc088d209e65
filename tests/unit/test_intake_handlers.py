"""intake's handlers on the in-memory fake store: fast, no broker, no database. The same
store contract is checked against PostgreSQL in tests/integration/test_intake_store.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.intake.handlers import handle
from services.intake.repository import InMemoryIntakeStore, IntakeBatch, Pool
from shared.calendar import business_date
from shared.contracts import messages as m
from shared.contracts import topics
from shared.money import MAX_AMOUNT, MAX_TOTAL
from tests.unit.batches import run_batch

POOL = "CE-1/S-1"


def event(model: type[m.Message], pool_id: str = POOL, **fields: Any) -> m.Message:
    return m.new_event(model, source="erp-test", pool_id=pool_id, **fields)


def onboarding(pool_id: str = POOL, supplier: str = "S-1") -> m.Message:
    return event(
        m.SupplierOnboarded,
        pool_id,
        core_enterprise_id="CE-1",
        supplier_id=supplier,
        supplier_name="Supplier",
    )


def slip(receivable_id: str, amount: str, pool_id: str = POOL) -> m.Message:
    return event(
        m.SettlementSlipIssued,
        pool_id,
        receivable_id=receivable_id,
        amount=Decimal(amount),
        issued_on=business_date(),
    )


def pay(payment_id: str, amount: str, *receivables: str) -> m.Message:
    return event(
        m.PaymentReceived,
        payment_id=payment_id,
        amount=Decimal(amount),
        receivable_ids=list(receivables),
        paid_on=business_date(),
    )


async def batch(
    store: InMemoryIntakeStore, *events: m.Message
) -> tuple[list[tuple[str, dict[str, Any]]], list[str | None]]:
    return await run_batch(IntakeBatch(store=store), handle, *events)


async def test_onboarding_opens_a_pool_once_and_refuses_a_second_owner() -> None:
    store = InMemoryIntakeStore()
    emitted, reasons = await batch(store, onboarding(), onboarding())
    assert reasons == [None, None]  # the same onboarding again changes nothing
    assert [body["type"] for _, body in emitted] == ["PoolOpened"]
    _, reasons = await batch(store, onboarding(supplier="S-2"), onboarding("CE-1/OTHER"))
    assert reasons == ["pool_exists", "pool_exists"]
    assert list(store.pool_rows) == [POOL]


async def test_slips_fill_the_pool_and_a_duplicate_is_refused_in_and_across_batches() -> None:
    store = InMemoryIntakeStore()
    emitted, reasons = await batch(
        store, onboarding(), slip("R-1", "600.00"), slip("R-1", "1.00"), slip("R-2", "400.00")
    )
    assert reasons == [None, None, "duplicate_receivable", None]
    assert [
        body["receivable_id"] for topic, body in emitted if body["type"] == "ReceivableAdded"
    ] == [
        "R-1",
        "R-2",
    ]
    assert store.pool_rows[POOL].open_total == Decimal("1000.00")
    _, reasons = await batch(store, slip("R-2", "5.00"), slip("R-3", "5.00", "CE-1/UNKNOWN"))
    assert reasons == ["duplicate_receivable", "unknown_pool"]


async def test_a_pool_stops_at_the_largest_total() -> None:
    store = InMemoryIntakeStore(pool_rows={POOL: Pool(POOL, "CE-1", "S-1", MAX_TOTAL - MAX_AMOUNT)})
    _, reasons = await batch(store, slip("R-1", str(MAX_AMOUNT)), slip("R-2", "0.01"))
    assert reasons == [None, "pool_limit_exceeded"]
    assert store.pool_rows[POOL].open_total == MAX_TOTAL


async def test_a_payment_writes_off_its_receivables_once() -> None:
    store = InMemoryIntakeStore()
    await batch(store, onboarding(), slip("R-1", "600.00"), slip("R-2", "400.00"))
    emitted, reasons = await batch(
        store, pay("P-1", "600.00", "R-1"), pay("P-1", "600.00", "R-1"), pay("P-2", "1.00", "R-1")
    )
    assert reasons == [None, "duplicate_payment", "receivable_already_paid"]
    [(topic, settled)] = emitted
    assert topic == topics.POOL_EVENTS
    assert (settled["written_off"], settled["core_enterprise_id"]) == ("600.00", "CE-1")
    assert store.receivable_rows[("CE-1", "R-1")].state == "paid"
    assert store.pool_rows[POOL].open_total == Decimal("400.00")


async def test_a_confirmation_names_the_pools_own_buyer_or_none() -> None:
    store = InMemoryIntakeStore()
    await batch(store, onboarding())
    own = event(m.FinancingConfirmation, application_id="A-1", confirmed=True)
    other = event(
        m.FinancingConfirmation, application_id="A-1", confirmed=True, core_enterprise_id="CE-9"
    )
    emitted, reasons = await batch(store, own, other)
    assert reasons == [None, "not_the_pools_buyer"]
    assert emitted[0][1]["core_enterprise_id"] == "CE-1"


async def test_a_refused_payment_changes_nothing() -> None:
    store = InMemoryIntakeStore()
    await batch(store, onboarding(), slip("R-1", "100.00"))
    _, reasons = await batch(store, pay("P-1", "100.01", "R-1"))
    assert reasons == ["payment_exceeds_receivables"]
    assert store.receivable_rows[("CE-1", "R-1")].state == "open"
    assert store.payment_rows == {}
    with pytest.raises(KeyError):
        store.receivable_rows[("CE-1", "R-404")]


def adjustment(model: type[m.Message], receivable_id: str, **fields: Any) -> m.Message:
    return event(model, receivable_id=receivable_id, reason="returned goods", **fields)


async def test_a_partial_payment_keeps_the_slip_open_and_says_what_it_paid() -> None:
    store = InMemoryIntakeStore()
    await batch(store, onboarding(), slip("R-1", "1000000.00"), slip("R-2", "50.00"))
    emitted, reasons = await batch(store, pay("P-1", "0.01", "R-1"))
    assert reasons == [None]
    [(_, settled)] = emitted
    assert (settled["amount"], settled["written_off"]) == ("0.01", "0.01")
    assert settled["allocations"] == [
        {"receivable_id": "R-1", "amount": "0.01", "open_after": "999999.99", "due_on": None}
    ]
    assert settled["value_date"] == business_date().isoformat()
    assert store.receivable_rows[("CE-1", "R-1")].state == "open"
    assert store.pool_rows[POOL].open_total == Decimal("1000049.99")
    _, reasons = await batch(store, pay("P-2", "1000000.00", "R-1", "R-2"))
    assert reasons == [None]  # 999,999.99 on R-1, the last 0.01 on R-2
    assert store.receivable_rows[("CE-1", "R-1")].state == "paid"
    assert store.receivable_rows[("CE-1", "R-2")].open == Decimal("49.99")


async def test_slip_adjustments_change_the_pool_and_are_recorded_with_their_reason() -> None:
    store = InMemoryIntakeStore()
    await batch(store, onboarding(), slip("R-1", "600.00"), slip("R-2", "400.00"))
    emitted, reasons = await batch(
        store,
        adjustment(m.CreditNoteIssued, "R-1", credit_note_id="CN-1", amount=Decimal("100.00")),
        adjustment(m.CreditNoteIssued, "R-2", credit_note_id="CN-1", amount=Decimal("1.00")),
        adjustment(m.SlipAmended, "R-1", amount=Decimal("550.00")),
        adjustment(m.DisputeOpened, "R-2", dispute_id="D-1"),
        adjustment(m.SlipCancelled, "R-2"),
    )
    assert reasons == [None, "duplicate_adjustment", None, None, None]
    kinds = [(b["kind"], b["change"], b["open_after"]) for _, b in emitted]
    assert kinds == [
        ("credit_note", "-100.00", "500.00"),
        ("amendment", "-50.00", "450.00"),
        ("dispute_opened", "0.00", "400.00"),
        ("cancellation", "-400.00", "0.00"),
    ]
    assert store.pool_rows[POOL].open_total == Decimal("450.00")
    assert [a.reason for a in store.adjustment_rows] == ["returned goods"] * 4
    _, reasons = await batch(
        store,
        adjustment(m.CreditNoteIssued, "R-1", credit_note_id="CN-1", amount=Decimal("1.00")),
        pay("P-1", "1.00", "R-2"),
    )
    assert reasons == ["duplicate_adjustment", "receivable_closed"]
