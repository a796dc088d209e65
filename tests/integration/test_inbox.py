"""The inbox on its own, in-process against the real PostgreSQL: one batch holding a good
event, its duplicate, an event_id reused for other content, bytes that are not JSON, a domain
refusal and a handler crash. Each ends as exactly one effect or one dead letter, the batch is
idempotent when read again, and the logs say what happened to which event."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from poolfin.clients import erp_event
from poolfin.stack import Stack
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected
from shared.db import create_pool, migrate
from shared.inbox import BatchConsumer, Inbound, UnitOfWork, peek_envelope

pytestmark = pytest.mark.integration


@pytest.fixture
async def schema_pool(stack: Stack, tmp_path: Path) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    schema = f"inbox_test_{uuid.uuid4().hex[:8]}"
    await migrate(stack.database_url, schema, tmp_path)  # the shared reliability tables only
    pool = await create_pool(stack.database_url, schema, 2)
    try:
        yield schema, pool
    finally:
        await pool.close()


def onboarding(supplier: str, **changes: Any) -> dict[str, Any]:
    return {
        **erp_event(
            "SupplierOnboarded",
            f"CE-1/{supplier}",
            core_enterprise_id="CE-1",
            supplier_id=supplier,
            supplier_name="Supplier " + supplier,
            correlation_id=f"corr-{supplier}",
        ),
        **changes,
    }


def record(offset: int, payload: bytes) -> Inbound:
    """Keyed by the pool the payload names, as every record must be (else a pool of CE-1)."""
    key = (peek_envelope(payload)[0] or "CE-1/S0").encode()
    return Inbound(topic=topics.ERP_SUPPLIERS, partition=0, offset=offset, key=key, value=payload)


async def test_each_record_of_a_batch_ends_as_one_effect_or_one_dead_letter(
    schema_pool: tuple[str, asyncpg.Pool],
) -> None:
    schema, pool = schema_pool
    effects: list[str] = []

    async def handle(uow: UnitOfWork[None], event: m.Message) -> None:
        assert isinstance(event, m.SupplierOnboarded)
        if event.supplier_id == "REFUSED":
            raise Rejected(m.Reason.POOL_EXISTS, "refused by the domain")
        if event.supplier_id == "CRASH":
            raise RuntimeError("a bug in a handler")
        effects.append(event.event_id)
        uow.emit(
            topics.POOL_EVENTS,
            m.new_event(
                m.PoolOpened,
                source="test",
                pool_id=event.pool_id,
                cause=event,
                core_enterprise_id="CE-1",
                supplier_id=event.supplier_id,
            ),
        )

    good = onboarding("S1")
    conflicting = {**onboarding("S2"), "event_id": good["event_id"]}
    batch = [
        record(0, json.dumps(good).encode()),
        record(1, json.dumps(good).encode()),  # redelivered: same bytes
        record(2, json.dumps(conflicting).encode()),  # same event_id, other content
        record(3, b"\xff not json"),
        record(4, json.dumps(onboarding("REFUSED")).encode()),
        record(5, json.dumps(onboarding("CRASH")).encode()),
        record(6, json.dumps(onboarding("S3")).encode()),
    ]
    consumer = BatchConsumer(
        service="inbox-test",
        schema=schema,
        pool=pool,
        handle=handle,
        dead_letter_topic=topics.INTAKE_REJECTED,
    )
    with capture_logs(processors=[merge_contextvars]) as logs:
        await consumer.process(batch)

    assert len(effects) == 2  # S1 once, S3
    async with pool.acquire() as conn:
        letters = {
            r["source_offset"]: r["reason"]
            for r in await conn.fetch("SELECT source_offset, reason FROM dead_letters")
        }
        assert letters == {
            2: "event_id_conflict",
            3: "not_json",
            4: "pool_exists",
            5: "processing_error",
        }
        assert (
            await conn.fetchval("SELECT raw_payload FROM dead_letters WHERE source_offset = 3")
            == b"\xff not json"
        )
        outbox = [
            (r["topic"], json.loads(r["value"])["type"])
            for r in await conn.fetch("SELECT topic, value FROM outbox ORDER BY id")
        ]
        assert sorted(outbox) == sorted(
            [(topics.POOL_EVENTS, "PoolOpened")] * 2 + [(topics.INTAKE_REJECTED, "DeadLetter")] * 4
        )

    processed = [e for e in logs if e["event"] == "processed"]
    assert {
        (e["event_id"], e["correlation_id"], e["pool_id"], e["log_level"]) for e in processed
    } >= {(good["event_id"], "corr-S1", "CE-1/S1", "info")}
    assert all({"topic", "partition", "offset"} <= set(e) for e in processed)
    assert [e["offset"] for e in logs if e["event"] == "duplicate skipped"] == [1]
    assert sorted(e["reason"] for e in logs if e["event"] == "dead-lettered") == [
        "event_id_conflict",
        "not_json",
        "pool_exists",
        "processing_error",
    ]
    assert any(e["event"] == "batch failed; retrying it one message at a time" for e in logs)
    [summary] = [e for e in logs if e["event"] == "batch committed"]
    assert (summary["records"], summary["effects"], summary["dead_letters"]) == (7, 2, 4)

    # The same batch read again (the offsets were not committed): nothing happens twice.
    with capture_logs(processors=[merge_contextvars]) as again:
        await consumer.process(batch)
    assert len(effects) == 2
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 4
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 6
    [summary] = [e for e in again if e["event"] == "batch committed"]
    assert (summary["effects"], summary["dead_letters"]) == (0, 0)
