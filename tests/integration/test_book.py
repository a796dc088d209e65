"""Issue 10, the ledger of record, on the real broker and PostgreSQL with the four services as
processes: disbursement to payout booked end to end with the book balanced; a reversal after
a split to three receivers and the funder, pro rata, restoring the loan in credit; statements
whose movements sum from the opening to the closing balance (JSON and PDF); a reconciliation
that finds a missing and an extra bank line; a voided hold with credit's reservation undone;
an alert on a payment frozen too long."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from poolfin.clients import Observer, Publisher, erp_event
from poolfin.stack import Stack
from poolfin.tokens import token_for
from services.settlement_splitter.reconcile import Line, camt053, ledger_lines
from shared.contracts import topics
from shared.contracts.messages import PartyRole
from tests.conftest import TEST_FUNDER
from tests.integration.scenario import borrow, http_json, payment
from tests.integration.test_split_rules import RULES, poolfin, programme_pool, rules_in_force

pytestmark = pytest.mark.integration


async def eventually(conn: asyncpg.Connection, query: str, *args: Any, want: Any) -> Any:
    for _ in range(150):
        found = await conn.fetchval(query, *args)
        if found == want:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{query} {args} is {found!r}, never {want!r}")


async def book_is_balanced(conn: asyncpg.Connection) -> None:
    """Every transaction sums to zero, every account's kept balance is the sum of its entries
    and its last entry's running balance, and the whole book sums to zero."""
    unbalanced = await conn.fetchval(
        "SELECT count(*) FROM (SELECT transaction_id FROM settlement.ledger_entries"
        " GROUP BY transaction_id HAVING sum(amount) <> 0) t"
    )
    drift = await conn.fetch(
        "SELECT a.account, a.balance, s.total, s.last FROM settlement.ledger_accounts a"
        " JOIN (SELECT account, sum(amount) AS total,"
        "  (array_agg(balance_after ORDER BY transaction_id DESC, line DESC))[1] AS last"
        "  FROM settlement.ledger_entries GROUP BY account) s ON s.account = a.account"
        " WHERE a.balance <> s.total OR a.balance <> s.last"
    )
    total = await conn.fetchval("SELECT sum(balance) FROM settlement.ledger_accounts")
    assert (unbalanced, drift, total) == (0, [], 0)


async def balance(conn: asyncpg.Connection, account: str) -> Decimal:
    found = await conn.fetchval(
        "SELECT balance FROM settlement.ledger_accounts WHERE account = $1", account
    )
    return found if found is not None else Decimal("0.00")


