"""The main flows over the real broker and PostgreSQL, with the services as processes."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from poolfin.clients import Observer, Publisher, erp_event
from poolfin.demo import EXPECTED_LEVELS, run_demo
from poolfin.stack import Stack
from services.settlement_splitter.ledger_audit import audit
from shared.calendar import business_date
from shared.contracts import topics
from tests.integration.scenario import (
    Pool,
    borrow,
    facility,
    open_pool,
    payment,
    sign_contract,
    today,
)

pytestmark = pytest.mark.integration


async def test_seed_paper_examples_reproduced_end_to_end(stack: Stack) -> None:
    result = await run_demo(stack.bootstrap, stack.keyring, say=lambda *_: None)
    assert result.month_end_levels == EXPECTED_LEVELS
    assert result.repaid == Decimal("80000.00")
    assert result.released == Decimal("20000.00")
    assert result.interest == Decimal("0.00")
    assert result.loan_balance_after == Decimal("720000.00")  # = 90万 × 0.8 (invariant 2)
    # The same payment under a programme's split rules: funder first, then three receivers
    # and the supplier, to the fen.
    split = result.rule_split
    assert split["amount"] == "100000.00" and split["rule_version"].endswith("@v1")
    assert split["parts"] == {
        "funder:bank-demo": "80000.00",
        "platform:fee": "300.00",
        "guarantor:cgc": "500.00",
        "logistics:sf": "120.00",
        "supplier": "19080.00",
    }
    # The same loan raised by a platform from three investors (40万, 25万, 15万): the 80,000.00
    # it is repaid is divided 8:5:3 among them.
    platform = result.platform_funder
    assert platform["repaid_to_funder"] == "80000.00"
    assert [(i["investor_id"], i["repaid"]) for i in platform["investors"]] == [
        ("investor-li", "40000.00"),
        ("investor-wang", "25000.00"),
        ("investor-zhao", "15000.00"),
    ]
    assert result.problems() == []
    report = await audit(stack.database_url)
    assert report["problems"] == []
    assert report["sum_of_balances"] == 0


async def test_payment_30_days_after_disbursal_pays_act360_interest_to_the_bank(
    stack: Stack, publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(
        publisher, observer, ["600000.00", "300000.00", "100000.00"], facility(interest="0.0435")
    )
    loan_id = await borrow(publisher, observer, pool, "800000.00", "bank-test")
    # 30 days pass for this pool: its business days are closed through day 29 (the interest
    # accrues day by day), so money arriving now is value-dated day 30.
    day_29 = (business_date() + timedelta(days=29)).isoformat()
    close = erp_event("DayClosed", pool.pool_id, source="operator-test", business_date=day_29)
    await publisher.send(topics.ADMIN_SERVICING, close)
    await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=close["event_id"])
    accrued = observer.find(topics.CREDIT_SERVICING, type="InterestAccrued", loan_id=loan_id)
    assert len(accrued) == 30  # one accrual per closed day
    assert sum(Decimal(a["interest"]) for a in accrued) == Decimal("2900.00")  # 800000 × 30
    last = list(pool.slips)[-1]
    pay = payment(pool, "100000.00", [last])
    await publisher.send(topics.ERP_PAYMENTS, pay)
    [released] = await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=pay["payment_id"])
    # 80000 principal due; its interest for 30 days ACT/360 at 4.35% is 290.00, so the bank
    # gets 80290.00 and the supplier 19710.00: every fen of the 100000.00 accounted for.
    assert Decimal(released["repaid_principal"]) == Decimal("80000.00")
    assert Decimal(released["repaid_interest"]) == Decimal("290.00")
    assert Decimal(released["released"]) == Decimal("19710.00")
    [notice] = await observer.wait_for(
        topics.SETTLEMENT_FUNDER_REPAYMENTS, payment_id=pay["payment_id"]
    )
    assert notice["funder_id"] == "bank-test" and notice["total"] == "80290.00"
    outstanding = await db.fetchval(
        "SELECT outstanding FROM credit.loans WHERE loan_id = $1", loan_id
    )
    level = await db.fetchval(
        "SELECT water_level FROM credit.pools WHERE pool_id = $1", pool.pool_id
    )
    assert outstanding <= level * Decimal("0.8")  # invariant 2


async def test_application_above_available_is_refused_with_its_reason(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    await publisher.send(
        topics.SUPPLIER_FINANCING_APPLICATIONS,
        erp_event(
            "FinancingApplied",
            pool.pool_id,
            application_id=f"{pool.supplier_id}-big",
            amount="80000.01",
        ),
    )
    [decision] = await observer.wait_for(
        topics.CREDIT_DECISIONS, application_id=f"{pool.supplier_id}-big"
    )
    assert decision["state"] == "refused"
    assert decision["reason"] == "exceeds_available"
    assert decision["available"] == "80000.00"
    assert not observer.find(topics.CREDIT_LOAN_REQUESTS, pool_id=pool.pool_id)


async def test_in_flight_applications_count_against_availability(
    publisher: Publisher, observer: Observer
) -> None:
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    for name, amount in (("first", "50000.00"), ("second", "30000.01")):
        await publisher.send(
            topics.SUPPLIER_FINANCING_APPLICATIONS,
            erp_event(
                "FinancingApplied",
                pool.pool_id,
                application_id=f"{pool.supplier_id}-{name}",
                amount=amount,
            ),
        )
    [first] = await observer.wait_for(
        topics.CREDIT_DECISIONS, application_id=f"{pool.supplier_id}-first"
    )
    [second] = await observer.wait_for(
        topics.CREDIT_DECISIONS, application_id=f"{pool.supplier_id}-second"
    )
    assert first["state"] == "awaiting_buyer"
    assert (second["state"], second["reason"], second["available"]) == (
        "refused",
        "exceeds_available",
        "30000.00",
    )  # invariant 4: 80000 − 50000 in flight


async def test_duplicate_delivery_of_a_payment_settles_it_once(
    stack: Stack, publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100.00", "200.00"])
    first, second = list(pool.slips)
    pay = payment(pool, "100.00", [first])
    for _ in range(3):
        await publisher.send(topics.ERP_PAYMENTS, pay)  # the same bytes, three deliveries
    later = payment(pool, "200.00", [second])
    await publisher.send(topics.ERP_PAYMENTS, later)
    await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=later["payment_id"])
    assert len(observer.find(topics.SETTLEMENT_RESULTS, payment_id=pay["payment_id"])) == 1
    splits = await db.fetchval(
        "SELECT count(*) FROM settlement.ledger_transactions WHERE payment_id = $1",
        pay["payment_id"],
    )
    assert splits == 2  # one freeze, one split
    # A signed message is taken once: the two repeats (other records, same event) are
    # dead-lettered as replays, with nothing moved.
    repeats = await observer.wait_for(
        topics.INTAKE_REJECTED, event_id=pay["event_id"], reason="replayed", count=2
    )
    assert len(repeats) == 2


async def test_internal_messages_are_taken_only_from_their_service_and_for_loans_credit_holds(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    """The issue's forgeries on internal topics: a RepaymentInstruction paying a funder for a
    loan that does not exist, and a payment no ERP made. Unsealed, sealed by the wrong
    service, or sealed by credit but naming a loan credit never opened: dead-lettered, and
    nothing moves."""
    pool = await open_pool(publisher, observer, ["100.00"])
    payment_id = f"P-forged-{uuid.uuid4().hex[:8]}"
    instruction = erp_event(
        "RepaymentInstruction",
        pool.pool_id,
        source="credit",
        payment_id=payment_id,
        amount="50.00",
        repayments=[
            {
                "loan_id": "L-none",
                "funder_id": "bank-x",
                "principal": "30.00",
                "interest": "0.00",
                "days": 0,
            }
        ],
        water_level_after="100.00",
        discount_rate="0.8",
        credit_line="1000.00",
        loan_balance_before="110.00",
        loan_balance_after="80.00",
    )
    settled = erp_event(
        "ReceivablesSettled",
        pool.pool_id,
        source="intake",
        payment_id=payment_id,
        amount="50.00",
        written_off="50.00",
        receivable_ids=list(pool.slips),
        paid_on=today(),
        core_enterprise_id="CE-TEST",
    )
    forged = [
        (instruction, None, "unauthenticated"),
        ({**instruction, "event_id": str(uuid.uuid4())}, "intake", "wrong_producer"),
        ({**instruction, "event_id": str(uuid.uuid4())}, "credit", "loan_not_held"),
    ]
    for event, service, _ in forged:
        await publisher.send(topics.CREDIT_REPAYMENT_INSTRUCTIONS, event, as_service=service)
    await publisher.send(topics.POOL_EVENTS, settled)
    for event, _, reason in forged:
        [letter] = await observer.wait_for(topics.SETTLEMENT_REJECTED, event_id=event["event_id"])
        assert letter["reason"] == reason, letter
    for consumer in (topics.CREDIT_REJECTED, topics.SETTLEMENT_REJECTED):
        [letter] = await observer.wait_for(consumer, event_id=settled["event_id"])
        assert letter["reason"] == "unauthenticated"
    assert not await db.fetchval(
        "SELECT count(*) FROM settlement.ledger_transactions WHERE payment_id = $1", payment_id
    )
    assert not await db.fetchval(
        "SELECT count(*) FROM settlement.settlements WHERE payment_id = $1", payment_id
    )
    assert await db.fetchval(
        "SELECT water_level FROM credit.pools WHERE pool_id = $1", pool.pool_id
    ) == Decimal("100.00")


async def _apply(
    publisher: Publisher, observer: Observer, pool_id: str, application_id: str, amount: str
) -> dict[str, object]:
    await publisher.send(
        topics.SUPPLIER_FINANCING_APPLICATIONS,
        erp_event("FinancingApplied", pool_id, application_id=application_id, amount=amount),
    )
    [decision] = await observer.wait_for(topics.CREDIT_DECISIONS, application_id=application_id)
    return decision


async def _confirm(
    publisher: Publisher, pool_id: str, application_id: str, confirmed: bool
) -> None:
    await publisher.send(
        topics.ERP_FINANCING_CONFIRMATIONS,
        erp_event(
            "FinancingConfirmation", pool_id, application_id=application_id, confirmed=confirmed
        ),
    )


# The contract hash of each request that reached the funder: its answers sign it.
_CONTRACTS: dict[str, str] = {}


async def _answer(
    publisher: Publisher, pool_id: str, request_id: str, decision: str, **fields: object
) -> None:
    if decision != "rejected":
        fields.setdefault("contract_hash", _CONTRACTS[request_id])
    await publisher.send(
        topics.FUNDING_RESPONSES,
        erp_event(
            "FunderResponse",
            pool_id,
            source="bank-test",
            request_id=request_id,
            funder_id="bank-test",
            decision=decision,
            **fields,
        ),
    )


async def _up_to_the_funder(
    publisher: Publisher, observer: Observer, pool_id: str, application_id: str, amount: str
) -> str:
    """Apply, have the buyer confirm, and wait for the request on the funder's own topic."""
    await _apply(publisher, observer, pool_id, application_id, amount)
    await _confirm(publisher, pool_id, application_id, confirmed=True)
    await sign_contract(publisher, observer, application_id)
    [request] = await observer.wait_for(
        topics.funder_requests_topic("bank-test"), request_id=application_id
    )
    _CONTRACTS[application_id] = request["contract_hash"]
    return application_id


