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

from services.funding_gateway.repository import PostgresGatewayStore, Request
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.messages import PartyRole
from shared.db import Connection
from shared.outbox import Outbox
from shared.periodic import every, in_transaction
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

    async def make() -> None:
        new = sorted(await registered_funders(pool, trust_file) - made)
        if new:
            await ensure_topics(
                settings.kafka_bootstrap,
                [topics.funder_requests_topic(f) for f in new],
                settings.topic_partitions,
            )
            made.update(new)
            log.info("funder request topics ready", funders=new)

    await every(settings.funder_topics_every_s, "creating funders' request topics", make)


async def expire_raises(pool: asyncpg.Pool, settings: Settings, wake: Callable[[], None]) -> None:
    """A platform's raise not fully committed by its deadline closes: short, at what was
    committed, when its agreement allows a partial raise (each investor's contract is issued
    as for a full one); otherwise it expires and credit is told (FundingResult rejected,
    raise_expired), with what was committed, so the application is refused with its reason."""

    async def close(conn: Connection, outbox: Outbox) -> None:
        due = [
            r["request_id"]
            for r in await conn.fetch(
                "SELECT request_id FROM funding_requests WHERE state = 'raising'"
                " AND raise_deadline <= now() ORDER BY raise_deadline LIMIT 200"
                " FOR UPDATE SKIP LOCKED"
            )
        ]
        for request in await PostgresGatewayStore(conn).requests(due) if due else []:
            if request.terms and request.terms.get("partial_raise") and request.committed:
                await _close_short(conn, outbox, request)
            else:
                await _expire(conn, outbox, request)

    await every(
        settings.raise_check_every_s,
        "closing raises past their deadline",
        lambda: in_transaction(pool, "funding_gateway", wake, close),
    )


async def _expire(conn: Connection, outbox: Outbox, request: Request) -> None:
    await conn.execute(
        "UPDATE funding_requests SET state = 'expired', updated_at = now() WHERE request_id = $1",
        request.request_id,
    )
    deadline = request.raise_deadline.isoformat() if request.raise_deadline else "its deadline"
    outbox.emit(
        topics.FUNDING_RESULTS,
        m.new_event(
            m.FundingResult,
            source="funding-gateway",
            pool_id=request.pool_id,
            request_id=request.request_id,
            funder_id=request.funder_id,
            decision=m.FunderDecision.REJECTED,
            amount=request.amount,
            reason=f"the raise expired at {deadline} with {request.committed} of"
            f" {request.amount} committed",
            reason_code=m.Reason.RAISE_EXPIRED,
        ),
    )
    log.warning("raise expired", request_id=request.request_id, committed=str(request.committed))


async def _close_short(conn: Connection, outbox: Outbox, request: Request) -> None:
    from services.funding_gateway.handlers import investor_contracts

    request.raised_amount = request.committed
    await conn.execute(
        "UPDATE funding_requests SET state = 'raised', raised_amount = $2, updated_at = now()"
        " WHERE request_id = $1",
        request.request_id,
        request.raised_amount,
    )
    for contract, issued in investor_contracts(request):
        await conn.execute(
            "INSERT INTO investor_contracts(request_id, investor_id, amount, contract,"
            " contract_hash) VALUES ($1, $2, $3, $4, $5)",
            request.request_id,
            contract.investor_id,
            contract.amount,
            contract.contract,
            contract.contract_hash,
        )
        outbox.emit(topics.FUNDING_CONTRACTS, issued)
    outbox.emit(
        topics.FUNDING_RESULTS,
        m.new_event(
            m.FundingResult,
            source="funding-gateway",
            pool_id=request.pool_id,
            request_id=request.request_id,
            funder_id=request.funder_id,
            decision=m.FunderDecision.APPROVED,
            amount=request.raised_amount,
            contract_hash=request.contract_hash,
            investors=[
                m.InvestorShare(investor_id=i, amount=a) for i, a in request.commitments.items()
            ],
            partial=True,
            reason=f"raised {request.raised_amount} of {request.amount} by its deadline",
        ),
    )
    log.info("raise closed short", request_id=request.request_id, raised=str(request.committed))


async def background(pool: asyncpg.Pool, settings: Settings, wake: Callable[[], None]) -> None:
    """The gateway's watches: funders' topics, and raises past their deadline."""
    await asyncio.gather(funder_topics(pool, settings, wake), expire_raises(pool, settings, wake))
