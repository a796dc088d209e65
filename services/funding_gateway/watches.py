"""The funding gateway's background watches (issue 11).

Every registered funder has its request topic before its first request: a funder's
integrator can subscribe the moment its key is registered. And a platform's raise not fully
committed by its deadline expires.

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


async def expire_raises(pool: asyncpg.Pool, settings: Settings, wake: Callable[[], None]) -> None:
    """A platform's raise not fully committed by its deadline expires: the request is
    `expired` and credit is told (FundingResult rejected, raise_expired), with what was
    committed, so the application is refused with its reason."""
    from shared.contracts import messages as m
    from shared.outbox import Outbox

    while True:
        try:
            async with pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    "UPDATE funding_requests r SET state = 'expired', updated_at = now()"
                    " WHERE r.request_id IN (SELECT request_id FROM funding_requests"
                    "  WHERE state = 'raising' AND raise_deadline <= now()"
                    "  ORDER BY raise_deadline LIMIT 500 FOR UPDATE SKIP LOCKED)"
                    " RETURNING r.request_id, r.pool_id, r.funder_id, r.amount, r.raise_deadline,"
                    " (SELECT coalesce(sum(c.amount), 0) FROM investor_commitments c"
                    "  WHERE c.request_id = r.request_id) AS committed"
                )
                outbox = Outbox()
                for r in rows:
                    outbox.emit(
                        topics.FUNDING_RESULTS,
                        m.new_event(
                            m.FundingResult,
                            source="funding-gateway",
                            pool_id=r["pool_id"],
                            request_id=r["request_id"],
                            funder_id=r["funder_id"],
                            decision=m.FunderDecision.REJECTED,
                            amount=r["amount"],
                            reason=f"the raise expired at {r['raise_deadline'].isoformat()} with"
                            f" {r['committed']} of {r['amount']} committed",
                            reason_code=m.Reason.RAISE_EXPIRED,
                        ),
                    )
                    log.warning(
                        "raise expired", request_id=r["request_id"], committed=str(r["committed"])
                    )
                await outbox.write(conn, "funding_gateway")
            if rows:
                wake()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("expiring raises failed; trying again")
        await asyncio.sleep(settings.raise_check_every_s)


async def background(pool: asyncpg.Pool, settings: Settings, wake: Callable[[], None]) -> None:
    """The gateway's watches: funders' topics, and raises past their deadline."""
    await asyncio.gather(funder_topics(pool, settings, wake), expire_raises(pool, settings, wake))
