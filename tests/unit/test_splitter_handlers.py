"""settlement-splitter's handlers on the in-memory fake store: freeze, split in either arrival
order, keep back what credit holds, release; settle money on hold; freeze prepayments out of
the free balance; the ledger it writes verifies and the pool's balances match it."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any, cast

from poolfin.demo import DEMO_RULES
from services.settlement_splitter.domain import (
    free_account,
    frozen_account,
    funder_account,
    held_account,
    verify_chain,
)
from services.settlement_splitter.handlers import make_handler
from services.settlement_splitter.repository import HeldLoan, InMemoryLedgerStore, LedgerBatch
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected
from shared.inbox import Handler, UnitOfWork
from shared.money import ZERO
from shared.outbox import Outbox
from tests.unit.batches import Emitted, run_batch

POOL = "CE-1/S-1"
handle = make_handler(fee_bps=0)
# A platform fee of 0.3% of each payment, 0.1% once the month's payments pass 150,000.00.
TIERED_RULES: dict[str, Any] = {
    "receivers": [
        {
            "account": "platform:fee",
            "share": {
                "kind": "of_payment",
                "rate": {
                    "by_volume": [
                        {"above": "0.00", "rate": "0.003"},
                        {"above": "150000.00", "rate": "0.001"},
                    ]
                },
            },
        },
        {"account": "supplier", "share": {"kind": "rest"}},
    ]
}


def lent(principal: str = "800000.00") -> InMemoryLedgerStore:
    """The splitter's tables with loan L-1 of bank-a in POOL, as credit's LoanOpened left it."""
    store = InMemoryLedgerStore()
    store.loan_rows["L-1"] = HeldLoan("L-1", POOL, "bank-a", Decimal(principal))
    return store


def opened(
    loan_id: str, principal: str, pool_id: str = POOL, funder_id: str = "bank-a"
) -> m.Message:
    return m.new_event(
        m.LoanOpened,
        source="credit",
        pool_id=pool_id,
        loan_id=loan_id,
        funder_id=funder_id,
        principal=Decimal(principal),
        disbursed_on=date(2026, 8, 3),
        maturity_on=date(2027, 1, 30),
    )


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


def repayment(principal: str, funder_id: str = "bank-a", **dues: str) -> m.LoanRepayment:
    return m.LoanRepayment(
        loan_id="L-1",
        funder_id=funder_id,
        principal=Decimal(principal),
        interest=Decimal(dues.pop("interest", "0.00")),
        days=0,
        **{name: Decimal(value) for name, value in dues.items()},
    )


def instructed(
    payment_id: str = "P-1",
    amount: str = "100000.00",
    principal: str = "80000.00",
    *,
    repayments: list[m.LoanRepayment] | None = None,
    held: str = "0.00",
    from_held: str = "0.00",
    kind: str = "payment",
    pool_id: str = POOL,
) -> m.Message:
    return m.new_event(
        m.RepaymentInstruction,
        source="credit",
        pool_id=pool_id,
        payment_id=payment_id,
        amount=Decimal(amount),
        repayments=repayments if repayments is not None else [repayment(principal)],
        water_level_after=Decimal("900000.00"),
        discount_rate=Decimal("0.8"),
        credit_line=Decimal("1000000.00"),
        loan_balance_before=Decimal("800000.00"),
        loan_balance_after=Decimal("800000.00") - Decimal(principal),
        held=Decimal(held),
        from_held=Decimal(from_held),
        value_date=date(2026, 8, 3),
        kind=kind,
    )


def hold_settled(
    settlement_id: str = "hold:E-1",
    amount: str = "3.00",
    principal: str = "2.00",
    released: str = "1.00",
    pool_id: str = POOL,
) -> m.Message:
    return m.new_event(
        m.HoldSettled,
        source="credit",
        pool_id=pool_id,
        settlement_id=settlement_id,
        amount=Decimal(amount),
        repayments=[repayment(principal)] if Decimal(principal) else [],
        released=Decimal(released),
        reason="disbursal of A-1 arrived",
    )


def prepaid(prepayment_id: str = "PP-1", amount: str = "5000.00", pool_id: str = POOL) -> m.Message:
    return m.new_event(
        m.PrepaymentRequested,
        source="S-1",
        pool_id=pool_id,
        prepayment_id=prepayment_id,
        amount=Decimal(amount),
        loan_id="L-1",
    )


async def batch(
    store: InMemoryLedgerStore, *events: m.Message, handler: Handler = handle
) -> tuple[Emitted, list[str | None]]:
    return await run_batch(LedgerBatch(store=store), handler, *events)


async def refusal_of(store: InMemoryLedgerStore, event: m.Message) -> Rejected:
    """The refusal of one event, with its detail (what a dead letter says)."""
    uow = UnitOfWork(conn=cast(Any, None), outbox=Outbox(), schema="test", state=LedgerBatch(store))
    refusal = await handle(uow, event)
    assert refusal is not None
    return refusal


def of(emitted: Emitted, topic: str) -> list[dict[str, Any]]:
    return [body for sent_to, body in emitted if sent_to == topic]


def moved(emitted: Emitted) -> Emitted:
    """What was emitted besides telling credit an instruction was refused."""
    return [(t, body) for t, body in emitted if body["type"] != "InstructionRefused"]


def told_refused(emitted: Emitted) -> list[tuple[str, str]]:
    """(payment id, reason) of each InstructionRefused: credit undoes its reservation."""
    return [
        (body["payment_id"], body["reason"])
        for _, body in emitted
        if body["type"] == "InstructionRefused"
    ]


def balances(store: InMemoryLedgerStore, pool_id: str = POOL) -> tuple[Decimal, Decimal, Decimal]:
    """The pool's (frozen, held, free) as recorded, after checking them against the entries."""
    account = store.account_rows[pool_id]
    recorded = (account.frozen, account.held, account.free)
    assert recorded == tuple(
        store.balance(name(pool_id)) for name in (frozen_account, held_account, free_account)
    )
    return recorded


