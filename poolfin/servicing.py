"""The maturity job: close a business day for every pool credit knows (or one), by
publishing a DayClosed per pool on admin.servicing.v1. `poolfin day close` runs it once;
`poolfin up` runs it after each midnight in the platform's time zone."""

from __future__ import annotations

import json
from datetime import date

from poolfin.clients import Publisher
from poolfin.keys import Keyring
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import encode
from shared.db import create_pool


async def pools_to_close(database_url: str, day: date) -> list[str]:
    """Pools of credit's not yet closed through `day`."""
    pool = await create_pool(database_url, "credit", 1)
    try:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT pool_id FROM pools WHERE closed_through IS NULL OR closed_through < $1"
                " ORDER BY pool_id",
                day,
            )
    finally:
        await pool.close()
    return [row["pool_id"] for row in rows]


async def close_day(
    bootstrap: str,
    database_url: str,
    day: date,
    pool_id: str | None = None,
    source: str = "operator-cli",
    keyring: Keyring | None = None,
) -> int:
    """Publish DayClosed for `day` to one pool or to every pool not closed through it; returns
    how many were published (each is acknowledged by the broker)."""
    pools = [pool_id] if pool_id else await pools_to_close(database_url, day)
    async with Publisher(bootstrap, keyring) as publisher:
        for each in pools:
            message = m.new_event(m.DayClosed, source=source, pool_id=each, business_date=day)
            await publisher.send(topics.ADMIN_SERVICING, json.loads(encode(message)), key=each)
    return len(pools)
