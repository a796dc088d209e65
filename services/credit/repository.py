"""SQL for credit's own schema."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from services.credit.domain import Facility, Loan, Repayment
from shared.contracts.messages import DayCount, FacilitySet
from shared.db import Connection
from shared.money import FEN, ZERO


async def create_pool(conn: Connection, pool_id: str, core: str, supplier: str) -> None:
    await conn.execute(
        "INSERT INTO pools(pool_id, core_enterprise_id, supplier_id) VALUES ($1, $2, $3)"
        " ON CONFLICT (pool_id) DO UPDATE SET core_enterprise_id = $2, supplier_id = $3",
        pool_id,
        core,
        supplier,
    )


async def lock_pool(conn: Connection, pool_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT pool_id, core_enterprise_id, supplier_id, water_level FROM pools"
        " WHERE pool_id = $1 FOR UPDATE",
        pool_id,
    )


async def set_water_level(conn: Connection, pool_id: str, level: Decimal) -> None:
    await conn.execute("UPDATE pools SET water_level = $2 WHERE pool_id = $1", pool_id, level)


async def upsert_facility(conn: Connection, event: FacilitySet) -> None:
    await conn.execute(
        "INSERT INTO facilities(pool_id, credit_line, discount_rate, annual_interest_rate,"
        " funder_id, funder_kind, day_count, tenor_days, set_by_event)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (pool_id) DO UPDATE SET credit_line = $2, discount_rate = $3,"
        " annual_interest_rate = $4, funder_id = $5, funder_kind = $6, day_count = $7,"
        " tenor_days = $8, set_by_event = $9, updated_at = now()",
        event.pool_id,
        event.credit_line,
        event.discount_rate,
        event.annual_interest_rate,
        event.funder_id,
        event.funder_kind,
        event.day_count.value,
        event.tenor_days,
        event.event_id,
    )


async def facility(conn: Connection, pool_id: str) -> Facility | None:
    row = await conn.fetchrow("SELECT * FROM facilities WHERE pool_id = $1", pool_id)
    if row is None:
        return None
    return Facility(
        row["credit_line"],
        row["discount_rate"],
        row["annual_interest_rate"],
        row["funder_id"],
        DayCount(row["day_count"]),
        row["tenor_days"],
    )


async def lock_open_loans(conn: Connection, pool_id: str) -> list[Loan]:
    rows = await conn.fetch(
        "SELECT * FROM loans WHERE pool_id = $1 AND outstanding > 0"
        " ORDER BY disbursed_on, loan_id FOR UPDATE",
        pool_id,
    )
    return [
        Loan(
            r["loan_id"],
            r["funder_id"],
            r["outstanding"],
            r["annual_interest_rate"],
            r["disbursed_on"],
            r["maturity_on"],
            DayCount(r["day_count"]),
        )
        for r in rows
    ]


async def loan_balance_and_in_flight(conn: Connection, pool_id: str) -> tuple[Decimal, Decimal]:
    row = await conn.fetchrow(
        "SELECT (SELECT coalesce(sum(outstanding), 0) FROM loans WHERE pool_id = $1) AS loans,"
        " (SELECT coalesce(sum(amount), 0) FROM applications WHERE pool_id = $1"
        "   AND state IN ('awaiting_buyer', 'requested')) AS in_flight",
        pool_id,
    )
    assert row is not None
    return Decimal(row["loans"]).quantize(FEN), Decimal(row["in_flight"]).quantize(FEN)


async def application(conn: Connection, pool_id: str, application_id: str) -> asyncpg.Record | None:
    """The application, locked, if it belongs to this pool: every lookup by id is scoped by
    the pool, or a message of one pool could move another's money (issue 6, defect 1)."""
    return await conn.fetchrow(
        "SELECT * FROM applications WHERE application_id = $1 AND pool_id = $2 FOR UPDATE",
        application_id,
        pool_id,
    )