def intact(store: InMemoryLedgerStore, pool_id: str = POOL) -> bool:
    problems = verify_chain(store.chain(pool_id), head=store.head(pool_id))
    return problems == [] and sum((amount for *_, amount in store.entries), ZERO) == 0


async def paid_with_3_held(store: InMemoryLedgerStore) -> None:
    """Payment P-1 of 10.00: 5.00 to the bank, 3.00 held, 2.00 released."""
    _, reasons = await batch(
        store, paid(amount="10.00"), instructed(amount="10.00", principal="5.00", held="3.00")
    )
    assert reasons == [None, None]


def released(emitted: Emitted) -> list[dict[str, object]]:
    return [body for topic, body in emitted if topic == topics.SETTLEMENT_RESULTS]


async def test_the_paper_payment_is_frozen_then_split_8_to_the_bank_2_released() -> None:
    store = lent()
    emitted, reasons = await batch(store, paid())
    # Frozen, nothing released yet (invariant 3): only the ledger's new head is anchored.
    assert reasons == [None]
    assert [topic for topic, _ in emitted] == [topics.SETTLEMENT_LEDGER_ANCHORS]
    emitted, reasons = await batch(store, instructed())
    assert reasons == [None]
    [result] = released(emitted)
    assert (result["repaid_principal"], result["released"]) == ("80000.00", "20000.00")
    assert [kind for _, _, _, kind, *_ in store.transactions] == ["freeze", "split"]
    assert intact(store)


async def test_an_instruction_that_overtakes_its_payment_waits_for_the_money() -> None:
    store = lent()
    emitted, reasons = await batch(store, instructed())
    assert (reasons, emitted, store.transactions) == ([None], [], [])
    emitted, reasons = await batch(store, paid())
    assert reasons == [None] and len(released(emitted)) == 1
    assert intact(store)


async def test_a_payment_is_settled_once_and_only_for_its_own_amount_and_pool() -> None:
    store = lent()
    _, reasons = await batch(store, paid(), instructed(amount="99999.99", principal="0.00"))
    assert reasons == [None, "amount_mismatch"]
    _, reasons = await batch(store, instructed(), instructed(), paid())
    assert reasons == [None, "duplicate_payment", "duplicate_payment"]
    _, reasons = await batch(store, paid(pool_id="CE-1/S-2"))
    assert reasons == ["payment_not_in_pool"]
    assert len(store.transactions) == 2


