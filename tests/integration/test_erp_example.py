"""The ERP protocol for integrators: docs/erp/erp_example.py, a plain confluent-kafka client
(librdkafka) importing nothing of poolfin, onboards a pool, books its slips and pays one,
signed by the core enterprise's key and keyed by pool_id, and reads the pool's positions."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher
from poolfin.stack import Stack
from shared.contracts import topics
from shared.contracts.messages import PartyRole

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).parents[2] / "docs" / "erp" / "erp_example.py"


async def test_the_erp_example_on_a_plain_client_fills_and_pays_a_pool(
    stack: Stack, publisher: Publisher, observer: Observer, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    core, supplier = f"CE-ERP-{run}", f"S-{run}"
    pool_id = f"{core}/{supplier}"
    key_id, private = stack.keyring.key(core, PartyRole.CORE_ENTERPRISE)  # registered (trust file)
    # The operator's facility first (a facility may precede its pool): 80 % of the pool, up
    # to a million.
    _, facility = erp.facility(pool_id, line="1000000.00", rate="0.8")
    await publisher.send(topics.ADMIN_FACILITIES, facility)
    await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=facility["event_id"])

    key_file = tmp_path / "core.key"
    key_file.write_text(base64.urlsafe_b64encode(private).decode().rstrip("="))
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            str(EXAMPLE),
            "--bootstrap",
            stack.bootstrap,
            "--core",
            core,
            "--supplier",
            supplier,
            "--key-id",
            key_id,
            "--private-key",
            str(key_file),
            "--timeout",
            "90",
        ],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    steps = [str(line.get("step")).split(" ")[0] for line in lines[:-1]]
    assert steps == ["onboarded", "slip", "slip", "paid"]
    assert [line["water_level"] for line in lines[:-1]] == [
        "0.00",
        "100000.00",
        "150000.00",
        "50000.00",
    ]
    assert lines[-1] == {
        "pool_id": pool_id,
        "water_level": "50000.00",  # 100 000 + 50 000 booked, 100 000 paid
        "borrowing_base": "40000.00",  # 80 % of what is left
        "available": "40000.00",
        "loan_balance": "0.00",
        "standing": "good",
    }
    # What it published took effect for the pool it names: the payment was split.
    [settled] = await observer.wait_for(topics.SETTLEMENT_RESULTS, pool_id=pool_id)
    assert (settled["type"], settled["amount"]) == ("SettlementReleased", "100000.00")
