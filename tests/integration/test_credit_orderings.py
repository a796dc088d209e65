"""Issue 8 on the real broker and PostgreSQL: credit holds in every ordering — the disbursal
race, a facility cut, partial payments, credit notes, cancellations, disputes, maturity →
overdue → penalty → the waterfall, prepayment, and the certificate as of any instant."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

import pytest

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher, erp_event
from poolfin.stack import Stack
from shared.calendar import business_date
from shared.contracts import topics
from tests.conftest import TEST_FUNDER
from tests.environment import user_env
from tests.integration.scenario import (
    Pool,
    apply,
    as_supplier,
    borrow,
    confirmation,
    facility,
    ledger_verify,
    open_pool,
    payment,
    sign_contract,
)

pytestmark = pytest.mark.integration
POOLFIN = [sys.executable, "-m", "poolfin.cli"]


async def _pay(publisher: Publisher, observer: Observer, pool: Pool, amount: str, slip: str) -> Any:
    """The buyer pays `amount` on one slip; returns the splitter's SettlementReleased."""
    event = payment(pool, amount, [slip])
    await publisher.send(topics.ERP_PAYMENTS, event)
    [released] = await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=event["payment_id"])
    return released


async def _position_after(observer: Observer, event: dict[str, Any]) -> Any:
    return (await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=event["event_id"]))[-1]


async def _facility(
    publisher: Publisher, observer: Observer, pool: Pool, rate: str = "0.8", **extra: Any
) -> Any:
    _, event = erp.facility(
        pool.pool_id, line="10000000.00", rate=rate, funder=TEST_FUNDER, **extra
    )
    await publisher.send(topics.ADMIN_FACILITIES, event)
    return await _position_after(observer, event)


async def test_a_payment_before_the_disbursal_is_held_and_repays_the_loan_when_it_opens(
    stack: Stack, publisher: Publisher, observer: Observer
) -> None:
    """Pool 100万 at 0.8. 80万 applied and confirmed, not yet disbursed. The buyer pays 10万:
    8万 is held (it covers the request above the new base of 72万), 2万 released. The funder
    disburses 80万 days later: the held 8万 repays it at once, the loan is 72万 = the base."""
    pool = await open_pool(publisher, observer, ["1000000.00"], facility())
    [slip] = pool.slips
    application_id = await apply(publisher, observer, pool, "800000.00")
    await publisher.send(topics.ERP_FINANCING_CONFIRMATIONS, confirmation(pool, application_id))
    await sign_contract(publisher, observer, application_id)
    [request] = await observer.wait_for(
        topics.funder_requests_topic(TEST_FUNDER), request_id=application_id
    )
    released = await _pay(publisher, observer, pool, "100000.00", slip)
    assert (released["repaid_principal"], released["released"]) == ("0.00", "20000.00")
    [instruction] = observer.find(
        topics.CREDIT_REPAYMENT_INSTRUCTIONS, payment_id=released["payment_id"]
    )
    assert instruction["held"] == "80000.00"
    await publisher.send(*erp.disbursal(request, business_date()))
    [settled] = await observer.wait_for(
        topics.CREDIT_REPAYMENT_INSTRUCTIONS, type="HoldSettled", pool_id=pool.pool_id
    )
    assert settled["amount"] == "80000.00" and settled["released"] == "0.00"
    [posted] = await observer.wait_for(
        topics.SETTLEMENT_RESULTS, payment_id=settled["settlement_id"]
    )
    assert posted["repaid_principal"] == "80000.00"
    position = (
        await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=settled["correlation_id"])
    )[-1]
    assert (position["loan_balance"], position["borrowing_base"], position["standing"]) == (
        "720000.00",
        "720000.00",
        "good",
    )
    code, report = await ledger_verify(stack.database_url)
    assert code == 0, report["problems"]


