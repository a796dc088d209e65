"""Shared fixtures: a whole poolfin for the integration and e2e tests.

By default the embedded broker (Tansu) and embedded PostgreSQL; with POOLFIN_TEST_DOCKER=1,
testcontainers' Apache Kafka and PostgreSQL. The four services always run as processes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from poolfin.clients import Observer, Publisher
from poolfin.stack import Stack
from shared.contracts import topics

TEST_FUNDER = "bank-test"
# Servicing tests close a pool's business days ahead of the calendar (maturity, penalty) —
# a simulation the production default (0) does not allow.
TEST_ENV = {
    "POOLFIN_DAY_CLOSE_LEAD_DAYS": "400",
    # Investor platforms' raises close in seconds here (production: days), so that a test can
    # watch one expire.
    "POOLFIN_RAISE_WINDOW_S": "15",
    "POOLFIN_RAISE_CHECK_EVERY_S": "1",
    # A payment ahead of its slip waits seconds for it here (production: 30 s), so that a test
    # can watch one give up (tests/integration/test_unseen_slip.py).
    "POOLFIN_UNSEEN_SLIP_WAIT_S": "5",
    "POOLFIN_UNSEEN_SLIP_CHECK_EVERY_S": "0.5",
}
WATCHED = [t for t in topics.ALL_STATIC_TOPICS if not t.startswith("erp.")]
WATCHED.append(topics.funder_requests_topic(TEST_FUNDER))


def _docker_stack(work_dir: Path) -> Iterator[Stack]:
    from testcontainers.postgres import PostgresContainer

    from tests.containers import ApacheKafkaContainer

    with ApacheKafkaContainer() as kafka, PostgresContainer("postgres:16", driver=None) as postgres:
        stack = Stack(
            work_dir,
            env=dict(TEST_ENV),
            bootstrap=kafka.get_bootstrap_server(),
            database_url=postgres.get_connection_url(),
        )
        stack.start()
        try:
            yield stack
        finally:
            stack.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work_dir = tmp_path_factory.mktemp("stack")
    if os.environ.get("POOLFIN_TEST_DOCKER") == "1":
        yield from _docker_stack(work_dir)
        return
    # Every service writes its spans where tests/integration/test_traces.py reads them.
    env = {**TEST_ENV, "POOLFIN_TRACES": f"file:{work_dir / 'traces'}"}
    with Stack(work_dir, env=env) as running:
        yield running


@pytest.fixture
async def publisher(stack: Stack) -> AsyncIterator[Publisher]:
    async with Publisher(stack.bootstrap, stack.keyring) as publisher:
        yield publisher


@pytest.fixture
async def observer(stack: Stack) -> AsyncIterator[Observer]:
    async with Observer(stack.bootstrap, WATCHED) as observer:
        yield observer


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.database_url)
    yield conn
    await conn.close()
