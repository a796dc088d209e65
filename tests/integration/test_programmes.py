"""Issue 11, programmes, on the real broker and PostgreSQL with the four services as
processes: applications routed by the documented rule (the cheapest funder with room), one pool
with loans from two banks repaid by the programme's intercreditor rule (pro rata), and a
funder's limit holding when two pools of one core enterprise apply at the same moment."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher
from poolfin.stack import Stack
from shared.contracts import topics
from tests.conftest import WATCHED
from tests.integration.scenario import (
    Pool,
    apply,
    confirmation,
    payment,
    sign_contract,
    today,
    until_groups_are_shared,
)
from tests.integration.test_split_rules import poolfin

pytestmark = pytest.mark.integration


async def set_programme(
    stack: Stack, tmp_path: Path, core: str, funders: list[dict[str, Any]], **rules: str
) -> None:
    """`poolfin programme set` as an operator runs it, then `show` until credit has it."""
    body = tmp_path / f"{core}.json"
    body.write_text(json.dumps({"funders": funders, **rules}))
    done = await poolfin(stack, "programme", "set", str(body), "--core", core)
    assert done.returncode == 0, done.stderr[-2000:]
    event_id = done.stdout.strip().rsplit(" ", 1)[-1].rstrip(")")
    for _ in range(150):
        shown = await poolfin(stack, "programme", "show", "--core", core)
        if shown.returncode == 0 and json.loads(shown.stdout)["event_id"] == event_id:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"credit never took the programme of {core}")


async def open_pool(publisher: Publisher, observer: Observer, core: str, level: str) -> Pool:
    run = uuid.uuid4().hex[:8]
    pool = Pool(f"{core}/S-{run}", f"S-{run}")
    for topic, event in (
        erp.onboarding(pool.pool_id, core, pool.supplier_id, "Programme Supplier"),
        erp.facility(pool.pool_id, line="10000000.00", funder="bank-unused"),
        erp.slip(pool.pool_id, f"R-{run}", level, today()),
    ):
        await publisher.send(topic, event)
        await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=event["event_id"])
    pool.slips[f"R-{run}"] = level
    return pool


async def confirm_and_disburse(
    publisher: Publisher, observer: Observer, pool: Pool, application_id: str, funder: str
) -> None:
    await sign_contract(publisher, observer, application_id)
    [request] = await observer.wait_for(
        topics.funder_requests_topic(funder), request_id=application_id
    )
    await publisher.send(*erp.disbursal(request, today()))
    await observer.wait_for(topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=application_id)


async def test_routed_to_the_cheapest_with_room_and_repaid_pro_rata_by_two_banks(
    stack: Stack, publisher: Publisher, tmp_path: Path
) -> None:
    core = f"CE-PROG-{uuid.uuid4().hex[:6]}"
    cheap, dear = f"bank-c-{core[-6:]}", f"bank-d-{core[-6:]}"
    funders = [
        {"funder_id": cheap, "limit": "1000000.00", "annual_interest_rate": "0.04"},
        {"funder_id": dear, "limit": "5000000.00", "annual_interest_rate": "0.05"},
    ]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"funders": [], "routing": "cheapest"}))  # no funder at all
    refused = await poolfin(stack, "programme", "set", str(broken), "--core", core)
    assert refused.returncode == 2 and "is not a programme" in refused.stderr
    await set_programme(stack, tmp_path, core, funders, intercreditor="pro_rata")
    watched = [*WATCHED, topics.funder_requests_topic(cheap), topics.funder_requests_topic(dear)]
    async with Observer(stack.bootstrap, watched) as observer:
        pool = await open_pool(publisher, observer, core, "3000000.00")
        first = await apply(publisher, observer, pool, "1000000.00")
        await publisher.send(topics.ERP_FINANCING_CONFIRMATIONS, confirmation(pool, first))
        [routed] = await observer.wait_for(
            topics.CREDIT_DECISIONS, type="ApplicationRouted", application_id=first
        )
        assert (routed["rule"], routed["funder_id"]) == ("cheapest", cheap)
        await confirm_and_disburse(publisher, observer, pool, first, cheap)

        second = await apply(publisher, observer, pool, "500000.00")
        await publisher.send(topics.ERP_FINANCING_CONFIRMATIONS, confirmation(pool, second))
        [routed] = await observer.wait_for(
            topics.CREDIT_DECISIONS, type="ApplicationRouted", application_id=second
        )
        assert routed["funder_id"] == dear
        reasons = {c["funder_id"]: c["reason"] for c in routed["candidates"]}
        assert reasons[cheap] == "room 0.00 under its limits is less than 500000.00"
        await confirm_and_disburse(publisher, observer, pool, second, dear)

        # 1,800,000.00 paid: the base falls to 960,000.00, so 540,000.00 of principal is due,
        # shared 2:1 by what each bank has outstanding; each is paid its part by the split.
        paid = payment(pool, "1800000.00", list(pool.slips))
        await publisher.send(topics.ERP_PAYMENTS, paid)
        [result] = await observer.wait_for(
            topics.SETTLEMENT_RESULTS, payment_id=paid["payment_id"], type="SettlementReleased"
        )
        assert result["repaid_principal"] == "540000.00"
        notices = await observer.wait_for(
            topics.SETTLEMENT_FUNDER_REPAYMENTS, payment_id=paid["payment_id"], count=2
        )
        principal = {
            n["funder_id"]: sum(Decimal(r["principal"]) for r in n["repayments"]) for n in notices
        }
        assert principal == {cheap: Decimal("360000.00"), dear: Decimal("180000.00")}


async def test_one_application_split_across_two_banks_by_the_split_rule(
    stack: Stack, publisher: Publisher, tmp_path: Path
) -> None:
    core = f"CE-SPLIT-{uuid.uuid4().hex[:6]}"
    cheap, dear = f"bank-c-{core[-6:]}", f"bank-d-{core[-6:]}"
    funders = [
        {"funder_id": cheap, "limit": "700000.00", "annual_interest_rate": "0.04"},
        {"funder_id": dear, "limit": "5000000.00", "annual_interest_rate": "0.05"},
    ]
    await set_programme(stack, tmp_path, core, funders, routing="split")
    watched = [*WATCHED, topics.funder_requests_topic(cheap), topics.funder_requests_topic(dear)]
    async with Observer(stack.bootstrap, watched) as observer:
        pool = await open_pool(publisher, observer, core, "3000000.00")
        whole = await apply(publisher, observer, pool, "1000000.00")
        await publisher.send(topics.ERP_FINANCING_CONFIRMATIONS, confirmation(pool, whole))
        [routed] = await observer.wait_for(
            topics.CREDIT_DECISIONS, type="ApplicationRouted", application_id=whole
        )
        parts = [(p["request_id"], p["funder_id"], p["amount"]) for p in routed["parts"]]
        assert (routed["rule"], routed["funder_id"]) == ("split", None)
        assert parts == [(f"{whole}/1", cheap, "700000.00"), (f"{whole}/2", dear, "300000.00")]
        await observer.wait_for(
            topics.CREDIT_DECISIONS, type="FinancingDecision", application_id=whole, state="split"
        )
        for request_id, funder, _ in parts:
            await confirm_and_disburse(publisher, observer, pool, request_id, funder)
        [opened_cheap] = await observer.wait_for(
            topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=f"{whole}/1"
        )
        [opened_dear] = await observer.wait_for(
            topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=f"{whole}/2"
        )
        assert (opened_cheap["funder_id"], opened_cheap["principal"]) == (cheap, "700000.00")
        assert opened_dear["funder_id"] == dear
        assert Decimal(opened_dear["annual_interest_rate"]) == Decimal("0.05")
        # Both loans are the pool's: nothing in flight, 1,400,000.00 left of 2,400,000.00.
        [position] = await observer.wait_for(
            topics.CREDIT_POSITIONS,
            pool_id=pool.pool_id,
            loan_balance="1000000.00",
            in_flight="0.00",
        )
        assert position["available"] == "1400000.00"


async def test_a_funders_limit_holds_when_two_pools_apply_at_once(
    stack: Stack, publisher: Publisher, db: asyncpg.Connection, tmp_path: Path
) -> None:
    core = f"CE-LIM-{uuid.uuid4().hex[:6]}"
    only = f"bank-l-{core[-6:]}"
    await set_programme(
        stack,
        tmp_path,
        core,
        [{"funder_id": only, "limit": "1000000.00", "annual_interest_rate": "0.04"}],
    )
    async with Observer(stack.bootstrap, [*WATCHED, topics.funder_requests_topic(only)]) as obs:
        pools = [await open_pool(publisher, obs, core, "2000000.00") for _ in range(6)]
        applications = [await apply(publisher, obs, pool, "400000.00") for pool in pools]
        # A second credit instance shares the partitions: the pools' confirmations are routed
        # by two processes at once, each under the programme's lock.
        await asyncio.to_thread(stack.start_service, "credit#2")
        try:
            await asyncio.to_thread(stack.wait_ready, ("credit#2",))
            await asyncio.to_thread(until_groups_are_shared, stack)
            # Six confirmations at once: 2,400,000.00 asked of a funder whose limit is
            # 1,000,000.00.
            await asyncio.gather(
                *(
                    publisher.send(topics.ERP_FINANCING_CONFIRMATIONS, confirmation(pool, a))
                    for pool, a in zip(pools, applications, strict=True)
                )
            )
            routed = [
                (
                    await obs.wait_for(
                        topics.CREDIT_DECISIONS, type="ApplicationRouted", application_id=a
                    )
                )[0]
                for a in applications
            ]
        finally:
            await asyncio.to_thread(stack.stop_service, "credit#2")
    chosen = [r for r in routed if r["funder_id"] == only]
    refused = [r for r in routed if r["funder_id"] is None]
    # 800,000.00 in flight; 400,000.00 more would pass the limit.
    assert (len(chosen), len(refused)) == (2, 4)
    for r in refused:
        [candidate] = r["candidates"]
        assert candidate["room"] == "200000.00" and not candidate["eligible"]
    in_flight = await db.fetchval(
        "SELECT sum(amount) FROM credit.applications WHERE funder_id = $1 AND state = 'requested'",
        only,
    )
    assert in_flight == Decimal("800000.00")
    decisions = [
        await db.fetchval(
            "SELECT reason FROM credit.applications WHERE application_id = $1",
            r["application_id"],
        )
        for r in refused
    ]
    assert decisions == ["funder_limit_exceeded"] * 4
