"""The operators' dashboard (issue 12): one web page, no build step, served by `poolfin up`.

Per service and partition: consumer lag and its trend, throughput, liveness (from each
instance's /health, with the reason), outbox backlog, dead letters by reason with the newest
ones and their raw payload; and the settlement pipeline (frozen / instructed / released) with
its money. The page polls `GET /api/overview` every two seconds; a sampler keeps the last
minutes of lag and committed offsets so trends and rates are there from the first load.

Everything is read from outside the services (the broker's committed offsets, the database,
the health endpoints with a short timeout), so a frozen or dead service shows as such
instead of freezing its row.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from aiokafka.admin import AIOKafkaAdminClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from poolfin.registry import SERVICES
from shared.lag import group_lag, partitions_of, probe_consumer
from shared.runtime import subscribed_topics
from shared.settings import Settings

log = structlog.get_logger(__name__)

HISTORY = 150  # samples kept: five minutes at one every two seconds
PROBE_TIMEOUT_S = 1.5


@dataclass
class Sample:
    at: float
    lag: int
    committed: int


@dataclass
class Sampler:
    """Reads the whole platform's state every `every_s` and keeps the history."""

    settings: Settings
    instances: Callable[[], Mapping[str, str]]  # instance name → its ops URL (no trailing /)
    every_s: float = 2.0
    history: dict[str, deque[Sample]] = field(default_factory=dict)
    latest: dict[str, Any] = field(default_factory=dict)
    _admin: AIOKafkaAdminClient | None = None
    _probe: Any = None

    async def run(self) -> None:
        while True:
            try:
                self.latest = await self.sample()
            except Exception as exc:  # noqa: BLE001 - shown on the page; tried again
                log.warning("dashboard sample failed", error=repr(exc))
                self.latest = {**self.latest, "error": f"{type(exc).__name__}: {exc}"}
                await self._close()
            await asyncio.sleep(self.every_s)

    async def _close(self) -> None:
        if self._probe is not None:
            with contextlib.suppress(Exception):
                await self._probe.stop()
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
        self._admin = self._probe = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, Any]:
        if self._admin is None or self._probe is None:
            self._admin = AIOKafkaAdminClient(
                bootstrap_servers=self.settings.kafka_bootstrap, request_timeout_ms=5000
            )
            await self._admin.start()
            self._probe = probe_consumer(self.settings.kafka_bootstrap)
            await self._probe.start()
        return self._admin, self._probe

    async def sample(self) -> dict[str, Any]:
        specs = [make(self.settings) for make in SERVICES.values()]
        admin, probe = await self._clients()
        partitions = {
            spec.name: await partitions_of(admin, subscribed_topics(spec)) for spec in specs
        }
        health = await self._health()
        now = time.time()
        services = []
        conn = await asyncpg.connect(self.settings.database_url, timeout=5)
        try:
            for spec in specs:
                group = f"{self.settings.group_prefix}.{spec.name}"
                async with asyncio.timeout(10):
                    lags = await group_lag(admin, probe, group, partitions[spec.name])
                total = sum(p.lag for p in lags)
                committed = sum(p.committed for p in lags)
                history = self.history.setdefault(spec.name, deque(maxlen=HISTORY))
                history.append(Sample(now, total, committed))
                services.append(
                    {
                        "service": spec.name,
                        "group": group,
                        "instances": [
                            h for name, h in health.items() if name.partition("#")[0] == spec.name
                        ],
                        "lag": total,
                        "lag_trend": [s.lag for s in history],
                        "throughput": _rate(history),
                        "partitions": [p.as_json() for p in lags if p.end > 0 or p.committed > 0],
                        **await _backlog(conn, spec.schema),
                    }
                )
            splitter = next(s for s in specs if s.name == "settlement-splitter")
            pipeline = await _pipeline(conn, splitter.schema)
        finally:
            await conn.close()
        for service in services:
            instances = service["instances"]
            service["status"] = (
                "up" if instances and all(i["status"] == "up" for i in instances) else "down"
            )
            service["reasons"] = [
                f"{i['instance']}: {why}" for i in instances for why in i["reasons"]
            ] or ([] if instances else ["no instance of it is known to be running"])
        return {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "services": services,
            "pipeline": pipeline,
        }

    async def _health(self) -> dict[str, dict[str, Any]]:
        instances = dict(self.instances())
        answers = await asyncio.gather(
            *(asyncio.to_thread(probe_health, url) for url in instances.values())
        )
        return {
            name: {"instance": name, "health_url": f"{url}/health", **answer}
            for (name, url), answer in zip(instances.items(), answers, strict=True)
        }