# ---------------------------------------------------------------- money on hold (issue 8)


async def test_a_payment_of_10_repays_5_keeps_3_on_hold_and_releases_2() -> None:
    store = lent()
    emitted, reasons = await batch(
        store, paid(amount="10.00"), instructed(amount="10.00", principal="5.00", held="3.00")
    )
    assert reasons == [None, None]
    [result] = of(emitted, topics.SETTLEMENT_RESULTS)
    assert (result["amount"], result["repaid_principal"], result["released"]) == (
        "10.00",
        "5.00",
        "2.00",
    )
    [notice] = of(emitted, topics.SETTLEMENT_FUNDER_REPAYMENTS)
    assert notice["total"] == "5.00"
    assert balances(store) == (ZERO, Decimal("3.00"), Decimal("2.00"))
    split = store.chain(POOL)[-1]
    assert split.entries == (
        (frozen_account(POOL), Decimal("-10.00")),
        (held_account(POOL), Decimal("3.00")),
        (funder_account("bank-a"), Decimal("5.00")),
        (free_account(POOL), Decimal("2.00")),
    )
    assert intact(store)


async def test_held_money_added_to_a_later_split_goes_to_the_funder() -> None:
    store = lent()
    await paid_with_3_held(store)
    # P-2 of 10.00 and the 3.00 on hold: 12.00 to the bank, 1.00 released.
    emitted, reasons = await batch(
        store,
        paid("P-2", amount="10.00"),
        instructed("P-2", amount="10.00", principal="12.00", from_held="3.00"),
    )
    assert reasons == [None, None]
    [result] = of(emitted, topics.SETTLEMENT_RESULTS)
    assert (result["repaid_principal"], result["released"]) == ("12.00", "1.00")
    assert balances(store) == (ZERO, ZERO, Decimal("3.00"))
    inputs = store.chain(POOL)[-1].inputs
    assert (inputs["held"], inputs["from_held"], inputs["kind"]) == (0, 300, "payment")
    assert intact(store)


async def test_taking_more_from_hold_than_the_pool_holds_is_refused_and_nothing_moves() -> None:
    store = lent()
    await paid_with_3_held(store)
    _, reasons = await batch(store, paid("P-2", amount="10.00"))
    assert reasons == [None]
    before = len(store.transactions)
    emitted, reasons = await batch(
        store, instructed("P-2", amount="10.00", principal="13.01", from_held="3.01")
    )
    assert (reasons, moved(emitted), len(store.transactions)) == (
        ["insufficient_funds"],
        [],
        before,
    )
    assert told_refused(emitted) == [("P-2", "insufficient_funds")]
    assert store.settlement_rows["P-2"].state == "frozen"  # credit may instruct it again
    assert balances(store) == (Decimal("10.00"), Decimal("3.00"), Decimal("2.00"))


async def test_an_early_instruction_that_the_pool_cannot_cover_refuses_its_payment() -> None:
    store = lent()
    await paid_with_3_held(store)
    _, reasons = await batch(
        store, instructed("P-2", amount="10.00", principal="14.00", from_held="4.00")
    )
    assert reasons == [None]  # waits for its money; the pool is checked when it is here
    before = len(store.transactions)
    emitted, reasons = await batch(store, paid("P-2", amount="10.00"))
    assert (reasons, moved(emitted), len(store.transactions)) == (
        ["insufficient_funds"],
        [],
        before,
    )
    assert told_refused(emitted) == [("P-2", "insufficient_funds")]
    assert store.settlement_rows["P-2"].state == "instructed"


async def test_an_early_instruction_that_cannot_add_up_is_refused_at_once() -> None:
    store = lent()
    _, reasons = await batch(store, instructed(amount="10.00", principal="8.00", held="2.01"))
    assert reasons == ["amount_mismatch"]
    assert store.settlement_rows == {}


