"""Starting the embedded stack on a machine that never ran poolfin, and failing to start it.

Defect 8: as root, embedded PostgreSQL runs as its own account and creates it on first start;
a caller whose PATH lacks /usr/sbin must still get a server. Defect 9: whatever a command
starts, it stops on every exit path, failure included.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.environment import user_env

POOLFIN = [sys.executable, "-m", "poolfin.cli"]
ROOT = Path(__file__).parents[2]

# Starts embedded PostgreSQL, asks it for a number, stops it; prints the number.
PROBE = """
import asyncio, asyncpg
from shared.infra.postgres import EmbeddedPostgres

async def main(url):
    conn = await asyncpg.connect(url)
    try:
        print(await conn.fetchval("SELECT 6 * 7"))
    finally:
        await conn.close()

with EmbeddedPostgres() as pg:
    asyncio.run(main(pg.create_database("probe")))
"""

# Like ../shared/tools/pristine.sh: a private mount namespace whose /etc has no account left
# by an earlier run of embedded PostgreSQL.
PRISTINE = r"""
set -e
mount --make-rprivate /
etc=$(mktemp -d)
cp -a /etc/. "$etc/"
for f in passwd group shadow gshadow; do
  [[ -f $etc/$f ]] && sed -i "/^embedded_postgres:/d" "$etc/$f"
done
mount --bind "$etc" /etc
exec "$@"
"""


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.integration
def test_embedded_postgres_starts_on_a_new_machine_from_a_narrow_path(tmp_path: Path) -> None:
    """PATH=/usr/bin:/bin, and (as root) no embedded_postgres account yet."""
    env = user_env(tmp_path, PYTHONPATH=str(ROOT))
    probe = [sys.executable, "-c", PROBE]
    if _can_unshare():
        command = ["unshare", "-m", "bash", "-c", PRISTINE, "pristine", *probe]
    else:  # not root: the server runs as the caller, no account is created
        command = probe
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "42"


def _brokers_and_databases() -> set[int]:
    """Tansu brokers, PostgreSQL postmasters and poolfin processes running now."""
    found = set()
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        program = Path(cmdline[0]).name if cmdline else ""
        if (
            (program.startswith("tansu") and "broker" in cmdline)
            or (program == "postgres" and "-D" in cmdline)
            or "poolfin.cli" in cmdline
        ):
            found.add(process.pid)
    return found


@pytest.mark.integration
@pytest.mark.parametrize("command", [["demo", "--json"], ["up"]])
def test_a_start_that_fails_leaves_no_broker_behind(tmp_path: Path, command: list[str]) -> None:
    """The start fails after the broker and PostgreSQL are up: credit's HTTP front cannot bind
    an address this machine does not have. The broker, PostgreSQL and the services already
    started are all stopped, and the user reads one line saying why."""
    before = _brokers_and_databases()
    done = subprocess.run(
        [*POOLFIN, *command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=user_env(
            tmp_path,
            POOLFIN_HTTP_HOST="203.0.113.1",  # TEST-NET-3: never an address of ours
            POOLFIN_DATA_DIR=str(tmp_path / "data"),
        ),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: could not start the embedded stack" in done.stderr
    assert "Traceback" not in done.stderr
    assert "service credit exited" in done.stderr
    assert _brokers_and_databases() - before == set()


@pytest.mark.integration
def test_sigterm_to_a_command_that_started_a_stack_stops_all_of_it(tmp_path: Path) -> None:
    """`poolfin demo` with no stack up starts one; a SIGTERM mid-run (a supervisor, a CI
    timeout) ends the command through its cleanup, not around it."""
    before = _brokers_and_databases()
    demo = subprocess.Popen(
        [*POOLFIN, "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=user_env(tmp_path, POOLFIN_DATA_DIR=str(tmp_path / "data")),
    )
    try:
        deadline = time.monotonic() + 120
        while len(_brokers_and_databases() - before) < 6:  # broker, database, four services
            assert demo.poll() is None, demo.communicate()
            assert time.monotonic() < deadline, "the stack did not start"
            time.sleep(0.2)
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 128 + signal.SIGTERM
    deadline = time.monotonic() + 30
    while _brokers_and_databases() - before:
        assert time.monotonic() < deadline, _brokers_and_databases() - before
        time.sleep(0.2)
