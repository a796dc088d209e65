"""PostgreSQL access: one asyncpg pool per service, bound to the service's own schema, and a
small migration runner for numbered .sql files (shared reliability tables first)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import structlog

from shared.money import json_default

log = structlog.get_logger(__name__)

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"

# A pooled connection or a plain one: repositories and handlers do not care which.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
K = TypeVar("K")


def first_time(keys: Iterable[K], seen: set[K]) -> list[K]:
    """The keys not looked up yet in this batch, sorted (one lock order), now marked seen."""
    wanted = sorted(set(keys) - seen)  # type: ignore[type-var]
    seen.update(wanted)
    return wanted


def columns(rows: Sequence[Any], *names: str) -> list[list[Any]]:
    """Rows of objects as one list per attribute: the arguments of an `unnest(...)` write."""
    return [[getattr(row, name) for row in rows] for name in names]


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON columns come back as Python objects; Decimals go in as exact text.
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        format="text",
        encoder=lambda v: json.dumps(v, default=json_default),
        decoder=json.loads,
    )


async def create_pool(dsn: str, schema: str, size: int = 5) -> asyncpg.Pool:
    """A pool whose connections see only `schema` (then public) by default."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=size,
        init=_init_connection,
        server_settings={"search_path": f"{schema},public", "application_name": schema},
    )
    assert pool is not None
    return pool


def migration_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.sql") if p.name[:4].isdigit())


async def migrate(dsn: str, schema: str, service_migrations: Path) -> list[str]:
    """Apply the shared then the service's migrations not applied yet; returns their names.

    Serialised across processes by an advisory lock, each file in its own transaction, with a
    checksum kept so that an edited, already-applied file is reported instead of ignored.
    """
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}", public')
        lock_key = int(hashlib.sha256(schema.encode()).hexdigest()[:15], 16)
        await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                r["name"]: r["checksum"]
                for r in await conn.fetch("SELECT name, checksum FROM schema_migrations")
            }
            files = [("shared/" + p.name, p) for p in migration_files(SHARED_MIGRATIONS)]
            files += [(f"{schema}/" + p.name, p) for p in migration_files(service_migrations)]
            for name, path in files:
                sql = path.read_text()
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if name in done:
                    if done[name] != checksum:
                        raise RuntimeError(f"migration {name} was edited after it was applied")
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations(name, checksum) VALUES ($1, $2)",
                        name,
                        checksum,
                    )
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
    finally:
        await conn.close()
    if applied:
        log.info("migrations applied", schema=schema, migrations=applied)
    return applied
