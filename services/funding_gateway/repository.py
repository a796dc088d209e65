"""SQL for funding-gateway's own schema."""

from __future__ import annotations

import asyncpg

from shared.contracts.messages import FunderResponse, LoanRequested
from shared.db import Connection


async def insert_request(conn: Connection, request: LoanRequested) -> bool:
    return bool(
        await conn.fetchval(
            "INSERT INTO funding_requests(request_id, pool_id, funder_id, supplier_id, amount,"
            " state) VALUES ($1, $2, $3, $4, $5, 'sent') ON CONFLICT DO NOTHING RETURNING true",
            request.request_id,
            request.pool_id,
            request.funder_id,
            request.supplier_id,
            request.amount,
        )
    )


async def lock_request(conn: Connection, request_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM funding_requests WHERE request_id = $1 FOR UPDATE", request_id
    )


async def record_response(conn: Connection, response: FunderResponse) -> None:
    await conn.execute(
        "INSERT INTO funder_responses(event_id, request_id, decision, amount)"
        " VALUES ($1, $2, $3, $4)",
        response.event_id,
        response.request_id,
        response.decision.value,
        response.amount,
    )
    await conn.execute(
        "UPDATE funding_requests SET state = $2, updated_at = now() WHERE request_id = $1",
        response.request_id,
        response.decision.value,
    )
