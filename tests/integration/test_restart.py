"""Crash a service (SIGKILL) in the middle of a stream of payments, restart it: every payment
is settled exactly once and the ledger balances (invariants 1, 5, 6, 7)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from poolfin.clients import Observer, Publisher
from poolfin.stack import Stack
from services.settlement_splitter.ledger_audit import audit
from shared.contracts import topics
from tests.conftest import WATCHED
from tests.integration.scenario import borrow, facility, open_pool, payment

pytestmark = pytest.mark.integration

POOLS = 4
PAYMENTS_PER_POOL = 30


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    # A stack of its own: this test kills services, the session's stack must not notice.
    with Stack(tmp_path / "stack", env={"POOLFIN_BATCH_MAX_RECORDS": "20"}) as stack:
        yield stack


async def test_services_killed_mid_stream_settle_every_payment_exactly_once(
    own_stack: Stack,
) -> None:
    async with (
        Publisher(own_stack.bootstrap, own_stack.keyring) as publisher,
        Observer(own_stack.bootstrap, WATCHED) as observer,
    ):
        pools = []
        for _ in range(POOLS):
            pool = await open_pool(
                publisher,
                observer,
                ["100.00"] * PAYMENTS_PER_POOL,
                facility(line="100000.00", rate="0.8"),
            )
            await borrow(publisher, observer, pool, "2000.00", "bank-test")
            pools.append(pool)
        payments = [
            payment(pool, "100.00", [receivable])
            for index in range(PAYMENTS_PER_POOL)
            for pool in pools
            for receivable in [list(pool.slips)[index]]
        ]
        total = len(payments)

        async def settled() -> int:
            return len({d["payment_id"] for d in observer.find(topics.SETTLEMENT_RESULTS)})

        async def publish(batch: list[dict[str, object]]) -> None:
            for event in batch:
                await publisher.send(topics.ERP_PAYMENTS, event)
            await publisher.flush()

        third = total // 3
        await publish(payments[:third])
        while await settled() < third // 2:
            await asyncio.sleep(0.02)
        own_stack.kill("settlement-splitter")  # crash mid-stream
        await publish(payments[third : 2 * third])
        own_stack.start_service("settlement-splitter")
        while await settled() < third:
            await asyncio.sleep(0.02)
        own_stack.kill("credit")  # and the service that decides repayments
        await publish(payments[2 * third :])
        own_stack.start_service("credit")
        own_stack.wait_ready(("settlement-splitter", "credit"))
        # Distinct payments: a relay that crashed after publishing may publish an event again
        # (same event_id), so counting messages would stop early.
        deadline = asyncio.get_running_loop().time() + 120
        while await settled() < total:
            assert asyncio.get_running_loop().time() < deadline, (
                f"only {await settled()} of {total} payments settled within 120 s"
            )
            await asyncio.sleep(0.05)
        # A repeat on the topic is a re-publish of the same event, never a second settlement.
        event_ids: dict[str, set[str]] = {}
        for released in observer.find(topics.SETTLEMENT_RESULTS):
            event_ids.setdefault(released["payment_id"], set()).add(released["event_id"])
        assert all(len(ids) == 1 for ids in event_ids.values())

    conn = await asyncpg.connect(own_stack.database_url)
    try:
        per_payment = await conn.fetch(
            "SELECT payment_id, count(*) FILTER (WHERE kind = 'freeze') AS freezes,"
            " count(*) FILTER (WHERE kind = 'split') AS splits"
            " FROM settlement.ledger_transactions WHERE kind IN ('freeze', 'split')"
            " GROUP BY payment_id"
        )
        ids = {p["payment_id"] for p in payments}
        assert {r["payment_id"] for r in per_payment} == ids
        not_once = [dict(r) for r in per_payment if (r["freezes"], r["splits"]) != (1, 1)]
        assert not_once == []
        released = await conn.fetchval(
            "SELECT count(*) FROM settlement.settlements WHERE state = 'released'"
            " AND payment_id = ANY($1::text[])",
            list(ids),
        )
        assert released == total
        repaid = await conn.fetchval(
            "SELECT count(*) FROM credit.repayments WHERE payment_id = ANY($1::text[])", list(ids)
        )
        assert repaid == total
        # DESIGN step 6: credit confirms each reserved repayment once it reads the release.
        deadline = asyncio.get_running_loop().time() + 30
        while (
            confirmed := await conn.fetchval(
                "SELECT count(*) FROM credit.repayments WHERE state = 'confirmed'"
                " AND payment_id = ANY($1::text[])",
                list(ids),
            )
        ) < total:
            assert asyncio.get_running_loop().time() < deadline, f"{confirmed} of {total}"
            await asyncio.sleep(0.1)
        # Conservation: everything paid in is somewhere; exposure after the last payment.
        assert (
            await conn.fetchval(
                "SELECT sum(amount) FROM settlement.ledger_entries WHERE account LIKE 'buyer:%'"
            )
            == -100 * total
        )
        for pool in pools:
            row = await conn.fetchrow(
                "SELECT p.water_level, coalesce(sum(l.outstanding), 0) FROM credit.pools p"
                " LEFT JOIN credit.loans l USING (pool_id) WHERE p.pool_id = $1"
                " GROUP BY p.water_level",
                pool.pool_id,
            )
            assert row is not None
            level, balance = row
            assert balance <= level * Decimal("0.8")  # invariant 2
    finally:
        await conn.close()
    report = await audit(own_stack.database_url)
    assert report["problems"] == [] and report["sum_of_balances"] == 0

    # Tamper evidence, through the operator's command: edit one cent, the verifier finds it.
    verify = [sys.executable, "-m", "poolfin.cli", "ledger", "verify"]
    env = {**own_stack.service_env("verify"), "POOLFIN_DATABASE_URL": own_stack.database_url}
    clean = await asyncio.to_thread(subprocess.run, verify, env=env, capture_output=True)
    assert clean.returncode == 0
    conn = await asyncpg.connect(own_stack.database_url)
    try:
        await conn.execute(
            "UPDATE settlement.ledger_entries SET amount = amount + 0.01 WHERE (transaction_id,"
            " line) = (SELECT transaction_id, line FROM settlement.ledger_entries"
            " WHERE account LIKE 'free:%' LIMIT 1)"
        )
    finally:
        await conn.close()
    tampered = await asyncio.to_thread(
        subprocess.run, verify, env=env, capture_output=True, text=True
    )
    assert tampered.returncode == 1
    assert "hash mismatch" in tampered.stdout

    # Deleting a pool's newest transaction leaves a chain that verifies on its own; the
    # account's recorded head shows the cut.
    conn = await asyncpg.connect(own_stack.database_url)
    try:
        async with conn.transaction():
            newest = await conn.fetchval(
                "SELECT id FROM settlement.ledger_transactions WHERE pool_id = $1"
                " ORDER BY seq DESC LIMIT 1",
                pools[0].pool_id,
            )
            await conn.execute(
                "DELETE FROM settlement.ledger_entries WHERE transaction_id = $1", newest
            )
            await conn.execute("DELETE FROM settlement.ledger_transactions WHERE id = $1", newest)
    finally:
        await conn.close()
    cut = await asyncio.to_thread(subprocess.run, verify, env=env, capture_output=True, text=True)
    assert cut.returncode == 1
    assert f"pool {pools[0].pool_id}: chain ends" in cut.stdout
    assert "transactions were removed" in cut.stdout
