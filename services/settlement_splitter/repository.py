"""SQL for settlement-splitter's own schema: settlements and the hash-chained ledger."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from services.settlement_splitter.domain import (
    GENESIS,
    HASH_FORMAT,
    PostedTransaction,
    canonical_body,
    encode_canonical,
)
from shared.contracts import messages as m
from shared.db import Connection

Transaction = tuple[str, int, str, str, str, str, str, str, bytes]
# (pool_id, seq, payment_id, kind, inputs_json, prev_hash, hash, format, hashed)
Entry = tuple[str, int, int, str, Decimal]  # (pool_id, seq, line, account, amount)


@dataclass
class LedgerChanges:
    transactions: list[Transaction] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    settlements: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.transactions or self.settlements)


class LedgerStore(Protocol):
    async def heads(self, pool_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        """Each pool's chain head (seq, hash), its controlled account created when new and
        locked until commit."""
        ...

    async def settlements(self, payment_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...

    async def write(self, changes: LedgerChanges) -> None:
        """The transactions with their entries, each pool's new head, the settlements."""
        ...


class PostgresLedgerStore:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def heads(self, pool_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        rows = await self.conn.fetch(
            "INSERT INTO controlled_accounts(pool_id, head_hash)"
            " SELECT p, $2 FROM unnest($1::text[]) AS p ORDER BY p"
            " ON CONFLICT (pool_id) DO UPDATE SET pool_id = EXCLUDED.pool_id"
            " RETURNING pool_id, last_seq, head_hash",
            sorted(pool_ids),  # one lock order for every batch
            GENESIS,
        )
        return {r["pool_id"]: (r["last_seq"], r["head_hash"]) for r in rows}

    async def settlements(self, payment_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        rows = await self.conn.fetch(
            "SELECT * FROM settlements WHERE payment_id = ANY($1::text[])", list(payment_ids)
        )
        return {r["payment_id"]: dict(r) for r in rows}

    async def write(self, changes: LedgerChanges) -> None:
        if changes.transactions:
            last = {pool: (seq, digest) for pool, seq, *_, digest, _, _ in changes.transactions}
            await self.conn.execute(
                "WITH tx AS ("
                "  INSERT INTO ledger_transactions(pool_id, seq, payment_id, kind, inputs,"
                "  prev_hash, hash, format, hashed)"
                "  SELECT t.pool_id, t.seq, t.payment_id, t.kind, t.inputs::jsonb, t.prev_hash,"
                "  t.hash, t.format, t.hashed FROM unnest($1::text[], $2::integer[], $3::text[],"
                "  $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bytea[])"
                "  AS t(pool_id, seq, payment_id, kind, inputs, prev_hash, hash, format, hashed)"
                "  RETURNING id, pool_id, seq),"
                " entries AS ("
                "  INSERT INTO ledger_entries(transaction_id, line, account, amount)"
                "  SELECT tx.id, e.line, e.account, e.amount FROM tx JOIN"
                "  unnest($10::text[], $11::integer[], $12::integer[], $13::text[],"
                "  $14::numeric[]) AS e(pool_id, seq, line, account, amount)"
                "  ON e.pool_id = tx.pool_id AND e.seq = tx.seq)"
                " UPDATE controlled_accounts SET last_seq = h.seq, head_hash = h.hash"
                " FROM unnest($15::text[], $16::integer[], $17::text[]) AS h(pool_id, seq, hash)"
                " WHERE controlled_accounts.pool_id = h.pool_id",
                *map(list, zip(*changes.transactions, strict=True)),
                *map(list, zip(*changes.entries, strict=True)),
                list(last),
                [seq for seq, _ in last.values()],
                [digest for _, digest in last.values()],
            )
        if changes.settlements:
            rows = changes.settlements
            await self.conn.execute(
                "INSERT INTO settlements(payment_id, pool_id, amount, state, payment,"
                " instruction, released)"
                " SELECT s.payment_id, s.pool_id, s.amount, s.state, s.payment::jsonb,"
                " s.instruction::jsonb, s.released FROM unnest($1::text[], $2::text[],"
                " $3::numeric[], $4::text[], $5::text[], $6::text[], $7::numeric[])"
                " AS s(payment_id, pool_id, amount, state, payment, instruction, released)"
                " ON CONFLICT (payment_id) DO UPDATE SET state = EXCLUDED.state,"
                " payment = EXCLUDED.payment, instruction = EXCLUDED.instruction,"
                " released = EXCLUDED.released, updated_at = now()",
                [r["payment_id"] for r in rows],
                [r["pool_id"] for r in rows],
                [r["amount"] for r in rows],
                [r["state"] for r in rows],
                [_json_or_null(r["payment"]) for r in rows],
                [_json_or_null(r["instruction"]) for r in rows],
                [r["released"] for r in rows],
            )


@dataclass
class InMemoryLedgerStore:
    """The fake: the splitter's tables as lists and dicts, for handler tests."""

    accounts: dict[str, tuple[int, str]] = field(default_factory=dict)
    transactions: list[Transaction] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    settlement_rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def heads(self, pool_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        for pool_id in pool_ids:
            self.accounts.setdefault(pool_id, (0, GENESIS))
        return {p: self.accounts[p] for p in pool_ids}

    async def settlements(self, payment_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {p: dict(self.settlement_rows[p]) for p in payment_ids if p in self.settlement_rows}

    async def write(self, changes: LedgerChanges) -> None:
        posted = {(t[0], t[1]) for t in self.transactions}
        for transaction in changes.transactions:
            if (transaction[0], transaction[1]) in posted:
                raise ValueError(f"seq {transaction[1]} of pool {transaction[0]} posted twice")
            self.transactions.append(transaction)
            self.accounts[transaction[0]] = (transaction[1], transaction[6])
        self.entries.extend(changes.entries)
        for row in changes.settlements:
            self.settlement_rows[row["payment_id"]] = dict(row)

    def chain(self, pool_id: str) -> list[PostedTransaction]:
        """The pool's chain as the auditor reads it from PostgreSQL (`chain` below)."""
        return [
            PostedTransaction(
                pool,
                seq,
                payment_id,
                kind,
                tuple(
                    (account, amount)
                    for p, s, _, account, amount in self.entries
                    if (p, s) == (pool, seq)
                ),
                json.loads(inputs),
                prev,
                digest,
                fmt,
                hashed,
            )
            for pool, seq, payment_id, kind, inputs, prev, digest, fmt, hashed in self.transactions
            if pool == pool_id
        ]


@dataclass
class LedgerBatch:
    """What one batch transaction reads and writes in the splitter's schema.

    `prepare` locks every controlled account the batch touches and loads every settlement it
    names, in two statements. Handlers then decide in memory: `post` chains a ledger
    transaction onto the pool's head and `save_settlement` records the settlement's new state.
    `flush` writes it all in two statements before the batch commits. So a batch of any size
    costs four round trips, never one per message (STYLE: batches). Anything not prepared is
    loaded on first use, so a handler is correct even when called outside a prepared batch.
    """

    store: LedgerStore | None = None  # None: PostgreSQL on the batch's connection
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    settlements: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    changes: LedgerChanges = field(default_factory=LedgerChanges)
    _saved: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _store(self, conn: Connection | None) -> LedgerStore:
        if self.store is not None:
            return self.store
        assert conn is not None, "a LedgerBatch without a store needs a connection"
        return PostgresLedgerStore(conn)

    async def prepare(self, conn: Connection | None, events: Sequence[m.Message]) -> None:
        """Lock every account and load every settlement the batch names, in two statements."""
        moving = [e for e in events if isinstance(e, m.ReceivablesSettled | m.RepaymentInstruction)]
        await self._load(conn, (e.pool_id for e in moving), (e.payment_id for e in moving))

    async def _load(
        self, conn: Connection | None, pool_ids: Iterable[str], payment_ids: Iterable[str]
    ) -> None:
        pools = sorted(set(pool_ids) - set(self.heads))
        if pools:
            for pool_id, (seq, digest) in (await self._store(conn).heads(pools)).items():
                self.heads[pool_id] = {"seq": seq, "hash": digest}
        payments = sorted(set(payment_ids) - set(self.settlements))
        if payments:
            self.settlements.update(dict.fromkeys(payments))
            self.settlements.update(await self._store(conn).settlements(payments))

    async def head(self, conn: Connection | None, pool_id: str) -> dict[str, Any]:
        """The pool's chain head ({"seq", "hash"}), its account locked until commit."""
        if pool_id not in self.heads:
            await self._load(conn, [pool_id], [])
        return self.heads[pool_id]

    async def settlement(self, conn: Connection | None, payment_id: str) -> dict[str, Any] | None:
        if payment_id not in self.settlements:
            await self._load(conn, [], [payment_id])
        return self.settlements[payment_id]

    def post(
        self,
        head: dict[str, Any],
        *,
        pool_id: str,
        payment_id: str,
        kind: str,
        entries: Sequence[tuple[str, Decimal]],
        inputs: Mapping[str, Any],
    ) -> str:
        """Chain one balanced transaction after `head`, advance the head, return its hash."""
        if sum(amount for _, amount in entries) != 0:
            raise ValueError(f"unbalanced ledger transaction for {payment_id}: {entries}")
        seq = head["seq"] + 1
        body = canonical_body(
            head["hash"],
            pool_id=pool_id,
            seq=seq,
            payment_id=payment_id,
            kind=kind,
            entries=entries,
            inputs=inputs,
        )
        hashed = encode_canonical(body)
        digest = hashlib.sha256(hashed).hexdigest()
        inputs_json = json.dumps(body["inputs"], sort_keys=True, ensure_ascii=False)
        self.changes.transactions.append(
            (pool_id, seq, payment_id, kind, inputs_json, head["hash"], digest, HASH_FORMAT, hashed)
        )
        self.changes.entries.extend(
            (pool_id, seq, line, account, amount) for line, (account, amount) in enumerate(entries)
        )
        head.update(seq=seq, hash=digest)
        return digest

    def save_settlement(
        self,
        payment_id: str,
        pool_id: str,
        amount: Decimal,
        state: str,
        *,
        payment: dict[str, Any] | None = None,
        instruction: dict[str, Any] | None = None,
        released: Decimal | None = None,
    ) -> None:
        before = self.settlements.get(payment_id) or {}
        row = {
            "payment_id": payment_id,
            "pool_id": pool_id,
            "amount": amount,
            "state": state,
            "payment": payment if payment is not None else before.get("payment"),
            "instruction": instruction if instruction is not None else before.get("instruction"),
            "released": released,
        }
        self.settlements[payment_id] = self._saved[payment_id] = row

    async def flush(self, conn: Connection | None) -> None:
        self.changes.settlements = list(self._saved.values())
        if self.changes:
            await self._store(conn).write(self.changes)
        self.changes = LedgerChanges()
        self._saved.clear()


def _json_or_null(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


async def chain(conn: Connection, pool_id: str) -> list[PostedTransaction]:
    rows = await conn.fetch(
        "SELECT t.id, t.pool_id, t.seq, t.payment_id, t.kind, t.inputs, t.prev_hash, t.hash,"
        " t.format, t.hashed,"
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
            r["format"],
            r["hashed"],
        )
        for r in rows
    ]


async def heads(conn: Connection) -> list[tuple[str, int, str]]:
    """Each pool's recorded chain head: (pool_id, last_seq, head_hash)."""
    return [
        (r["pool_id"], r["last_seq"], r["head_hash"])
        for r in await conn.fetch(
            "SELECT pool_id, last_seq, head_hash FROM controlled_accounts ORDER BY pool_id"
        )
    ]


async def balances(conn: Connection) -> dict[str, Decimal]:
    rows = await conn.fetch(
        "SELECT account, sum(amount) AS balance FROM ledger_entries GROUP BY account"
        " ORDER BY account"
    )
    return {r["account"]: r["balance"] for r in rows}
