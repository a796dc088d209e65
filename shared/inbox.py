"""The consuming side every service shares: a batch of raw Kafka records becomes one database
transaction holding the effects, the inbox rows and the outgoing messages (outbox).

- Decoding refusals, inbox conflicts and domain refusals end as dead letters with a reason and
  the raw bytes, in the same transaction: a poison message never blocks a partition.
- An event id already processed with the same payload is skipped (exactly-once effect); with
  another payload it is dead-lettered as `event_id_conflict`.
- An unexpected error rolls the batch back; the batch is then retried one message per
  transaction so that only the culprit is dead-lettered (`processing_error`).
- Transient infrastructure errors (connection lost, deadlock, serialisation) propagate: the
  caller does not commit offsets and the batch is read again.

Handlers follow one rule: decide first, raise `Rejected` before writing anything.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from shared.contracts.codec import Rejected, decode, payload_digest
from shared.contracts.messages import DeadLetter, Message, Reason
from shared.outbox import Outbox

log = structlog.get_logger(__name__)

# A pooled connection or a plain one: handlers do not care which.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    ConnectionError,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One raw record as read from Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class UnitOfWork:
    """What a handler gets: the batch's connection and the outbox it writes to."""

    conn: Connection
    outbox: Outbox
    schema: str
    # What a handler may remember for the rest of this transaction (e.g. the pools it has
    # locked): gone with the transaction, so a retried batch starts clean.
    scratch: dict[Any, Any] = field(default_factory=dict)

    def emit(self, topic: str, message: Message) -> None:
        self.outbox.emit(topic, message)


Handler = Callable[[UnitOfWork, Message], Awaitable[None]]
BatchHook = Callable[[UnitOfWork, Sequence[Inbound]], Awaitable[None]]
BatchPrepare = Callable[[UnitOfWork, Sequence[Message]], Awaitable[None]]
BatchFlush = Callable[[UnitOfWork], Awaitable[None]]


