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
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import asyncpg
import structlog

from shared.contracts.codec import (
    Rejected,
    decode_document,
    key_mismatch,
    parse_json,
    payload_digest,
)
from shared.contracts.messages import DeadLetter, Message, Reason
from shared.contracts.topics import is_external
from shared.db import Connection
from shared.ops import ServiceMetrics
from shared.outbox import Outbox
from shared.tracing import Tracing
from shared.trust import REGISTRY_TYPES, Principal, Trust, apply_key_change

log = structlog.get_logger(__name__)

# What each outcome of a record is called in the service's metrics (poolfin_messages_total).
METRIC_OUTCOMES = {"effects": "effect", "duplicates": "duplicate", "dead_letters": "dead_letter"}


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
    timestamp: int = -1  # the record's timestamp (ms) as the broker reports it
    headers: tuple[tuple[str, bytes | None], ...] = ()  # raw, as the producer sent them

    @property
    def record_id(self) -> str:
        """Who this record is, across broker and topic resets: its coordinates alone are not
        enough (offsets restart at 0 on a new broker or a re-created topic), so its timestamp,
        key and bytes go in too. Reading the same record again gives the same id; a different
        record at a reused offset gets another."""
        digest = hashlib.sha256()
        for part in (self.topic.encode(), str(self.partition).encode(), str(self.offset).encode()):
            digest.update(part + b"\0")
        digest.update(str(self.timestamp).encode() + b"\0")
        key = self.key if self.key is not None else b""
        digest.update(b"%d\0" % (len(key) if self.key is not None else -1) + key)
        digest.update(self.value)
        return digest.hexdigest()


S = TypeVar("S")


@dataclass(slots=True)
class Item:
    """A record as the consumer holds it: decoded (or why not), and its parsed JSON."""

    record: Inbound
    message: Message | None
    refusal: Rejected | None
    document: dict[str, Any] | None = None


@runtime_checkable
class BatchState(Protocol):
    """A service's typed batch state, the kernel's one shape (DESIGN "Reliability mechanics"):
    `prepare` loads and locks what the batch's messages need in a few set-based statements,
    handlers decide in memory on it, `flush` writes what they changed, set-based, before the
    batch's inbox and outbox rows in the same transaction."""

    async def prepare(self, conn: Connection, events: Sequence[Message]) -> None: ...

    async def flush(self, conn: Connection) -> None: ...


@runtime_checkable
class EndsBatch(Protocol):
    """A batch state with something to say once every message was decided, before `flush`
    (e.g. the splitter's ledger anchors: one per pool the batch changed)."""

    def end_batch(self, uow: UnitOfWork[Any]) -> None: ...


@dataclass(slots=True)
class UnitOfWork(Generic[S]):
    """What a handler gets: the batch's connection, the outbox it writes to, and `state`, the
    service's typed batch state (what `prepare` loaded and locked, what handlers decided, what
    `flush` writes). A new state per transaction: a retried batch starts clean."""

    conn: Connection
    outbox: Outbox
    schema: str
    state: S
    # Who proved the message being handled (shared/trust.py); None when no gate runs (a
    # handler's unit test), and relationship checks are then not made at this layer.
    principal: Principal | None = None
    # The message's JSON as received (what its signature covers), e.g. kept as evidence.
    document: dict[str, Any] | None = None
    # The service's trust gate (its keys: e.g. the splitter signs its ledger anchors).
    trust: Trust | None = None

    def emit(self, topic: str, message: Message) -> None:
        self.outbox.emit(topic, message)


# A handler decides one message: None when it took effect, or the refusal (a value, with its
# reason code) that dead-letters it. A handler that raises Rejected is taken the same way.
Handler = Callable[[UnitOfWork[Any], Message], Awaitable["Rejected | None"]]
BatchHook = Callable[[UnitOfWork[Any], Sequence[Inbound]], Awaitable[None]]