async def application_pool(conn: Connection, application_id: str) -> str | None:
    """Which pool holds (or has claimed) an application id: ids are unique platform-wide."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT pool_id FROM applications WHERE application_id = $1"
        " UNION ALL SELECT pool_id FROM application_claims WHERE application_id = $1 LIMIT 1",
        application_id,
    )


async def claim_application_id(conn: Connection, pool_id: str, application_id: str) -> bool:
    """Reserve an application id for a pool before its application is published (the HTTP
    front), so that a collision is refused at once; False when it is taken."""
    if await application_pool(conn, application_id) is not None:
        return False
    return bool(
        await conn.fetchval(
            "INSERT INTO application_claims(application_id, pool_id) VALUES ($1, $2)"
            " ON CONFLICT (application_id) DO NOTHING RETURNING true",
            application_id,
            pool_id,
        )
    )


async def release_application_claim(conn: Connection, pool_id: str, application_id: str) -> None:
    await conn.execute(
        "DELETE FROM application_claims WHERE application_id = $1 AND pool_id = $2",
        application_id,
        pool_id,
    )


async def insert_application(
    conn: Connection,
    application_id: str,
    pool_id: str,
    amount: Decimal,
    state: str,
    reason: str | None,
    funder_id: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO applications(application_id, pool_id, amount, state, reason, funder_id)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        application_id,
        pool_id,
        amount,
        state,
        reason,
        funder_id,
    )


async def set_application_state(
    conn: Connection,
    pool_id: str,
    application_id: str,
    state: str,
    reason: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE applications SET state = $3, reason = $4, updated_at = now()"
        " WHERE application_id = $1 AND pool_id = $2",
        application_id,
        pool_id,
        state,
        reason,
    )


async def open_loan(conn: Connection, loan: Loan, pool_id: str) -> None:
    await conn.execute(
        "INSERT INTO loans(loan_id, pool_id, funder_id, principal, outstanding,"
        " annual_interest_rate, day_count, disbursed_on, maturity_on)"
        " VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8)",
        loan.loan_id,
        pool_id,
        loan.funder_id,
        loan.outstanding,
        loan.annual_interest_rate,
        loan.day_count.value,
        loan.disbursed_on,
        loan.maturity_on,
    )


async def reserve_repayment(
    conn: Connection,
    pool_id: str,
    payment_id: str,
    amount: Decimal,
    plan: Sequence[Repayment],
    level_after: Decimal,
    instruction: dict[str, Any],
) -> bool:
    """Record the repayment decided for a payment, reduce the loans at once (so the next
    payment sees the reduced balance, step 4) and set the pool's level after the write-off:
    one statement, and nothing at all when the payment was already decided (returns False)."""
    reserved = await conn.fetchval(
        "WITH reserved AS ("
        "  INSERT INTO repayments(payment_id, pool_id, amount, principal, interest, state,"
        "  instruction) VALUES ($1, $2, $3, $4, $5, 'reserved', $6)"
        "  ON CONFLICT (payment_id) DO NOTHING RETURNING payment_id),"
        " repaid AS ("
        "  UPDATE loans SET outstanding = outstanding - r.principal"
        "  FROM unnest($7::text[], $8::numeric[]) AS r(loan_id, principal), reserved"
        "  WHERE loans.loan_id = r.loan_id AND loans.pool_id = $2),"
        " level AS ("
        "  UPDATE pools SET water_level = $9 FROM reserved WHERE pools.pool_id = $2)"
        " SELECT count(*) FROM reserved",
        payment_id,
        pool_id,
        amount,
        sum((r.principal for r in plan), ZERO),
        sum((r.interest for r in plan), ZERO),
        instruction,
        [r.loan_id for r in plan],
        [r.principal for r in plan],
        level_after,
    )
    return bool(reserved)


async def confirm_repayments(conn: Connection, settled: Sequence[tuple[str, str]]) -> None:
    """Confirm the reserved repayments of these (pool_id, payment_id) pairs."""
    await conn.execute(
        "UPDATE repayments SET state = 'confirmed' FROM unnest($1::text[], $2::text[])"
        " AS s(pool_id, payment_id)"
        " WHERE repayments.payment_id = s.payment_id AND repayments.pool_id = s.pool_id",
        [pool_id for pool_id, _ in settled],
        [payment_id for _, payment_id in settled],
    )
