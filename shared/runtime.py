"""Running one service: its FastStream batch subscriber, its database pool, its outbox relay.

Offsets are committed by FastStream's ack only after `BatchConsumer.process` returned, i.e.
after the database commit; on a transient failure the batch is nacked (re-read from its first
offset) after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import structlog
import uvicorn
from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.message import StreamMessage
from pydantic import BaseModel
from starlette.types import ASGIApp

from shared.contracts.publish import payload_of
from shared.db import create_pool, migrate
from shared.inbox import (
    BatchConsumer,
    BatchHook,
    Handler,
    Inbound,
    backoff,
)
from shared.ops import Collect, Health, ServiceMetrics, ops_app, watch
from shared.outbox import KnownTopics, OutboxRelay
from shared.settings import Settings
from shared.tracing import Tracing
from shared.trust import ServiceKeys, Trust, TrustFile

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ServiceSpec:
    """What makes a service: its name, schema, topics and handlers."""

    name: str
    schema: str
    topics: tuple[str, ...]
    dead_letter_topic: str
    migrations: Path
    handle: Handler
    on_batch: BatchHook | None = None
    # What the service publishes (through its outbox), by topic: declared as FastStream
    # publishers so the service's AsyncAPI document shows what it sends, not only receives.
    publishes: Mapping[str, tuple[type[BaseModel], ...]] = field(default_factory=dict)
    # The service's typed batch state, new for every transaction (UnitOfWork.state).
    new_state: Callable[[], Any] = lambda: None
    # An HTTP front, served when POOLFIN_HTTP_PORT is set: (database pool, producer, settings,
    # the service's trust gate) → ASGI app.
    http: Callable[[asyncpg.Pool, AIOKafkaProducer, Settings, Trust], ASGIApp] | None = None
    description: str = ""
    # Periodic work beside the consumer (database pool, settings, wake the relay): e.g. the
    # splitter's alerts on payments frozen too long.
    background: (
        Callable[[asyncpg.Pool, Settings, Callable[[], None]], Coroutine[Any, Any, None]] | None
    ) = None
    # What the service adds to its /metrics at each health check (the splitter: its pipeline).
    collect: Collect | None = None


class _ServiceHttpServer(uvicorn.Server):
    """uvicorn inside a service process: the service owns SIGINT/SIGTERM, not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def opaque_headers(
    records: tuple[ConsumerRecord[bytes, bytes], ...],
    original: Callable[[tuple[ConsumerRecord[bytes, bytes], ...]], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    """FastStream's batch parser decodes every header of every record as UTF-8 before any
    handler runs: one record with a header value that is not UTF-8 (or is null) fails the
    whole fetch, and every other record in it is lost. Headers are opaque bytes to poolfin:
    the parser sees the records without them, our consumer gets the records as read."""
    message = await original(tuple(dataclasses.replace(r, headers=()) for r in records))
    message.raw_message = records
    return message


class AssignmentLog(ConsumerRebalanceListener):  # type: ignore[misc]
    """One log line per rebalance with the partitions this instance now owns: with several
    instances of a service, the operator (and the scale-out test) sees who owns what."""

    def __init__(self, service: str) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info(
            "partitions assigned",
            service=self.service,
            partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
        )


def keep_bytes(msg: StreamMessage[Any]) -> Any:
    """FastStream would json-parse each body before our handler and a poison payload (too deep,
    or not JSON under a JSON content-type) would escape as an error on every redelivery. The
    bytes go to BatchConsumer untouched; it decodes them and dead-letters what it refuses."""
    return msg.body


def declare_publishers(broker: KafkaBroker, spec: ServiceSpec) -> None:
    """What the service sends, as FastStream publishers: its AsyncAPI document shows them.
    (The outbox relay does the sending, with the producer it owns.)"""
    for topic, models in spec.publishes.items():
        broker.publisher(
            topic,
            title=f"{spec.name} sends {topic}",
            description=f"Published by {spec.name} through its transactional outbox.",
            schema=payload_of(models),
        )


def subscribed_topics(spec: ServiceSpec) -> tuple[str, ...]:
    """The service's own topics, and the registry of parties and keys every service keeps."""
    from shared.contracts.topics import ADMIN_PARTIES

    return tuple(dict.fromkeys((*spec.topics, ADMIN_PARTIES)))


def build_broker(
    spec: ServiceSpec,
    settings: Settings,
    consumer: BatchConsumer | None,
    metrics: ServiceMetrics | None = None,
) -> KafkaBroker:
    middlewares = (
        (KafkaPrometheusMiddleware(registry=metrics.registry, app_name=spec.name),)
        if metrics is not None
        else ()
    )
    broker = KafkaBroker(
        settings.kafka_bootstrap,
        logger=None,
        client_id=f"poolfin-{spec.name}",
        middlewares=middlewares,
    )

    declare_publishers(broker, spec)

    @broker.subscriber(
        *subscribed_topics(spec),
        batch=True,
        group_id=f"{settings.group_prefix}.{spec.name}",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        rebalance_timeout_ms=settings.rebalance_timeout_ms,
        parser=opaque_headers,
        listener=AssignmentLog(spec.name),
        decoder=keep_bytes,
        title=f"{spec.name}",
        description=spec.description,
    )
    async def on_batch(body: Any, msg: KafkaMessage) -> None:
        raw = msg.raw_message
        records = raw if isinstance(raw, tuple) else (raw,)
        inbound = [
            Inbound(
                r.topic,
                r.partition,
                r.offset,
                r.key,
                r.value or b"",
                r.timestamp,
                tuple(r.headers or ()),
            )
            for r in records
        ]
        if consumer is None:
            return
        try:
            await consumer.process(inbound)
        except Exception:
            log.exception("batch not committed; it will be read again", service=spec.name)
            await backoff(settings.retry_backoff_s)
            raise

    return broker


async def _serve(
    app: ASGIApp, host: str, port: int, service: str, what: str
) -> tuple[_ServiceHttpServer, asyncio.Task[None]]:
    """Serve `app` inside the service's loop; raise why it could not start (e.g. port taken)."""
    server = _ServiceHttpServer(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
    )
    task = asyncio.create_task(server.serve(), name=f"{service}-{what}")
    while not server.started:
        if task.done():
            await task
            raise RuntimeError(f"{what} of {service} stopped at start")
        await asyncio.sleep(0.02)
    log.info(f"{what} listening", service=service, url=f"http://{host}:{port}")
    return server, task


async def ensure_topics(bootstrap: str, topics: Sequence[str], partitions: int) -> None:
    """Create the topics that do not exist yet (idempotent). A topic another process created
    meanwhile is fine; one that still does not exist afterwards is an error, raised with what
    the broker said."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if not missing:
            return
        error: Exception | None = None
        try:
            await admin.create_topics(missing)
        except Exception as exc:  # noqa: BLE001 - checked below: is every topic there?
            error = exc
        still = sorted({t.name for t in missing} - set(await admin.list_topics()))
        if still:
            raise RuntimeError(f"could not create topics {still}: {error!r}") from error
        if error is not None:
            log.info("topics created meanwhile by another process", error=repr(error))
    finally:
        await admin.close()


def load_trust(service: str, settings: Settings) -> Trust:
    """The service's trust gate from its settings; a clear error when they are missing."""
    missing = [
        name
        for name, value in (
            ("POOLFIN_TRUST_FILE", settings.trust_file),
            ("POOLFIN_SERVICE_KEYS_FILE", settings.service_keys_file),
        )
        if not value
    ]
    if missing:
        raise RuntimeError(
            f"{service} needs {' and '.join(missing)}: every external message is verified "
            "against the registry and every internal one carries its service's MAC "
            "(`poolfin up` and `poolfin keys provision DIR` write both files)"
        )
    assert settings.trust_file and settings.service_keys_file
    keys = ServiceKeys.load(settings.service_keys_file)
    if service not in keys.mac:
        raise RuntimeError(f"{settings.service_keys_file} has no MAC key for {service}")
    trust = Trust(
        service,
        TrustFile(settings.trust_file),
        keys,
        max_age=timedelta(seconds=settings.message_max_age_s),
        max_skew=timedelta(seconds=settings.message_max_skew_s),
    )
    trust.trust_file.keys()  # a malformed file fails the start, not the first batch
    return trust


async def run_service(
    spec: ServiceSpec,
    settings: Settings,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Migrate, connect, consume and relay until `stop` is set (or the task is cancelled)."""
    from shared.contracts.topics import ALL_STATIC_TOPICS

    trust = load_trust(spec.name, settings)
    await migrate(settings.database_url, spec.schema, spec.migrations)
    await ensure_topics(settings.kafka_bootstrap, ALL_STATIC_TOPICS, settings.topic_partitions)
    pool = await create_pool(settings.database_url, spec.schema, settings.db_pool_size)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        linger_ms=2,
        enable_idempotence=settings.kafka_idempotence,
        acks="all",
    )
    await producer.start()
    relay = OutboxRelay(
        pool,
        producer,
        batch=settings.outbox_batch,
        poll_s=settings.outbox_poll_ms / 1000,
        topics=KnownTopics(
            lambda names: ensure_topics(settings.kafka_bootstrap, names, settings.topic_partitions),
            known=ALL_STATIC_TOPICS,
        ),
        seal=trust.seal,
    )
    metrics = ServiceMetrics(spec.name)
    health = Health(
        spec.name,
        interval_s=settings.health_interval_s,
        stall_s=settings.consumer_stall_s,
        relay_stall_s=settings.relay_stall_s,
    )
    tracing = Tracing.configure(spec.name, settings.traces)
    consumer = BatchConsumer(
        tracing=tracing,
        metrics=metrics,
        service=spec.name,
        schema=spec.schema,
        pool=pool,
        handle=spec.handle,
        dead_letter_topic=spec.dead_letter_topic,
        on_batch=spec.on_batch,
        after_commit=relay.wake,
        new_state=spec.new_state,
        trust=trust,
    )
    broker = build_broker(spec, settings, consumer, metrics)
    relay_task = asyncio.create_task(relay.run(), name=f"{spec.name}-relay")
    background: asyncio.Task[None] | None = (
        asyncio.create_task(spec.background(pool, settings, relay.wake), name=f"{spec.name}-bg")
        if spec.background is not None
        else None
    )
    http: _ServiceHttpServer | None = None
    http_task: asyncio.Task[None] | None = None
    ops: _ServiceHttpServer | None = None
    ops_task: asyncio.Task[None] | None = None
    checks: asyncio.Task[None] | None = None
    try:
        await broker.start()
        checks = asyncio.create_task(
            watch(
                health=health,
                metrics=metrics,
                pool=pool,
                producer=producer,
                bootstrap=settings.kafka_bootstrap,
                group=f"{settings.group_prefix}.{spec.name}",
                topics=subscribed_topics(spec),
                collect=spec.collect,
                heartbeat=Path(settings.ready_file) if settings.ready_file else None,
            ),
            name=f"{spec.name}-health",
        )
        if settings.ops_port is not None:
            ops, ops_task = await _serve(
                ops_app(health, metrics), settings.ops_host, settings.ops_port, spec.name, "ops"
            )
        if spec.http is not None and settings.http_port is not None:
            http, http_task = await _serve(
                spec.http(pool, producer, settings, trust),
                settings.http_host,
                settings.http_port,
                spec.name,
                "http front",
            )
        log.info(
            "service started",
            service=spec.name,
            topics=list(spec.topics),
            bootstrap=settings.kafka_bootstrap,
        )
        if ready is not None:
            ready.set()
        if settings.ready_file:
            Path(settings.ready_file).write_text(str(os.getpid()))
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        log.info("service stopping", service=spec.name, **consumer.stats)
        for server, task in ((http, http_task), (ops, ops_task)):
            if server is not None and task is not None:
                server.should_exit = True
                with contextlib.suppress(Exception):
                    await task
        if checks is not None:
            checks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checks
        await broker.stop()
        if background is not None:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
        relay_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay_task
        try:  # what the last batches emitted, before the producer closes
            await relay.drain_once()
        except Exception:
            log.exception("last outbox drain failed; the rows stay and are sent at next start")
        await producer.stop()
        await pool.close()
        tracing.shutdown()
