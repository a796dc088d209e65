"""The auditor's view of the ledger: every pool's chain verified, each pool's recorded
balances checked against its entries, every account's kept and running balances checked
against its entries, all balances summed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.settlement_splitter import repository as repo
from services.settlement_splitter.domain import verify_chain
from shared.db import create_pool


async def audit(database_url: str) -> dict[str, Any]:
    pool = await create_pool(database_url, "settlement", 2)
    try:
        async with pool.acquire() as conn:
            problems: list[str] = []
            transactions = 0
            for pool_id, last_seq, head_hash in await repo.heads(conn):
                chain = await repo.chain(conn, pool_id)
                transactions += len(chain)
                problems += verify_chain(chain, head=(last_seq, head_hash))
            problems += await repo.balance_drift(conn)
            problems += await repo.account_drift(conn)
            balances = await repo.balances(conn)
            total = sum(balances.values(), Decimal("0.00"))
            if total != 0:
                problems.append(f"account balances sum to {total}, not zero")
            return {
                "transactions": transactions,
                "balances": balances,
                "sum_of_balances": total,
                "problems": problems,
            }
    finally:
        await pool.close()