class BatchConsumer:
    def __init__(
        self,
        *,
        service: str,
        schema: str,
        pool: asyncpg.Pool,
        handle: Handler,
        dead_letter_topic: str,
        on_batch: BatchHook | None = None,
        after_commit: Callable[[], None] | None = None,
        prepare: BatchPrepare | None = None,
        flush: BatchFlush | None = None,
    ) -> None:
        self.service = service
        self.schema = schema
        self._pool = pool
        self._handle = handle
        self._dead_letter_topic = dead_letter_topic
        self._on_batch = on_batch
        self._after_commit = after_commit
        self._prepare = prepare
        self._flush = flush
        self.stats = {"effects": 0, "duplicates": 0, "dead_letters": 0, "batches": 0}

    async def process(self, records: Sequence[Inbound]) -> None:
        started = time.perf_counter()
        before = dict(self.stats)
        items = [self._decode(record) for record in records]
        # Group by pool (stable: order within a pool is kept) so locks are taken in one order.
        items.sort(key=lambda item: item[1].pool_id if item[1] is not None else "")
        try:
            await self._in_transaction(items)
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            log.exception(
                "batch failed; retrying it one message at a time",
                service=self.service,
                size=len(items),
            )
            for item in items:
                try:
                    await self._in_transaction([item])
                except TRANSIENT_ERRORS:
                    raise
                except Exception as exc:
                    record, message, _ = item
                    log.exception(
                        "message failed; dead-lettering it",
                        service=self.service,
                        topic=record.topic,
                        offset=record.offset,
                    )
                    reason = Rejected(Reason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")
                    await self._in_transaction([(record, message, reason)], skip_handler=True)
        self.stats["batches"] += 1
        # One summary line per message (above) and one per batch: what an operator watches.
        log.info(
            "batch committed",
            service=self.service,
            records=len(records),
            **{
                name: self.stats[name] - before[name]
                for name in ("effects", "duplicates", "dead_letters")
            },
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        if self._after_commit is not None:
            self._after_commit()

    def _decode(self, record: Inbound) -> tuple[Inbound, Message | None, Rejected | None]:
        try:
            return record, decode(record.topic, record.value), None
        except Rejected as refusal:
            return record, None, refusal
        except Exception as exc:  # decode() promises Rejected only; a poison message never blocks
            log.exception(
                "decoder raised; dead-lettering the message",
                topic=record.topic,
                offset=record.offset,
            )
            return (
                record,
                None,
                Rejected(Reason.INVALID_MESSAGE, f"payload could not be decoded: {exc!r}"[:500]),
            )

    async def _in_transaction(
        self,
        items: list[tuple[Inbound, Message | None, Rejected | None]],
        skip_handler: bool = False,
    ) -> None:
        # What happened to each record is told (stats, one log line each) only once the
        # transaction has committed: a batch that rolls back and is retried one record at a
        # time must not be reported twice.
        outcomes: list[tuple[str, dict[str, Any]]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            uow = UnitOfWork(conn=conn, outbox=Outbox(), schema=self.schema)
            if self._on_batch is not None:
                await self._on_batch(uow, [record for record, _, _ in items])
            event_ids = [message.event_id for _, message, _ in items if message is not None]
            seen: dict[str, str] = (
                {
                    row["event_id"]: row["payload_hash"]
                    for row in await conn.fetch(
                        "SELECT event_id, payload_hash FROM processed"
                        " WHERE consumer = $1 AND event_id = ANY($2::text[])",
                        self.service,
                        event_ids,
                    )
                }
                if event_ids
                else {}
            )
            new_rows: list[tuple[str, str, str]] = []
            if self._prepare is not None and not skip_handler:
                await self._prepare(
                    uow, [message for _, message, refusal in items if message and not refusal]
                )
            for record, message, refusal in items:
                context = {
                    "service": self.service,
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "event_id": message.event_id if message else None,
                    "correlation_id": message.correlation_id if message else None,
                    "pool_id": message.pool_id if message else None,
                }
                structlog.contextvars.clear_contextvars()
                structlog.contextvars.bind_contextvars(**context)  # for the handler's own logs
                if message is not None and refusal is None:
                    digest = payload_digest(record.value)
                    prior = seen.get(message.event_id)
                    if prior == digest:
                        outcomes.append(("duplicates", {**context, "type": message.type}))
                        continue
                    if prior is not None:
                        refusal = Rejected(
                            Reason.EVENT_ID_CONFLICT,
                            f"event_id {message.event_id} was already processed "
                            "with a different payload",
                        )
                    else:
                        seen[message.event_id] = digest
                        new_rows.append((self.service, message.event_id, digest))
                        if not skip_handler:
                            try:
                                await self._handle(uow, message)
                                outcomes.append(("effects", {**context, "type": message.type}))
                                continue
                            except Rejected as domain_refusal:
                                refusal = domain_refusal
                elif message is not None and refusal is not None and message.event_id not in seen:
                    # Forced dead letter of a decodable message: mark it done as well.
                    seen[message.event_id] = payload_digest(record.value)
                    new_rows.append((self.service, message.event_id, seen[message.event_id]))
                assert refusal is not None
                if await self._dead_letter(uow, record, message, refusal):
                    outcomes.append(
                        (
                            "dead_letters",
                            {**context, "reason": refusal.reason.value, "detail": refusal.detail},
                        )
                    )
            structlog.contextvars.clear_contextvars()
            if self._flush is not None:
                await self._flush(uow)
            if new_rows:
                await conn.executemany(
                    "INSERT INTO processed(consumer, event_id, payload_hash) VALUES ($1, $2, $3)",
                    new_rows,
                )
            await uow.outbox.write(conn, self.schema)
        for outcome, fields in outcomes:  # committed: now it is true
            self.stats[outcome] += 1
            if outcome == "dead_letters":
                log.warning("dead-lettered", **fields)
            else:
                log.info("processed" if outcome == "effects" else "duplicate skipped", **fields)

    async def _dead_letter(
        self, uow: UnitOfWork, record: Inbound, message: Message | None, refusal: Rejected
    ) -> bool:
        """Record and emit the dead letter; False when this record was dead-lettered before."""
        pool_id = message.pool_id if message else None
        event_id = message.event_id if message else None
        inserted = await uow.conn.fetchval(
            "INSERT INTO dead_letters(source_topic, source_partition, source_offset, event_id,"
            " pool_id, reason, detail, raw_payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING"
            " RETURNING id",
            record.topic,
            record.partition,
            record.offset,
            event_id,
            pool_id,
            refusal.reason.value,
            refusal.detail,
            record.value,
        )
        if inserted is None:
            return False
        letter = dead_letter_for(self.service, record, refusal, event_id=event_id, pool_id=pool_id)
        key = pool_id or (record.key.decode(errors="replace") if record.key else None)
        uow.outbox.emit(self._dead_letter_topic, letter, key=key)
        return True


# A dead letter must fit in one Kafka record (1 MiB by default) whatever it carries: above these
# sizes the topic gets a truncated copy and says so; dead_letters.raw_payload keeps every byte.
RAW_TEXT_LIMIT = 64 * 1024
RAW_PAYLOAD_LIMIT = 384 * 1024


def dead_letter_for(
    service: str,
    record: Inbound,
    refusal: Rejected,
    *,
    event_id: str | None = None,
    pool_id: str | None = None,
) -> DeadLetter:
    """The DeadLetter event for a refused record: the reason, where it came from, its bytes."""
    raw = record.value
    kept = raw[:RAW_PAYLOAD_LIMIT]
    text: str | None = None
    if len(raw) <= RAW_TEXT_LIMIT:
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            text = None
    return DeadLetter(
        service=service,
        reason=refusal.reason,
        detail=refusal.detail[:2000],
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        key=record.key.decode(errors="replace") if record.key is not None else None,
        raw_payload_b64=base64.b64encode(kept).decode(),
        raw_text=text,
        raw_size=len(raw),
        raw_truncated=len(kept) < len(raw),
        event_id=event_id,
        pool_id=pool_id,
        rejected_at=datetime.now(UTC),
    )


async def backoff(seconds: float) -> None:
    """Pause before a failed batch is re-read, so an outage is not a hot loop."""
    await asyncio.sleep(seconds)
