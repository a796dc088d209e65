"""The outbox relay on real PostgreSQL and the real broker: everything published once, in id
order per key, even with two relays on one schema; a failure is retried with a log line."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from poolfin.stack import Stack
from shared.db import create_pool, migrate
from shared.outbox import OutboxRelay
from shared.runtime import ensure_topics

pytestmark = pytest.mark.integration

NO_SERVICE_MIGRATIONS = Path(__file__).parent / "no-migrations"  # only the shared tables


@pytest.fixture
async def schema_pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    schema = f"relay_{uuid.uuid4().hex[:8]}"
    await migrate(stack.database_url, schema, NO_SERVICE_MIGRATIONS)
    pool = await create_pool(stack.database_url, schema, 4)
    try:
        yield pool
    finally:
        await pool.close()


async def _read(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        values: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(values) < count:
            assert asyncio.get_running_loop().time() < deadline, f"read {len(values)}/{count}"
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values += [r.value for r in records if r.value is not None]
        return values
    finally:
        await consumer.stop()


async def test_two_relays_on_one_schema_publish_every_row_once_in_order(
    stack: Stack, schema_pool: asyncpg.Pool
) -> None:
    topic = f"relay-test-{uuid.uuid4().hex[:8]}"
    await ensure_topics(stack.bootstrap, [topic], 1)
    rows = [(topic, b"pool-1", f"{n:05d}".encode()) for n in range(3000)]
    async with schema_pool.acquire() as conn:
        await conn.copy_records_to_table("outbox", records=rows, columns=["topic", "key", "value"])
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=2, acks="all")
    await producer.start()
    try:
        relays = [OutboxRelay(schema_pool, producer, batch=250) for _ in range(2)]
        tasks = [asyncio.create_task(relay.run()) for relay in relays]
        values = await _read(stack.bootstrap, topic, len(rows))
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await producer.stop()
    assert values == [value for _, _, value in rows]  # each once, in id order
    async with schema_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_relay_that_cannot_publish_retries_with_a_log_line_and_keeps_the_rows(
    schema_pool: asyncpg.Pool,
) -> None:
    async with schema_pool.acquire() as conn:
        await conn.execute("INSERT INTO outbox(topic, key, value) VALUES ('t', NULL, 'x')")

    class Unreachable:
        async def send(self, *_: object, **__: object) -> asyncio.Future[None]:
            raise ConnectionError("broker away")

    relay = OutboxRelay(schema_pool, Unreachable(), batch=10)
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(relay.run())
        deadline = asyncio.get_running_loop().time() + 10
        while sum(e["event"] == "outbox relay failed; retrying" for e in logs) < 2:
            assert asyncio.get_running_loop().time() < deadline, logs
            await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    retries = [e for e in logs if e["event"] == "outbox relay failed; retrying"]
    assert [e["attempt"] for e in retries[:2]] == [1, 2]
    assert "broker away" in retries[0]["error"]
    async with schema_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 1
