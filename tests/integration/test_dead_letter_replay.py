"""`poolfin dead-letters list/show/replay` on the real broker and PostgreSQL: a payment for a
supplier the ERP had not onboarded yet is dead-lettered (`unknown_pool`); once the supplier and
its slip are in, an operator replays it; it takes effect once, a second replay publishes
nothing, and the audit row names the operator. `show` gives back the exact bytes, key and
headers a record was sent with."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher
from poolfin.stack import Stack
from shared.contracts import topics
from tests.integration.scenario import CORE, Pool, payment, today
from tests.integration.test_split_rules import poolfin

pytestmark = pytest.mark.integration


async def listed(stack: Stack, *args: str) -> list[dict[str, Any]]:
    shown = await poolfin(stack, "dead-letters", "list", "--json", *args)
    assert shown.returncode == 0, shown.stderr
    found: list[dict[str, Any]] = json.loads(shown.stdout)
    return found


async def archived(db: asyncpg.Connection, payload: bytes) -> int:
    """How many records with these bytes intake has read (it archives every ERP record)."""
    count: int = await db.fetchval(
        "SELECT count(*) FROM intake.raw_events WHERE topic = $1 AND value = $2",
        topics.ERP_PAYMENTS,
        payload,
    )
    return count


async def test_a_dead_letter_replayed_once_its_cause_is_fixed_takes_effect_once(
    stack: Stack, publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    run = uuid.uuid4().hex[:10]
    pool = Pool(pool_id=f"{CORE}/S-{run}", supplier_id=f"S-{run}")
    late = f"R-{run}-1"
    early = publisher.signed(topics.ERP_PAYMENTS, payment(pool, "40.00", [late]))
    payload = json.dumps(early).encode()
    await publisher.send(topics.ERP_PAYMENTS, payload, key=pool.pool_id)
    [letter] = await observer.wait_for(topics.INTAKE_REJECTED, event_id=early["event_id"])
    assert letter["reason"] == "unknown_pool"

    # The operator finds it by its reason.
    [found] = [
        d
        for d in await listed(stack, "--reason", "unknown_pool")
        if d["event_id"] == early["event_id"]
    ]
    assert (found["service"], found["pool_id"], found["replayed"]) == (
        "intake",
        pool.pool_id,
        False,
    )
    assert (found["source_topic"], found["source_offset"]) == (
        topics.ERP_PAYMENTS,
        letter["source_offset"],
    )
    assert found["ref"] == f"intake:{found['id']}"
    text = await poolfin(stack, "dead-letters", "list", "--service", "intake")
    assert text.returncode == 0, text.stderr
    assert found["ref"] in text.stdout

    # `show` has the bytes as sent and the key.
    shown = await poolfin(stack, "dead-letters", "show", found["ref"])
    assert shown.returncode == 0, shown.stderr
    assert payload.decode() in shown.stdout
    assert f"key:          {pool.pool_id}" in shown.stdout
    assert "replays:      none" in shown.stdout

    # The cause is fixed: the ERP onboards the supplier and pushes the slip.
    for topic, event in (
        erp.onboarding(pool.pool_id, CORE, pool.supplier_id, "Late Supplier"),
        erp.slip(pool.pool_id, late, "100.00", today()),
    ):
        await publisher.send(topic, event)
        await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=event["event_id"])
    before = await db.fetchval(
        "SELECT water_level FROM credit.pools WHERE pool_id = $1", pool.pool_id
    )

    dry = await poolfin(
        stack, "dead-letters", "replay", str(found["id"]), "--service", "intake", "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    assert f"would replay {found['ref']} -> {topics.ERP_PAYMENTS}" in dry.stdout
    assert await archived(db, payload) == 1  # nothing published

    replayed = await poolfin(
        stack, "dead-letters", "replay", str(found["id"]), "--service", "intake",
        "--operator", "op-1", "--note", "slip arrived late",
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed {found['ref']} -> {topics.ERP_PAYMENTS}" in replayed.stdout
    assert "1 replayed, 0 skipped" in replayed.stdout

    # It takes effect: settled, and the pool's level drops by the payment, once.
    await observer.wait_for(
        topics.SETTLEMENT_RESULTS, payment_id=early["payment_id"], type="SettlementReleased"
    )
    [settled] = observer.find(
        topics.POOL_EVENTS, type="ReceivablesSettled", payment_id=early["payment_id"]
    )
    assert settled["receivable_ids"] == [late]

    # A second replay publishes nothing and says why.
    again = await poolfin(stack, "dead-letters", "replay", found["ref"], "--operator", "op-2")
    assert again.returncode == 0, again.stderr
    assert f"skipped {found['ref']}: already replayed" in again.stdout
    assert "by op-1" in again.stdout
    assert "0 replayed, 1 skipped" in again.stdout

    await asyncio.sleep(2)  # time enough for a second copy to be read, were there one
    assert await archived(db, payload) == 2  # the original and the one replay
    assert (
        len(
            observer.find(
                topics.POOL_EVENTS, type="ReceivablesSettled", payment_id=early["payment_id"]
            )
        )
        == 1
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM settlement.ledger_transactions"
            " WHERE payment_id = $1 AND kind = 'freeze'",
            early["payment_id"],
        )
        == 1
    )
    assert observer.find(topics.INTAKE_REJECTED, event_id=early["event_id"]) == [letter]
    after = await db.fetchval(
        "SELECT water_level FROM credit.pools WHERE pool_id = $1", pool.pool_id
    )
    assert before - after == Decimal("40.00")

    # The audit row, and what `list` and `show` say now.
    [audit] = await db.fetch(
        "SELECT replayed_by, target_topic, note FROM intake.dead_letter_replays"
        " WHERE dead_letter_id = $1",
        found["id"],
    )
    assert dict(audit) == {
        "replayed_by": "op-1",
        "target_topic": topics.ERP_PAYMENTS,
        "note": "slip arrived late",
    }
    [now] = [d for d in await listed(stack, "--service", "intake") if d["id"] == found["id"]]
    assert (now["replayed"], now["replayed_by"]) == (True, "op-1")
    history = await poolfin(stack, "dead-letters", "show", found["ref"], "--json")
    assert history.returncode == 0, history.stderr
    [replay] = json.loads(history.stdout)["replays"]
    assert (replay["replayed_by"], replay["target_topic"]) == ("op-1", topics.ERP_PAYMENTS)


async def test_show_gives_back_bytes_key_and_headers_as_sent(
    stack: Stack, publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    key = f"CE-TEST/S-{uuid.uuid4().hex[:8]}"
    payload = b"\xff\xfe not json " + uuid.uuid4().hex.encode()
    headers: list[tuple[str, bytes | None]] = [("trace", b"\x00\xffbin"), ("tenant", b"t-1")]
    await publisher.send(topics.ERP_SETTLEMENT_SLIPS, payload, key=key, headers=headers)
    await observer.wait_for(
        topics.INTAKE_REJECTED, where=lambda d: base64.b64decode(d["raw_payload_b64"]) == payload
    )
    ident = await db.fetchval("SELECT id FROM intake.dead_letters WHERE raw_payload = $1", payload)
    [found] = [
        d for d in await listed(stack, "--reason", "not_json", "--limit", "500") if d["id"] == ident
    ]
    assert (found["ref"], found["source_topic"]) == (f"intake:{ident}", topics.ERP_SETTLEMENT_SLIPS)
    shown = await poolfin(stack, "dead-letters", "show", found["ref"], "--json")
    assert shown.returncode == 0, shown.stderr
    letter = json.loads(shown.stdout)
    assert letter["raw_payload_encoding"] == "base64"
    assert base64.b64decode(letter["raw_payload"]) == payload
    assert (letter["key"], letter["key_encoding"]) == (key, "utf-8")
    assert letter["headers"] == [
        {"name": "trace", "value": base64.b64encode(b"\x00\xffbin").decode(), "encoding": "base64"},
        {"name": "tenant", "value": "t-1", "encoding": "utf-8"},
    ]
    text = await poolfin(stack, "dead-letters", "show", found["ref"])
    assert f"not UTF-8, base64):\n{base64.b64encode(payload).decode()}\n" in text.stdout
    assert f"key:          {key}" in text.stdout
    assert "  tenant: t-1" in text.stdout