async def test_the_held_balance_moves_within_one_batch() -> None:
    store = lent()
    _, reasons = await batch(
        store,
        paid(amount="10.00"),
        instructed(amount="10.00", principal="5.00", held="3.00"),
        paid("P-2", amount="1.00"),
        instructed("P-2", amount="1.00", principal="4.00", from_held="3.00"),
        paid("P-3", amount="1.00"),
        instructed("P-3", amount="1.00", principal="1.01", from_held="0.01"),
    )
    assert reasons == [None, None, None, None, None, "insufficient_funds"]
    assert balances(store) == (Decimal("1.00"), ZERO, Decimal("2.00"))
    assert intact(store)


async def test_penalty_and_loan_fees_reach_the_funder_and_count_as_interest() -> None:
    store = lent()
    dues = repayment("5.00", interest="0.50", penalty="0.20", fees="0.30")
    emitted, reasons = await batch(
        store,
        paid(amount="10.00"),
        instructed(amount="10.00", principal="5.00", repayments=[dues]),
        handler=make_handler(fee_bps=100),
    )
    assert reasons == [None, None]
    [result] = of(emitted, topics.SETTLEMENT_RESULTS)
    # 6.00 to the bank (1.00 of it interest, penalty and fees), 1% of the 4.00 left.
    assert (result["repaid_principal"], result["repaid_interest"]) == ("5.00", "1.00")
    assert (result["fees"], result["released"]) == ("0.04", "3.96")
    [notice] = of(emitted, topics.SETTLEMENT_FUNDER_REPAYMENTS)
    assert notice["total"] == "6.00"
    [part] = store.chain(POOL)[-1].inputs["repayments"]
    assert (part["interest"], part["penalty"], part["fees"]) == (50, 20, 30)
    assert intact(store)


# ---------------------------------------------------------------- settling money on hold


async def test_a_hold_settled_pays_the_bank_2_and_releases_1_once() -> None:
    store = lent()
    await paid_with_3_held(store)
    emitted, reasons = await batch(store, hold_settled(), hold_settled())
    assert reasons == [None, "duplicate_payment"]
    [result] = of(moved(emitted), topics.SETTLEMENT_RESULTS)
    assert told_refused(emitted) == [("hold:E-1", "duplicate_payment")]
    assert (result["payment_id"], result["amount"]) == ("hold:E-1", "3.00")
    assert (result["repaid_principal"], result["fees"], result["released"]) == (
        "2.00",
        "0.00",
        "1.00",
    )
    [notice] = of(emitted, topics.SETTLEMENT_FUNDER_REPAYMENTS)
    assert (notice["payment_id"], notice["total"]) == ("hold:E-1", "2.00")
    [freed] = of(emitted, topics.SETTLEMENT_RELEASES)
    assert freed["released"] == "1.00"
    assert balances(store) == (ZERO, ZERO, Decimal("3.00"))
    row = store.settlement_rows["hold:E-1"]
    assert (row.kind, row.state, row.amount) == ("hold", "released", Decimal("3.00"))
    assert [t[3] for t in store.transactions] == ["freeze", "split", "hold"]
    assert intact(store)


async def test_a_hold_settled_may_release_everything_to_the_supplier() -> None:
    store = lent()
    await paid_with_3_held(store)
    emitted, reasons = await batch(store, hold_settled(principal="0.00", released="3.00"))
    assert reasons == [None]
    assert of(emitted, topics.SETTLEMENT_FUNDER_REPAYMENTS) == []
    assert balances(store) == (ZERO, ZERO, Decimal("5.00"))


async def test_a_hold_settled_must_add_up_be_covered_and_be_of_its_pool() -> None:
    store = lent()
    await paid_with_3_held(store)
    before = len(store.transactions)
    emitted, reasons = await batch(
        store,
        hold_settled("hold:E-2", amount="3.00", principal="2.00", released="0.99"),
        hold_settled("hold:E-3", amount="3.01", principal="2.00", released="1.01"),
        hold_settled("P-1"),
    )
    assert reasons == ["amount_mismatch", "insufficient_funds", "duplicate_payment"]
    assert (moved(emitted), len(store.transactions)) == ([], before)
    assert [payment for payment, _ in told_refused(emitted)] == ["hold:E-2", "hold:E-3", "P-1"]
    _, reasons = await batch(store, hold_settled(pool_id="CE-1/S-2"), hold_settled())
    assert reasons == ["insufficient_funds", None]  # nothing is on hold in S-2
    _, reasons = await batch(store, hold_settled(pool_id="CE-1/S-2"))
    assert reasons == ["payment_not_in_pool"]


