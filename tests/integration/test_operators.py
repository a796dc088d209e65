"""Issue 12, operators, on the real broker and PostgreSQL with the four services as processes:
each service's /metrics scraped and holding its series; the dashboard loaded in headless
Chromium (Debian's package) while traffic flows, showing lag rise behind a frozen service,
that service and a killed one down with the reason, and the dead letters with their raw
payload; a frozen service's health red in `poolfin status`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher
from poolfin.dashboard import Sampler, dashboard_app, probe_health, serve_in_thread
from poolfin.stack import Stack, free_port, state_file
from shared.contracts import topics
from shared.settings import Settings
from tests.integration.scenario import Pool, payment, today
from tests.integration.test_programmes import open_pool

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def scrape(url: str) -> dict[str, list[Any]]:
    """A /metrics page: metric family name → its samples."""
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")


async def test_each_services_metrics_hold_its_series(stack: Stack, publisher: Publisher) -> None:
    async with Observer(stack.bootstrap, [topics.CREDIT_POSITIONS, topics.SETTLEMENT_RESULTS]) as o:
        pool = await open_pool(publisher, o, "CE-OPS", "500000.00")
        paid = payment(pool, "100000.00", list(pool.slips))
        await publisher.send(topics.ERP_PAYMENTS, paid)
        await o.wait_for(
            topics.SETTLEMENT_RESULTS, type="SettlementReleased", payment_id=paid["payment_id"]
        )
    await publisher.send(topics.ERP_PAYMENTS, b"not json at all", key=pool.pool_id)

    everywhere = [
        "poolfin_messages",  # by topic and outcome
        "poolfin_batches",
        "poolfin_batch_seconds",
        "poolfin_handler_seconds",
        "poolfin_outbox_backlog",
        "poolfin_relay_lag_seconds",
        "poolfin_consumer_lag",
        "poolfin_db_pool_connections",
        "poolfin_health_check_ok",
        "faststream_received_messages",  # FastStream's own Prometheus middleware
    ]
    for name in ("intake", "credit", "funding-gateway", "settlement-splitter"):
        url = f"{stack.ops_url(name)}/metrics"

        def complete(url: str = url) -> dict[str, list[Any]] | None:
            families = scrape(url)
            return families if all(n in families for n in everywhere) else None

        families = await asyncio.to_thread(until, complete, f"{name}'s /metrics, every series")
        lag = families["poolfin_consumer_lag"]
        assert {s.labels["partition"] for s in lag} >= {"0", "1", "2"}, lag
        pool_use = {s.labels["state"]: s.value for s in families["poolfin_db_pool_connections"]}
        assert pool_use["max"] > 0 and set(pool_use) == {"in_use", "idle", "max"}

    intake = await asyncio.to_thread(
        until,
        lambda: [
            s
            for s in scrape(f"{stack.ops_url('intake')}/metrics").get("poolfin_dead_letters", [])
            if s.name == "poolfin_dead_letters_total"
            and s.labels == {"service": "intake", "topic": "erp.payments.v1", "reason": "not_json"}
        ],
        "intake's dead letter counted by reason",
    )
    assert intake[0].value >= 1
    splitter = scrape(f"{stack.ops_url('settlement-splitter')}/metrics")
    settled = [s for s in splitter["poolfin_settlements"] if s.name.endswith("_total")]
    assert settled[0].value >= 1
    moved = {
        s.labels["movement"]: s.value
        for s in splitter["poolfin_money_cny"]
        if s.name.endswith("_total")
    }
    assert moved["released"] > 0

    def released() -> float:  # the pipeline's gauges are read at each health check (2 s)
        found = scrape(f"{stack.ops_url('settlement-splitter')}/metrics")
        return float(
            next(
                s.value
                for s in found["poolfin_settlement_pipeline"]
                if s.labels["state"] == "released"
            )
        )

    assert await asyncio.to_thread(until, released, "settlements released, as a gauge") >= 1


def chromium_dom(url: str, profile: Path) -> str:
    """The page as Chromium rendered it, its script run (Debian's chromium, headless)."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=3000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def service_rows(dom: str) -> dict[str, dict[str, str]]:
    """The Services table as rendered: service → status, lag, dead letters, and the reason."""
    rows = {}
    for match in re.finditer(
        r'<tr data-service="([^"]+)" data-status="(\w+)" data-lag="(\d+)" '
        r'data-dead-letters="(\d+)">(.*?)</tr>',
        dom,
        re.S,
    ):
        service, status, lag, dead, cells = match.groups()
        why = re.search(r'<div class="why">(.*?)</div>', cells, re.S)
        rows[service] = {
            "status": status,
            "lag": lag,
            "dead_letters": dead,
            "why": why.group(1) if why else "",
        }
    return rows


@pytest.fixture
def dashboard(stack: Stack) -> Iterator[str]:
    port = free_port()
    sampler = Sampler(
        Settings(kafka_bootstrap=stack.bootstrap, database_url=stack.database_url),
        lambda: {name: stack.ops_url(name) for name in list(stack.ops_ports)},
        every_s=1.0,
    )
    stop = serve_in_thread(dashboard_app(sampler), "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop()


def _chromium_or_skip() -> None:
    if CHROMIUM is None:
        if os.environ.get("CI") and os.geteuid() == 0:
            pytest.fail("`make test` installs Debian's chromium as root: it is missing")
        pytest.skip("Debian's chromium is not installed (`apt-get install chromium`, as root)")


async def test_the_dashboard_in_chromium_shows_lag_a_frozen_and_a_dead_service_and_dead_letters(
    stack: Stack, publisher: Publisher, dashboard: str, tmp_path: Path
) -> None:
    _chromium_or_skip()
    profile = tmp_path / "chromium"

    def rendered() -> dict[str, dict[str, str]]:
        return service_rows(chromium_dom(dashboard, profile))

    first = await asyncio.to_thread(
        until,
        lambda: len(r := rendered()) == 4 and all(row["status"] == "up" for row in r.values()),
        "the page's four services, up",
    )
    assert first

    # Credit frozen (SIGSTOP): its health answers nothing, and the slips intake keeps turning
    # into pool events wait in credit's partitions.
    run = uuid.uuid4().hex[:8]
    pool = Pool(f"CE-DASH/S-{run}", f"S-{run}")
    credit = stack.processes["credit"]
    credit.send_signal(signal.SIGSTOP)
    try:
        onboarding = erp.onboarding(pool.pool_id, "CE-DASH", pool.supplier_id, "Dashboard S")
        async with Observer(stack.bootstrap, [topics.POOL_EVENTS]) as observer:
            await publisher.send(*onboarding)  # slips come on another topic: the pool first
            await observer.wait_for(topics.POOL_EVENTS, correlation_id=onboarding[1]["event_id"])
        for n in range(5):
            await publisher.send(*erp.slip(pool.pool_id, f"R-{run}-{n}", "1000.00", today()))
        await publisher.send(topics.ERP_PAYMENTS, b"\xffnot a payment", key=pool.pool_id)
        seen: dict[str, dict[str, str]] = {}

        def frozen_shown() -> dict[str, dict[str, str]] | None:
            seen.update(rendered())
            credit, intake = seen["credit"], seen["intake"]
            if (
                credit["status"] == "down"
                and int(credit["lag"]) >= 6
                and int(intake["dead_letters"]) >= 1
            ):
                return seen
            return None

        try:
            frozen = await asyncio.to_thread(until, frozen_shown, "credit down, lag risen")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the page showed {seen}") from None
        assert "no answer within" in frozen["credit"]["why"], frozen["credit"]
        assert frozen["intake"]["status"] == "up"

        # The same in `poolfin status`, from the stack.json `poolfin up` writes.
        data = tmp_path / "data"
        data.mkdir()
        stack.dashboard_url = dashboard
        state_file(str(data)).write_text(json.dumps(stack.describe()))
        shown = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "poolfin.cli", "status", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env={  # nothing says where the stack is but its stack.json
                **{k: v for k, v in os.environ.items() if not k.startswith("POOLFIN_")},
                "POOLFIN_DATA_DIR": str(data),
            },
        )
        assert shown.returncode == 1, shown.stderr[-2000:]  # a service is down
        rows = {row["service"]: row for row in json.loads(shown.stdout)}
        assert rows["credit"]["live"] == "down" and rows["credit"]["lag"] >= 6
        assert any("no answer within" in why for why in rows["credit"]["reasons"])
        assert rows["intake"]["live"] == "up"
        assert probe_health(stack.ops_url("credit"))["status"] == "down"
    finally:
        credit.send_signal(signal.SIGCONT)
    caught_up = await asyncio.to_thread(
        until,
        lambda: (r := rendered())["credit"]["status"] == "up" and r["credit"]["lag"] == "0" and r,
        "credit up again, its lag back to 0",
    )
    assert caught_up["credit"]["why"] == ""

    # A killed service (kill -9) is down, "not reachable", until it is started again.
    stack.kill("funding-gateway")
    try:
        dead = await asyncio.to_thread(
            until,
            lambda: (r := rendered())["funding-gateway"]["status"] == "down" and r,
            "the killed gateway shown down",
        )
        assert "not reachable" in dead["funding-gateway"]["why"]
    finally:
        await asyncio.to_thread(stack.start_service, "funding-gateway")
        await asyncio.to_thread(stack.wait_ready, ("funding-gateway",))

    dom = await asyncio.to_thread(chromium_dom, dashboard, profile)
    reasons = re.findall(r'<tr data-service="intake" data-reason="([^"]+)" data-count', dom)
    assert reasons, "intake's dead letters by reason"
    assert "base64:/25vdCBhIHBheW1lbnQ=" in dom  # the poison's raw payload, as kept
