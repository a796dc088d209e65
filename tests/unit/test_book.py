"""The ledger of record (issue 10), on the in-memory fake store: disbursements, principal off
the funders' receivables, payouts and the bank's answers, operators' voids and releases,
reversals pro rata (property-tested: never more back than was paid), and the overdraft
rules of every account type."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.settlement_splitter.domain import (
    account_kind,
    bank_account,
    buyer_account,
    clawback_account,
    free_account,
    frozen_account,
    funder_account,
    loan_account,
    owed_account,
    payout_account,
    reverse,
)
from services.settlement_splitter.handlers import make_handler
from services.settlement_splitter.repository import InMemoryLedgerStore, LedgerBatch
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected
from shared.money import ZERO
from tests.unit.batches import Emitted, run_batch
from tests.unit.test_splitter_handlers import POOL, instructed, intact, opened, paid

handle = make_handler(fee_bps=30)  # three receivers: the funder, the platform, the supplier


async def batch(store: InMemoryLedgerStore, *events: m.Message) -> tuple[Emitted, list[str | None]]:
    return await run_batch(LedgerBatch(store=store), handle, *events)


def pool_opened() -> m.Message:
    return m.new_event(
        m.PoolOpened, source="intake", pool_id=POOL, core_enterprise_id="CE-1", supplier_id="S-1"
    )


def bal(store: InMemoryLedgerStore, account: str) -> Decimal:
    assert store.account_balances.get(account, ZERO) == store.balance(account)  # incremental
    return store.account_balances.get(account, ZERO)


def of_type(emitted: Emitted, type_: str) -> list[dict[str, object]]:
    return [body for _, body in emitted if body["type"] == type_]


async def lent_and_paid() -> InMemoryLedgerStore:
    """Loan L-1 of 80,000 from bank-a; payment P-1 of 100,000 repays 60,000 + 500 interest,
    0.30% of the rest to the platform, the rest released."""
    store = InMemoryLedgerStore()
    _, reasons = await batch(store, pool_opened(), opened("L-1", "80000.00"))
    assert reasons == [None, None]
    _, reasons = await batch(
        store,
        paid("P-1", "100000.00"),
        instructed(
            "P-1",
            "100000.00",
            repayments=[
                m.LoanRepayment(
                    loan_id="L-1",
                    funder_id="bank-a",
                    principal=Decimal("60000.00"),
                    interest=Decimal("500.00"),
                    days=30,
                )
            ],
        ),
    )
    assert reasons == [None, None]
    return store


async def test_a_disbursement_is_booked_from_the_funder_to_the_supplier_with_its_debt() -> None:
    store = InMemoryLedgerStore()
    await batch(store, pool_opened(), opened("L-1", "80000.00"))
    assert bal(store, funder_account("bank-a")) == Decimal("-80000.00")
    assert bal(store, bank_account("S-1")) == Decimal("80000.00")
    assert bal(store, loan_account(POOL)) == Decimal("-80000.00")
    assert bal(store, owed_account("L-1")) == Decimal("80000.00")
    assert intact(store)


async def test_a_split_takes_the_principal_off_the_funders_receivable() -> None:
    store = await lent_and_paid()
    assert bal(store, owed_account("L-1")) == Decimal("20000.00")
    assert bal(store, loan_account(POOL)) == Decimal("-20000.00")
    assert bal(store, funder_account("bank-a")) == Decimal("-80000.00") + Decimal("60500.00")
    assert bal(store, "platform:fees") == Decimal("118.50")  # 0.30% of 39,500
    assert bal(store, free_account(POOL)) == Decimal("39381.50")
    assert sum(store.account_balances.values(), ZERO) == 0
    assert intact(store)


async def test_a_payout_is_instructed_then_executed_or_returned_by_the_bank() -> None:
    store = await lent_and_paid()
    request = m.new_event(
        m.PayoutRequested,
        source="S-1",
        pool_id=POOL,
        payout_id="PO-1",
        amount=Decimal("30000.00"),
        bank_account="6222 0000 1111",
    )
    emitted, reasons = await batch(store, request)
    assert reasons == [None]
    [instruction] = of_type(emitted, "PayoutInstructed")
    assert (instruction["amount"], instruction["bank_account"]) == ("30000.00", "6222 0000 1111")
    assert [t for t, b in emitted if b["type"] == "PayoutInstructed"] == [topics.SETTLEMENT_PAYOUTS]
    assert bal(store, payout_account(POOL)) == Decimal("30000.00")
    assert bal(store, free_account(POOL)) == Decimal("9381.50")

    executed = m.new_event(
        m.PayoutResult, source="bank", pool_id=POOL, payout_id="PO-1", status="executed"
    )
    _, reasons = await batch(store, executed, executed.model_copy(update={"event_id": "again"}))
    assert reasons == [None, "settlement_closed"]
    assert bal(store, payout_account(POOL)) == ZERO
    assert bal(store, bank_account("S-1")) == Decimal("110000.00")  # loan 80,000 + payout

    _, reasons = await batch(
        store,
        request.model_copy(update={"event_id": "e2", "payout_id": "PO-2"}),
        m.new_event(
            m.PayoutResult,
            source="bank",
            pool_id=POOL,
            payout_id="PO-2",
            status="rejected",
            reason="account closed",
        ),
    )
    assert reasons == ["insufficient_funds", "unknown_payout"]  # 30,000 > 9,381.50 free
    _, reasons = await batch(
        store,
        request.model_copy(
            update={"event_id": "e3", "payout_id": "PO-3", "amount": Decimal("9000.00")}
        ),
        m.new_event(
            m.PayoutResult, source="bank", pool_id=POOL, payout_id="PO-3", status="rejected"
        ),
    )
    assert reasons == [None, None]
    assert bal(store, free_account(POOL)) == Decimal("9381.50")  # returned to the free balance
    assert store.payout_rows["PO-3"].state == "rejected"
    assert intact(store)


async def test_a_voided_hold_goes_back_to_the_buyer_and_credits_late_instruction_is_refused() -> (
    None
):
    store = InMemoryLedgerStore()
    await batch(store, pool_opened(), opened("L-1", "80000.00"), paid("P-1", "1000.00"))
    void = m.new_event(
        m.HoldResolved, source="op-1", pool_id=POOL, payment_id="P-1", action="void", note="x"
    )
    _, reasons = await batch(store, void)
    assert reasons == [None]
    assert (bal(store, frozen_account(POOL)), bal(store, buyer_account("CE-1"))) == (ZERO, ZERO)
    assert store.settlement_rows["P-1"].state == "voided"
    emitted, reasons = await batch(store, instructed("P-1", "1000.00", principal="1000.00"))
    assert reasons == ["duplicate_payment"]
    [told] = of_type(emitted, "InstructionRefused")
    assert (told["payment_id"], told["reason"]) == ("P-1", "duplicate_payment")
    _, reasons = await batch(store, void.model_copy(update={"event_id": "v2"}))
    assert reasons == ["settlement_closed"]


async def test_a_released_hold_goes_to_the_free_balance() -> None:
    store = InMemoryLedgerStore()
    await batch(store, pool_opened(), paid("P-1", "1000.00"))
    _, reasons = await batch(
        store,
        m.new_event(
            m.HoldResolved, source="op", pool_id=POOL, payment_id="P-1", action="release", note="x"
        ),
    )
    assert reasons == [None]
    assert bal(store, free_account(POOL)) == Decimal("1000.00")
    assert store.settlement_rows["P-1"].state == "released"


def reversed_(reversal_id: str, amount: str) -> m.Message:
    return m.new_event(
        m.PaymentReversed,
        source="CE-1",
        pool_id=POOL,
        reversal_id=reversal_id,
        payment_id="P-1",
        amount=Decimal(amount),
        reason="returned",
    )


async def test_a_whole_reversal_returns_every_part_and_restores_the_loan() -> None:
    store = await lent_and_paid()
    emitted, reasons = await batch(store, reversed_("R-1", "100000.00"))
    assert reasons == [None]
    [result] = of_type(emitted, "SettlementReversed")
    assert result["returned"] == {
        funder_account("bank-a"): "60500.00",
        "platform:fees": "118.50",
        free_account(POOL): "39381.50",
    }
    assert result["owed"] == {}
    loans: Any = result["loans"]
    assert [(x["principal"], x["interest"]) for x in loans] == [("60000.00", "500.00")]
    assert store.loan_rows["L-1"].repaid == ZERO
    assert bal(store, owed_account("L-1")) == Decimal("80000.00")  # as before the payment
    assert bal(store, buyer_account("CE-1")) == ZERO
    assert bal(store, free_account(POOL)) == ZERO
    _, reasons = await batch(store, reversed_("R-2", "0.01"), reversed_("R-1", "1.00"))
    assert reasons == ["nothing_to_reverse", "duplicate_payment"]  # R-1 is taken
    assert intact(store)


async def test_what_the_supplier_paid_out_already_becomes_a_receivable_from_it() -> None:
    store = await lent_and_paid()
    _, reasons = await batch(
        store,
        m.new_event(
            m.PayoutRequested,
            source="S-1",
            pool_id=POOL,
            payout_id="PO-1",
            amount=Decimal("39381.50"),
            bank_account="6222",
        ),
    )
    assert reasons == [None]
    emitted, reasons = await batch(store, reversed_("R-1", "50000.00"))
    assert reasons == [None]
    [result] = of_type(emitted, "SettlementReversed")
    owed = Decimal(str(result["owed"][free_account(POOL)]))  # type: ignore[index]
    assert owed == Decimal("19690.75")  # its half: nothing left in the free balance
    assert bal(store, clawback_account(free_account(POOL))) == -owed
    assert bal(store, funder_account("bank-a")) == Decimal("-80000.00") + Decimal("30250.00")
    assert store.loan_rows["L-1"].repaid == Decimal("30000.00")
    assert intact(store)


def test_the_database_rules_of_each_account_type() -> None:
    assert account_kind("frozen:P").min_balance == 0  # a frozen account never below zero
    assert account_kind("owed:L-1").min_balance == 0  # a funder's receivable never negative
    assert account_kind("loan:P").max_balance == 0
    assert account_kind("buyer:CE").type == "external"
    assert account_kind("guarantor:G").min_balance == 0


async def test_an_overdraft_is_refused_by_the_store_whatever_the_handler_decided() -> None:
    store = InMemoryLedgerStore()
    batch_ = LedgerBatch(store=store)
    account = await batch_.account(None, POOL)
    batch_.post(  # a bug that would take the platform's fees below zero
        account,
        payment_id="X",
        kind="reversal",
        entries=[("platform:fees", Decimal("-5.00")), ("tax:x", Decimal("5.00"))],
        inputs={},
    )
    with pytest.raises(ValueError, match="overdrawn"):
        await batch_.flush(None)


fen = st.integers(min_value=1, max_value=10**9).map(lambda c: Decimal(c) / 100)


@settings(max_examples=300, deadline=None)
@given(
    received=st.dictionaries(
        st.sampled_from(["funder:a", "funder:b", "platform:fees", "tax:x", "free:p"]),
        fen,
        min_size=1,
    ),
    fractions=st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=5),
    balances=st.dictionaries(st.sampled_from(["platform:fees", "tax:x", "free:p"]), fen),
)
def test_any_sequence_of_reversals_returns_no_more_than_was_paid(
    received: dict[str, Decimal], fractions: list[int], balances: dict[str, Decimal]
) -> None:
    paid = sum(received.values(), ZERO)
    given_back: dict[str, Decimal] = {}
    total = ZERO
    for pct in fractions:
        amount = ((paid - total) * pct / 100).quantize(Decimal("0.01"))
        plan = reverse(amount, received, given_back, balances)
        if amount <= 0:
            assert isinstance(plan, Rejected)
            continue
        assert not isinstance(plan, Rejected)
        shares = {a: plan.share(a) for a in received}
        assert sum(shares.values(), ZERO) == amount  # to the fen
        assert sum(v for _, v in plan.entries("buyer:c")) == 0  # balanced
        for account, share in shares.items():
            assert plan.returned.get(account, ZERO) <= balances.get(account, share)
            given_back[account] = given_back.get(account, ZERO) + share
            assert given_back[account] <= received[account]  # never more than it got
        total += amount
    assert total <= paid
    more = reverse(paid - total + Decimal("0.01"), received, given_back, balances)
    assert isinstance(more, Rejected)  # never more than was paid in all


def test_camt_053_and_054_are_read_and_hostile_xml_is_refused() -> None:
    from datetime import date

    from services.settlement_splitter.reconcile import Line, NotCamt, camt053, match, parse_camt

    lines = [
        Line("CRDT", Decimal("100000.00"), "P-1", date(2026, 12, 3)),
        Line("DBIT", Decimal("80000.00"), "P-1", date(2026, 12, 3)),
    ]
    account, read = parse_camt(camt053("CN-1", lines))
    assert (account, read) == ("CN-1", lines)
    notification = (
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">'
        b"<BkToCstmrDbtCdtNtfctn><GrpHdr><MsgId>N</MsgId></GrpHdr><Ntfctn><Id>N1</Id>"
        b"<Acct><Id><IBAN>CN00TEST</IBAN></Id></Acct>"
        b'<Ntry><Amt Ccy="CNY">15000.00</Amt><CdtDbtInd>DBIT</CdtDbtInd>'
        b"<Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2026-12-03</Dt></BookgDt>"
        b"<NtryDtls><TxDtls><Refs><EndToEndId>PO-1</EndToEndId></Refs></TxDtls></NtryDtls>"
        b"</Ntry>"
        b'<Ntry><Amt Ccy="CNY">1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
        b"<Sts><Cd>PDNG</Cd></Sts></Ntry>"  # pending: not booked money
        b"</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>"
    )
    account, read = parse_camt(notification)
    assert account == "CN00TEST"
    assert [(ln.direction, ln.amount, ln.reference) for ln in read] == [
        ("DBIT", Decimal("15000.00"), "PO-1")
    ]
    report = match(lines, read)
    assert (report.matched, len(report.missing_at_bank), len(report.extra_at_bank)) == (0, 2, 1)
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Document>&b;</Document>'
    )
    for hostile in (bomb, b"<not-xml", b"<Document><Other/></Document>"):
        with pytest.raises(NotCamt):
            parse_camt(hostile)


async def test_a_payout_for_a_pool_never_opened_is_refused_and_moves_nothing() -> None:
    store = InMemoryLedgerStore()
    emitted, reasons = await batch(
        store,
        m.new_event(
            m.PayoutRequested,
            source="S-9",
            pool_id="CE-9/S-9",
            payout_id="PO-9",
            amount=Decimal("1.00"),
            bank_account="6222",
        ),
    )
    assert (reasons, emitted, store.transactions) == (["unknown_pool"], [], [])
