"""The CLI as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from poolfin.clients import Publisher
from poolfin.stack import Stack
from shared.contracts import topics
from tests.environment import user_env

POOLFIN = [sys.executable, "-m", "poolfin.cli"]


@pytest.mark.integration
def test_poolfin_demo_json_reproduces_the_paper(tmp_path: Path) -> None:
    """`poolfin demo --json` with no stack up starts its own and prints the paper's figures."""
    done = subprocess.run(
        [*POOLFIN, "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=_user_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["month_end_levels"] == ["1020000.00", "2090000.00", "2100000.00", "2070000.00"]
    assert (figures["repaid"], figures["released"], figures["interest"]) == (
        "80000.00",
        "20000.00",
        "0.00",
    )
    assert figures["ok"] is True


@pytest.mark.integration
def test_poolfin_demo_uses_the_stack_poolfin_up_announced(stack: Stack, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "stack.json").write_text(json.dumps(stack.describe()))
    done = subprocess.run(
        [*POOLFIN, "demo"],
        capture_output=True,
        text=True,
        timeout=300,
        env=user_env(tmp_path, POOLFIN_DATA_DIR=str(data)),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"using the running stack at {stack.bootstrap}" in done.stdout
    assert "207.00万" in done.stdout and "all figures match the paper." in done.stdout


def test_contracts_on_disk_match_the_code() -> None:
    done = subprocess.run(
        [*POOLFIN, "contracts", "export", "--check"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr


def test_unknown_service_is_refused_with_the_choices() -> None:
    done = subprocess.run([*POOLFIN, "run", "ledger"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "intake, credit, funding-gateway, settlement-splitter" in done.stderr


def facility_set(credit_line: str) -> list[str]:
    return [
        *POOLFIN,
        "facility",
        "set",
        "--pool",
        "CE-1/SUP-1",
        "--credit-line",
        credit_line,
        "--discount-rate",
        "0.8",
        "--annual-interest-rate",
        "0.0435",
        "--funder",
        "b",
    ]


def _user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return user_env(tmp_path, POOLFIN_DATA_DIR=str(tmp_path / "data"), **extra)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.integration
def test_poolfin_up_serves_the_cli_restarts_a_dead_service_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path,
) -> None:
    env = _user_env(tmp_path)
    up = subprocess.Popen(
        [*POOLFIN, "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert up.stdout is not None
        printed: dict[str, str] = {}
        pids: dict[str, int] = {}
        deadline = time.monotonic() + 120
        for line in up.stdout:
            label, _, value = line.partition(" : ")
            if label.startswith("service"):
                pids[value.split(" (")[0]] = int(value.split("pid ")[1].split(",")[0])
            elif value:
                printed[label.strip()] = value.strip()
            if line.startswith("poolfin is up") or time.monotonic() > deadline:
                break
        assert set(pids) == {"intake", "credit", "funding-gateway", "settlement-splitter"}
        assert "erp.payments.v1" in printed["topics"]
        http = printed["credit http"].split()[0]
        with urllib.request.urlopen(f"{http}/health", timeout=10) as health:
            assert json.loads(health.read())["status"] == "ok"
        # stack.json says where everything is: the dashboard, each service's metrics and health.
        state = json.loads((tmp_path / "data" / "stack.json").read_text())
        assert state["dashboard_url"] == printed["dashboard"]
        with urllib.request.urlopen(state["dashboard_url"], timeout=10) as page:
            assert b"poolfin \xc2\xb7 operators" in page.read()
        for name, service in state["services"].items():
            assert service["pid"] == pids[name]
            assert service["health_url"].endswith("/health")
            deadline = time.monotonic() + 30
            while True:  # the lag series appears with the first health checks (2 s)
                with urllib.request.urlopen(service["metrics_url"], timeout=10) as metrics:
                    if b"poolfin_consumer_lag{" in metrics.read():
                        break
                assert time.monotonic() < deadline, f"{name}: no consumer lag in /metrics"
                time.sleep(0.5)
        db_env = {
            **env,
            "POOLFIN_KAFKA_BOOTSTRAP": printed["kafka bootstrap"],
            "POOLFIN_DATABASE_URL": printed["database url"],
        }

        # The CLI finds the stack `up` announced, and works against what it printed.
        demo = subprocess.run(
            [*POOLFIN, "demo", "--json"], capture_output=True, text=True, timeout=180, env=env
        )
        assert demo.returncode == 0, demo.stderr[-2000:]
        assert json.loads(demo.stdout.splitlines()[-1])["ok"] is True
        verify = subprocess.run(
            [*POOLFIN, "ledger", "verify"], capture_output=True, text=True, timeout=60, env=db_env
        )
        assert verify.returncode == 0, verify.stdout
        assert json.loads(verify.stdout)["transactions"] >= 2
        published = subprocess.run(
            facility_set("1000.00"),
            capture_output=True,
            text=True,
            timeout=60,
            env=db_env,
        )
        assert published.returncode == 0, published.stderr
        assert "facility for CE-1/SUP-1 published" in published.stdout

        # A service that dies is started again.
        os.kill(pids["credit"], signal.SIGKILL)
        assert up.stderr is not None
        assert select.select([up.stderr], [], [], 30)[0], "no restart reported within 30 s"
        assert "service credit exited" in up.stderr.readline()
    finally:
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        out, _ = up.communicate(timeout=60)
    assert up.returncode == 0
    assert out.rstrip().endswith("stopped.")
    assert not (tmp_path / "data" / "stack.json").exists()
    assert not any(_alive(pid) for pid in pids.values())

    # Up again: the database is the one kept, and every command finds the stack by itself.
    again, said = _up(env)
    try:
        assert "kept from the last run" in said["database"]
        verify = subprocess.run(
            [*POOLFIN, "ledger", "verify"], capture_output=True, text=True, timeout=60, env=env
        )
        assert verify.returncode == 0, verify.stderr[-2000:]
        assert json.loads(verify.stdout)["transactions"] >= 2  # the demo's, from the first run
    finally:
        _ctrl_c(again)
    fresh, said = _up(env, "--fresh")
    try:
        assert said["database"].endswith("(new; `poolfin up --fresh` wipes it)"), said
        verify = subprocess.run(
            [*POOLFIN, "ledger", "verify"], capture_output=True, text=True, timeout=60, env=env
        )
        assert verify.returncode == 0, verify.stderr[-2000:]
        assert json.loads(verify.stdout)["transactions"] == 0
    finally:
        _ctrl_c(fresh)


def _up(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """`poolfin up` until it says it is up; what it printed, by label."""
    up = subprocess.Popen(
        [*POOLFIN, "up", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert up.stdout is not None
    said: dict[str, str] = {}
    for line in up.stdout:
        label, _, value = line.partition(" : ")
        said[label.strip()] = value.strip()
        if line.startswith("poolfin is up"):
            return up, said
    _ctrl_c(up)
    raise AssertionError(f"poolfin up did not come up: {said}")


def _ctrl_c(up: subprocess.Popen[str]) -> None:
    os.killpg(up.pid, signal.SIGINT)
    up.communicate(timeout=60)
    assert up.returncode == 0


def test_commands_that_cannot_reach_the_stack_say_so_in_one_line(tmp_path: Path) -> None:
    env = _user_env(
        tmp_path,
        POOLFIN_KAFKA_BOOTSTRAP="127.0.0.1:1",
        POOLFIN_DATABASE_URL="postgresql://ops:s3cret@127.0.0.1:1/poolfin",
    )
    facility = subprocess.run(
        facility_set("1000.00"),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert facility.returncode == 1
    assert "error: cannot reach Kafka at 127.0.0.1:1" in facility.stderr
    assert "Traceback" not in facility.stderr
    verify = subprocess.run(
        [*POOLFIN, "ledger", "verify"], capture_output=True, text=True, timeout=60, env=env
    )
    assert verify.returncode == 1
    assert "error: cannot reach PostgreSQL at postgresql://ops:***@127.0.0.1:1" in verify.stderr
    assert "s3cret" not in verify.stderr
    # --bootstrap / --database-url win over the environment (and over a stack.json).
    flagged = subprocess.run(
        [*POOLFIN, "--database-url", "postgresql://cli:pw@127.0.0.1:2/other", "ledger", "verify"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert flagged.returncode == 1
    assert "cannot reach PostgreSQL at postgresql://cli:***@127.0.0.1:2/other" in flagged.stderr


def test_facility_with_a_bad_amount_is_refused_before_it_is_published(tmp_path: Path) -> None:
    done = subprocess.run(
        facility_set("1000.005"),
        capture_output=True,
        text=True,
        timeout=60,
        env=_user_env(tmp_path, POOLFIN_KAFKA_BOOTSTRAP="127.0.0.1:1"),
    )
    assert done.returncode == 2
    assert "facility not published (invalid_amount): credit_line" in done.stderr


def test_a_facility_credit_would_refuse_is_refused_before_it_is_published(tmp_path: Path) -> None:
    """`--discount-rate 1.8` used to print "published" and exit 0, and credit dead-lettered
    it; the command now applies credit's own rule first (and no broker is needed to say so)."""
    command = facility_set("1000.00")
    command[command.index("--discount-rate") + 1] = "1.8"
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env=_user_env(tmp_path, POOLFIN_KAFKA_BOOTSTRAP="127.0.0.1:1"),
    )
    assert done.returncode == 2, done.stdout
    assert "(invalid_facility): discount_rate 1.8 must be in (0, 1]" in done.stderr


@pytest.mark.integration
def test_poolfin_status_shows_lag_while_a_service_is_down_then_its_dead_letters(
    tmp_path: Path,
) -> None:
    with Stack(tmp_path / "stack") as own:
        env = _user_env(
            tmp_path, POOLFIN_KAFKA_BOOTSTRAP=own.bootstrap, POOLFIN_DATABASE_URL=own.database_url
        )

        def status() -> dict[str, dict[str, object]]:
            done = subprocess.run(
                [*POOLFIN, "status", "--json"], capture_output=True, text=True, timeout=60, env=env
            )
            assert done.returncode == 0, done.stderr[-2000:]
            return {row["service"]: row for row in json.loads(done.stdout)}

        own.stop_service("settlement-splitter")
        poison = [b"not json %d" % n for n in range(5)]

        async def publish() -> None:
            async with Publisher(own.bootstrap, own.keyring) as publisher:
                for payload in poison:
                    await publisher.send(
                        topics.CREDIT_REPAYMENT_INSTRUCTIONS, payload, key="CE-1/SUP-1"
                    )
                await publisher.flush()

        asyncio.run(publish())
        down = status()["settlement-splitter"]
        assert (down["lag"], down["dead_letters"]) == (5, 0)
        assert status()["credit"]["lag"] == 0

        own.start_service("settlement-splitter")
        own.wait_ready(("settlement-splitter",))
        deadline = time.monotonic() + 60
        while (row := status()["settlement-splitter"])["lag"] != 0:
            assert time.monotonic() < deadline, row
            time.sleep(0.5)
        assert (row["dead_letters"], row["last_reason"], row["outbox"]) == (5, "not_json", 0)
        table = subprocess.run(
            [*POOLFIN, "status"], capture_output=True, text=True, timeout=60, env=env
        ).stdout
        assert "poolfin.settlement-splitter" in table and "not_json" in table


def test_stack_commands_say_clearly_when_there_is_no_stack_or_no_such_value(
    tmp_path: Path,
) -> None:
    env = _user_env(tmp_path)
    none = subprocess.run([*POOLFIN, "stack"], capture_output=True, text=True, env=env)
    assert none.returncode == 1 and "no stack is up" in none.stderr
    # A stack.json whose services are alive (this test's own process stands in for them).
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "stack.json").write_text(
        json.dumps({"http": "http://127.0.0.1:1", "services": {"x": {"pid": os.getpid()}}})
    )
    http = subprocess.run(
        [*POOLFIN, "stack", "--get", "http"], capture_output=True, text=True, env=env
    )
    assert (http.returncode, http.stdout.strip()) == (0, "http://127.0.0.1:1")
    missing = subprocess.run(
        [*POOLFIN, "stack", "--get", "nope"], capture_output=True, text=True, env=env
    )
    assert missing.returncode == 2 and "stack.json has no 'nope'" in missing.stderr
    second = subprocess.run([*POOLFIN, "up"], capture_output=True, text=True, env=env, timeout=60)
    assert second.returncode == 1 and "a stack is already up" in second.stderr
    assert "starting embedded" not in second.stdout  # refused before anything was started


def test_pool_seed_refuses_an_id_that_is_not_core_slash_supplier(tmp_path: Path) -> None:
    done = subprocess.run(
        [*POOLFIN, "pool", "seed", "CE-1"], capture_output=True, text=True, env=_user_env(tmp_path)
    )
    assert done.returncode == 2 and "is not CORE/SUPPLIER" in done.stderr
