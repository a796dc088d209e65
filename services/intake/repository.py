"""SQL for intake's own schema."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import asyncpg

from services.intake.domain import Receivable
from shared.contracts.messages import PaymentReceived, SettlementSlipIssued, SupplierOnboarded
from shared.db import Connection
from shared.inbox import Inbound


async def archive(conn: Connection, records: Sequence[Inbound]) -> int:
    """Archive every record of the batch; returns how many were archived before (read again
    after a crash: the same record, so the same `record_id`)."""
    archived = await conn.fetchval(
        "WITH archived AS ("
        '  INSERT INTO raw_events(topic, "partition", "offset", key, value, "timestamp",'
        "  record_id) SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[],"
        "  $4::bytea[], $5::bytea[], $6::bigint[], $7::text[])"
        "  ON CONFLICT (record_id) DO NOTHING RETURNING 1)"
        " SELECT count(*) FROM archived",
        [r.topic for r in records],
        [r.partition for r in records],
        [r.offset for r in records],
        [r.key for r in records],
        [r.value for r in records],
        [r.timestamp for r in records],
        [r.record_id for r in records],
    )
    return len(records) - int(archived)


async def lock_pool(conn: Connection, pool_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT pool_id, core_enterprise_id, supplier_id FROM pools WHERE pool_id = $1 FOR UPDATE",
        pool_id,
    )


async def open_pool(conn: Connection, event: SupplierOnboarded) -> bool:
    created = await conn.fetchval(
        "INSERT INTO pools(pool_id, core_enterprise_id, supplier_id, supplier_name)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
        event.pool_id,
        event.core_enterprise_id,
        event.supplier_id,
        event.supplier_name,
    )
    return bool(created)


async def find_pool_of(conn: Connection, core_enterprise_id: str, supplier_id: str) -> str | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT pool_id FROM pools WHERE core_enterprise_id = $1 AND supplier_id = $2",
        core_enterprise_id,
        supplier_id,
    )


async def receivable_exists(conn: Connection, core_enterprise_id: str, receivable_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM receivables WHERE core_enterprise_id = $1 AND receivable_id = $2",
            core_enterprise_id,
            receivable_id,
        )
    )


async def add_receivable(
    conn: Connection, core_enterprise_id: str, slip: SettlementSlipIssued
) -> None:
    await conn.execute(
        "INSERT INTO receivables(core_enterprise_id, receivable_id, pool_id, amount, issued_on,"
        " due_on, state) VALUES ($1, $2, $3, $4, $5, $6, 'open')",
        core_enterprise_id,
        slip.receivable_id,
        slip.pool_id,
        slip.amount,
        slip.issued_on,
        slip.due_on,
    )


async def lock_receivables(
    conn: Connection, core_enterprise_id: str, receivable_ids: Sequence[str]
) -> dict[str, Receivable]:
    rows = await conn.fetch(
        "SELECT receivable_id, pool_id, amount, state FROM receivables"
        " WHERE core_enterprise_id = $1 AND receivable_id = ANY($2::text[])"
        " ORDER BY receivable_id FOR UPDATE",
        core_enterprise_id,
        list(receivable_ids),
    )
    return {
        r["receivable_id"]: Receivable(r["receivable_id"], r["pool_id"], r["amount"], r["state"])
        for r in rows
    }


async def open_total(conn: Connection, pool_id: str) -> Decimal:
    """What the pool's open receivables add up to (its water level as intake sees it)."""
    total = await conn.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM receivables WHERE pool_id = $1 AND state = 'open'",
        pool_id,
    )
    return Decimal(total)


async def payment_exists(conn: Connection, payment_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM payments WHERE payment_id = $1", payment_id))


async def record_payment(
    conn: Connection, core_enterprise_id: str, payment: PaymentReceived, written_off: object
) -> None:
    await conn.execute(
        "INSERT INTO payments(payment_id, pool_id, amount, written_off, paid_on)"
        " VALUES ($1, $2, $3, $4, $5)",
        payment.payment_id,
        payment.pool_id,
        payment.amount,
        written_off,
        payment.paid_on,
    )
    await conn.execute(
        "UPDATE receivables SET state = 'paid', payment_id = $3"
        " WHERE core_enterprise_id = $1 AND receivable_id = ANY($2::text[])",
        core_enterprise_id,
        payment.receivable_ids,
        payment.payment_id,
    )
