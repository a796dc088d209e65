"""The auditor's view of credit's exposure (issue 6, defect 1; issue 8): in every pool, the
loans less the money on hold are within the borrowing base min(eligible level × rate, line),
or the pool's latest payment released nothing (the sweep rule: while loans are above the base,
every fen goes to the funders or stays on hold)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.credit.domain import Facility, borrowing_base
from shared.contracts.messages import DayCount
from shared.db import create_pool


async def audit_exposure(database_url: str) -> dict[str, Any]:
    pool = await create_pool(database_url, "credit", 2)
    try:
        async with (
            pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            rows = await conn.fetch(
                "SELECT p.pool_id, coalesce(p.eligible_level, p.water_level) AS water_level,"
                " p.held + p.held_pending AS held, f.credit_line, f.discount_rate,"
                " l.loans, r.amount AS last_amount,"
                " r.principal + r.interest + r.held - r.from_held AS last_repaid,"
                " r.payment_id AS last_payment"
                " FROM pools p"
                " JOIN (SELECT pool_id, sum(outstanding) AS loans FROM loans"
                "       WHERE outstanding > 0 GROUP BY pool_id) l ON l.pool_id = p.pool_id"
                " LEFT JOIN facilities f ON f.pool_id = p.pool_id"
                " LEFT JOIN LATERAL (SELECT amount, principal, interest, held, from_held,"
                "       payment_id FROM repayments WHERE pool_id = p.pool_id AND kind <> 'hold'"
                "       ORDER BY created_at DESC, payment_id DESC LIMIT 1) r ON true"
                " ORDER BY p.pool_id"
            )
    finally:
        await pool.close()
    problems: list[str] = []
    for row in rows:
        facility = (
            None
            if row["credit_line"] is None
            else Facility(
                row["credit_line"], row["discount_rate"], Decimal(0), "", DayCount.ACT_360
            )
        )
        base = borrowing_base(Decimal(row["water_level"]), facility)
        loans = Decimal(row["loans"]) - Decimal(row["held"])
        if loans <= base:
            continue
        swept = row["last_amount"] is not None and row["last_repaid"] >= row["last_amount"]
        if not swept:
            problems.append(
                f"pool {row['pool_id']}: loans {loans} exceed the borrowing base {base}"
                + (
                    f" and payment {row['last_payment']} released money"
                    if row["last_payment"] is not None
                    else " with no payment that swept to repayment"
                )
            )
    return {"pools_with_loans": len(rows), "problems": problems}
