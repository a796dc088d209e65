"""A buyer's payment naming a slip intake has not seen yet waits for it a bounded time (the
test stack: POOLFIN_UNSEEN_SLIP_WAIT_S=5, tests/conftest.py) instead of being dead-lettered at
once: an ERP may publish the payment a moment before the slip."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher
from poolfin.stack import Stack
from services.intake.repository import (
    InMemoryIntakeStore,
    IntakeChanges,
    IntakeStore,
    ParkedPayment,
    PostgresIntakeStore,
    expire_parked,
)
from shared.contracts import topics
from shared.inbox import Inbound
from tests.integration.scenario import contract_store, fresh_schema, open_pool, payment, today

pytestmark = pytest.mark.integration

WAIT_S = 5  # the test stack's POOLFIN_UNSEEN_SLIP_WAIT_S
MIGRATIONS = Path(__file__).parents[2] / "services" / "intake" / "migrations"

store = contract_store(InMemoryIntakeStore, PostgresIntakeStore, "intake")


def signed(publisher: Publisher, event: dict[str, object]) -> bytes:
    """The payment's bytes as its ERP signs and sends them."""
    return json.dumps(publisher.signed(topics.ERP_PAYMENTS, event)).encode()


async def parked_rows(db: asyncpg.Connection, event_id: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM intake.parked_payments WHERE event_id = $1", event_id
        )
    )


async def test_a_payment_ahead_of_its_slip_takes_effect_once_the_slip_comes(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100.00"])
    late = f"R-late-{uuid.uuid4().hex[:8]}"
    paid = payment(pool, "30.00", [late])
    await publisher.send(topics.ERP_PAYMENTS, signed(publisher, paid))

    # It waits: nothing published for it, no dead letter, its record parked.
    for _ in range(100):
        if await parked_rows(db, paid["event_id"]):
            break
        await asyncio.sleep(0.05)
    assert await parked_rows(db, paid["event_id"]) == 1
    await asyncio.sleep(2)
    assert observer.find(topics.POOL_EVENTS, payment_id=paid["payment_id"]) == []
    assert observer.find(topics.INTAKE_REJECTED, event_id=paid["event_id"]) == []

    # The slip, seconds later: the payment takes effect as had the slip come first.
    await publisher.send(*erp.slip(pool.pool_id, late, "50.00", today()))
    [released] = await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=paid["payment_id"])
    assert released["amount"] == "30.00"
    [settled] = observer.find(
        topics.POOL_EVENTS, type="ReceivablesSettled", payment_id=paid["payment_id"]
    )
    assert settled["causation_id"] == paid["event_id"]
    assert [(a["receivable_id"], a["amount"], a["open_after"]) for a in settled["allocations"]] == [
        (late, "30.00", "20.00")
    ]

    # Exactly once, and never dead-lettered: past the wait and a few watch rounds, still so.
    await asyncio.sleep(WAIT_S + 1)
    assert len(observer.find(topics.POOL_EVENTS, payment_id=paid["payment_id"])) == 1
    assert len(observer.find(topics.SETTLEMENT_RESULTS, payment_id=paid["payment_id"])) == 1
    assert observer.find(topics.INTAKE_REJECTED, event_id=paid["event_id"]) == []
    assert (
        await db.fetchval(
            "SELECT count(*) FROM intake.dead_letters WHERE event_id = $1", paid["event_id"]
        )
        == 0
    )
    assert await parked_rows(db, paid["event_id"]) == 0
    receivable = await db.fetchrow(
        "SELECT state, open_amount FROM intake.receivables WHERE receivable_id = $1", late
    )
    assert receivable is not None
    assert (receivable["state"], receivable["open_amount"]) == ("open", 20)
    assert (
        await db.fetchval("SELECT water_level FROM credit.pools WHERE pool_id = $1", pool.pool_id)
        == 120  # 100 + 50 − 30
    )


