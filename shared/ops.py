"""A service's operational surface (issue 12): Prometheus metrics, and health that can fail.

Every service serves, on `POOLFIN_OPS_PORT` (`poolfin up` gives each a free port and records
it in stack.json):

    GET /metrics        Prometheus text: messages and batches by topic and outcome, dead
                        letters by reason, handler and batch latency, outbox backlog and relay
                        lag, consumer lag per partition, database pool use, and (the
                        splitter) settlements and money frozen / repaid / released
    GET /health         200 when every check passes, else 503; JSON with each check's reason
    GET /health/live    the checks that mean "restart me": the consumer or the relay stalled,
                        or the checks themselves stopped running
    GET /health/ready   all of them: also PostgreSQL and the broker reachable

The checks run every `POOLFIN_HEALTH_INTERVAL_S` in the service's own event loop, and the
endpoints answer from their last result. A process that is frozen (SIGSTOP) or whose loop is
blocked answers nothing at all: whoever probes (`poolfin status`, the dashboard, compose)
treats no answer within its timeout as down, with that reason.

- **consumer stalled**: messages wait on the group's partitions and its committed offsets have
  not moved for `POOLFIN_CONSUMER_STALL_S` (the consumer stopped polling, or every batch fails).
- **relay stalled**: the oldest outbox row is older than `POOLFIN_RELAY_STALL_S`.
- **database** / **broker**: no answer within two seconds, or an error (with the error).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.db import Connection
from shared.lag import group_lag, partitions_of, probe_consumer

log = structlog.get_logger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# What a service adds to its metrics at each health check (the splitter: its pipeline).
Collect = Callable[[Connection, "ServiceMetrics"], Awaitable[None]]


class ServiceMetrics:
    """One service's Prometheus series, in a registry of its own."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry = CollectorRegistry()
        self.messages = Counter(
            "poolfin_messages_total",
            "Input records by topic and outcome (effect, duplicate, dead_letter).",
            ["service", "topic", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "poolfin_dead_letters_total",
            "Input records dead-lettered, by topic and reason.",
            ["service", "topic", "reason"],
            registry=r,
        )
        self.batches = Counter(
            "poolfin_batches_total", "Batches committed.", ["service"], registry=r
        )
        self.batch_seconds = Histogram(
            "poolfin_batch_seconds",
            "One batch, read to commit.",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.handler_seconds = Histogram(
            "poolfin_handler_seconds",
            "One message's handler, by message type.",
            ["service", "type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.last_dead_letter = Gauge(
            "poolfin_last_dead_letter_timestamp_seconds",
            "When this process last dead-lettered a record (Unix time).",
            ["service"],
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "poolfin_outbox_backlog", "Outbox rows not yet sent.", ["service"], registry=r
        )
        self.relay_lag = Gauge(
            "poolfin_relay_lag_seconds",
            "Age of the oldest outbox row not yet sent (0: none).",
            ["service"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "poolfin_consumer_lag",
            "Records of a partition the service's group has not committed yet.",
            ["service", "topic", "partition"],
            registry=r,
        )
        self.db_pool = Gauge(
            "poolfin_db_pool_connections",
            "Database pool connections, by state (in_use, idle, max).",
            ["service", "state"],
            registry=r,
        )
        self.up = Gauge(
            "poolfin_health_check_ok",
            "1 when the check passed at the last health check, else 0.",
            ["service", "check"],
            registry=r,
        )
        self.settlements = Counter(
            "poolfin_settlements_total",
            "Settlements released by this process (payments split and released).",
            ["service"],
            registry=r,
        )
        self.money = Counter(
            "poolfin_money_cny_total",
            "Money moved by this process, CNY, by movement (repaid, released, fees, held).",
            ["service", "movement"],
            registry=r,
        )
        self.pipeline = Gauge(
            "poolfin_settlement_pipeline",
            "Settlements by state (frozen: awaiting credit's instruction; instructed; released).",
            ["service", "state"],
            registry=r,
        )
        self.pipeline_cny = Gauge(
            "poolfin_settlement_pipeline_cny",
            "Money of the settlements in each state, CNY.",
            ["service", "state"],
            registry=r,
        )

    # ------------------------------------------------------------ the kernel tells

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(service, *labels)`, looked up once: the kernel calls these for every
        message, and prometheus-client's labels() is the costly part."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(self.service, *labels)
        return child

    def batch(self, seconds: float) -> None:
        self._child(self.batches).inc()
        self._child(self.batch_seconds).observe(seconds)

    def handled(self, message_type: str, seconds: float) -> None:
        self._child(self.handler_seconds, message_type).observe(seconds)

    def outcome(self, topic: str, outcome: str, reason: str | None = None) -> None:
        self._child(self.messages, topic, outcome).inc()
        if reason is not None:
            self._child(self.dead_letters, topic, reason).inc()
            self._child(self.last_dead_letter).set(time.time())

    def emitted(self, messages: Iterable[BaseModel]) -> None:
        """What the batch published, once committed: settlements and their money."""
        for message in messages:
            if getattr(message, "type", None) != "SettlementReleased":
                continue
            self.settlements.labels(self.service).inc()
            fields = message.__dict__
            for movement, amount in (
                ("repaid", fields["repaid_principal"] + fields["repaid_interest"]),
                ("released", fields["released"]),
                ("fees", fields["fees"]),
                ("held", fields.get("held", Decimal(0))),
            ):
                if amount:
                    self.money.labels(self.service, movement).inc(float(amount))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Health:
    """The last result of each check, and whether the service is live and ready."""

    LIVE = ("consumer", "relay", "checks")

    def __init__(self, service: str, *, interval_s: float, stall_s: float, relay_stall_s: float):
        self.service = service
        self.interval_s = interval_s
        self.stall_s = stall_s
        self.relay_stall_s = relay_stall_s
        self.checks: dict[str, str | None] = {"starting": "the first checks have not run yet"}
        self.checked_at: float | None = None  # monotonic
        self.progress_at = time.monotonic()  # when the group last had no lag or moved on
        self._committed: int | None = None
        self.lag: list[dict[str, Any]] = []

    def consumer_check(self, committed: int, lag: int, now: float) -> str | None:
        """Stalled when records wait and the committed offsets have not moved for stall_s."""
        if lag == 0 or committed != self._committed:
            self.progress_at = now
        self._committed = committed
        waited = now - self.progress_at
        if lag > 0 and waited > self.stall_s:
            return (
                f"consumer stalled: {lag} records wait on its partitions and its committed "
                f"offsets have not moved for {waited:.0f} s (POOLFIN_CONSUMER_STALL_S="
                f"{self.stall_s:g})"
            )
        return None

    def relay_check(self, oldest_s: float) -> str | None:
        if oldest_s > self.relay_stall_s:
            return (
                f"relay stalled: the oldest unsent outbox row is {oldest_s:.0f} s old "
                f"(POOLFIN_RELAY_STALL_S={self.relay_stall_s:g})"
            )
        return None

    def verdict(self, now: float | None = None) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        checks = dict(self.checks)
        if self.checked_at is not None and now - self.checked_at > 3 * self.interval_s + 5:
            checks["checks"] = f"health checks last ran {now - self.checked_at:.0f} s ago"
        failing = {name: why for name, why in checks.items() if why}
        live = not any(name in self.LIVE for name in failing)
        ready = not failing
        return {
            "service": self.service,
            "status": "up" if ready else "down",
            "live": live,
            "ready": ready,
            "reasons": [f"{name}: {why}" for name, why in failing.items()],
            "checks": {name: why or "ok" for name, why in checks.items()},
            "lag": self.lag,
        }


async def database_reachable(pool: asyncpg.Pool, timeout: float) -> str | None:
    """None when PostgreSQL answers in time, else why not."""
    try:
        async with asyncio.timeout(timeout):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
    except TimeoutError:
        return f"no answer from PostgreSQL within {timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - whatever the driver raises: "not reachable"
        return f"PostgreSQL: {type(exc).__name__}: {exc}"
    return None


async def broker_reachable(producer: AIOKafkaProducer, timeout: float) -> str | None:
    """None when the broker answers a metadata request in time, else why not."""
    try:
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout)
    except TimeoutError:
        return f"no answer from Kafka within {timeout:g} s"
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable", told as such
        return f"Kafka: {type(exc).__name__}: {exc}"
    return None


async def watch(
    *,
    health: Health,
    metrics: ServiceMetrics,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    collect: Collect | None = None,
    heartbeat: Path | None = None,
) -> None:
    """Run the checks every interval, for ever; touch `heartbeat` after each passing round
    (a file whose age tells a supervisor without HTTP that the service is alive)."""
    admin: AIOKafkaAdminClient | None = None
    probe = None
    timeout = 2.0
    while True:
        started = time.monotonic()
        checks: dict[str, str | None] = {}
        checks["database"] = await database_reachable(pool, timeout)
        checks["broker"] = await broker_reachable(producer, timeout)
        try:
            if admin is None or probe is None:
                admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
                await admin.start()
                probe = probe_consumer(bootstrap)
                await probe.start()
            async with asyncio.timeout(10):
                lags = await group_lag(admin, probe, group, await partitions_of(admin, topics))
            for p in lags:
                metrics.consumer_lag.labels(metrics.service, p.topic, str(p.partition)).set(p.lag)
            health.lag = [p.as_json() for p in lags]
            checks["consumer"] = health.consumer_check(
                sum(p.committed for p in lags), sum(p.lag for p in lags), time.monotonic()
            )
        except Exception as exc:  # noqa: BLE001 - told as the check's reason, retried next round
            checks["broker"] = checks["broker"] or f"lag not readable: {type(exc).__name__}: {exc}"
            if probe is not None:
                with contextlib.suppress(Exception):
                    await probe.stop()
            if admin is not None:
                with contextlib.suppress(Exception):
                    await admin.close()
            admin, probe = None, None
        if checks["database"] is None:
            try:
                async with asyncio.timeout(timeout), pool.acquire() as conn:
                    row = await conn.fetchrow(
                        "SELECT count(*) AS n, coalesce(extract(epoch FROM now() -"
                        " min(created_at)), 0)::float8 AS oldest FROM outbox"
                    )
                    if collect is not None:
                        await collect(conn, metrics)
                assert row is not None
                metrics.outbox_backlog.labels(metrics.service).set(row["n"])
                metrics.relay_lag.labels(metrics.service).set(row["oldest"])
                checks["relay"] = health.relay_check(row["oldest"])
            except Exception as exc:  # noqa: BLE001 - the database went away meanwhile
                checks["database"] = f"PostgreSQL: {type(exc).__name__}: {exc}"
        size, idle = pool.get_size(), pool.get_idle_size()
        metrics.db_pool.labels(metrics.service, "in_use").set(size - idle)
        metrics.db_pool.labels(metrics.service, "idle").set(idle)
        metrics.db_pool.labels(metrics.service, "max").set(pool.get_max_size())
        for name, why in checks.items():
            metrics.up.labels(metrics.service, name).set(0 if why else 1)
        health.checks, health.checked_at = checks, time.monotonic()
        if heartbeat is not None and not any(checks.values()):
            with contextlib.suppress(OSError):  # written once the service is ready; not before
                os.utime(heartbeat)
        failing = {name: why for name, why in checks.items() if why}
        if failing:
            log.warning("health check failing", service=health.service, **failing)
        await asyncio.sleep(max(0.0, health.interval_s - (time.monotonic() - started)))


def ops_app(health: Health, metrics: ServiceMetrics) -> Starlette:
    def _verdict(part: str) -> Response:
        body = health.verdict()
        ok = body["ready"] if part == "ready" else body["live"] if part == "live" else body["ready"]
        return JSONResponse(body, status_code=200 if ok else 503)

    async def all_checks(_: Request) -> Response:
        return _verdict("all")

    async def live(_: Request) -> Response:
        return _verdict("live")

    async def ready(_: Request) -> Response:
        return _verdict("ready")

    async def prometheus(_: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/metrics", prometheus, methods=["GET"]),
            Route("/health", all_checks, methods=["GET"]),
            Route("/health/live", live, methods=["GET"]),
            Route("/health/ready", ready, methods=["GET"]),
        ]
    )


async def settlement_pipeline(conn: Connection, metrics: ServiceMetrics) -> None:
    """The splitter's pipeline: payments frozen awaiting credit's instruction, instructed,
    released (count and money), for its /metrics and the dashboard."""
    rows = await conn.fetch(
        "SELECT state, count(*) AS n, coalesce(sum(amount), 0) AS cny FROM settlements"
        " GROUP BY state"
    )
    found = {r["state"]: r for r in rows}
    for state in ("frozen", "instructed", "released", "voided"):
        row = found.get(state)
        metrics.pipeline.labels(metrics.service, state).set(row["n"] if row else 0)
        metrics.pipeline_cny.labels(metrics.service, state).set(float(row["cny"]) if row else 0)