def probe_health(ops_url: str, timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """One instance's /health: up, or down with the reason (no answer in time is a reason)."""
    try:
        with urllib.request.urlopen(f"{ops_url}/health", timeout=timeout) as reply:
            body = json.loads(reply.read())
            return {"status": "up", "reasons": [], "checks": body.get("checks", {})}
    except urllib.error.HTTPError as exc:  # 503: its own checks say why
        try:
            body = json.loads(exc.read())
        except ValueError:
            body = {}
        return {
            "status": "down",
            "reasons": body.get("reasons") or [f"HTTP {exc.code}"],
            "checks": body.get("checks", {}),
        }
    except TimeoutError:
        return {
            "status": "down",
            "reasons": [f"no answer within {timeout:g} s (frozen or overloaded)"],
            "checks": {},
        }
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        if isinstance(why, TimeoutError):
            return {
                "status": "down",
                "reasons": [f"no answer within {timeout:g} s (frozen or overloaded)"],
                "checks": {},
            }
        return {"status": "down", "reasons": [f"not reachable: {why}"], "checks": {}}


def _rate(history: deque[Sample]) -> float:
    """Records committed per second over the last ten seconds or so."""
    if len(history) < 2:
        return 0.0
    last = history[-1]
    first = next((s for s in history if last.at - s.at <= 10), history[0])
    if last.at <= first.at:
        first = history[-2]
    return round(max(0, last.committed - first.committed) / max(last.at - first.at, 1e-6), 1)


async def _backlog(conn: asyncpg.Connection, schema: str) -> dict[str, Any]:
    counts = await conn.fetch(
        f"SELECT reason, count(*) AS n, max(rejected_at) AS last FROM {schema}.dead_letters"
        " GROUP BY reason ORDER BY count(*) DESC, reason"
    )
    newest = await conn.fetch(
        f"SELECT id, reason, detail, source_topic, source_partition, source_offset, pool_id,"
        f" rejected_at, raw_payload FROM {schema}.dead_letters ORDER BY id DESC LIMIT 5"
    )
    outbox = await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox")
    return {
        "outbox": outbox,
        "dead_letters": sum(r["n"] for r in counts),
        "dead_letters_by_reason": {r["reason"]: r["n"] for r in counts},
        "last_dead_letter_at": max((r["last"] for r in counts), default=None)
        and (max(r["last"] for r in counts).isoformat(timespec="seconds")),
        "newest_dead_letters": [
            {
                "id": r["id"],
                "reason": r["reason"],
                "detail": r["detail"],
                "source": f"{r['source_topic']}:{r['source_partition']}@{r['source_offset']}",
                "pool_id": r["pool_id"],
                "at": r["rejected_at"].isoformat(timespec="seconds"),
                "raw": _text(bytes(r["raw_payload"])),
            }
            for r in newest
        ],
    }


def _text(raw: bytes, limit: int = 2000) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = "base64:" + base64.b64encode(raw).decode()
    return text if len(text) <= limit else text[:limit] + f"… ({len(raw)} bytes)"


async def _pipeline(conn: asyncpg.Connection, schema: str) -> dict[str, dict[str, str | int]]:
    rows = await conn.fetch(
        f"SELECT state, count(*) AS n, coalesce(sum(amount), 0) AS cny"
        f" FROM {schema}.settlements GROUP BY state"
    )
    found = {r["state"]: r for r in rows}
    return {
        state: {
            "count": found[state]["n"] if state in found else 0,
            "cny": f"{found[state]['cny']:.2f}" if state in found else "0.00",
        }
        for state in ("frozen", "instructed", "released", "voided")
    }


def dashboard_app(sampler: Sampler) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(sampler.run(), name="dashboard-sampler")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await sampler._close()

    async def page(_: Request) -> Response:
        return HTMLResponse(PAGE)

    async def overview(_: Request) -> Response:
        return JSONResponse(sampler.latest or {"services": [], "pipeline": {}, "at": None})

    return Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/api/overview", overview, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>poolfin · operators</title>
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2430;background:#f6f7f9}
 h1{font-size:1.3rem;margin:0 0 .2rem} h2{font-size:1.05rem;margin:1.4rem 0 .5rem}
 table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002}
 th,td{padding:.35rem .7rem;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top}
 th{background:#eef1f5;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
 .up{color:#fff;background:#2f9e44;border-radius:3px;padding:.1rem .45rem}
 .down{color:#fff;background:#e03131;border-radius:3px;padding:.1rem .45rem}
 .why{color:#c92a2a;font-size:12px} pre{margin:0;max-width:46rem;white-space:pre-wrap;
 word-break:break-all;font-size:12px;background:#f1f3f5;padding:.3rem}
 .muted{color:#68717d} svg{vertical-align:middle}
</style></head><body>
<h1>poolfin · operators</h1>
<div class="muted">as of <span id="at">…</span> · refreshed every 2 s</div>
<h2>Services</h2>
<table id="services"><thead><tr><th>service</th><th>liveness</th><th>lag</th><th>trend</th>
<th>msgs/s</th><th>outbox</th><th>dead letters</th></tr></thead><tbody></tbody></table>
<h2>Lag by partition</h2>
<table id="partitions"><thead><tr><th>service</th><th>topic</th><th>partition</th>
<th>committed</th><th>end</th><th>lag</th></tr></thead><tbody></tbody></table>
<h2>Settlement pipeline</h2>
<table id="pipeline"><thead><tr><th>state</th><th>payments</th><th>CNY</th></tr></thead>
<tbody></tbody></table>
<h2>Dead letters</h2>
<table id="reasons"><thead><tr><th>service</th><th>reason</th><th>count</th></tr></thead>
<tbody></tbody></table>
<h2>Newest dead letters</h2>
<table id="newest"><thead><tr><th>service</th><th>when</th><th>reason</th><th>source</th>
<th>raw payload</th></tr></thead><tbody></tbody></table>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",
  '"':"&quot;"}[c]));
function spark(values) {
  if (!values.length) return "";
  const w = 120, h = 24, max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(i * w / Math.max(1, values.length - 1)).toFixed(1)},` +
    `${(h - v * h / max).toFixed(1)}`).join(" ");
  return `<svg width="${w}" height="${h}"><polyline fill="none" stroke="#1971c2" ` +
    `stroke-width="1.5" points="${pts}"/></svg>`;
}
function rows(id, html) { document.querySelector(`#${id} tbody`).innerHTML = html.join(""); }
function render(o) {
  document.getElementById("at").textContent = o.at || "(first sample pending)";
  const services = o.services || [];
  rows("services", services.map(s => {
    const why = s.reasons.map(esc).join("<br>");
    return `<tr data-service="${esc(s.service)}" data-status="${esc(s.status)}" ` +
      `data-lag="${s.lag}" data-dead-letters="${s.dead_letters}">` +
      `<td>${esc(s.service)}</td><td><span class="${esc(s.status)}">${esc(s.status)}</span>` +
      `${why ? `<div class="why">${why}</div>` : ""}</td>` +
      `<td class="num">${s.lag}</td><td>${spark(s.lag_trend)}</td>` +
      `<td class="num">${s.throughput}</td><td class="num">${s.outbox}</td>` +
      `<td class="num">${s.dead_letters}</td></tr>`;
  }));
  rows("partitions", services.flatMap(s => s.partitions.map(p =>
    `<tr data-service="${esc(s.service)}" data-topic="${esc(p.topic)}" ` +
    `data-partition="${p.partition}" data-lag="${p.lag}"><td>${esc(s.service)}</td>` +
    `<td>${esc(p.topic)}</td><td class="num">${p.partition}</td>` +
    `<td class="num">${p.committed}</td><td class="num">${p.end}</td>` +
    `<td class="num">${p.lag}</td></tr>`)));
  rows("pipeline", Object.entries(o.pipeline || {}).map(([state, v]) =>
    `<tr data-state="${esc(state)}" data-count="${v.count}"><td>${esc(state)}</td>` +
    `<td class="num">${v.count}</td><td class="num">${esc(v.cny)}</td></tr>`));
  rows("reasons", services.flatMap(s => Object.entries(s.dead_letters_by_reason).map(
    ([reason, n]) => `<tr data-service="${esc(s.service)}" data-reason="${esc(reason)}" ` +
    `data-count="${n}"><td>${esc(s.service)}</td><td>${esc(reason)}</td>` +
    `<td class="num">${n}</td></tr>`)));
  rows("newest", services.flatMap(s => s.newest_dead_letters.map(d =>
    `<tr data-service="${esc(s.service)}" data-reason="${esc(d.reason)}">` +
    `<td>${esc(s.service)}</td><td>${esc(d.at)}</td><td>${esc(d.reason)}<div class="why">` +
    `${esc(d.detail)}</div></td><td>${esc(d.source)}</td><td><pre>${esc(d.raw)}</pre></td>` +
    `</tr>`)));
}
async function refresh() {
  try { render(await (await fetch("/api/overview", {cache: "no-store"})).json()); }
  catch (e) { document.getElementById("at").textContent = "dashboard unreachable: " + e; }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>
"""


def serve_in_thread(app: Starlette, host: str, port: int) -> Callable[[], None]:
    """Serve the dashboard from a thread of the calling process (uvicorn leaves signals to
    the main thread then); returns `stop`."""
    import threading

    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.02)
    if not server.started:
        raise RuntimeError(f"the dashboard could not listen on {host}:{port}")

    def stop() -> None:
        server.should_exit = True
        thread.join(5)

    return stop