async def test_disbursement_to_payout_then_a_reversal_a_statement_and_a_reconciliation(
    stack: Stack, publisher: Publisher, observer: Observer, tmp_path: Path
) -> None:
    core = f"CE-BOOK-{uuid.uuid4().hex[:6]}"
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps(RULES))
    assert (
        await poolfin(stack, "split-rules", "set", str(rules_file), "--programme", core)
    ).returncode == 0
    await rules_in_force(stack, core)
    pool = await programme_pool(publisher, observer, core)
    loan_id = await borrow(publisher, observer, pool, "800000.00", TEST_FUNDER)
    conn = await asyncpg.connect(stack.database_url)
    try:
        # The disbursement: the funder's money to the supplier, the debt on both sides.
        await eventually(
            conn,
            "SELECT balance FROM settlement.ledger_accounts WHERE account = $1",
            f"owed:{loan_id}",
            want=Decimal("800000.00"),
        )
        assert await balance(conn, f"loan:{pool.pool_id}") == Decimal("-800000.00")
        assert await balance(conn, f"bank:{pool.supplier_id}") == Decimal("800000.00")

        paid = payment(pool, "100000.00", list(pool.slips))
        await publisher.send(topics.ERP_PAYMENTS, paid)
        [split] = await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=paid["payment_id"])
        assert (
            split["released"] == "19080.00"
        )  # the funder, 3 receivers, the rest (test_split_rules)
        assert await balance(conn, f"owed:{loan_id}") == Decimal("720000.00")

        # The supplier has 15,000.00 of its free balance paid out; the bank executes it.
        payout_id = f"PO-{uuid.uuid4().hex[:8]}"
        await publisher.send(
            topics.SUPPLIER_PAYOUTS,
            erp_event(
                "PayoutRequested",
                pool.pool_id,
                source=pool.supplier_id,
                payout_id=payout_id,
                amount="15000.00",
                bank_account="6222 0210 0000 0001",
            ),
        )
        [instructed] = await observer.wait_for(topics.SETTLEMENT_PAYOUTS, payout_id=payout_id)
        assert (instructed["amount"], instructed["supplier_id"]) == ("15000.00", pool.supplier_id)
        await publisher.send(
            topics.BANK_PAYOUT_RESULTS,
            erp_event(
                "PayoutResult",
                pool.pool_id,
                source="bank-connector",
                payout_id=payout_id,
                status="executed",
                bank_reference="B-1",
            ),
        )
        await eventually(
            conn,
            "SELECT state FROM settlement.payouts WHERE payout_id = $1",
            payout_id,
            want="executed",
        )
        assert await balance(conn, f"bank:{pool.supplier_id}") == Decimal("815000.00")
        assert await balance(conn, f"free:{pool.pool_id}") == Decimal("4080.00")
        await book_is_balanced(conn)

        # Only the pool's own buyer reverses its payment, only its supplier has it paid out:
        # anyone else's signed message is dead-lettered and moves nothing.
        impostors = [
            (
                topics.ERP_PAYMENT_REVERSALS,
                erp_event(
                    "PaymentReversed",
                    pool.pool_id,
                    reversal_id=f"REV-{uuid.uuid4().hex[:8]}",
                    payment_id=paid["payment_id"],
                    amount="1.00",
                    reason="chargeback",
                ),
                ("CE-OTHER", PartyRole.CORE_ENTERPRISE),
            ),
            (
                topics.SUPPLIER_PAYOUTS,
                erp_event(
                    "PayoutRequested",
                    pool.pool_id,
                    payout_id=f"PO-{uuid.uuid4().hex[:8]}",
                    amount="1.00",
                    bank_account="6222 0000",
                ),
                ("S-OTHER", PartyRole.SUPPLIER),
            ),
        ]
        for topic, event, signer in impostors:
            await publisher.send(topic, event, signer=signer)
            [letter] = await observer.wait_for(
                topics.SETTLEMENT_REJECTED, event_id=event["event_id"]
            )
            assert letter["reason"] == "not_permitted"
        assert await balance(conn, f"free:{pool.pool_id}") == Decimal("4080.00")
        assert await balance(conn, f"buyer:{core}") == Decimal("-100000.00")

        # The buyer's bank returns half the payment: everyone the split paid gives back half,
        # the supplier what it still has (4,080.00) and owes the rest (5,460.00).
        reversal = erp_event(
            "PaymentReversed",
            pool.pool_id,
            reversal_id=f"REV-{uuid.uuid4().hex[:8]}",
            payment_id=paid["payment_id"],
            amount="50000.00",
            reason="returned",
        )
        await publisher.send(topics.ERP_PAYMENT_REVERSALS, reversal)
        [undone] = await observer.wait_for(
            topics.SETTLEMENT_RESULTS, reversal_id=reversal["reversal_id"]
        )
        assert undone["returned"] == {
            f"funder:{TEST_FUNDER}": "40000.00",
            "platform:fees": "150.00",
            "guarantor:cgc": "250.00",
            "logistics:sf": "60.00",
            f"free:{pool.pool_id}": "4080.00",
        }
        assert undone["owed"] == {f"free:{pool.pool_id}": "5460.00"}
        [restored] = undone["loans"]
        assert (restored["loan_id"], restored["principal"]) == (loan_id, "40000.00")
        assert await balance(conn, f"owed:{loan_id}") == Decimal("760000.00")
        assert await balance(conn, f"clawback:free:{pool.pool_id}") == Decimal("-5460.00")
        await eventually(  # credit restores the loan
            conn,
            "SELECT outstanding FROM credit.loans WHERE loan_id = $1",
            loan_id,
            want=Decimal("760000.00"),
        )
        await book_is_balanced(conn)
        verified = await poolfin(stack, "ledger", "verify")
        assert verified.returncode == 0, verified.stdout[-2000:]

        # The supplier's statement: every account's movements sum from opening to closing.
        pdf = tmp_path / "statement.pdf"
        shown = await poolfin(stack, "statement", pool.supplier_id, "--pdf", str(pdf))
        assert shown.returncode == 0, shown.stderr[-2000:]
        stmt = json.loads(shown.stdout)
        assert stmt["role"] == "supplier"
        accounts = {a["account"]: a for a in stmt["accounts"]}
        free = accounts[f"free:{pool.pool_id}"]
        assert [mv["cause"] for mv in free["movements"]] == ["split", "payout", "reversal"]
        for a in stmt["accounts"]:
            moved = sum(Decimal(mv["amount"]) for mv in a["movements"])
            assert Decimal(a["opening_balance"]) + moved == Decimal(a["closing_balance"])
        assert free["closing_balance"] == "0.00"
        assert accounts[f"loan:{pool.pool_id}"]["closing_balance"] == "-760000.00"
        assert pdf.read_bytes().startswith(b"%PDF-")
        assert b"Closing balance: -760000.00 CNY" in pdf.read_bytes()
        # The same statement over HTTP, for the supplier itself (and a PDF); not for another.
        path = f"/statements/{pool.supplier_id}"
        mine = token_for(stack.keyring, pool.supplier_id, PartyRole.SUPPLIER)
        status, over_http = await asyncio.to_thread(
            http_json, stack.http_url, "GET", path, None, mine
        )
        assert status == 200, over_http
        assert over_http["accounts"] == stmt["accounts"]
        status, denied = await asyncio.to_thread(
            http_json,
            stack.http_url,
            "GET",
            path,
            None,
            token_for(stack.keyring, f"S-other-{uuid.uuid4().hex[:4]}", PartyRole.SUPPLIER),
        )
        assert status == 403, denied
        request = urllib.request.Request(
            f"{stack.http_url}{path}?format=pdf", headers={"Authorization": f"Bearer {mine}"}
        )
        with await asyncio.to_thread(urllib.request.urlopen, request, timeout=30) as response:
            assert response.headers["Content-Type"] == "application/pdf"
            assert b"Closing balance: -760000.00 CNY" in response.read()
        # The funder's and the buyer's statements add up too; a balance as of any instant.
        for party, role in ((TEST_FUNDER, "funder"), (core, "core_enterprise")):
            theirs = json.loads((await poolfin(stack, "statement", party)).stdout)
            assert theirs["role"] == role
            assert all(a["balanced"] for a in theirs["accounts"])
        buyer = {a["account"]: a for a in theirs["accounts"]}[f"buyer:{core}"]
        assert [mv["cause"] for mv in buyer["movements"]] == ["freeze", "reversal"]
        split_at = free["movements"][0]["posted_at"]  # the split, before the payout and reversal
        then = await poolfin(stack, "ledger", "balance", f"owed:{loan_id}", "--as-of", split_at)
        assert json.loads(then.stdout)["balance"] == "720000.00"
        now = await poolfin(stack, "ledger", "balance", f"owed:{loan_id}")
        assert json.loads(now.stdout)["balance"] == "760000.00"
        # A statement of a later period opens where this one closed, with no movements.
        later = await poolfin(stack, "statement", pool.supplier_id, "--from", stmt["to"])
        assert json.loads(later.stdout)["accounts"][0]["opening_balance"] == "0.00"

        # The bank statement of the controlled account: one line missing, one extra.
        book = await ledger_lines(conn, pool.pool_id, *_today_range())
        assert {(ln.direction, ln.reference) for ln in book} >= {
            ("CRDT", paid["payment_id"]),
            ("DBIT", payout_id),
        }
        missing = next(ln for ln in book if ln.reference == payout_id)
        extra = Line("CRDT", Decimal("1234.56"), "UNKNOWN-REF", missing.booked_on)
        statement_file = tmp_path / "camt053.xml"
        statement_file.write_bytes(
            camt053("CN-CTRL-1", [ln for ln in book if ln is not missing] + [extra])
        )
        checked = await poolfin(stack, "reconcile", str(statement_file), "--pool", pool.pool_id)
        assert checked.returncode == 1, checked.stderr[-2000:]
        report = json.loads(checked.stdout)
        assert report["matched"] == len(book) - 1
        assert [(ln["reference"], ln["amount"]) for ln in report["missing_at_bank"]] == [
            (payout_id, "15000.00")
        ]
        assert [(ln["reference"], ln["amount"]) for ln in report["extra_at_bank"]] == [
            ("UNKNOWN-REF", "1234.56")
        ]
        statement_file.write_bytes(camt053("CN-CTRL-1", book))
        clean = await poolfin(stack, "reconcile", str(statement_file), "--pool", pool.pool_id)
        assert clean.returncode == 0 and json.loads(clean.stdout)["clean"] is True
        not_camt = tmp_path / "not-camt.xml"
        not_camt.write_text("<Document><Other/></Document>")
        refused = await poolfin(stack, "reconcile", str(not_camt), "--pool", pool.pool_id)
        assert refused.returncode == 2 and "camt.053" in refused.stderr

        # A statement of a party the ledger does not know, or of a period that ends before it
        # starts, is an error that says so (CLI and HTTP).
        unknown = await poolfin(stack, "statement", "NOBODY")
        assert unknown.returncode == 1 and "knows no party NOBODY" in unknown.stderr
        backwards = await poolfin(
            stack, "statement", pool.supplier_id, "--from", "2026-12-02", "--to", "2026-12-01"
        )
        assert backwards.returncode == 2 and "before --from" in backwards.stderr
        operator = token_for(stack.keyring, "op-1", PartyRole.OPERATOR)
        status, body = await asyncio.to_thread(
            http_json, stack.http_url, "GET", "/statements/NOBODY", None, operator
        )
        assert (status, body["error"]) == (404, "unknown_party")
        status, body = await asyncio.to_thread(
            http_json, stack.http_url, "GET", f"{path}?from=yesterday", None, mine
        )
        assert status == 422 and "not an ISO 8601" in body["detail"]

        # Over HTTP, the supplier asks for a payout it has no money for: accepted for the
        # splitter, which dead-letters it with its reason; a malformed one is a 422 at once.
        payouts = f"/pools/{pool.pool_id}/payouts"
        status, bad = await asyncio.to_thread(
            http_json, stack.http_url, "POST", payouts, b'{"amount": "-1"}', mine
        )
        assert status == 422, bad
        status, asked = await asyncio.to_thread(
            http_json,
            stack.http_url,
            "POST",
            payouts,
            b'{"amount": "10.00", "bank_account": "6222 0210 0000 0001"}',
            mine,
        )
        assert status == 202, asked
        [letter] = await observer.wait_for(
            topics.SETTLEMENT_REJECTED, pool_id=pool.pool_id, reason="insufficient_funds"
        )
        assert asked["payout_id"] in letter["raw_text"]
        status, where = await asyncio.to_thread(
            http_json, stack.http_url, "GET", asked["status_url"], None, mine
        )
        assert (status, where["state"]) == (200, "submitted")
    finally:
        await conn.close()


