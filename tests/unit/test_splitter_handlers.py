"""settlement-splitter's handlers on the in-memory fake store: freeze, split in either arrival
order, release; the ledger it writes verifies."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from services.settlement_splitter.domain import verify_chain
from services.settlement_splitter.handlers import make_handler
from services.settlement_splitter.repository import InMemoryLedgerStore, LedgerBatch
from shared.contracts import messages as m
from shared.contracts import topics
from tests.unit.batches import Emitted, run_batch

POOL = "CE-1/S-1"
handle = make_handler(fee_bps=0)


def paid(payment_id: str = "P-1", amount: str = "100000.00", pool_id: str = POOL) -> m.Message:
    return m.new_event(
        m.ReceivablesSettled,
        source="intake",
        pool_id=pool_id,
        payment_id=payment_id,
        amount=Decimal(amount),
        written_off=Decimal(amount),
        receivable_ids=["R-1"],
        paid_on=date(2026, 8, 3),
        core_enterprise_id="CE-1",
    )


def instructed(
    payment_id: str = "P-1", amount: str = "100000.00", principal: str = "80000.00"
) -> m.Message:
    return m.new_event(
        m.RepaymentInstruction,
        source="credit",
        pool_id=POOL,
        payment_id=payment_id,
        amount=Decimal(amount),
        repayments=[
            m.LoanRepayment(
                loan_id="L-1",
                funder_id="bank-a",
                principal=Decimal(principal),
                interest=Decimal("0.00"),
                days=0,
            )
        ],
        water_level_after=Decimal("900000.00"),
        discount_rate=Decimal("0.8"),
        credit_line=Decimal("1000000.00"),
        loan_balance_before=Decimal("800000.00"),
        loan_balance_after=Decimal("800000.00") - Decimal(principal),
    )


async def batch(store: InMemoryLedgerStore, *events: m.Message) -> tuple[Emitted, list[str | None]]:
    return await run_batch(LedgerBatch(store=store), handle, *events)


def released(emitted: Emitted) -> list[dict[str, object]]:
    return [body for topic, body in emitted if topic == topics.SETTLEMENT_RESULTS]


async def test_the_paper_payment_is_frozen_then_split_8_to_the_bank_2_released() -> None:
    store = InMemoryLedgerStore()
    emitted, reasons = await batch(store, paid())
    assert (reasons, emitted) == ([None], [])  # frozen, nothing released yet (invariant 3)
    emitted, reasons = await batch(store, instructed())
    assert reasons == [None]
    [result] = released(emitted)
    assert (result["repaid_principal"], result["released"]) == ("80000.00", "20000.00")
    assert [kind for _, _, _, kind, *_ in store.transactions] == ["freeze", "split"]
    assert verify_chain(store.chain(POOL), head=store.accounts[POOL]) == []
    assert sum(amount for *_, amount in store.entries) == 0


async def test_an_instruction_that_overtakes_its_payment_waits_for_the_money() -> None:
    store = InMemoryLedgerStore()
    emitted, reasons = await batch(store, instructed())
    assert (reasons, emitted, store.transactions) == ([None], [], [])
    emitted, reasons = await batch(store, paid())
    assert reasons == [None] and len(released(emitted)) == 1
    assert verify_chain(store.chain(POOL), head=store.accounts[POOL]) == []


async def test_a_payment_is_settled_once_and_only_for_its_own_amount_and_pool() -> None:
    store = InMemoryLedgerStore()
    _, reasons = await batch(store, paid(), instructed(amount="99999.99", principal="0.00"))
    assert reasons == [None, "amount_mismatch"]
    _, reasons = await batch(store, instructed(), instructed(), paid())
    assert reasons == [None, "duplicate_payment", "duplicate_payment"]
    _, reasons = await batch(store, paid(pool_id="CE-1/S-2"))
    assert reasons == ["payment_not_in_pool"]
    assert len(store.transactions) == 2
