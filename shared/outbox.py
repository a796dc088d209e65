"""Transactional outbox: messages are rows written in the business transaction; the relay
publishes them in id order and deletes them once the broker has acknowledged them.

A crash between publish and delete publishes a row again; its event_id is unchanged, so every
consumer's inbox drops the repeat (exactly-once effect, at-least-once delivery).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from shared.contracts.codec import encode

log = structlog.get_logger(__name__)


class Outbox:
    """Messages to be written with the current transaction (one COPY per batch)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, bytes | None, bytes]] = []

    def emit(self, topic: str, message: BaseModel, key: str | None = None) -> None:
        pool_id = key if key is not None else getattr(message, "pool_id", None)
        self.rows.append((topic, pool_id.encode() if pool_id else None, encode(message)))

    async def write(
        self, conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, schema: str
    ) -> None:
        if self.rows:
            await conn.copy_records_to_table(
                "outbox", schema_name=schema, records=self.rows, columns=["topic", "key", "value"]
            )
            self.rows = []


class KnownTopics:
    """Topics this process knows exist; `ensure` creates the others (once each) before the
    relay publishes to them. A topic named by data, such as a new funder's request topic, must
    not stall the relay, and everything queued behind it, on a broker that does not
    auto-create topics."""

    def __init__(
        self, create: Callable[[list[str]], Awaitable[None]], known: Iterable[str] = ()
    ) -> None:
        self._create = create
        self.known = set(known)

    async def ensure(self, topics: Iterable[str]) -> None:
        missing = sorted(set(topics) - self.known)
        if missing:
            log.info("creating topics first seen in the outbox", topics=missing)
            await self._create(missing)
            self.known.update(missing)


class OutboxRelay:
    """Publishes a service's outbox. Woken right after each commit, and polls as a fallback."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        *,
        batch: int = 1000,
        poll_s: float = 0.2,
        topics: KnownTopics | None = None,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._batch = batch
        self._poll_s = poll_s
        self._topics = topics
        self._wakeup = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        self._wakeup.set()

    async def drain_once(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, topic, key, value FROM outbox ORDER BY id LIMIT $1 "
                "FOR UPDATE SKIP LOCKED",
                self._batch,
            )
            if not rows:
                return 0
            if self._topics is not None:
                await self._topics.ensure(row["topic"] for row in rows)
            pending: list[asyncio.Future[Any]] = []
            for row in rows:
                pending.append(
                    await self._producer.send(row["topic"], row["value"], key=row["key"])
                )
            await asyncio.gather(*pending)
            await conn.execute(
                "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [row["id"] for row in rows]
            )
        self.published += len(rows)
        return len(rows)

    async def run(self) -> None:
        while True:
            try:
                sent = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if sent >= self._batch:
                continue
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._poll_s)
            except TimeoutError:
                pass
            self._wakeup.clear()
