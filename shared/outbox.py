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
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from shared.contracts.codec import encode
from shared.db import Connection
from shared.tracing import HEADER as TRACE_HEADER
from shared.tracing import traceparent_for

log = structlog.get_logger(__name__)


class Outbox:
    """Messages to be written with the current transaction (one COPY per batch)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, bytes | None, bytes, str]] = []
        self.sent: list[BaseModel] = []  # the messages themselves, for the service's metrics

    def emit(self, topic: str, message: BaseModel, key: str | None = None) -> None:
        pool_id = key if key is not None else getattr(message, "pool_id", None)
        self.rows.append(
            (
                topic,
                pool_id.encode() if pool_id else None,
                encode(message),
                traceparent_for(message),
            )
        )
        self.sent.append(message)

    async def write(self, conn: Connection, schema: str) -> None:
        if self.rows:
            await conn.copy_records_to_table(
                "outbox",
                schema_name=schema,
                records=self.rows,
                columns=["topic", "key", "value", "traceparent"],
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


RETRY_MAX_WAIT_S = 30.0


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning(
        "outbox relay failed; retrying",
        attempt=state.attempt_number,
        retry_in_s=round(wait, 2),
        error=repr(error),
        exc_info=error if state.attempt_number == 1 else None,
    )


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
        seal: Callable[[str, bytes | None, bytes], list[tuple[str, bytes]]] | None = None,
    ) -> None:
        self._seal = seal  # the service's MAC header for each record (shared/trust.py)
        self._pool = pool
        self._producer = producer
        self._batch = batch
        self._poll_s = poll_s
        self._topics = topics
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def drain_once(self) -> int:
        """Publish the oldest rows, then delete them. One relay per schema is active at a
        time (a transaction-level advisory lock): with several instances of a service, two
        relays publishing different ranges at once could reorder one pool's messages."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || '.outbox'))"
            ):
                return 0  # another instance's relay is publishing this schema's outbox
            rows = await conn.fetch(
                "SELECT id, topic, key, value, traceparent FROM outbox ORDER BY id LIMIT $1",
                self._batch,
            )
            if not rows:
                return 0
            if self._topics is not None:
                await self._topics.ensure(row["topic"] for row in rows)
            pending: list[asyncio.Future[Any]] = []
            for row in rows:
                key, value = row["key"], row["value"]
                headers = self._seal(row["topic"], key, value) if self._seal else []
                if row["traceparent"]:
                    headers = [*headers, (TRACE_HEADER, row["traceparent"].encode())]
                pending.append(
                    await self._producer.send(row["topic"], value, key=key, headers=headers or None)
                )
            await asyncio.gather(*pending)
            await conn.execute(
                "DELETE FROM outbox WHERE id = ANY($1::bigint[])", [row["id"] for row in rows]
            )
        return len(rows)

    async def run(self) -> None:
        """Relay until cancelled. A failure (broker or database away) is retried with capped
        exponential backoff and one log line per attempt; rows wait safely in the table."""
        retrying = AsyncRetrying(
            wait=wait_exponential_jitter(initial=0.2, max=RETRY_MAX_WAIT_S),
            retry=retry_if_exception_type(Exception),
            before_sleep=_log_retry,
            reraise=True,
        )
        while True:
            sent: int = await retrying(self.drain_once)
            if sent >= self._batch:
                continue
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._poll_s)
            except TimeoutError:
                pass
            self._wakeup.clear()