def dispatch(handlers: Mapping[type[Any], Callable[..., Awaitable[Rejected | None]]]) -> Handler:
    """One handler per message type, looked up in a map (no isinstance chains)."""

    async def handle(uow: UnitOfWork[Any], message: Message) -> Rejected | None:
        handler = handlers.get(type(message))
        if handler is None:
            return Rejected(Reason.UNKNOWN_TYPE, f"{message.type} is not handled here")
        return await handler(uow, message)

    handle.handles = frozenset(handlers)  # type: ignore[attr-defined]  # for the contract test
    return handle


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
        new_state: Callable[[], Any] = lambda: None,
        trust: Trust | None = None,
        metrics: ServiceMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.tracing = tracing or Tracing(service, None)
        self.trust = trust
        self.schema = schema
        self._pool = pool
        self._handle = handle
        self._dead_letter_topic = dead_letter_topic
        self._on_batch = on_batch
        self._after_commit = after_commit
        self._new_state = new_state
        self.stats = {
            "effects": 0,
            "duplicates": 0,
            "dead_letters": 0,
            "dead_letter_rereads": 0,
            "offset_reuses": 0,
            "batches": 0,
            "refused_untrusted": 0,
        }

    async def process(self, records: Sequence[Inbound]) -> None:
        started = time.perf_counter()
        before = dict(self.stats)
        items = [self._decode(record) for record in records]
        # Group by pool (stable: order within a pool is kept) so locks are taken in one order.
        items.sort(key=lambda item: item.message.pool_id if item.message is not None else "")
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
                    record, message = item.record, item.message
                    log.exception(
                        "message failed; dead-lettering it",
                        service=self.service,
                        topic=record.topic,
                        offset=record.offset,
                    )
                    reason = Rejected(Reason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}")
                    await self._in_transaction(
                        [Item(record, message, reason, item.document)], skip_handler=True
                    )
        self.stats["batches"] += 1
        if self.metrics is not None:
            self.metrics.batch(time.perf_counter() - started)
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

    def _decode(self, record: Inbound) -> Item:
        try:
            document, message = decode_document(record.topic, record.value)
            # The key is the partition key: a record not keyed by its pool_id could overtake
            # (or be overtaken by) that pool's other events. Refused as undecoded (no message),
            # so its event id stays free for the sender to publish again, keyed right.
            if refusal := key_mismatch(record.key, message):
                return Item(record, None, refusal)
            return Item(record, message, None, document)
        except Rejected as refusal:
            return Item(record, None, refusal)
        except Exception as exc:  # decode() promises Rejected only; a poison message never blocks
            log.exception(
                "decoder raised; dead-lettering the message",
                topic=record.topic,
                offset=record.offset,
            )
            return Item(
                record,
                None,
                Rejected(Reason.INVALID_MESSAGE, f"payload could not be decoded: {exc!r}"[:500]),
            )

    def _admit(self, item: Item, keys: Mapping[str, Any]) -> Principal | Rejected | None:
        """Who proved the message, or why it is refused (None: no gate configured)."""
        if self.trust is None or item.message is None:
            return None
        record = item.record
        return self.trust.admit(
            record.topic,
            record.headers,
            record.key,
            record.value,
            item.message,
            item.document or {},
            keys,
        )

    async def _in_transaction(
        self,
        items: list[Item],
        skip_handler: bool = False,
    ) -> None:
        # What happened to each record is told (stats, one log line each) only once the
        # transaction has committed: a batch that rolls back and is retried one record at a
        # time must not be reported twice.
        outcomes: list[tuple[str, dict[str, Any]]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            uow = UnitOfWork(
                conn=conn,
                outbox=Outbox(),
                schema=self.schema,
                state=self._new_state(),
                trust=self.trust,
            )
            if self._on_batch is not None:
                await self._on_batch(uow, [item.record for item in items])
            event_ids = [item.message.event_id for item in items if item.message is not None]
            # event id → (payload digest, the record it was taken from)
            seen: dict[str, tuple[str, str | None]] = (
                {
                    row["event_id"]: (row["payload_hash"], row["record_id"])
                    for row in await conn.fetch(
                        "SELECT event_id, payload_hash, record_id FROM processed"
                        " WHERE consumer = $1 AND event_id = ANY($2::text[])",
                        self.service,
                        event_ids,
                    )
                }
                if event_ids
                else {}
            )
            keys = (
                await self.trust.keys(
                    conn,
                    (item.document for item in items if is_external(item.record.topic)),
                )
                if self.trust is not None
                else {}
            )
            new_rows: list[tuple[str, str, str, str]] = []
            if isinstance(uow.state, BatchState) and not skip_handler:
                await uow.state.prepare(
                    conn,
                    [
                        item.message
                        for item in items
                        if item.message
                        and not item.refusal
                        and item.message.type not in REGISTRY_TYPES
                    ],
                )
            for item in items:
                record, message, refusal = item.record, item.message, item.refusal
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
                    # A signed message is taken once: another record carrying it is a replay.
                    external = self.trust is not None and is_external(record.topic)
                    if (
                        prior is not None
                        and prior[0] == digest
                        and (not external or prior[1] in (None, record.record_id))
                    ):
                        # The same record read again, or (internal topics) a relay's repeat.
                        outcomes.append(("duplicates", {**context, "type": message.type}))
                        continue
                    verdict = self._admit(item, keys)
                    if isinstance(verdict, Rejected):
                        # Not proven: dead-lettered, and the event id stays free for the real
                        # sender (a forger cannot burn it).
                        refusal = verdict
                        outcomes.append(("refused_untrusted", context))
                    elif prior is not None:
                        refusal = (
                            Rejected(
                                Reason.REPLAYED,
                                f"event_id {message.event_id} was taken from another record "
                                "already: a signed message is accepted once",
                            )
                            if prior[0] == digest
                            else Rejected(
                                Reason.EVENT_ID_CONFLICT,
                                f"event_id {message.event_id} was already processed "
                                "with a different payload",
                            )
                        )
                    else:
                        seen[message.event_id] = (digest, record.record_id)
                        new_rows.append((self.service, message.event_id, digest, record.record_id))
                        if not skip_handler:
                            uow.principal, uow.document = verdict, item.document
                            try:
                                if message.type in REGISTRY_TYPES:
                                    refusal = await apply_key_change(
                                        conn, message, verdict, self.trust
                                    )
                                else:
                                    clock = time.perf_counter()
                                    with self.tracing.handling(record.headers, message):
                                        refusal = await self._handle(uow, message)
                                    if self.metrics is not None:
                                        self.metrics.handled(
                                            message.type, time.perf_counter() - clock
                                        )
                            except Rejected as domain_refusal:
                                refusal = domain_refusal
                            finally:
                                uow.principal, uow.document = None, None
                            if refusal is None:
                                outcomes.append(("effects", {**context, "type": message.type}))
                                continue
                elif message is not None and refusal is not None and message.event_id not in seen:
                    # Forced dead letter of a decodable message: mark it done as well.
                    digest = payload_digest(record.value)
                    seen[message.event_id] = (digest, record.record_id)
                    new_rows.append((self.service, message.event_id, digest, record.record_id))
                assert refusal is not None
                kept = await self._dead_letter(uow, record, message, refusal)
                if kept == "offset_reused":
                    outcomes.append(("offset_reuses", context))
                if kept != "reread":
                    outcomes.append(
                        (
                            "dead_letters",
                            {**context, "reason": refusal.reason.value, "detail": refusal.detail},
                        )
                    )
                else:
                    outcomes.append(("dead_letter_rereads", context))
            structlog.contextvars.clear_contextvars()
            if isinstance(uow.state, EndsBatch):
                uow.state.end_batch(uow)
            if isinstance(uow.state, BatchState):
                await uow.state.flush(conn)
            if new_rows:
                await conn.executemany(
                    "INSERT INTO processed(consumer, event_id, payload_hash, record_id)"
                    " VALUES ($1, $2, $3, $4)",
                    new_rows,
                )
            await uow.outbox.write(conn, self.schema)
        if self.metrics is not None:
            self.metrics.emitted(uow.outbox.sent)
        for outcome, fields in outcomes:  # committed: now it is true
            self.stats[outcome] += 1
            if self.metrics is not None and outcome in METRIC_OUTCOMES:
                self.metrics.outcome(
                    fields["topic"], METRIC_OUTCOMES[outcome], fields.get("reason")
                )
            if outcome == "dead_letters":
                log.warning("dead-lettered", **fields)
            elif outcome == "dead_letter_rereads":
                log.warning("record read again was dead-lettered before; not twice", **fields)
            elif outcome == "offset_reuses":
                log.error(
                    "offset held by an older dead letter: the broker or topic was reset;"
                    " both are kept",
                    **fields,
                )
            elif outcome == "refused_untrusted":
                continue  # its dead letter is logged with the reason
            else:
                log.info("processed" if outcome == "effects" else "duplicate skipped", **fields)

    async def dead_letter(
        self, conn: Connection, outbox: Outbox, record: Inbound, refusal: Rejected
    ) -> str:
        """Dead-letter a record outside a batch, exactly as a refusal in one is (its row and its
        DeadLetter, in the caller's transaction): e.g. a message the service held back, which
        its background watch gives up on (intake's parked payments)."""
        uow = UnitOfWork(conn=conn, outbox=outbox, schema=self.schema, state=None)
        return await self._dead_letter(uow, record, None, refusal)

    async def _dead_letter(
        self, uow: UnitOfWork[Any], record: Inbound, message: Message | None, refusal: Rejected
    ) -> str:
        """Record and emit the dead letter; "reread" when this very record (same `record_id`) was
        dead-lettered before, i.e. it is read again after a crash. A record at an offset that an
        older dead letter holds (the broker or topic was reset) is another record: it gets its
        own dead letter, and the reuse is logged as the error it is."""
        pool_id, event_id = (
            (message.pool_id, message.event_id) if message else peek_envelope(record.value)
        )
        # Key and headers as sent, for `poolfin dead-letters replay`: [[name, base64 | null]].
        headers = [
            [name, base64.b64encode(value).decode() if value is not None else None]
            for name, value in record.headers
        ]
        row = await uow.conn.fetchrow(
            "WITH reused AS (SELECT count(*) AS n FROM dead_letters WHERE source_topic = $1"
            "  AND source_partition = $2 AND source_offset = $3 AND record_id <> $9),"
            " inserted AS (INSERT INTO dead_letters(source_topic, source_partition,"
            "  source_offset, event_id, pool_id, reason, detail, raw_payload, record_id,"
            "  source_key, source_headers)"
            "  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text::jsonb)"
            "  ON CONFLICT (record_id) DO NOTHING RETURNING id)"
            " SELECT (SELECT id FROM inserted) AS id, (SELECT n FROM reused) AS reused",
            record.topic,
            record.partition,
            record.offset,
            event_id,
            pool_id,
            refusal.reason.value,
            refusal.detail,
            record.value,
            record.record_id,
            record.key,
            json.dumps(headers),
        )
        assert row is not None
        if row["id"] is None:
            return "reread"
        letter = dead_letter_for(self.service, record, refusal, event_id=event_id, pool_id=pool_id)
        key = pool_id or (record.key.decode(errors="replace") if record.key else None)
        uow.outbox.emit(self._dead_letter_topic, letter, key=key)
        return "offset_reused" if row["reused"] else "new"


def peek_envelope(raw: bytes) -> tuple[str | None, str | None]:
    """(pool_id, event_id) of a refused payload, when it is a JSON object that names them as
    plain ids: the operator can then find the dead letter by the id the sender used."""
    try:
        document = parse_json(raw)
    except Rejected:
        return None, None
    if not isinstance(document, dict):
        return None, None

    def plain(value: Any) -> str | None:
        return value if isinstance(value, str) and 0 < len(value) <= 128 else None

    return plain(document.get("pool_id")), plain(document.get("event_id"))


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
