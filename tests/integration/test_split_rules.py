"""Issue 10 (split rules as data) on the real broker and PostgreSQL: an operator sets a
programme's rules with the CLI; the splitter splits what the funders leave by them, to the fen,
and records the version; a rule that would pay anyone before the funders is refused."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher, erp_event
from poolfin.demo import DEMO_RULES
from poolfin.stack import Stack
from shared.contracts import topics
from tests.conftest import TEST_FUNDER
from tests.environment import user_env
from tests.integration.scenario import Pool, borrow, payment, today
from tests.unit.test_splitter_handlers import TIERED_RULES

pytestmark = pytest.mark.integration

RULES = DEMO_RULES  # the demo's programme rules: fee, capped guarantor, logistics, rest


async def poolfin(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "poolfin.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=user_env(
            POOLFIN_KAFKA_BOOTSTRAP=stack.bootstrap,
            POOLFIN_DATABASE_URL=stack.database_url,
            POOLFIN_KEYS_DIR=str(stack.keyring.directory),
        ),
    )


async def rules_in_force(stack: Stack, core: str) -> None:
    """As an operator checks before the programme's next payment: `show` finds the rules."""
    for _ in range(100):
        shown = await poolfin(stack, "split-rules", "show", "--programme", core)
        if shown.returncode == 0:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the splitter never took the rules of {core}")


async def programme_pool(publisher: Publisher, observer: Observer, core: str) -> Pool:
    run = uuid.uuid4().hex[:8]
    pool = Pool(f"{core}/S-{run}", f"S-{run}")
    for topic, event in (
        erp.onboarding(pool.pool_id, core, pool.supplier_id, "Rules Supplier"),
        erp.facility(pool.pool_id, line="1000000.00", funder=TEST_FUNDER),
        erp.slip(pool.pool_id, f"R-{run}", "1000000.00", today()),
    ):
        await publisher.send(topic, event)
        await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=event["event_id"])
    pool.slips[f"R-{run}"] = "1000000.00"
    return pool


async def test_a_programmes_rules_split_after_the_funders_to_the_fen(
    stack: Stack, publisher: Publisher, observer: Observer, tmp_path: Path
) -> None:
    core = f"CE-RULES-{uuid.uuid4().hex[:6]}"
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps(RULES))
    done = await poolfin(stack, "split-rules", "set", str(rules_file), "--programme", core)
    assert done.returncode == 0, done.stderr[-2000:]
    await rules_in_force(stack, core)
    pool = await programme_pool(publisher, observer, core)
    await borrow(publisher, observer, pool, "800000.00", TEST_FUNDER)
    paid = payment(pool, "100000.00", list(pool.slips))
    await publisher.send(topics.ERP_PAYMENTS, paid)
    [result] = await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=paid["payment_id"])
    # 100,000.00 paid; 80,000.00 repays the bank (the base fell to 720,000.00); 20,000.00 is
    # split: 0.3% of the payment, 10% of what is left capped at 500.00, 120.00, the rest.
    assert result["repaid_principal"] == "80000.00"
    assert (result["fees"], result["receivers"], result["released"]) == (
        "300.00",
        {"guarantor:cgc": "500.00", "logistics:sf": "120.00"},
        "19080.00",
    )
    assert result["rule_version"] == f"rules:programme:{core}@v1"
    parts = [
        Decimal(result[k]) for k in ("repaid_principal", "repaid_interest", "fees", "released")
    ]
    assert sum(parts) + sum(Decimal(v) for v in result["receivers"].values()) == Decimal(
        "100000.00"
    )
    shown = await poolfin(stack, "split-rules", "history", "--programme", core)
    assert shown.returncode == 0 and json.loads(shown.stdout)[0]["version"] == 1


async def test_a_rule_that_would_pay_anyone_before_the_funders_is_refused(
    stack: Stack, publisher: Publisher, observer: Observer, tmp_path: Path
) -> None:
    core = f"CE-RULES-{uuid.uuid4().hex[:6]}"
    first: dict[str, Any] = {
        "account": "platform:fee",
        "share": {"kind": "fixed", "amount": "10.00"},
        "before_funders": True,
    }
    bad = {"receivers": [first, {"account": "supplier", "share": {"kind": "rest"}}]}
    rules_file = tmp_path / "bad.json"
    rules_file.write_text(json.dumps(bad))
    done = await poolfin(stack, "split-rules", "set", str(rules_file), "--programme", core)
    assert done.returncode == 2 and "before the funders" in done.stderr, done.stderr
    # Published all the same, by an operator's own tool: the splitter refuses it too.
    event = erp_event("SplitRulesSet", core, scope="programme", core_enterprise_id=core, rules=bad)
    await publisher.send(topics.ADMIN_SPLIT_RULES, event)
    [letter] = await observer.wait_for(topics.SETTLEMENT_REJECTED, event_id=event["event_id"])
    assert letter["reason"] == "invalid_split_rules"
    assert "before the funders" in letter["detail"]


async def test_a_volume_tier_changes_the_fee_mid_month_and_the_chain_says_why(
    stack: Stack, publisher: Publisher, observer: Observer, tmp_path: Path
) -> None:
    import asyncpg

    core = f"CE-TIER-{uuid.uuid4().hex[:6]}"
    rules_file = tmp_path / "tiered.json"
    rules_file.write_text(json.dumps(TIERED_RULES))
    done = await poolfin(stack, "split-rules", "set", str(rules_file), "--programme", core)
    assert done.returncode == 0, done.stderr[-2000:]
    await rules_in_force(stack, core)
    pool = await programme_pool(publisher, observer, core)  # no loan: all is split by rule
    fees = []
    for _ in range(2):
        paid = payment(pool, "100000.00", list(pool.slips))
        await publisher.send(topics.ERP_PAYMENTS, paid)
        [result] = await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=paid["payment_id"])
        fees.append(result["fees"])
    # The first payment brings the month to 100,000.00 (tier 0.3%); the second to 200,000.00,
    # above 150,000.00 (tier 0.1%).
    assert fees == ["300.00", "100.00"]
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch(
            "SELECT inputs FROM settlement.ledger_transactions WHERE pool_id = $1"
            " AND kind = 'split' ORDER BY seq",
            pool.pool_id,
        )
    finally:
        await conn.close()
    facts = [json.loads(r["inputs"])["rule_facts"]["volume_this_month"] for r in rows]
    assert facts == [10000000, 20000000]  # in fen, hashed with the rule version
