"""`poolfin bench --json` runs the real path end to end and its totals add up. Its speed is
measured by the script itself and quoted in the README, never asserted here."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.environment import user_env

POOLFIN = [sys.executable, "-m", "poolfin.cli"]


@pytest.mark.integration
def test_the_bench_drives_the_real_path_and_prints_one_json_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [*POOLFIN, "bench", "--payments", "60", "--pools", "7", "--ceiling", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=user_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    # Each payment of 100.00 writes off a slip of 100.00 from a pool borrowed to its base
    # (rate 0.8) the same day (a disbursal may not be dated before its request): 80.00
    # principal, no interest, 20.00 left.
    assert Decimal(figures["repaid_principal"]) == Decimal("80.00") * 60
    assert Decimal(figures["repaid_interest"]) == Decimal("0.00")
    assert Decimal(figures["released"]) == Decimal("20.00") * 60
    assert figures["settlements_per_s"] > 0 and figures["ceiling_events_per_s"] > 0
    assert set(figures["cpu_ms_per_settlement_by_component"]) >= {
        "intake",
        "credit",
        "settlement-splitter",
        "postgresql",
        "kafka (tansu)",
    }
