"""credit's handlers on the in-memory fake store: the borrowing-base rules as a batch of
events decides them, without a broker or a database. The store contract is checked against
PostgreSQL in tests/integration/test_credit_store.py."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from services.credit.handlers import handle
from services.credit.repository import CreditBatch, InMemoryCreditStore
from shared.calendar import business_date
from shared.contracts import messages as m
from shared.contracts import topics
from tests.unit.batches import run_batch

POOL = "CE-1/S-1"
TODAY = business_date()


def event(model: type[m.Message], pool_id: str = POOL, **fields: Any) -> m.Message:
    return m.new_event(model, source="test", pool_id=pool_id, **fields)


def opened(pool_id: str = POOL) -> m.Message:
    return event(m.PoolOpened, pool_id, core_enterprise_id="CE-1", supplier_id="S-1")


def facility(pool_id: str = POOL, line: str = "1000000.00") -> m.Message:
    return event(
        m.FacilitySet,
        pool_id,
        credit_line=Decimal(line),
        discount_rate=Decimal("0.8"),
        annual_interest_rate=Decimal("0.0435"),
        funder_id="bank-a",
    )


def added(receivable_id: str, amount: str, pool_id: str = POOL) -> m.Message:
    return event(m.ReceivableAdded, pool_id, receivable_id=receivable_id, amount=Decimal(amount))


def applied(application_id: str, amount: str, pool_id: str = POOL) -> m.Message:
    return event(m.FinancingApplied, pool_id, application_id=application_id, amount=Decimal(amount))


def confirmed(application_id: str, pool_id: str = POOL) -> m.Message:
    return event(m.BuyerConfirmedFinancing, pool_id, application_id=application_id, confirmed=True)


def disbursed(request_id: str, amount: str, on: date = TODAY) -> m.Message:
    return event(
        m.FundingResult,
        request_id=request_id,
        funder_id="bank-a",
        decision=m.FunderDecision.DISBURSED,
        amount=Decimal(amount),
        value_date=on,
    )


def settled(payment_id: str, amount: str, written_off: str, on: date) -> m.Message:
    return event(
        m.ReceivablesSettled,
        payment_id=payment_id,
        amount=Decimal(amount),
        written_off=Decimal(written_off),
        receivable_ids=["R-1"],
        paid_on=on,
        core_enterprise_id="CE-1",
    )


async def batch(
    store: InMemoryCreditStore, *events: m.Message
) -> tuple[list[tuple[str, dict[str, Any]]], list[str | None]]:
    # The business day is the module's TODAY, as the events' dates are: a run that crosses
    # midnight in Shanghai (16:00 UTC) must not see a disbursal dated "yesterday".
    return await run_batch(CreditBatch(store=store, today=TODAY), handle, *events)


def of(emitted: list[tuple[str, dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [body for _, body in emitted if body["type"] == kind]


async def test_the_paper_in_one_batch_then_the_next() -> None:
    """Pool 100万 at 0.8: borrow 80万; a payment of 10万 writes off 10万, repays 8万 and
    leaves the loan at 72万 = 90万 × 0.8 (seed example, invariant 2)."""
    store = InMemoryCreditStore()
    emitted, reasons = await batch(
        store,
        opened(),
        facility(),
        added("R-1", "100000.00"),
        added("R-2", "900000.00"),
        applied("A-1", "800000.00"),
        confirmed("A-1"),
        disbursed("A-1", "800000.00"),
    )
    assert reasons == [None] * 7
    [request] = [body for topic, body in emitted if topic == topics.CREDIT_LOAN_REQUESTS]
    assert (request["amount"], request["funder_id"]) == ("800000.00", "bank-a")
    assert of(emitted, "PoolPosition")[-1]["loan_balance"] == "800000.00"
    emitted, reasons = await batch(store, settled("P-1", "100000.00", "100000.00", TODAY))
    assert reasons == [None]
    [instruction] = of(emitted, "RepaymentInstruction")
    assert [(r["principal"], r["interest"]) for r in instruction["repayments"]] == [
        ("80000.00", "0.00")
    ]
    assert (instruction["water_level_after"], instruction["loan_balance_after"]) == (
        "900000.00",
        "720000.00",
    )
    assert store.loans[(POOL, "A-1")].outstanding == Decimal("720000.00")
    assert store.pool_rows[POOL].water_level == Decimal("900000.00")


async def test_requests_in_flight_count_against_what_is_available() -> None:
    store = InMemoryCreditStore()
    await batch(store, opened(), facility(), added("R-1", "100000.00"), applied("A-1", "50000.00"))
    emitted, reasons = await batch(store, applied("A-2", "30000.01"), applied("A-3", "30000.00"))
    assert reasons == [None, None]  # a refusal by the rules is a decision, not a dead letter
    decisions = of(emitted, "FinancingDecision")
    assert [(d["state"], d["reason"]) for d in decisions] == [
        ("refused", "exceeds_available"),
        ("awaiting_buyer", None),
    ]
    assert of(emitted, "PoolPosition")[-1]["available"] == "0.00"


async def test_a_payment_is_decided_once_even_in_the_same_batch() -> None:
    store = InMemoryCreditStore()
    await batch(store, opened(), facility(), added("R-1", "100.00"))
    again = settled("P-1", "10.00", "10.00", TODAY)
    _, reasons = await batch(store, again, settled("P-1", "10.00", "10.00", TODAY))
    assert reasons == [None, "duplicate_payment"]
    _, reasons = await batch(store, settled("P-1", "10.00", "10.00", TODAY))
    assert reasons == ["duplicate_payment"]


async def test_a_level_that_would_go_below_zero_is_refused_not_clamped() -> None:
    store = InMemoryCreditStore()
    await batch(store, opened(), added("R-1", "100.00"))
    _, reasons = await batch(store, settled("P-1", "100.00", "100.01", TODAY))
    assert reasons == ["level_below_zero"]
    assert store.pool_rows[POOL].water_level == Decimal("100.00")
    assert store.repayments == {}


async def test_lookups_by_id_are_scoped_by_the_pool() -> None:
    store = InMemoryCreditStore()
    await batch(store, opened(), facility(), added("R-1", "1000000.00"), applied("A-1", "1.00"))
    await batch(store, opened("CE-1/S-2"), facility("CE-1/S-2"), added("R-2", "1.00", "CE-1/S-2"))
    emitted, reasons = await batch(store, confirmed("A-1", "CE-1/S-2"))
    assert reasons == ["application_not_in_pool"]
    assert emitted == []
    assert store.application_rows["A-1"].state == "awaiting_buyer"


async def test_a_facility_out_of_bounds_is_refused_with_its_reason() -> None:
    store = InMemoryCreditStore()
    bad = event(
        m.FacilitySet,
        credit_line=Decimal("1.00"),
        discount_rate=Decimal("1.5"),
        annual_interest_rate=Decimal("0.04"),
        funder_id="bank-a",
    )
    _, reasons = await batch(store, opened(), bad)
    assert reasons == [None, "invalid_facility"]
    assert store.facilities == {}


async def test_a_confirmation_naming_another_buyer_is_refused_on_the_internal_topic_too() -> None:
    store = InMemoryCreditStore()
    await batch(store, opened(), facility(), added("R-1", "1000.00"), applied("A-1", "1.00"))
    forged = event(
        m.BuyerConfirmedFinancing, application_id="A-1", confirmed=True, core_enterprise_id="CE-9"
    )
    emitted, reasons = await batch(store, forged)
    assert (reasons, emitted) == (["not_the_pools_buyer"], [])
    assert store.application_rows["A-1"].state == "awaiting_buyer"
