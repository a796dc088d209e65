"""The money-safety defects found by outside testing (issue 6), each shown closed on the real
broker and PostgreSQL: lookups scoped by pool, amounts and dates bounded at the edge, HTTP ids
that cannot be valid refused, application ids that cannot collide."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from poolfin.clients import Observer, Publisher, erp_event
from poolfin.stack import Stack
from shared.calendar import business_date
from shared.contracts import topics
from shared.money import MAX_AMOUNT
from tests.conftest import TEST_FUNDER
from tests.integration.scenario import (
    apply,
    as_supplier,
    borrow,
    confirmation,
    facility,
    ledger_verify,
    open_pool,
    sign_contract,
)

pytestmark = pytest.mark.integration


def _dead_letter_of(observer: Observer, topic: str, event_id: str) -> Any:
    return observer.wait_for(topic, event_id=event_id, timeout=30)


# ---------------------------------------------------------------- defect 1: scoped by pool


async def test_a_confirmation_naming_another_pools_application_lends_nothing(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    """P1 (base 800,000) has an application of 800,000 awaiting its buyer; a confirmation
    under P2 (base 80,000) naming it is dead-lettered, no request leaves, P2 is untouched."""
    big = await open_pool(publisher, observer, ["1000000.00"], facility())
    small = await open_pool(publisher, observer, ["100000.00"], facility())
    application_id = await apply(publisher, observer, big, "800000.00")
    forged = confirmation(small, application_id)
    await publisher.send(topics.ERP_FINANCING_CONFIRMATIONS, forged)
    [letter] = await observer.wait_for(
        topics.CREDIT_REJECTED,
        where=lambda body: (
            body.get("pool_id") == small.pool_id and body.get("reason") == "application_not_in_pool"
        ),
    )
    assert application_id in letter["detail"]
    assert not observer.find(topics.CREDIT_LOAN_REQUESTS, request_id=application_id)
    row = await db.fetchrow(
        "SELECT pool_id, state FROM credit.applications WHERE application_id = $1",
        application_id,
    )
    assert row is not None
    assert (row["pool_id"], row["state"]) == (big.pool_id, "awaiting_buyer")

    # A buyer that is not the pool's own is refused at intake.
    other_buyer = confirmation(big, application_id, core_enterprise_id="CE-SOMEONE-ELSE")
    await publisher.send(topics.ERP_FINANCING_CONFIRMATIONS, other_buyer)
    [refused] = await observer.wait_for(topics.INTAKE_REJECTED, event_id=other_buyer["event_id"])
    assert refused["reason"] == "not_the_pools_buyer"

    # The real buyer's confirmation, in the right pool, still goes through.
    await publisher.send(topics.ERP_FINANCING_CONFIRMATIONS, confirmation(big, application_id))
    await observer.wait_for(topics.CREDIT_LOAN_REQUESTS, request_id=application_id)
    # Its request is the only one: the forged confirmation before it asked for nothing.
    assert len(observer.find(topics.CREDIT_LOAN_REQUESTS, request_id=application_id)) == 1


async def test_ledger_verify_reports_loans_above_the_base_without_a_sweep(
    stack: Stack, publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    """The audit checks credit's exposure too: a loan above the base that no payment swept
    (here written straight into the table, as a forger with database access would) fails it."""
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    loan_id = f"L-forged-{uuid.uuid4().hex[:8]}"
    await db.execute(
        "INSERT INTO credit.loans(loan_id, pool_id, funder_id, principal, outstanding,"
        " annual_interest_rate, day_count, disbursed_on, maturity_on)"
        " VALUES ($1, $2, 'bank-x', 800000, 800000, 0.0435, 'ACT/360', $3, $3)",
        loan_id,
        pool.pool_id,
        business_date(),
    )
    try:
        code, report = await ledger_verify(stack.database_url)
        assert code == 1, report
        problems = report["problems"]
        assert any(
            pool.pool_id in p and "exceed the borrowing base 80000.00" in p for p in problems
        ), problems
    finally:
        await db.execute("DELETE FROM credit.loans WHERE loan_id = $1", loan_id)


# ---------------------------------------------------------------- defect 3: bounds at the edge


async def test_a_disbursal_dated_outside_the_window_is_refused_by_the_gateway(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    """9999-12-31 used to be recorded as disbursed by the gateway and refused by credit,
    leaving the request in flight forever; now the gateway refuses it, and the request can
    still be answered properly."""
    pool = await open_pool(publisher, observer, ["1000000.00"], facility(funder=TEST_FUNDER))
    application_id = await apply(publisher, observer, pool, "100000.00")
    await publisher.send(topics.ERP_FINANCING_CONFIRMATIONS, confirmation(pool, application_id))
    await sign_contract(publisher, observer, application_id)
    [request] = await observer.wait_for(
        topics.funder_requests_topic(TEST_FUNDER), request_id=application_id
    )

    def disbursal(value_date: str) -> dict[str, Any]:
        return erp_event(
            "FunderResponse",
            pool.pool_id,
            source=TEST_FUNDER,
            request_id=application_id,
            funder_id=TEST_FUNDER,
            decision="disbursed",
            amount="100000.00",
            value_date=value_date,
            contract_hash=request["contract_hash"],
        )

    for value_date in ("9999-12-31", "1900-01-01"):
        answer = disbursal(value_date)
        await publisher.send(topics.FUNDING_RESPONSES, answer)
        [letter] = await _dead_letter_of(
            observer, topics.FUNDING_GATEWAY_REJECTED, answer["event_id"]
        )
        assert letter["reason"] == "invalid_date", letter
    state = await db.fetchval(
        "SELECT state FROM funding_gateway.funding_requests WHERE request_id = $1", application_id
    )
    assert state == "sent"
    good = disbursal(business_date().isoformat())
    await publisher.send(topics.FUNDING_RESPONSES, good)
    await observer.wait_for(topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=application_id)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"amount": "9999999999999999.99"}, "invalid_amount"),
        ({"amount": "1.000"}, "invalid_amount"),
        ({"amount": "1000000000000.00"}, "invalid_amount"),
        ({"issued_on": "9999-12-31"}, "invalid_date"),
        ({"issued_on": "1900-01-01"}, "invalid_date"),
        ({"issued_on": "2026-07-01", "due_on": "2026-06-30"}, "invalid_date"),
        ({"due_on": "2099-12-31"}, "invalid_date"),
    ],
)
async def test_slips_beyond_the_published_bounds_are_refused_at_intake(
    publisher: Publisher,
    observer: Observer,
    db: asyncpg.Connection,
    fields: dict[str, str],
    reason: str,
) -> None:
    pool = await open_pool(publisher, observer, ["500000.00"])
    slip = erp_event(
        "SettlementSlipIssued",
        pool.pool_id,
        **{
            "receivable_id": f"R-{uuid.uuid4().hex[:8]}",
            "amount": "10.00",
            "issued_on": "2026-07-01",
            **fields,
        },
    )
    await publisher.send(topics.ERP_SETTLEMENT_SLIPS, slip)
    [letter] = await _dead_letter_of(observer, topics.INTAKE_REJECTED, slip["event_id"])
    assert letter["reason"] == reason, letter
    level = await db.fetchval(
        "SELECT water_level FROM credit.pools WHERE pool_id = $1", pool.pool_id
    )
    assert level == Decimal("500000.00")


async def test_a_pool_stops_at_the_total_every_table_can_hold(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    """1000 slips of the largest amount fill a pool to just under MAX_TOTAL; the next is
    refused at intake, and credit's level equals intake's open total (they never split)."""
    pool = await open_pool(publisher, observer, [])
    run = uuid.uuid4().hex[:8]
    slips = [
        erp_event(
            "SettlementSlipIssued",
            pool.pool_id,
            receivable_id=f"R-{run}-{n}",
            amount=str(MAX_AMOUNT),
            issued_on="2026-07-01",
        )
        for n in range(1001)
    ]
    for slip in slips:
        await publisher.send(topics.ERP_SETTLEMENT_SLIPS, slip)
    await publisher.flush()
    [letter] = await observer.wait_for(
        topics.INTAKE_REJECTED,
        timeout=60,
        where=lambda body: body.get("pool_id") == pool.pool_id,
    )
    assert letter["reason"] == "pool_limit_exceeded"
    expected = MAX_AMOUNT * 1000
    await observer.wait_for(
        topics.CREDIT_POSITIONS,
        timeout=60,
        pool_id=pool.pool_id,
        water_level=str(expected),
    )
    intake_total = await db.fetchval(
        "SELECT sum(amount) FROM intake.receivables WHERE pool_id = $1", pool.pool_id
    )
    assert intake_total == expected


# ---------------------------------------------------------------- defects 6, 7: the HTTP front


def _call(stack: Stack, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    return as_supplier(stack, method, path, body)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/pools/CE%00X/SUP"),
        ("GET", "/pools/CE-1/SUP-1/applications/%00"),
        ("GET", "/pools/CE-1/SUP-1/applications/A%20B"),
        ("GET", "/pools/" + "x" * 300),
        ("POST", "/pools/CE%00X/SUP/applications"),
    ],
)
async def test_an_id_that_cannot_be_valid_is_a_400_with_its_reason(
    stack: Stack, method: str, path: str
) -> None:
    body = b'{"amount": "10.00"}' if method == "POST" else None
    status, answer = await asyncio.to_thread(_call, stack, method, path, body)
    assert status == 400, answer
    assert answer["error"] == "invalid_message" and "is not a" in answer["detail"]


async def test_an_application_id_another_pool_holds_is_refused_at_once(
    stack: Stack, publisher: Publisher, observer: Observer
) -> None:
    """Was: 202, then its status URL answered 404 forever."""
    first = await open_pool(publisher, observer, ["1000000.00"], facility())
    second = await open_pool(publisher, observer, ["1000000.00"], facility())
    application_id = f"A-{uuid.uuid4().hex[:10]}"
    body = json.dumps({"amount": "1000.00", "application_id": application_id}).encode()
    status, answer = await asyncio.to_thread(
        _call, stack, "POST", f"/pools/{first.pool_id}/applications", body
    )
    assert status == 202, answer
    status, answer = await asyncio.to_thread(
        _call, stack, "POST", f"/pools/{second.pool_id}/applications", body
    )
    assert (status, answer["error"]) == (409, "duplicate_application"), answer
    await observer.wait_for(
        topics.CREDIT_DECISIONS, application_id=application_id, state="awaiting_buyer"
    )
    status, answer = await asyncio.to_thread(
        _call, stack, "GET", f"/pools/{first.pool_id}/applications/{application_id}"
    )
    assert (status, answer["state"]) == (200, "awaiting_buyer")
    # Once decided, the same id is refused in its own pool too.
    status, answer = await asyncio.to_thread(
        _call, stack, "POST", f"/pools/{first.pool_id}/applications", body
    )
    assert status == 409, answer


async def test_a_loan_opened_through_the_scoped_lookups_repays_in_its_own_pool(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    """The scoped statements still do their work: a loan opens, a payment repays it."""
    pool = await open_pool(publisher, observer, ["900000.00", "100000.00"], facility())
    today = business_date()
    loan_id = await borrow(
        publisher, observer, pool, "800000.00", TEST_FUNDER, value_date=today.isoformat()
    )
    last = list(pool.slips)[-1]
    pay = erp_event(
        "PaymentReceived",
        pool.pool_id,
        payment_id=f"P-{uuid.uuid4().hex[:10]}",
        amount="100000.00",
        receivable_ids=[last],
        paid_on=(today + timedelta(days=0)).isoformat(),
    )
    await publisher.send(topics.ERP_PAYMENTS, pay)
    [released] = await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=pay["payment_id"])
    assert released["repaid_principal"] == "80000.00" and released["released"] == "20000.00"
    assert await db.fetchval(
        "SELECT outstanding FROM credit.loans WHERE loan_id = $1 AND pool_id = $2",
        loan_id,
        pool.pool_id,
    ) == Decimal("720000.00")
    for _ in range(100):
        state = await db.fetchval(
            "SELECT state FROM credit.repayments WHERE payment_id = $1", pay["payment_id"]
        )
        if state == "confirmed":
            break
        await asyncio.sleep(0.1)
    assert state == "confirmed"
