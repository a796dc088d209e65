"""Scale-out (issue 7): two instances of every service in the same consumer groups settle a
stream exactly once, with the ledger balanced and each pool's decisions in order; each
instance settles its share."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from poolfin.clients import Observer, Publisher
from poolfin.registry import SERVICES
from poolfin.stack import Stack
from shared.contracts import topics
from tests.conftest import TEST_FUNDER, WATCHED
from tests.integration.scenario import (
    borrow,
    facility,
    ledger_verify,
    open_pool,
    payment,
    today,
    until_groups_are_shared,
)

pytestmark = pytest.mark.integration

SETTLING = {"PaymentReceived", "ReceivablesSettled", "RepaymentInstruction"}
POOLS = 12  # over 6 partitions: each instance owns some pools (all 12 on 3 partitions: p < 0.1%)
PAYMENTS_PER_POOL = 15


@pytest.fixture(scope="module")
def two_of_each(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("scale-out"), env={"POOLFIN_TOPIC_PARTITIONS": "6"}) as s:
        for name in SERVICES:
            s.start_service(f"{name}#2")
        s.wait_ready(tuple(f"{name}#2" for name in SERVICES), timeout=90)
        until_groups_are_shared(s)
        yield s


async def test_two_instances_of_every_service_settle_each_payment_once_in_pool_order(
    two_of_each: Stack, tmp_path: Path
) -> None:
    stack = two_of_each
    async with (
        Publisher(stack.bootstrap, stack.keyring) as publisher,
        Observer(stack.bootstrap, WATCHED) as observer,
    ):
        pools = []
        for _ in range(POOLS):
            slips = ["1000.00"] * PAYMENTS_PER_POOL
            pool = await open_pool(publisher, observer, slips, facility(funder=TEST_FUNDER))
            await borrow(publisher, observer, pool, f"{800 * PAYMENTS_PER_POOL}.00", TEST_FUNDER)
            pools.append(pool)
        payments = [
            payment(pool, "1000.00", [receivable], paid_on=today())
            for index in range(PAYMENTS_PER_POOL)
            for pool in pools
            for receivable in [list(pool.slips)[index]]
        ]
        for event in payments:
            await publisher.send(topics.ERP_PAYMENTS, event)
        await publisher.flush()
        await observer.wait_for(
            topics.SETTLEMENT_RESULTS,
            count=len(payments),
            timeout=180,
            where=lambda body: body["payment_id"] in {p["payment_id"] for p in payments},
        )

    # Both instances took part: each second instance settled some of the payments.
    for name in ("intake", "credit", "settlement-splitter"):
        log = (stack.work_dir / f"{name}#2.log").read_text()
        assert any(
            json.loads(line).get("event") == "processed"
            and json.loads(line).get("type") in SETTLING
            for line in log.splitlines()
            if line.startswith("{")
        ), f"{name}#2 settled nothing"

    conn = await asyncpg.connect(stack.database_url)
    try:
        ids = [p["payment_id"] for p in payments]
        per_kind = await conn.fetch(
            "SELECT kind, count(*) AS n, count(DISTINCT payment_id) AS d"
            " FROM settlement.ledger_transactions WHERE payment_id = ANY($1::text[])"
            " GROUP BY kind ORDER BY kind",
            ids,
        )
        assert [(r["kind"], r["n"], r["d"]) for r in per_kind] == [
            ("freeze", len(ids), len(ids)),
            ("split", len(ids), len(ids)),
        ]
        assert await conn.fetchval(
            "SELECT count(*) FROM credit.repayments WHERE payment_id = ANY($1::text[])", ids
        ) == len(ids)
        # Each pool's repayments were decided one after another: the loan balance after one
        # is the balance before the next, from the loan down to the base.
        chains: dict[str, list[tuple[Decimal, Decimal]]] = defaultdict(list)
        for row in await conn.fetch(
            "SELECT pool_id, instruction FROM credit.repayments WHERE payment_id = ANY($1::text[])",
            ids,
        ):
            body = json.loads(row["instruction"])
            chains[row["pool_id"]].append(
                (Decimal(body["loan_balance_before"]), Decimal(body["loan_balance_after"]))
            )
        for pool_id, steps in chains.items():
            steps.sort(reverse=True)
            assert all(a[1] == b[0] for a, b in itertools.pairwise(steps)), pool_id
            assert steps[-1][1] == Decimal("0.00"), pool_id  # the last payment empties the pool
    finally:
        await conn.close()

    code, report = await ledger_verify(stack.database_url)
    assert code == 0, report
    assert report["problems"] == [] and Decimal(report["sum_of_balances"]) == 0
