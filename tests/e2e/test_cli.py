"""The CLI as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.stack import Stack

POOLFIN = [sys.executable, "-m", "services.cli"]


@pytest.mark.integration
def test_poolfin_demo_json_reproduces_the_paper(tmp_path: Path) -> None:
    """`poolfin demo --json` with no stack up starts its own and prints the paper's figures."""
    done = subprocess.run([*POOLFIN, "demo", "--json"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                               "POOLFIN_DATA_DIR": str(tmp_path / "data")})
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["month_end_levels"] == ["1020000.00", "2090000.00", "2100000.00",
                                           "2070000.00"]
    assert (figures["repaid"], figures["released"], figures["interest"]) == (
        "80000.00", "20000.00", "0.00")
    assert figures["ok"] is True


@pytest.mark.integration
def test_poolfin_demo_uses_the_stack_poolfin_up_announced(stack: Stack, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "stack.json").write_text(json.dumps(stack.describe()))
    done = subprocess.run([*POOLFIN, "demo"], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                               "POOLFIN_DATA_DIR": str(data)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"using the running stack at {stack.bootstrap}" in done.stdout
    assert "207.00万" in done.stdout and "all figures match the paper." in done.stdout


def test_contracts_on_disk_match_the_code() -> None:
    done = subprocess.run([*POOLFIN, "contracts", "export", "--check"], capture_output=True,
                          text=True, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr


def test_unknown_service_is_refused_with_the_choices() -> None:
    done = subprocess.run([*POOLFIN, "run", "ledger"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "intake, credit, funding-gateway, settlement-splitter" in done.stderr
