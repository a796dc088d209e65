"""Background watches beside a service's consumer (ServiceSpec.background): one loop for
every watch, so none of them can die of an error, and one way to emit from outside a batch.

A watch's step runs every `seconds`; a step that fails is logged and tried again at the next
tick. What a step emits goes through the service's outbox in the step's own transaction, so
it is published exactly when the step's writes commit, and the relay is woken at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from shared.db import Connection
from shared.outbox import Outbox

log = structlog.get_logger(__name__)


async def every(seconds: float, what: str, step: Callable[[], Awaitable[object]]) -> None:
    """Run `step` every `seconds` until cancelled."""
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(f"{what} failed; trying again")
        await asyncio.sleep(seconds)


async def in_transaction(
    pool: asyncpg.Pool,
    schema: str,
    wake: Callable[[], None],
    work: Callable[[Connection, Outbox], Awaitable[object]],
) -> None:
    """`work` in one transaction with an outbox written in it; the relay woken if it emitted."""
    outbox = Outbox()
    async with pool.acquire() as conn, conn.transaction():
        await work(conn, outbox)
        emitted = bool(outbox.rows)
        await outbox.write(conn, schema)
    if emitted:
        wake()