async def _is_available_again(
    publisher: Publisher, observer: Observer, pool: Pool, amount: str
) -> None:
    again = await _apply(publisher, observer, pool.pool_id, f"{pool.supplier_id}-again", amount)
    assert (again["state"], again["available"]) == ("awaiting_buyer", amount)


async def test_buyer_declining_refuses_the_application_and_frees_what_it_held(
    publisher: Publisher, observer: Observer
) -> None:
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    held = f"{pool.supplier_id}-declined"
    assert (await _apply(publisher, observer, pool.pool_id, held, "80000.00"))[
        "state"
    ] == "awaiting_buyer"
    await _confirm(publisher, pool.pool_id, held, confirmed=False)
    [refused] = await observer.wait_for(
        topics.CREDIT_DECISIONS, application_id=held, state="refused"
    )
    assert refused["reason"] == "rejected_by_buyer"
    assert not observer.find(topics.CREDIT_LOAN_REQUESTS, request_id=held)
    await _is_available_again(publisher, observer, pool, "80000.00")  # no longer in flight


async def test_funder_rejecting_refuses_the_application_and_opens_no_loan(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    app_id = await _up_to_the_funder(
        publisher, observer, pool.pool_id, f"{pool.supplier_id}-bank-says-no", "50000.00"
    )
    await _answer(publisher, pool.pool_id, app_id, "rejected", reason="credit committee")
    [refused] = await observer.wait_for(
        topics.CREDIT_DECISIONS, application_id=app_id, state="refused"
    )
    assert refused["reason"] == "rejected_by_funder"
    assert (
        await db.fetchval("SELECT count(*) FROM credit.loans WHERE pool_id = $1", pool.pool_id) == 0
    )
    await _is_available_again(publisher, observer, pool, "80000.00")


async def test_investor_platform_approves_first_and_the_loan_opens_only_on_disbursal(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    app_id = await _up_to_the_funder(
        publisher, observer, pool.pool_id, f"{pool.supplier_id}-platform", "60000.00"
    )
    await _answer(publisher, pool.pool_id, app_id, "approved")
    await observer.wait_for(topics.FUNDING_RESULTS, request_id=app_id, decision="approved")
    assert not observer.find(topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=app_id)
    await _answer(
        publisher, pool.pool_id, app_id, "disbursed", amount="60000.00", value_date=today()
    )
    [opened] = await observer.wait_for(topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=app_id)
    assert (opened["principal"], opened["disbursed_on"]) == ("60000.00", today())
    assert await db.fetchval(
        "SELECT outstanding FROM credit.loans WHERE loan_id = $1", app_id
    ) == Decimal("60000.00")


async def test_a_new_funders_request_topic_is_created_before_its_first_request(
    stack: Stack, publisher: Publisher, observer: Observer
) -> None:
    funder = f"bank-new-{uuid.uuid4().hex[:8]}"
    topic = topics.funder_requests_topic(funder)
    pool = await open_pool(publisher, observer, ["100000.00"], facility(funder=funder))
    app_id = f"{pool.supplier_id}-first-for-{funder}"
    await _apply(publisher, observer, pool.pool_id, app_id, "10000.00")
    await _confirm(publisher, pool.pool_id, app_id, confirmed=True)
    await sign_contract(publisher, observer, app_id)
    async with Observer(stack.bootstrap, [topic]) as funder_side:
        [request] = await funder_side.wait_for(topic, request_id=app_id)
    assert (request["funder_id"], request["amount"]) == (funder, "10000.00")
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
    await admin.start()
    try:
        assert topic in await admin.list_topics()
    finally:
        await admin.close()


async def test_a_payment_decided_twice_under_new_event_ids_moves_money_once(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    """Defence in depth behind intake: the same payment reaching credit and the splitter
    again as a *new* event (another event_id) is refused by each, and nothing moves twice."""
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    await borrow(publisher, observer, pool, "80000.00", "bank-test")
    settled = erp_event(
        "ReceivablesSettled",
        pool.pool_id,
        source="intake",
        payment_id=f"P-twice-{uuid.uuid4().hex[:8]}",
        amount="10000.00",
        written_off="10000.00",
        receivable_ids=list(pool.slips),
        paid_on=today(),
        core_enterprise_id="CE-TEST",
    )
    # The test acts as intake (the stack's MAC key): defence in depth behind a trusted service.
    await publisher.send(topics.POOL_EVENTS, settled, as_service="intake")
    await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=settled["payment_id"])
    again = {**settled, "event_id": str(uuid.uuid4())}
    await publisher.send(topics.POOL_EVENTS, again, as_service="intake")
    letters = await observer.wait_for(topics.CREDIT_REJECTED, event_id=again["event_id"])
    assert letters[0]["reason"] == "duplicate_payment"
    [split_letter] = await observer.wait_for(topics.SETTLEMENT_REJECTED, event_id=again["event_id"])
    assert split_letter["reason"] == "duplicate_payment"
    assert await db.fetchval(
        "SELECT outstanding FROM credit.loans WHERE pool_id = $1", pool.pool_id
    ) == Decimal("72000.00")
    assert await db.fetchval(
        "SELECT water_level FROM credit.pools WHERE pool_id = $1", pool.pool_id
    ) == Decimal("90000.00")
    assert (
        await db.fetchval(
            "SELECT count(*) FROM settlement.ledger_transactions WHERE payment_id = $1",
            settled["payment_id"],
        )
        == 2
    )