def _today_range() -> tuple[Any, Any]:
    from shared.calendar import business_date

    today = business_date()
    return today, today


async def test_a_voided_hold_and_credits_reservation_undone_and_an_alert_when_frozen_too_long(
    stack: Stack, publisher: Publisher, observer: Observer, tmp_path: Path
) -> None:
    """credit is down when the buyer pays: the payment stays frozen with no instruction; the
    splitter's watch raises an alert; an operator voids it (the money goes back to the
    buyer). credit, back, decides the payment and reserves its repayment; the splitter
    refuses the instruction, and credit undoes the reservation: the loan is as it was."""
    from services.settlement_splitter.book import overdue_holds
    from shared.db import create_pool
    from shared.settings import Settings

    core = f"CE-HOLD-{uuid.uuid4().hex[:6]}"
    pool = await programme_pool(publisher, observer, core)
    loan_id = await borrow(publisher, observer, pool, "800000.00", TEST_FUNDER)
    conn = await asyncpg.connect(stack.database_url)
    await asyncio.to_thread(stack.stop_service, "credit")
    try:
        paid = payment(pool, "100000.00", list(pool.slips))
        await publisher.send(topics.ERP_PAYMENTS, paid)
        await eventually(
            conn,
            "SELECT state FROM settlement.settlements WHERE payment_id = $1",
            paid["payment_id"],
            want="frozen",
        )
        # The watch, as the splitter runs it, with a threshold of half a second.
        db = await create_pool(stack.database_url, "settlement", 1)
        wake = asyncio.Event()
        watch = asyncio.create_task(
            overdue_holds(db, Settings(hold_alert_after_s=0.5, hold_alert_every_s=0.2), wake.set)
        )
        try:
            [alert] = await observer.wait_for(
                topics.SETTLEMENT_ALERTS, payment_id=paid["payment_id"]
            )
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            await db.close()
        assert (alert["type"], alert["amount"]) == ("FrozenPaymentOverdue", "100000.00")

        voided = await poolfin(
            stack, "holds", "void", paid["payment_id"], "--pool", pool.pool_id, "--note", "test"
        )
        assert voided.returncode == 0, voided.stderr[-2000:]
        await eventually(
            conn,
            "SELECT state FROM settlement.settlements WHERE payment_id = $1",
            paid["payment_id"],
            want="voided",
        )
        assert await balance(conn, f"buyer:{core}") == Decimal("0.00")  # all of it went back
        assert await balance(conn, f"frozen:{pool.pool_id}") == Decimal("0.00")
    finally:
        await asyncio.to_thread(stack.start_service, "credit")
        await asyncio.to_thread(stack.wait_ready, ("credit",))
    try:
        [refused] = await observer.wait_for(
            topics.SETTLEMENT_RESULTS, type="InstructionRefused", payment_id=paid["payment_id"]
        )
        assert refused["reason"] == "duplicate_payment" and "voided" in refused["detail"]
        assert refused["returned_to_buyer"] == "100000.00"
        await eventually(
            conn,
            "SELECT state FROM credit.repayments WHERE payment_id = $1",
            paid["payment_id"],
            want="undone",
        )
        assert await conn.fetchval(
            "SELECT outstanding FROM credit.loans WHERE loan_id = $1", loan_id
        ) == Decimal("800000.00")
        # The buyer owes the receivables again: the pool's level is back where it was.
        assert await conn.fetchval(
            "SELECT water_level FROM credit.pools WHERE pool_id = $1", pool.pool_id
        ) == Decimal("1000000.00")
        verified = await poolfin(stack, "ledger", "verify")
        assert verified.returncode == 0, verified.stdout[-2000:]
        entries = await conn.fetch(
            "SELECT kind, amount FROM credit.loan_entries WHERE loan_id = $1 AND reference = $2"
            " ORDER BY id",
            loan_id,
            paid["payment_id"],
        )
        assert [(e["kind"], e["amount"]) for e in entries] == [
            ("repaid_principal", Decimal("80000.00")),
            ("undone_principal", Decimal("-80000.00")),
        ]
        await book_is_balanced(conn)
    finally:
        await conn.close()
