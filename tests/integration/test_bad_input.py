"""Every bad ERP input ends as a dead letter with its reason and the raw bytes; nothing else
changes, and the service goes on consuming (invariant 6)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from poolfin.clients import Observer, Publisher, erp_event
from shared.contracts import topics
from shared.inbox import peek_envelope
from tests.integration.scenario import CORE, Pool, open_pool, payment

pytestmark = pytest.mark.integration

Case = Callable[[Pool, dict[str, Any]], tuple[str, bytes]]


def slip(pool: Pool, **overrides: Any) -> dict[str, Any]:
    event = erp_event(
        "SettlementSlipIssued",
        pool.pool_id,
        receivable_id=f"R-bad-{uuid.uuid4().hex[:8]}",
        amount="10.00",
        issued_on="2026-07-02",
    )
    event.update(overrides)
    return event


def raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def without(event: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != field}


CASES: dict[str, tuple[str, Case]] = {
    "not_json": (
        "not_json",
        lambda pool, _: (
            topics.ERP_SETTLEMENT_SLIPS,
            b"\xff\xfe{not json " + uuid.uuid4().hex.encode(),
        ),
    ),
    "type_not_a_string": (
        "unknown_type",
        lambda pool, _: (
            topics.ERP_PAYMENTS,
            raw({**payment(pool, "10.00", list(pool.slips)[:1]), "type": ["PaymentReceived"]}),
        ),
    ),
    "nested_too_deep": (
        "not_json",
        lambda pool, _: (topics.ERP_PAYMENTS, b"[" * 100_000 + b"]" * 100_000),
    ),
    "not_json_under_a_json_content_type": (
        "not_json",
        lambda pool, _: (
            topics.ERP_PAYMENTS,
            b"<payment>" + uuid.uuid4().hex.encode() + b"</payment>",
        ),
    ),
    "amount_in_exponent_form": (
        "invalid_amount",
        lambda pool, _: (topics.ERP_PAYMENTS, raw(payment(pool, "1E+1", list(pool.slips)[:1]))),
    ),
    "missing_field": (
        "invalid_message",
        lambda pool, _: (topics.ERP_SETTLEMENT_SLIPS, raw(without(slip(pool), "receivable_id"))),
    ),
    "wrong_field_type": (
        "invalid_message",
        lambda pool, _: (topics.ERP_SETTLEMENT_SLIPS, raw(slip(pool, issued_on="yesterday"))),
    ),
    "zero_amount": (
        "invalid_amount",
        lambda pool, _: (topics.ERP_SETTLEMENT_SLIPS, raw(slip(pool, amount="0.00"))),
    ),
    "negative_amount": (
        "invalid_amount",
        lambda pool, _: (topics.ERP_PAYMENTS, raw(payment(pool, "-5.00", list(pool.slips)[:1]))),
    ),
    "three_decimal_amount": (
        "invalid_amount",
        lambda pool, _: (topics.ERP_SETTLEMENT_SLIPS, raw(slip(pool, amount="10.005"))),
    ),
    "amount_as_json_number": (
        "invalid_amount",
        lambda pool, _: (topics.ERP_SETTLEMENT_SLIPS, raw(slip(pool, amount=10.5))),
    ),
    "unknown_pool": (
        "unknown_pool",
        lambda pool, _: (topics.ERP_SETTLEMENT_SLIPS, raw(slip(pool, pool_id="CE-TEST/nobody"))),
    ),
    "unknown_supplier_confirmation": (
        "unknown_pool",
        lambda pool, _: (
            topics.ERP_FINANCING_CONFIRMATIONS,
            raw(
                erp_event(
                    "FinancingConfirmation", "CE-TEST/nobody", application_id="A-1", confirmed=True
                )
            ),
        ),
    ),
    "unknown_receivable": (
        "unknown_receivable",
        lambda pool, _: (topics.ERP_PAYMENTS, raw(payment(pool, "10.00", ["R-never-issued"]))),
    ),
    "receivable_of_another_pool": (
        "receivable_not_in_pool",
        lambda pool, other: (
            topics.ERP_PAYMENTS,
            raw(payment(pool, "10.00", [other["receivable_id"]])),
        ),
    ),
    "receivable_already_paid": (
        "receivable_already_paid",
        lambda pool, other: (topics.ERP_PAYMENTS, raw(payment(pool, "10.00", [pool.paid[0]]))),
    ),
    "payment_larger_than_receivables": (
        "payment_exceeds_receivables",
        lambda pool, _: (topics.ERP_PAYMENTS, raw(payment(pool, "100.01", [list(pool.slips)[0]]))),
    ),
}


def _signed(publisher: Publisher, topic: str, payload: bytes) -> bytes:
    """The payload as its ERP signs it, when it is a JSON object naming a pool: what is
    refused must be refused for what it says, not for a missing signature."""
    try:
        document = json.loads(payload)
        if isinstance(document, dict) and isinstance(document.get("pool_id"), str):
            return json.dumps(publisher.signed(topic, document)).encode()
    except (ValueError, TypeError, RecursionError):
        pass
    return payload


async def _state(db: asyncpg.Connection, pool: Pool) -> tuple[Any, ...]:
    return (
        await db.fetchval("SELECT water_level FROM credit.pools WHERE pool_id = $1", pool.pool_id),
        await db.fetch(
            "SELECT receivable_id, state FROM intake.receivables WHERE pool_id = $1"
            " ORDER BY receivable_id",
            pool.pool_id,
        ),
        await db.fetchval(
            "SELECT count(*) FROM settlement.ledger_transactions WHERE pool_id = $1", pool.pool_id
        ),
    )


@pytest.mark.parametrize("case", list(CASES))
async def test_bad_erp_input_is_dead_lettered_with_reason_and_raw_bytes(
    case: str, publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100.00", "50.00", "25.00"])
    other = await open_pool(publisher, observer, ["10.00"])
    paid = payment(pool, "25.00", [list(pool.slips)[2]])
    await publisher.send(topics.ERP_PAYMENTS, paid)
    await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=paid["payment_id"])
    pool.paid.append(list(pool.slips)[2])
    before = await _state(db, pool)

    reason, build = CASES[case]
    topic, payload = build(pool, {"receivable_id": list(other.slips)[0]})
    payload = _signed(publisher, topic, payload)
    headers = {"content-type": "application/json"} if "content_type" in case else None
    # Keyed by the pool it names (refused for what it says, not for its key), else this one's.
    key = peek_envelope(payload)[0] or pool.pool_id
    await publisher.send(topic, payload, key=key, headers=headers)
    [letter] = await observer.wait_for(
        topics.INTAKE_REJECTED, where=lambda d: base64.b64decode(d["raw_payload_b64"]) == payload
    )

    assert letter["reason"] == reason
    assert letter["detail"]
    assert letter["source_topic"] == topic
    assert (
        await db.fetchval(
            'SELECT value FROM intake.raw_events WHERE topic = $1 AND "partition" = $2'
            ' AND "offset" = $3',
            topic,
            letter["source_partition"],
            letter["source_offset"],
        )
        == payload
    )  # the raw input is archived too
    # The service keeps consuming: a good event after the bad one takes effect…
    good = payment(pool, "50.00", [list(pool.slips)[1]])
    await publisher.send(topics.ERP_PAYMENTS, good)
    await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=good["payment_id"])
    # …and the bad one changed nothing but its dead letter.
    level, receivables, ledger = await _state(db, pool)
    assert level == before[0] - 50
    assert [r for r in receivables if r["receivable_id"] != list(pool.slips)[1]] == [
        r for r in before[1] if r["receivable_id"] != list(pool.slips)[1]
    ]
    assert ledger == before[2] + 2


async def test_same_event_id_with_another_payload_is_a_conflict_not_an_effect(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100.00", "50.00"])
    first = payment(pool, "100.00", [list(pool.slips)[0]])
    await publisher.send(topics.ERP_PAYMENTS, first)
    await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=first["payment_id"])
    forged = {**first, "amount": "50.00", "receivable_ids": [list(pool.slips)[1]]}
    await publisher.send(topics.ERP_PAYMENTS, forged)
    [letter] = await observer.wait_for(topics.INTAKE_REJECTED, event_id=first["event_id"])
    assert letter["reason"] == "event_id_conflict"
    assert json.loads(base64.b64decode(letter["raw_payload_b64"]))["amount"] == "50.00"
    state = await db.fetchval(
        "SELECT state FROM intake.receivables WHERE receivable_id = $1", list(pool.slips)[1]
    )
    assert state == "open"


async def test_poison_on_every_topic_of_every_service_is_dead_lettered(
    publisher: Publisher, observer: Observer
) -> None:
    marker = uuid.uuid4().hex.encode()
    expected = {
        topics.ADMIN_FACILITIES: topics.CREDIT_REJECTED,
        topics.SUPPLIER_FINANCING_APPLICATIONS: topics.CREDIT_REJECTED,
        topics.FUNDING_RESPONSES: topics.FUNDING_GATEWAY_REJECTED,
        topics.CREDIT_REPAYMENT_INSTRUCTIONS: topics.SETTLEMENT_REJECTED,
    }
    for source in expected:
        await publisher.send(source, b"poison " + marker, key="CE-TEST/poison")
    for source, dead_letters in expected.items():
        [letter] = await observer.wait_for(
            dead_letters,
            source_topic=source,
            where=lambda d: marker in base64.b64decode(d["raw_payload_b64"]),
        )
        assert letter["reason"] == "not_json"


async def test_facility_with_rate_above_one_is_refused(
    publisher: Publisher, observer: Observer
) -> None:
    event = erp_event(
        "FacilitySet",
        "CE-TEST/any",
        source="operator",
        credit_line="100.00",
        discount_rate="1.5",
        annual_interest_rate="0.04",
        funder_id="bank-x",
    )
    await publisher.send(topics.ADMIN_FACILITIES, event)
    [letter] = await observer.wait_for(topics.CREDIT_REJECTED, event_id=event["event_id"])
    assert letter["reason"] == "invalid_facility"


async def test_a_record_not_keyed_by_its_pool_id_is_dead_lettered_and_the_partition_flows(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    """A signed, valid payment keyed by its core enterprise instead of its pool: dead-lettered
    `key_mismatch` with its raw bytes, and nothing else. Its event id stays free: the same
    bytes keyed right, on the same partition behind it, take effect."""
    pool = await open_pool(publisher, observer, ["100.00"])
    paid = payment(pool, "100.00", list(pool.slips))
    value = raw(publisher.signed(topics.ERP_PAYMENTS, paid))
    await publisher.send(topics.ERP_PAYMENTS, value, key=CORE, partition=0)
    [letter] = await observer.wait_for(topics.INTAKE_REJECTED, event_id=paid["event_id"])
    assert letter["reason"] == "key_mismatch"
    assert letter["detail"].startswith(
        f"record key '{CORE}' is not the message's pool_id '{pool.pool_id}': "
    )
    assert (letter["key"], letter["pool_id"]) == (CORE, pool.pool_id)
    assert base64.b64decode(letter["raw_payload_b64"]) == value
    assert (
        await db.fetchval(
            "SELECT raw_payload FROM intake.dead_letters WHERE event_id = $1", paid["event_id"]
        )
        == value
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM intake.receivables WHERE pool_id = $1 AND state = 'open'",
            pool.pool_id,
        )
        == 1
    )

    await publisher.send(topics.ERP_PAYMENTS, value, partition=0)  # keyed by its pool_id
    [settled] = await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=paid["payment_id"])
    assert settled["amount"] == "100.00"
