"""SQL for settlement-splitter's own schema: settlements and the hash-chained ledger."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from services.settlement_splitter.domain import GENESIS, PostedTransaction, transaction_hash


async def lock_account(
    conn: asyncpg.Connection, pool_id: str, locked: dict[Any, Any]
) -> dict[str, Any]:
    """Lock the pool's controlled account for the rest of the transaction and return its chain
    head ({"seq", "hash"}), which `post` advances. `locked` remembers the pools this
    transaction holds, so a batch locks each pool once."""
    key = ("controlled_account", pool_id)
    if key not in locked:
        # One round trip: create the account if new, lock its row, read the head.
        row = await conn.fetchrow(
            "INSERT INTO controlled_accounts(pool_id, head_hash) VALUES ($1, $2)"
            " ON CONFLICT (pool_id) DO UPDATE SET pool_id = EXCLUDED.pool_id"
            " RETURNING last_seq, head_hash",
            pool_id,
            GENESIS,
        )
        assert row is not None
        locked[key] = {"seq": row["last_seq"], "hash": row["head_hash"]}
    head: dict[str, Any] = locked[key]
    return head


async def settlement(conn: asyncpg.Connection, payment_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM settlements WHERE payment_id = $1", payment_id)


async def save_settlement(
    conn: asyncpg.Connection,
    payment_id: str,
    pool_id: str,
    amount: Decimal,
    state: str,
    *,
    payment: dict[str, Any] | None = None,
    instruction: dict[str, Any] | None = None,
    released: Decimal | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO settlements(payment_id, pool_id, amount, state, payment, instruction,"
        " released) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (payment_id) DO UPDATE SET state = $4,"
        " payment = coalesce($5, settlements.payment),"
        " instruction = coalesce($6, settlements.instruction), released = $7,"
        " updated_at = now()",
        payment_id,
        pool_id,
        amount,
        state,
        payment,
        instruction,
        released,
    )


async def post(
    conn: asyncpg.Connection,
    head: dict[str, Any],
    *,
    pool_id: str,
    payment_id: str,
    kind: str,
    entries: Sequence[tuple[str, Decimal]],
    inputs: Mapping[str, Any],
) -> str:
    """Append one balanced transaction to the pool's chain after `head` (from `lock_account`),
    advance the head and return the new hash. One statement: the transaction, its entries
    and the account's head move together."""
    if sum(amount for _, amount in entries) != 0:
        raise ValueError(f"unbalanced ledger transaction for {payment_id}: {entries}")
    seq = head["seq"] + 1
    prev = head["hash"]
    digest = transaction_hash(
        prev,
        pool_id=pool_id,
        seq=seq,
        payment_id=payment_id,
        kind=kind,
        entries=entries,
        inputs=inputs,
    )
    await conn.execute(
        "WITH tx AS ("
        "  INSERT INTO ledger_transactions(pool_id, seq, payment_id, kind, inputs, prev_hash,"
        "  hash) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id),"
        " entries AS ("
        "  INSERT INTO ledger_entries(transaction_id, line, account, amount)"
        "  SELECT tx.id, e.line, e.account, e.amount FROM tx,"
        "  unnest($8::integer[], $9::text[], $10::numeric[]) AS e(line, account, amount))"
        " UPDATE controlled_accounts SET last_seq = $2, head_hash = $7 WHERE pool_id = $1",
        pool_id,
        seq,
        payment_id,
        kind,
        dict(inputs),
        prev,
        digest,
        list(range(len(entries))),
        [account for account, _ in entries],
        [amount for _, amount in entries],
    )
    head.update(seq=seq, hash=digest)
    return digest


async def chain(conn: asyncpg.Connection, pool_id: str) -> list[PostedTransaction]:
    rows = await conn.fetch(
        "SELECT t.id, t.pool_id, t.seq, t.payment_id, t.kind, t.inputs, t.prev_hash, t.hash,"
        " coalesce(array_agg(e.account ORDER BY e.line) FILTER (WHERE e.account IS NOT NULL),"
        "   '{}') AS accounts,"
        " coalesce(array_agg(e.amount ORDER BY e.line) FILTER (WHERE e.account IS NOT NULL),"
        "   '{}') AS amounts"
        " FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id"
        " WHERE t.pool_id = $1 GROUP BY t.id ORDER BY t.seq",
        pool_id,
    )
    return [
        PostedTransaction(
            r["pool_id"],
            r["seq"],
            r["payment_id"],
            r["kind"],
            tuple(zip(r["accounts"], r["amounts"], strict=True)),
            r["inputs"],
            r["prev_hash"],
            r["hash"],
        )
        for r in rows
    ]


async def heads(conn: asyncpg.Connection) -> list[tuple[str, int, str]]:
    """Each pool's recorded chain head: (pool_id, last_seq, head_hash)."""
    return [
        (r["pool_id"], r["last_seq"], r["head_hash"])
        for r in await conn.fetch(
            "SELECT pool_id, last_seq, head_hash FROM controlled_accounts ORDER BY pool_id"
        )
    ]


async def balances(conn: asyncpg.Connection) -> dict[str, Decimal]:
    rows = await conn.fetch(
        "SELECT account, sum(amount) AS balance FROM ledger_entries GROUP BY account"
        " ORDER BY account"
    )
    return {r["account"]: r["balance"] for r in rows}