async def test_a_facility_cut_is_a_margin_call_and_the_next_payment_is_swept(
    publisher: Publisher, observer: Observer
) -> None:
    pool = await open_pool(publisher, observer, ["1000000.00"], facility())
    [slip] = pool.slips
    await borrow(publisher, observer, pool, "800000.00", TEST_FUNDER)
    position = await _facility(publisher, observer, pool, rate="0.6")
    assert (position["borrowing_base"], position["standing"]) == ("600000.00", "margin_call")
    refused_id = f"A-{uuid.uuid4().hex[:8]}"
    await publisher.send(*erp.application(pool.pool_id, refused_id, "1.00"))
    [decision] = await observer.wait_for(topics.CREDIT_DECISIONS, application_id=refused_id)
    assert (decision["state"], decision["reason"]) == ("refused", "margin_call")
    released = await _pay(publisher, observer, pool, "100000.00", slip)
    assert (released["repaid_principal"], released["released"]) == ("100000.00", "0.00")


async def test_a_partial_payment_keeps_the_slip_open_for_the_rest(
    publisher: Publisher, observer: Observer
) -> None:
    pool = await open_pool(publisher, observer, ["1000000.00"], facility())
    [slip] = pool.slips
    await _pay(publisher, observer, pool, "0.01", slip)
    first = observer.find(topics.CREDIT_POSITIONS, pool_id=pool.pool_id)[-1]
    assert first["water_level"] == "999999.99"
    await _pay(publisher, observer, pool, "999999.99", slip)
    assert observer.find(topics.CREDIT_POSITIONS, pool_id=pool.pool_id)[-1]["water_level"] == (
        "0.00"
    )
    closed = payment(pool, "1.00", [slip])
    await publisher.send(topics.ERP_PAYMENTS, closed)
    [letter] = await observer.wait_for(topics.INTAKE_REJECTED, event_id=closed["event_id"])
    assert letter["reason"] == "receivable_already_paid"


async def test_a_credit_note_dilutes_the_pool_and_the_next_payment_is_swept(
    stack: Stack, publisher: Publisher, observer: Observer
) -> None:
    pool = await open_pool(publisher, observer, ["500000.00", "500000.00"], facility())
    first, second = pool.slips
    await borrow(publisher, observer, pool, "800000.00", TEST_FUNDER)
    _, note = erp.credit_note(
        pool.pool_id, first, f"CN-{uuid.uuid4().hex[:8]}", "200000.00", "returned goods"
    )
    await publisher.send(topics.ERP_SLIP_ADJUSTMENTS, note)
    position = await _position_after(observer, note)
    assert (position["water_level"], position["borrowing_base"], position["standing"]) == (
        "800000.00",
        "640000.00",
        "margin_call",
    )
    released = await _pay(publisher, observer, pool, "100000.00", second)
    assert released["released"] == "0.00"
    status, view = as_supplier(stack, "GET", f"/pools/{pool.pool_id}")
    assert status == 200 and view["dilution"] == "200000.00"  # the pool's dilution, reported
    _, over = erp.credit_note(
        pool.pool_id, first, f"CN-{uuid.uuid4().hex[:8]}", "300000.01", "more than is open"
    )
    await publisher.send(topics.ERP_SLIP_ADJUSTMENTS, over)
    [letter] = await observer.wait_for(topics.INTAKE_REJECTED, event_id=over["event_id"])
    assert letter["reason"] == "exceeds_open_amount"


async def test_a_cancelled_slip_leaves_and_a_disputed_one_stops_counting_until_closed(
    publisher: Publisher, observer: Observer
) -> None:
    pool = await open_pool(publisher, observer, ["300000.00", "700000.00"], facility())
    cancelled, disputed = pool.slips
    _, cancel = erp.cancellation(pool.pool_id, cancelled, "goods receipt reversed")
    await publisher.send(topics.ERP_SLIP_ADJUSTMENTS, cancel)
    position = await _position_after(observer, cancel)
    assert (position["water_level"], position["borrowing_base"]) == ("700000.00", "560000.00")
    dispute_id = f"D-{uuid.uuid4().hex[:8]}"
    _, opened = erp.dispute(pool.pool_id, disputed, dispute_id, "quantity short", opened=True)
    await publisher.send(topics.ERP_SLIP_ADJUSTMENTS, opened)
    position = await _position_after(observer, opened)
    assert position["ineligible"] == {"disputed": "700000.00"}
    assert (position["water_level"], position["borrowing_base"]) == ("700000.00", "0.00")
    _, closed = erp.dispute(pool.pool_id, disputed, dispute_id, "delivered", opened=False)
    await publisher.send(topics.ERP_SLIP_ADJUSTMENTS, closed)
    assert (await _position_after(observer, closed))["borrowing_base"] == "560000.00"
    _, amended = erp.amendment(pool.pool_id, disputed, "650000.00", "price corrected")
    await publisher.send(topics.ERP_SLIP_ADJUSTMENTS, amended)
    assert (await _position_after(observer, amended))["borrowing_base"] == "520000.00"
    after = payment(pool, "1.00", [cancelled])
    await publisher.send(topics.ERP_PAYMENTS, after)
    [letter] = await observer.wait_for(topics.INTAKE_REJECTED, event_id=after["event_id"])
    assert letter["reason"] in ("receivable_closed", "receivable_already_paid")


