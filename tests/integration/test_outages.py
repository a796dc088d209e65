"""The broker or the database dies under a running poolfin (issue 6, defects 4 and 5).

The embedded broker keeps its topics in memory: a new one starts every offset at 0 again, and
a new bad record at an old offset must still be dead-lettered and archived. `poolfin up`
supervises the broker and PostgreSQL (here through `Stack.supervise`, which `up` calls), and
credit's /health says what is missing instead of answering 200.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from poolfin.clients import Publisher, erp_event
from poolfin.stack import Stack
from shared.contracts import topics
from tests.environment import user_env
from tests.integration.scenario import as_supplier

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("outages"), env={"POOLFIN_HTTP_PUBLISH_TIMEOUT_MS": "2000"}
    )
    with stack:
        yield stack


def _http(stack: Stack, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    return as_supplier(stack, method, path, body)


def _until(check: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(0.3)


def _publish(stack: Stack, records: list[tuple[str, bytes | dict[str, Any]]]) -> None:
    async def send() -> None:
        async with Publisher(stack.bootstrap, stack.keyring) as publisher:
            for topic, value in records:
                # a message is keyed by its own pool_id; the poison by a pool of this core
                key = "CE-OUT/S-1" if isinstance(value, bytes) else None
                await publisher.send(topic, value, key=key)
            await publisher.flush()

    asyncio.run(send())


def _count(stack: Stack, sql: str, *args: object) -> int:
    async def query() -> int:
        conn = await asyncpg.connect(stack.database_url)
        try:
            return int(await conn.fetchval(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(query())


def _onboarding(run: str) -> dict[str, Any]:
    return erp_event(
        "SupplierOnboarded",
        f"CE-OUT/S-{run}",
        core_enterprise_id="CE-OUT",
        supplier_id=f"S-{run}",
        supplier_name="Outage Supplier",
    )


def test_a_broker_reset_loses_no_dead_letter_and_no_archived_record(own_stack: Stack) -> None:
    run = uuid.uuid4().hex[:10]
    dead = "SELECT count(*) FROM intake.dead_letters WHERE raw_payload LIKE $1"
    archived = "SELECT count(*) FROM intake.raw_events WHERE value LIKE $1"
    pattern = f"%{run}%".encode()
    before = [(topics.ERP_PAYMENTS, f"not json {run} before {n}".encode()) for n in range(3)]
    first_pool = _onboarding(run + "a")
    _publish(own_stack, [*before, (topics.ERP_SUPPLIERS, first_pool)])
    _until(lambda: _count(own_stack, dead, pattern) == 3, what="3 dead letters")

    # The broker dies: /health says so, an application gets 503 within the publish timeout.
    assert own_stack.kafka is not None
    os.kill(own_stack.kafka.pid or 0, signal.SIGKILL)
    health = _until(
        lambda: (answer := _http(own_stack, "GET", "/health"))[0] == 503 and answer,
        what="/health to answer 503",
    )
    assert health[1]["kafka"] != "ok" and health[1]["database"] == "ok"
    started = time.monotonic()
    status, answer = _http(
        own_stack,
        "POST",
        f"/pools/{first_pool['pool_id']}/applications",
        json.dumps({"amount": "10.00"}).encode(),
    )
    assert (status, answer["error"]) == (503, "unavailable"), answer
    assert time.monotonic() - started < 15

    # `poolfin up` starts a new broker, says loudly what was lost, restarts the services.
    said = own_stack.supervise()
    assert any("BROKER DIED" in line and "LOST" in line for line in said), said
    own_stack.wait_ready(tuple(own_stack.processes))
    _until(lambda: _http(own_stack, "GET", "/health")[0] == 200, what="/health 200 again")

    # Offsets start at 0 again: new bad records land on the old coordinates.
    after = [(topics.ERP_PAYMENTS, f"not json {run} after {n}".encode()) for n in range(3)]
    _publish(own_stack, [*after, (topics.ERP_SUPPLIERS, _onboarding(run + "b"))])
    _until(lambda: _count(own_stack, dead, pattern) == 6, what="6 dead letters")
    _until(lambda: _count(own_stack, archived, pattern) == 8, what="8 archived records")
    log = (own_stack.work_dir / "intake.log").read_text()
    assert "the broker or topic was reset" in log


def test_a_killed_database_is_restarted_and_health_tells_meanwhile(
    own_stack: Stack, tmp_path: Path
) -> None:
    assert own_stack.postgres is not None and own_stack.postgres._server is not None
    os.kill(own_stack.postgres._server.get_pid(), signal.SIGKILL)
    health = _until(
        lambda: (answer := _http(own_stack, "GET", "/health"))[0] == 503 and answer,
        what="/health to answer 503",
    )
    assert health[1]["database"] != "ok"
    status = subprocess.run(
        [sys.executable, "-m", "poolfin.cli", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env=user_env(
            tmp_path,
            POOLFIN_KAFKA_BOOTSTRAP=own_stack.bootstrap,
            POOLFIN_DATABASE_URL=own_stack.database_url,
        ),
    )
    assert status.returncode == 1
    assert "cannot reach PostgreSQL" in status.stderr, status.stderr

    said = own_stack.supervise()
    assert any("PostgreSQL died" in line for line in said), said
    _until(lambda: _http(own_stack, "GET", "/health")[0] == 200, what="/health 200 again")
    # The services reconnect by themselves: a new pool opens end to end.
    run = uuid.uuid4().hex[:10]
    onboarding = _onboarding(run)
    _publish(own_stack, [(topics.ERP_SUPPLIERS, onboarding)])
    _until(
        lambda: (
            _count(
                own_stack,
                "SELECT count(*) FROM credit.pools WHERE pool_id = $1",
                onboarding["pool_id"],
            )
            == 1
        ),
        timeout=90,
        what="the pool to open in credit",
    )