async def test_a_payment_whose_slip_never_comes_is_dead_lettered_after_the_wait(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100.00"])
    never = f"R-never-{uuid.uuid4().hex[:8]}"
    paid = payment(pool, "10.00", [never])
    value = signed(publisher, paid)
    sent = await publisher.send(topics.ERP_PAYMENTS, value)

    [letter] = await observer.wait_for(
        topics.INTAKE_REJECTED, event_id=paid["event_id"], timeout=WAIT_S + 30
    )
    waited = time.monotonic() - sent
    assert waited >= WAIT_S - 0.5, waited  # not at once
    assert letter["reason"] == "unknown_receivable"
    assert letter["detail"].startswith(f"slip {never} not seen within {WAIT_S} s: "), letter
    assert (letter["source_topic"], letter["key"], letter["pool_id"]) == (
        topics.ERP_PAYMENTS,
        pool.pool_id,
        pool.pool_id,
    )
    assert base64.b64decode(letter["raw_payload_b64"]) == value
    row = await db.fetchrow(
        "SELECT reason, raw_payload, source_offset FROM intake.dead_letters WHERE event_id = $1",
        paid["event_id"],
    )
    assert row is not None
    assert (row["reason"], row["raw_payload"], row["source_offset"]) == (
        "unknown_receivable",
        value,
        letter["source_offset"],
    )
    assert await parked_rows(db, paid["event_id"]) == 0
    assert (
        await db.fetchval(
            "SELECT count(*) FROM intake.payments WHERE payment_id = $1", paid["payment_id"]
        )
        == 0
    )
    assert observer.find(topics.POOL_EVENTS, payment_id=paid["payment_id"]) == []


async def test_a_parked_payment_is_stored_as_read(store: IntakeStore) -> None:
    record = Inbound(
        topics.ERP_PAYMENTS, 1, 7, b"P-1", b'{"x": 1}', 99, (("h", b"\xff\x00"), ("n", None))
    )
    now = datetime.now(UTC)
    parked = ParkedPayment(
        "E-1", "PAY-1", "P-1", "CE-1", ["R-1", "R-2"], record, now, now + timedelta(seconds=30)
    )
    await store.write(IntakeChanges(parked={"E-1": parked}))
    assert await store.parked(["P-1"], []) == [parked]
    assert await store.parked([], ["PAY-1"]) == [parked]
    assert await store.parked(["P-2"], ["PAY-2"]) == []

    parked.missing = ["R-2"]
    await store.write(IntakeChanges(parked={"E-1": parked}))
    assert [p.missing for p in await store.parked(["P-1"], [])] == [["R-2"]]
    parked.reason, parked.detail = "payment_exceeds_receivables", "too much"
    await store.write(IntakeChanges(parked={"E-1": parked}))
    assert await store.parked(["P-1"], ["PAY-1"]) == []  # refused: waits no more
    await store.write(IntakeChanges(unparked={"E-1"}))
    assert await store.parked(["P-1"], ["PAY-1"]) == []


async def test_due_parked_payments_are_taken_out_once(stack: Stack) -> None:
    async with fresh_schema(stack.database_url, MIGRATIONS, "intake") as conn:
        now = datetime.now(UTC)

        def parked(event_id: str, deadline: datetime, reason: str | None = None) -> ParkedPayment:
            record = Inbound(topics.ERP_PAYMENTS, 0, len(event_id), b"P-1", event_id.encode())
            return ParkedPayment(
                event_id, f"PAY-{event_id}", "P-1", "CE-1", ["R-1"], record, now, deadline, reason
            )

        rows = [
            parked("E-due", now - timedelta(minutes=2)),
            parked("E-later", now + timedelta(minutes=2)),
            parked("E-refused", now - timedelta(minutes=3), "payment_exceeds_receivables"),
        ]
        await PostgresIntakeStore(conn).write(IntakeChanges(parked={p.event_id: p for p in rows}))
        expired = await expire_parked(conn)
        assert [(p.event_id, p.record) for p in expired] == [
            ("E-refused", rows[2].record),
            ("E-due", rows[0].record),
        ]
        assert await expire_parked(conn) == []
        assert await conn.fetchval("SELECT array_agg(event_id) FROM parked_payments") == ["E-later"]