# ---------------------------------------------------------------- prepayments


async def test_a_prepayment_is_frozen_from_the_free_balance_then_split_like_a_payment() -> None:
    store = lent()
    await batch(store, paid(), instructed())  # 20,000.00 released to the supplier
    emitted, reasons = await batch(store, prepaid())
    assert reasons == [None]
    [frozen] = of(emitted, topics.SETTLEMENT_RESULTS)
    assert (frozen["type"], frozen["prepayment_id"], frozen["amount"], frozen["loan_id"]) == (
        "PrepaymentFrozen",
        "PP-1",
        "5000.00",
        "L-1",
    )
    assert balances(store) == (Decimal("5000.00"), ZERO, Decimal("15000.00"))
    row = store.settlement_rows["PP-1"]
    assert (row.kind, row.state) == ("prepayment", "frozen")
    # credit decides: 4,800.00 repays the loan, 200.00 goes back, with no second platform fee.
    emitted, reasons = await batch(
        store,
        instructed("PP-1", amount="5000.00", principal="4800.00", kind="prepayment"),
        handler=make_handler(fee_bps=30),
    )
    assert reasons == [None]
    [result] = of(emitted, topics.SETTLEMENT_RESULTS)
    assert (result["payment_id"], result["repaid_principal"]) == ("PP-1", "4800.00")
    assert (result["fees"], result["released"]) == ("0.00", "200.00")
    assert balances(store) == (ZERO, ZERO, Decimal("15200.00"))
    assert store.chain(POOL)[-1].inputs["rule_version"] == "split-v2/fee-bps=0"
    assert [t[3] for t in store.transactions] == ["freeze", "split", "prepayment", "split"]
    assert intact(store)


async def test_a_prepayment_above_the_free_balance_is_refused_naming_the_balance() -> None:
    store = lent()
    await paid_with_3_held(store)  # 2.00 free, 3.00 held: only the free money may prepay
    before = len(store.transactions)
    emitted, reasons = await batch(store, prepaid(amount="2.01"))
    assert (reasons, emitted, len(store.transactions)) == (["insufficient_funds"], [], before)
    refusal = await refusal_of(store, prepaid("PP-2", amount="2.01"))
    assert "exceeds the free balance 2.00" in refusal.detail
    _, reasons = await batch(store, prepaid("PP-3", amount="2.00"))
    assert reasons == [None]
    assert balances(store) == (Decimal("2.00"), Decimal("3.00"), ZERO)


async def test_a_prepayment_is_frozen_once_and_its_id_is_no_payment() -> None:
    store = lent()
    await batch(store, paid(), instructed())
    _, reasons = await batch(store, prepaid(), prepaid(), prepaid("P-1"), paid("PP-1"))
    assert reasons == [None, "duplicate_payment", "duplicate_payment", "duplicate_payment"]
    _, reasons = await batch(store, prepaid(pool_id="CE-1/S-2"))
    assert reasons == ["payment_not_in_pool"]
    assert balances(store) == (Decimal("5000.00"), ZERO, Decimal("15000.00"))


async def test_instructions_must_be_of_the_kind_they_settle() -> None:
    store = lent()
    await batch(store, paid(), instructed(), prepaid(), paid("P-2", amount="10.00"))
    _, reasons = await batch(
        store,
        instructed("PP-9", amount="10.00", principal="0.00", kind="prepayment"),
        instructed("PP-1", amount="5000.00", principal="0.00"),
        instructed("P-2", amount="10.00", principal="0.00", kind="prepayment"),
    )
    assert reasons == ["invalid_message", "invalid_message", "invalid_message"]
    assert "PP-9" not in store.settlement_rows


async def test_slip_adjustments_move_no_money() -> None:
    store = lent()
    adjusted = m.new_event(
        m.ReceivableAdjusted,
        source="intake",
        pool_id=POOL,
        receivable_id="R-1",
        kind=m.AdjustmentKind.CREDIT_NOTE,
        change=Decimal("-100.00"),
        open_after=Decimal("900.00"),
        disputed=False,
        reason="returned goods",
        reference="CN-1",
    )
    emitted, reasons = await batch(store, adjusted)
    assert (reasons, emitted, store.transactions) == ([None], [], [])