async def test_maturity_overdue_penalty_and_the_repayment_waterfall(
    stack: Stack, publisher: Publisher, observer: Observer
) -> None:
    """A 10-day loan of 100万 at 3.6% ACT/360 (100 a day), penalty 7.2% (200 a day). Closing
    the pool's days through day 12: ten days of interest accrue (1,000), at the end of the
    maturity day the loan is overdue (its interest charged), days 11 and 12 add 400 of
    penalty. The supplier cannot draw. A payment of 101,400 on day 13 pays penalty, then
    interest, then 100,000 of principal, and releases nothing."""
    pool = await open_pool(publisher, observer, ["2000000.00"], facility())
    [slip] = pool.slips
    await _facility(
        publisher,
        observer,
        pool,
        interest="0.036",
        penalty_rate="0.072",
        tenor_days=10,
    )
    loan_id = await borrow(publisher, observer, pool, "1000000.00", TEST_FUNDER)
    day_12 = business_date() + timedelta(days=12)
    close = erp_event(
        "DayClosed", pool.pool_id, source="operator-test", business_date=day_12.isoformat()
    )
    await publisher.send(topics.ADMIN_SERVICING, close)
    position = await _position_after(observer, close)
    assert (position["standing"], position["interest_due"], position["penalty_due"]) == (
        "overdue",
        "1000.00",
        "400.00",
    )
    [overdue] = observer.find(topics.CREDIT_SERVICING, type="LoanOverdue", loan_id=loan_id)
    assert overdue["overdue_principal"] == "1000000.00"
    refused_id = f"A-{uuid.uuid4().hex[:8]}"
    await publisher.send(*erp.application(pool.pool_id, refused_id, "1.00"))
    [decision] = await observer.wait_for(topics.CREDIT_DECISIONS, application_id=refused_id)
    assert decision["reason"] == "pool_overdue"
    released = await _pay(publisher, observer, pool, "101400.00", slip)
    assert (released["repaid_principal"], released["repaid_interest"], released["released"]) == (
        "100000.00",
        "1400.00",
        "0.00",
    )
    [part] = observer.find(topics.CREDIT_REPAYMENT_INSTRUCTIONS, payment_id=released["payment_id"])[
        0
    ]["repayments"]
    assert (part["penalty"], part["interest"], part["principal"]) == (
        "400.00",
        "1000.00",
        "100000.00",
    )
    code, report = await ledger_verify(stack.database_url)
    assert code == 0, report["problems"]
    shown = await asyncio.to_thread(
        subprocess.run,
        [*POOLFIN, "loan", "history", loan_id],
        capture_output=True,
        text=True,
        timeout=120,
        env=user_env(POOLFIN_DATABASE_URL=stack.database_url),
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    history = json.loads(shown.stdout)
    kinds = [entry["kind"] for entry in history["entries"]]
    assert kinds[0] == "disbursed" and "overdue" in kinds
    assert kinds.count("interest_accrued") == 10 and kinds.count("penalty_accrued") == 2
    assert kinds[-3:] == ["repaid_penalty", "repaid_interest", "repaid_principal"]
    assert history["loan"]["outstanding"] == "900000.00" and history["loan"]["overdue"] is True


async def test_a_prepayment_from_the_free_balance_repays_early_and_too_much_is_refused(
    stack: Stack, publisher: Publisher, observer: Observer
) -> None:
    pool = await open_pool(publisher, observer, ["1000000.00"], facility())
    [slip] = pool.slips
    loan_id = await borrow(publisher, observer, pool, "100000.00", TEST_FUNDER)
    released = await _pay(publisher, observer, pool, "200000.00", slip)  # under the base
    assert released["released"] == "200000.00"
    status, answer = as_supplier(
        stack,
        "POST",
        f"/pools/{pool.pool_id}/prepayments",
        json.dumps({"amount": "50000.00"}).encode(),
    )
    assert status == 202, answer
    [posted] = await observer.wait_for(
        topics.SETTLEMENT_RESULTS, payment_id=answer["prepayment_id"]
    )
    assert (posted["repaid_principal"], posted["released"]) == ("50000.00", "0.00")
    [repaid] = observer.find(topics.CREDIT_SERVICING, type="LoanRepaid", loan_id=loan_id)
    assert repaid["outstanding_after"] == "50000.00"
    status, state = as_supplier(stack, "GET", answer["status_url"])
    assert status == 200 and state["state"] in ("decided", "repaid")
    status, too_much = as_supplier(
        stack,
        "POST",
        f"/pools/{pool.pool_id}/prepayments",
        json.dumps({"amount": "999999.00"}).encode(),
    )
    assert status == 202
    [letter] = await observer.wait_for(
        topics.SETTLEMENT_REJECTED, pool_id=pool.pool_id, reason="insufficient_funds"
    )
    assert too_much["prepayment_id"] in letter["raw_text"]


async def test_the_certificate_as_of_an_instant_is_the_position_published_then(
    stack: Stack, publisher: Publisher, observer: Observer
) -> None:
    pool = await open_pool(publisher, observer, ["100000.00", "200000.00"], facility())
    published = observer.find(topics.CREDIT_POSITIONS, pool_id=pool.pool_id)
    middle = published[-2]  # after the first slip
    status, answer = as_supplier(
        stack,
        "GET",
        f"/pools/{pool.pool_id}/position?as_of={middle['occurred_at'].replace('+', '%2B')}",
    )
    assert status == 200, answer
    assert answer["position"] == middle
    status, now = as_supplier(stack, "GET", f"/pools/{pool.pool_id}/position")
    assert now["position"] == published[-1]
    status, _ = as_supplier(stack, "GET", f"/pools/{pool.pool_id}/position?as_of=soon")
    assert status == 400


async def test_the_operator_closes_a_day_and_reads_a_certificate_from_the_cli(
    stack: Stack, publisher: Publisher, observer: Observer
) -> None:
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    loan_id = await borrow(publisher, observer, pool, "80000.00", TEST_FUNDER)
    env = user_env(
        POOLFIN_KAFKA_BOOTSTRAP=stack.bootstrap,
        POOLFIN_DATABASE_URL=stack.database_url,
        POOLFIN_KEYS_DIR=str(stack.keyring.directory),
    )
    today = business_date().isoformat()
    closed = await asyncio.to_thread(
        subprocess.run,
        [*POOLFIN, "day", "close", "--pool", pool.pool_id, "--date", today],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert closed.returncode == 0, closed.stderr[-2000:]
    assert f"closing {today} for 1 pool(s)" in closed.stdout
    [accrued] = await observer.wait_for(
        topics.CREDIT_SERVICING, type="InterestAccrued", loan_id=loan_id
    )
    assert (
        accrued["business_date"] == today and accrued["interest"] == "9.67"
    )  # 80000 × 4.35% / 360
    first = observer.find(topics.CREDIT_POSITIONS, pool_id=pool.pool_id)[0]
    shown = await asyncio.to_thread(
        subprocess.run,
        [*POOLFIN, "pool", "position", pool.pool_id, "--as-of", first["occurred_at"]],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert json.loads(shown.stdout) == first
    bad = await asyncio.to_thread(
        subprocess.run,
        [*POOLFIN, "day", "close", "--date", "yesterday"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert bad.returncode == 2 and "not an ISO date" in bad.stderr
