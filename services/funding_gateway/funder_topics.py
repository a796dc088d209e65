"""Every registered funder has its request topic before its first request (issue 11): a
funder's integrator can subscribe the moment its key is registered.

The gateway's background watch reads the funders (and investor platforms) of the registry —
the trust file's genesis parties and the keys approved on admin.parties.v1 — and creates
`funding.requests.{funder_id}.v1` for each one it has not seen, every
`POOLFIN_FUNDER_TOPICS_EVERY_S` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import structlog

from shared.contracts import topics
from shared.contracts.messages import PartyRole
from shared.settings import Settings
from shared.trust import TrustFile

log = structlog.get_logger(__name__)
LENDERS = (PartyRole.FUNDER.value, PartyRole.INVESTOR_PLATFORM.value)


async def registered_funders(pool: asyncpg.Pool, trust_file: TrustFile | None) -> set[str]:
    genesis = (
        {k.party_id for k in trust_file.keys().values() if k.role in LENDERS}
        if trust_file is not None
        else set()
    )
    rows = await pool.fetch(
        "SELECT DISTINCT party_id FROM party_keys WHERE role = ANY($1::text[])", list(LENDERS)
    )
    return genesis | {r["party_id"] for r in rows}


async def funder_topics(pool: asyncpg.Pool, settings: Settings, wake: Callable[[], None]) -> None:
    from shared.runtime import ensure_topics

    trust_file = TrustFile(settings.trust_file) if settings.trust_file else None
    made: set[str] = set()
    while True:
        try:
            new = sorted(await registered_funders(pool, trust_file) - made)
            if new:
                await ensure_topics(
                    settings.kafka_bootstrap,
                    [topics.funder_requests_topic(f) for f in new],
                    settings.topic_partitions,
                )
                made.update(new)
                log.info("funder request topics ready", funders=new)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("creating funders' request topics failed; trying again")
        await asyncio.sleep(settings.funder_topics_every_s)