# ---------------------------------------------------------------- loans credit holds (issue 9)


def naming(loan_id: str, principal: str, funder_id: str = "bank-a") -> list[m.LoanRepayment]:
    return [
        m.LoanRepayment(
            loan_id=loan_id,
            funder_id=funder_id,
            principal=Decimal(principal),
            interest=Decimal("0.00"),
            days=0,
        )
    ]


async def test_only_loans_credit_opened_in_the_pool_to_their_funder_are_repaid() -> None:
    store = InMemoryLedgerStore()
    _, reasons = await batch(store, opened("L-7", "100.00"), opened("L-8", "50.00", "CE-1/S-2"))
    assert reasons == [None, None]
    refused = [
        instructed("P-1", "10.00", repayments=naming("L-none", "10.00")),  # never opened
        instructed("P-2", "10.00", repayments=naming("L-8", "10.00")),  # another pool's
        instructed("P-3", "10.00", repayments=naming("L-7", "10.00", funder_id="bank-z")),
        instructed("P-4", "200.00", repayments=naming("L-7", "200.00")),  # above outstanding
    ]
    emitted, reasons = await batch(store, *refused)
    assert (moved(emitted), reasons) == ([], ["loan_not_held"] * 4)
    assert [reason for _, reason in told_refused(emitted)] == ["loan_not_held"] * 4
    assert "L-none" in (await refusal_of(store, refused[0])).detail
    assert "outstanding" in (await refusal_of(store, refused[3])).detail
    assert store.settlement_rows == {}
    assert [t[3] for t in store.transactions] == ["disbursement", "disbursement"]  # no more


async def test_what_a_split_repays_is_no_longer_outstanding() -> None:
    store = InMemoryLedgerStore()
    _, reasons = await batch(
        store,
        opened("L-7", "100.00"),
        paid("P-1", "60.00"),
        instructed("P-1", "60.00", repayments=naming("L-7", "60.00")),
    )
    assert reasons == [None, None, None]
    assert store.loan_rows["L-7"].outstanding == Decimal("40.00")
    _, reasons = await batch(
        store, paid("P-2", "60.00"), instructed("P-2", "60.00", repayments=naming("L-7", "60.00"))
    )
    assert reasons == [None, "loan_not_held"]  # 60 of 40 outstanding: frozen, never paid out
    assert store.loan_rows["L-7"].outstanding == Decimal("40.00")


async def test_a_loan_is_opened_once() -> None:
    store = InMemoryLedgerStore()
    _, reasons = await batch(
        store, opened("L-7", "100.00"), opened("L-7", "100.00"), opened("L-7", "999.00")
    )
    assert reasons == [None, None, "invalid_message"]
    assert store.loan_rows["L-7"].principal == Decimal("100.00")


# ---------------------------------------------------------------- ledger anchors (issue 9)


async def test_each_batch_anchors_the_head_of_every_chain_it_advanced() -> None:
    store = lent()
    emitted, _ = await batch(store, paid(), instructed(), paid("P-9", pool_id="CE-1/S-2"))
    anchors = {body["pool_id"]: body for body in of(emitted, topics.SETTLEMENT_LEDGER_ANCHORS)}
    assert {pool: (a["seq"], a["head_hash"]) for pool, a in anchors.items()} == {
        POOL: store.head(POOL),  # freeze and split: one anchor, at the head
        "CE-1/S-2": store.head("CE-1/S-2"),
    }
    emitted, reasons = await batch(store, instructed())  # refused: no new entry, no anchor
    assert reasons == ["duplicate_payment"]
    assert of(emitted, topics.SETTLEMENT_LEDGER_ANCHORS) == []


# ---------------------------------------------------------------- split rules (issue 10)


def rules_set(scope: str = "programme", **rules: Any) -> m.Message:
    receivers = rules.get("receivers", DEMO_RULES["receivers"])
    return m.SplitRulesSet.model_validate(
        {
            "event_id": f"rules-{len(receivers)}-{scope}",
            "occurred_at": "2026-11-24T10:00:00+08:00",
            "source": "op-1",
            "pool_id": POOL if scope == "pool" else "CE-1",
            "scope": scope,
            "core_enterprise_id": "CE-1" if scope == "programme" else None,
            "rules": {"receivers": receivers},
        }
    )


def pool_opened() -> m.Message:
    return m.new_event(
        m.PoolOpened, source="intake", pool_id=POOL, core_enterprise_id="CE-1", supplier_id="S-1"
    )


async def test_the_programmes_rules_split_the_rest_after_the_funders_to_the_fen() -> None:
    store = lent()
    _, reasons = await batch(store, pool_opened(), rules_set())
    assert reasons == [None, None]
    emitted, reasons = await batch(store, paid(), instructed())  # 100,000.00; 80,000.00 to bank
    assert reasons == [None, None]
    [result] = released(emitted)
    assert (result["fees"], result["released"], result["receivers"]) == (
        "300.00",
        "19080.00",
        {"guarantor:cgc": "500.00", "logistics:sf": "120.00"},
    )
    assert result["rule_version"] == "rules:programme:CE-1@v1"
    assert intact(store)
    split_inputs = json.loads(store.transactions[-1][4])
    assert split_inputs["rule_version"] == "rules:programme:CE-1@v1"
    assert split_inputs["rule_facts"] == {"grade": None, "volume_this_month": 10000000}


async def test_rules_that_cannot_hold_are_refused_and_the_old_ones_stay() -> None:
    store = lent()
    before_funders = [
        {
            "account": "platform:fee",
            "share": {"kind": "fixed", "amount": "1.00"},
            "before_funders": True,
        },
        {"account": "supplier", "share": {"kind": "rest"}},
    ]
    _, reasons = await batch(store, pool_opened(), rules_set(receivers=before_funders))
    assert reasons == [None, "invalid_split_rules"]
    emitted, _ = await batch(store, paid(), instructed())
    [result] = released(emitted)
    assert (result["receivers"], result["rule_version"]) == ({}, "split-v2/fee-bps=0")


async def test_a_rate_by_grade_resolves_from_the_grade_credit_instructs_and_is_hashed() -> None:
    by_grade: dict[str, Any] = {
        "receivers": [
            {
                "account": "platform:fee",
                "share": {
                    "kind": "of_payment",
                    "rate": {
                        "by_grade": {
                            "A": "0.001",
                            "B": "0.002",
                            "C": "0.003",
                            "D": "0.004",
                            "E": "0.005",
                        }
                    },
                },
            },
            {"account": "supplier", "share": {"kind": "rest"}},
        ]
    }
    store = lent()
    await batch(store, pool_opened(), rules_set(**by_grade))
    graded = instructed().model_copy(update={"grade": "A"})
    emitted, reasons = await batch(store, paid(), graded)
    assert reasons == [None, None]
    [result] = released(emitted)
    assert result["fees"] == "100.00"  # grade A: 0.1% of 100,000.00
    inputs = json.loads(store.transactions[-1][4])
    assert inputs["rule_facts"]["grade"] == "A"
    emitted, _ = await batch(store, paid("P-2"), instructed("P-2", principal="0.00"))
    [ungraded] = released(emitted)
    assert ungraded["fees"] == "500.00"  # no grade yet: E, the most cautious


async def test_a_volume_tier_counts_the_payment_itself_in_either_arrival_order() -> None:
    fees = []
    for order in ("payment first", "instruction first"):
        store = lent()
        store.volumes[POOL] = Decimal("100000.00")  # this month's earlier payments
        await batch(store, pool_opened(), rules_set(**TIERED_RULES))
        events = [paid(), instructed(principal="0.00")]
        if order == "instruction first":
            events.reverse()
        emitted: Emitted = []
        for event in events:  # one batch each
            emitted += (await batch(store, event))[0]
        [result] = released(emitted)
        fees.append(result["fees"])
        inputs = json.loads(store.transactions[-1][4])
        assert inputs["rule_facts"]["volume_this_month"] == 20000000  # in fen
    assert fees == ["100.00", "100.00"]  # 0.1% of 100,000.00: the month is at 200,000.00
