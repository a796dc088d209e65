"""SQL for settlement-splitter's own schema: the pools' controlled accounts (chain heads and
balances), settlements and the hash-chained ledger."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal
from typing import Any, Literal, Protocol

from services.settlement_splitter.domain import (
    GENESIS,
    HASH_FORMAT,
    PostedTransaction,
    account_kind,
    canonical_body,
    encode_canonical,
    free_account,
    frozen_account,
    held_account,
)
from shared.calendar import business_date, timezone
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.split_rules import RuleSet
from shared.db import Connection, columns
from shared.money import ZERO

Transaction = tuple[str, int, str, str, str, str, str, str, bytes]
# (pool_id, seq, payment_id, kind, inputs_json, prev_hash, hash, format, hashed)
Entry = tuple[str, int, int, str, Decimal]  # (pool_id, seq, line, account, amount)


@dataclass(slots=True)
class ControlledAccount:
    """A pool's controlled account as a batch holds it locked: the head of its hash chain and
    the balances of the pool's own ledger accounts (frozen, held, free), kept current in
    memory as the batch posts."""

    pool_id: str
    seq: int = 0
    hash: str = GENESIS
    frozen: Decimal = ZERO
    held: Decimal = ZERO
    free: Decimal = ZERO

    @property
    def head(self) -> tuple[int, str]:
        return self.seq, self.hash

    def balance_changes(self, entries: Iterable[tuple[str, Decimal]]) -> tuple[Decimal, ...]:
        """What `entries` change on (frozen, held, free); other accounts are not the pool's."""
        mine = {
            frozen_account(self.pool_id): 0,
            held_account(self.pool_id): 1,
            free_account(self.pool_id): 2,
        }
        changes = [ZERO, ZERO, ZERO]
        for account, amount in entries:
            if account in mine:
                changes[mine[account]] += amount
        return tuple(changes)

    def move(self, changes: Sequence[Decimal]) -> None:
        """Apply balance changes; a pool account never goes below zero (the table's CHECK)."""
        frozen, held, free = (
            self.frozen + changes[0],
            self.held + changes[1],
            self.free + changes[2],
        )
        if min(frozen, held, free) < 0:
            raise ValueError(
                f"pool {self.pool_id} would go below zero: frozen {frozen}, held {held},"
                f" free {free}"
            )
        self.frozen, self.held, self.free = frozen, held, free


def pool_balance_changes(entries: Iterable[Entry]) -> dict[str, tuple[Decimal, ...]]:
    """Per pool, what a write's entries change on its (frozen, held, free) balances: the one
    rule both stores keep their balance columns by."""
    lines: dict[str, list[tuple[str, Decimal]]] = {}
    for pool_id, _, _, account, amount in entries:
        lines.setdefault(pool_id, []).append((account, amount))
    return {
        pool_id: ControlledAccount(pool_id).balance_changes(pool_lines)
        for pool_id, pool_lines in lines.items()
    }


SettlementKind = Literal["payment", "prepayment", "hold"]
SettlementState = Literal["frozen", "instructed", "released", "voided"]


@dataclass(slots=True)
class Settlement:
    """One payment's (prepayment's, hold settlement's) way through the splitter."""

    payment_id: str
    pool_id: str
    amount: Decimal
    state: SettlementState
    kind: SettlementKind = "payment"
    payment: dict[str, Any] | None = None  # the event that brought the money
    instruction: dict[str, Any] | None = None  # the event that decided it
    released: Decimal | None = None
    reversed: Decimal = ZERO  # returned to the buyer by reversals so far
    reversed_parts: dict[str, str] = field(default_factory=dict)  # account -> given back


@dataclass(slots=True)
class Payout:
    """A payout of a supplier's free balance, from instruction to the bank's answer."""

    payout_id: str
    pool_id: str
    supplier_id: str
    bank_account: str
    amount: Decimal
    state: Literal["instructed", "executed", "rejected"] = "instructed"
    bank_reference: str | None = None


@dataclass(frozen=True, slots=True)
class PoolRules:
    """The split rules in force for a pool, and which version of whose they are."""

    scope_key: str  # programme:<core enterprise> | pool:<pool_id>
    version: int
    rules: RuleSet

    @property
    def label(self) -> str:
        """What the hash chain records as the rule version."""
        return f"rules:{self.scope_key}@v{self.version}"


@dataclass
class HeldLoan:
    """A loan credit opened, as the splitter holds it: what was lent, what splits repaid."""

    loan_id: str
    pool_id: str
    funder_id: str
    principal: Decimal
    repaid: Decimal = Decimal("0.00")
    booked: bool = False  # its disbursement is in the book (loans opened since issue 10)
    investors: list[tuple[str, Decimal]] = field(default_factory=list)  # a platform's loan

    @property
    def outstanding(self) -> Decimal:
        return self.principal - self.repaid


@dataclass
class LedgerChanges:
    transactions: list[Transaction] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    settlements: list[Settlement] = field(default_factory=list)
    new_loans: list[HeldLoan] = field(default_factory=list)
    repaid: dict[str, Decimal] = field(default_factory=dict)  # loan id -> principal repaid now
    pools: list[tuple[str, str, str]] = field(default_factory=list)  # pool, core, supplier
    payouts: list[Payout] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.transactions
            or self.settlements
            or self.new_loans
            or self.repaid
            or self.pools
            or self.payouts
        )

    def account_moves(self) -> dict[str, Decimal]:
        """What this write moves on each account, summed (the ledger_accounts update)."""
        moved: dict[str, Decimal] = {}
        for *_, account, amount in self.entries:
            moved[account] = moved.get(account, ZERO) + amount
        return moved

    def balances_after(self, before: Mapping[str, Decimal]) -> list[Decimal]:
        """Each entry's account balance after it, in posting order, from the balances
        before this write."""
        running = dict(before)
        after = []
        for *_, account, amount in self.entries:
            running[account] = running.get(account, ZERO) + amount
            after.append(running[account])
        return after


class LedgerStore(Protocol):
    async def accounts(self, pool_ids: Sequence[str]) -> dict[str, ControlledAccount]:
        """Each pool's controlled account (chain head and balances), created when new and
        locked until commit."""
        ...

    async def settlements(self, payment_ids: Sequence[str]) -> dict[str, Settlement]: ...

    async def loans(self, loan_ids: Sequence[str]) -> dict[str, HeldLoan]:
        """The loans with these ids, locked until commit."""
        ...

    async def supplier(self, pool_id: str) -> str | None:
        """The pool's supplier, as intake's PoolOpened said."""
        ...

    async def core_enterprise(self, pool_id: str) -> str | None:
        """The pool's core enterprise (its buyer), as intake's PoolOpened said."""
        ...

    async def rules(self, pool_id: str) -> PoolRules | None:
        """The split rules in force for the pool: its own, else its programme's."""
        ...

    async def save_rules(self, scope_key: str, rules: dict[str, Any], event_id: str) -> int:
        """A new version of a scope's rules; returns its number."""
        ...

    async def volume_since(self, pool_id: str, since: datetime) -> Decimal:
        """What the pool's buyer paid since `since` (its freezes)."""
        ...

    async def split_of(self, payment_id: str) -> tuple[list[tuple[str, Decimal]], str | None]:
        """The lines of the payment's split transaction (none if it was not split) and the
        rule version it recorded."""
        ...

    async def posted(self, payment_id: str, kind: str) -> bool:
        """Is there a ledger transaction of this kind for this id?"""
        ...

    async def balances(self, accounts: Sequence[str]) -> dict[str, Decimal]:
        """The accounts' current balances (accounts never posted are absent)."""
        ...

    async def payouts(self, payout_ids: Sequence[str]) -> dict[str, Payout]:
        """The payouts with these ids, locked until commit."""
        ...

    async def write(self, changes: LedgerChanges) -> None:
        """The transactions with their entries, each pool's new head and balances (moved by
        the entries on its frozen, held and free accounts), the settlements."""
        ...


class PostgresLedgerStore:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def loans(self, loan_ids: Sequence[str]) -> dict[str, HeldLoan]:
        rows = await self.conn.fetch(
            "SELECT loan_id, pool_id, funder_id, principal, repaid, booked, investors FROM loans"
            " WHERE loan_id = ANY($1::text[]) ORDER BY loan_id FOR UPDATE",
            list(loan_ids),
        )
        return {
            r["loan_id"]: HeldLoan(
                **{
                    **dict(r),
                    "investors": [
                        (i["investor_id"], Decimal(i["amount"])) for i in _jsonb(r["investors"])
                    ],
                }
            )
            for r in rows
        }

    async def supplier(self, pool_id: str) -> str | None:
        found: str | None = await self.conn.fetchval(
            "SELECT supplier_id FROM pool_parties WHERE pool_id = $1", pool_id
        )
        return found

    async def core_enterprise(self, pool_id: str) -> str | None:
        found: str | None = await self.conn.fetchval(
            "SELECT core_enterprise_id FROM pool_parties WHERE pool_id = $1", pool_id
        )
        return found

    async def rules(self, pool_id: str) -> PoolRules | None:
        row = await self.conn.fetchrow(
            "SELECT scope_key, version, rules FROM split_rules WHERE scope_key = ANY(ARRAY["
            " 'pool:' || $1::text,"
            " 'programme:' || (SELECT core_enterprise_id FROM pool_parties WHERE pool_id = $1)])"
            " ORDER BY starts_with(scope_key, 'pool:') DESC, version DESC LIMIT 1",
            pool_id,
        )
        if row is None:
            return None
        rules = row["rules"]
        return PoolRules(
            row["scope_key"],
            row["version"],
            RuleSet.model_validate_json(rules)
            if isinstance(rules, str)
            else RuleSet.model_validate(rules),
        )

    async def save_rules(self, scope_key: str, rules: dict[str, Any], event_id: str) -> int:
        version: int = await self.conn.fetchval(
            "INSERT INTO split_rules(scope_key, version, rules, event_id)"
            " SELECT $1, coalesce(max(version), 0) + 1, $2::jsonb, $3 FROM split_rules"
            " WHERE scope_key = $1 RETURNING version",
            scope_key,
            json.dumps(rules),
            event_id,
        )
        return version

    async def volume_since(self, pool_id: str, since: datetime) -> Decimal:
        total: Decimal = await self.conn.fetchval(
            "SELECT coalesce(sum(e.amount), 0) FROM ledger_transactions t"
            " JOIN ledger_entries e ON e.transaction_id = t.id"
            " WHERE t.pool_id = $1 AND t.kind = 'freeze' AND t.posted_at >= $2"
            " AND e.account = 'frozen:' || $1",
            pool_id,
            since,
        )
        return total

    async def split_of(self, payment_id: str) -> tuple[list[tuple[str, Decimal]], str | None]:
        rows = await self.conn.fetch(
            "SELECT e.account, e.amount, t.inputs->>'rule_version' AS rule_version"
            " FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id"
            " WHERE t.payment_id = $1 AND t.kind = 'split' ORDER BY e.line",
            payment_id,
        )
        return [(r["account"], r["amount"]) for r in rows], (
            rows[0]["rule_version"] if rows else None
        )

    async def posted(self, payment_id: str, kind: str) -> bool:
        found: bool = await self.conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM ledger_transactions WHERE payment_id = $1 AND kind = $2)",
            payment_id,
            kind,
        )
        return found

    async def balances(self, accounts: Sequence[str]) -> dict[str, Decimal]:
        rows = await self.conn.fetch(
            "SELECT account, balance FROM ledger_accounts WHERE account = ANY($1::text[])",
            list(accounts),
        )
        return {r["account"]: r["balance"] for r in rows}

    async def payouts(self, payout_ids: Sequence[str]) -> dict[str, Payout]:
        rows = await self.conn.fetch(
            "SELECT payout_id, pool_id, supplier_id, bank_account, amount, state,"
            " bank_reference FROM payouts WHERE payout_id = ANY($1::text[])"
            " ORDER BY payout_id FOR UPDATE",
            list(payout_ids),
        )
        return {r["payout_id"]: Payout(**dict(r)) for r in rows}

    async def write_payouts(self, payouts: Sequence[Payout]) -> None:
        if payouts:
            await self.conn.execute(
                "INSERT INTO payouts(payout_id, pool_id, supplier_id, bank_account, amount,"
                " state, bank_reference) SELECT * FROM unnest($1::text[], $2::text[],"
                " $3::text[], $4::text[], $5::numeric[], $6::text[], $7::text[])"
                " ON CONFLICT (payout_id) DO UPDATE SET state = EXCLUDED.state,"
                " bank_reference = EXCLUDED.bank_reference, updated_at = now()",
                *columns(
                    payouts,
                    "payout_id",
                    "pool_id",
                    "supplier_id",
                    "bank_account",
                    "amount",
                    "state",
                    "bank_reference",
                ),
            )

    async def move_accounts(self, changes: LedgerChanges) -> list[Decimal]:
        """Move every account the entries touch by their sum, and return each entry's balance
        after it. First every account is created (typed, at zero) or locked, in one order for
        every batch; then moved: PostgreSQL checks a CHECK on the row an INSERT proposes even
        when it conflicts, so the move cannot ride on the upsert. The table's CHECK refuses an
        overdraft whatever the handler decided."""
        moved = changes.account_moves()
        names = sorted(moved)
        kinds = [account_kind(name) for name in names]
        rows = await self.conn.fetch(
            "INSERT INTO ledger_accounts AS a(account, type, min_balance, max_balance)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[], $4::numeric[])"
            " ON CONFLICT (account) DO UPDATE SET min_balance = EXCLUDED.min_balance,"
            " max_balance = EXCLUDED.max_balance RETURNING account, balance",
            names,
            [k.type for k in kinds],
            [k.min_balance for k in kinds],
            [k.max_balance for k in kinds],
        )
        before = {r["account"]: r["balance"] for r in rows}
        await self.conn.execute(
            "UPDATE ledger_accounts a SET balance = a.balance + m.amount"
            " FROM unnest($1::text[], $2::numeric[]) AS m(account, amount)"
            " WHERE a.account = m.account",
            names,
            [moved[name] for name in names],
        )
        return changes.balances_after(before)

    async def write_loans(self, changes: LedgerChanges) -> None:
        if changes.pools:
            await self.conn.execute(
                "INSERT INTO pool_parties(pool_id, core_enterprise_id, supplier_id)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
                " ON CONFLICT (pool_id) DO NOTHING",
                *map(list, zip(*changes.pools, strict=True)),
            )
        if changes.new_loans:
            await self.conn.execute(
                "INSERT INTO loans(loan_id, pool_id, funder_id, principal, repaid, booked,"
                " investors) SELECT l.loan_id, l.pool_id, l.funder_id, l.principal, l.repaid,"
                " l.booked, l.investors::jsonb FROM unnest($1::text[], $2::text[], $3::text[],"
                " $4::numeric[], $5::numeric[], $6::boolean[], $7::text[])"
                " AS l(loan_id, pool_id, funder_id, principal, repaid, booked, investors)",
                *columns(
                    changes.new_loans,
                    "loan_id",
                    "pool_id",
                    "funder_id",
                    "principal",
                    "repaid",
                    "booked",
                ),
                [
                    json.dumps([{"investor_id": i, "amount": str(a)} for i, a in loan.investors])
                    for loan in changes.new_loans
                ],
            )
        if changes.repaid:
            ids = sorted(changes.repaid)
            await self.conn.execute(
                "UPDATE loans SET repaid = loans.repaid + t.amount"
                " FROM unnest($1::text[], $2::numeric[]) AS t(loan_id, amount)"
                " WHERE loans.loan_id = t.loan_id",
                ids,
                [changes.repaid[i] for i in ids],
            )

    async def accounts(self, pool_ids: Sequence[str]) -> dict[str, ControlledAccount]:
        rows = await self.conn.fetch(
            "INSERT INTO controlled_accounts(pool_id, head_hash)"
            " SELECT p, $2 FROM unnest($1::text[]) AS p ORDER BY p"
            " ON CONFLICT (pool_id) DO UPDATE SET pool_id = EXCLUDED.pool_id"
            " RETURNING pool_id, last_seq, head_hash, frozen, held, free",
            sorted(pool_ids),  # one lock order for every batch
            GENESIS,
        )
        return {
            r["pool_id"]: ControlledAccount(
                r["pool_id"], r["last_seq"], r["head_hash"], r["frozen"], r["held"], r["free"]
            )
            for r in rows
        }

    async def settlements(self, payment_ids: Sequence[str]) -> dict[str, Settlement]:
        rows = await self.conn.fetch(
            "SELECT payment_id, pool_id, amount, state, kind, payment, instruction, released,"
            " reversed, reversed_parts FROM settlements WHERE payment_id = ANY($1::text[])",
            list(payment_ids),
        )
        return {
            r["payment_id"]: Settlement(
                **{**dict(r), "reversed_parts": _jsonb(r["reversed_parts"])}
            )
            for r in rows
        }

    async def write(self, changes: LedgerChanges) -> None:
        await self.write_loans(changes)
        await self.write_payouts(changes.payouts)
        if changes.transactions:
            after = await self.move_accounts(changes)
            last = {pool: (seq, digest) for pool, seq, *_, digest, _, _ in changes.transactions}
            moved = pool_balance_changes(changes.entries)
            nothing = (ZERO, ZERO, ZERO)
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
                "  INSERT INTO ledger_entries(transaction_id, line, account, amount,"
                "  balance_after) SELECT tx.id, e.line, e.account, e.amount, e.balance_after"
                "  FROM tx JOIN unnest($10::text[], $11::integer[], $12::integer[], $13::text[],"
                "  $14::numeric[], $21::numeric[])"
                "  AS e(pool_id, seq, line, account, amount, balance_after)"
                "  ON e.pool_id = tx.pool_id AND e.seq = tx.seq)"
                " UPDATE controlled_accounts SET last_seq = h.seq, head_hash = h.hash,"
                " frozen = controlled_accounts.frozen + h.frozen,"
                " held = controlled_accounts.held + h.held,"
                " free = controlled_accounts.free + h.free"
                " FROM unnest($15::text[], $16::integer[], $17::text[], $18::numeric[],"
                " $19::numeric[], $20::numeric[]) AS h(pool_id, seq, hash, frozen, held, free)"
                " WHERE controlled_accounts.pool_id = h.pool_id",
                *map(list, zip(*changes.transactions, strict=True)),
                *map(list, zip(*changes.entries, strict=True)),
                list(last),
                [seq for seq, _ in last.values()],
                [digest for _, digest in last.values()],
                *(
                    [moved.get(pool, nothing)[i] for pool in last]
                    for i in range(3)  # frozen, held, free
                ),
                after,
            )
        if changes.settlements:
            rows = changes.settlements
            await self.conn.execute(
                "INSERT INTO settlements(payment_id, pool_id, amount, state, kind, payment,"
                " instruction, released, reversed, reversed_parts, frozen_at)"
                " SELECT s.payment_id, s.pool_id, s.amount, s.state, s.kind, s.payment::jsonb,"
                " s.instruction::jsonb, s.released, s.reversed, s.reversed_parts::jsonb,"
                " CASE WHEN s.state = 'frozen' THEN now() END FROM unnest($1::text[],"
                " $2::text[], $3::numeric[], $4::text[], $5::text[], $6::text[], $7::text[],"
                " $8::numeric[], $9::numeric[], $10::text[]) AS s(payment_id, pool_id, amount,"
                " state, kind, payment, instruction, released, reversed, reversed_parts)"
                " ON CONFLICT (payment_id) DO UPDATE SET state = EXCLUDED.state,"
                " payment = EXCLUDED.payment, instruction = EXCLUDED.instruction,"
                " released = EXCLUDED.released, reversed = EXCLUDED.reversed,"
                " reversed_parts = EXCLUDED.reversed_parts,"
                " frozen_at = CASE WHEN EXCLUDED.state = 'frozen'"
                "  THEN coalesce(settlements.frozen_at, now()) END, updated_at = now()",
                *columns(rows, "payment_id", "pool_id", "amount", "state", "kind"),
                [_json_or_null(r.payment) for r in rows],
                [_json_or_null(r.instruction) for r in rows],
                [r.released for r in rows],
                [r.reversed for r in rows],
                [json.dumps(r.reversed_parts, sort_keys=True) for r in rows],
            )


@dataclass
class InMemoryLedgerStore:
    """The fake: the splitter's tables as lists and dicts, for handler tests."""

    account_rows: dict[str, ControlledAccount] = field(default_factory=dict)
    transactions: list[Transaction] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    settlement_rows: dict[str, Settlement] = field(default_factory=dict)
    loan_rows: dict[str, HeldLoan] = field(default_factory=dict)
    supplier_rows: dict[str, str] = field(default_factory=dict)
    programme_rows: dict[str, str] = field(default_factory=dict)  # pool -> core enterprise
    rule_rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    volumes: dict[str, Decimal] = field(default_factory=dict)
    account_balances: dict[str, Decimal] = field(default_factory=dict)
    payout_rows: dict[str, Payout] = field(default_factory=dict)

    async def split_of(self, payment_id: str) -> tuple[list[tuple[str, Decimal]], str | None]:
        splits = [t for t in self.transactions if t[2:4] == (payment_id, "split")]
        heads = {(t[0], t[1]) for t in splits}
        lines = [(a, v) for p, s, _, a, v in self.entries if (p, s) in heads]
        return lines, (json.loads(splits[0][4]).get("rule_version") if splits else None)

    async def posted(self, payment_id: str, kind: str) -> bool:
        return any(t[2:4] == (payment_id, kind) for t in self.transactions)

    async def balances(self, accounts: Sequence[str]) -> dict[str, Decimal]:
        return {a: self.account_balances[a] for a in accounts if a in self.account_balances}

    async def payouts(self, payout_ids: Sequence[str]) -> dict[str, Payout]:
        return {
            i: dataclasses.replace(self.payout_rows[i]) for i in payout_ids if i in self.payout_rows
        }

    async def supplier(self, pool_id: str) -> str | None:
        return self.supplier_rows.get(pool_id)

    async def core_enterprise(self, pool_id: str) -> str | None:
        return self.programme_rows.get(pool_id)

    async def rules(self, pool_id: str) -> PoolRules | None:
        core = self.programme_rows.get(pool_id)
        for key in (f"pool:{pool_id}", f"programme:{core}"):
            if self.rule_rows.get(key):
                versions = self.rule_rows[key]
                return PoolRules(key, len(versions), RuleSet.model_validate(versions[-1]))
        return None

    async def save_rules(self, scope_key: str, rules: dict[str, Any], event_id: str) -> int:
        self.rule_rows.setdefault(scope_key, []).append(rules)
        return len(self.rule_rows[scope_key])

    async def volume_since(self, pool_id: str, since: datetime) -> Decimal:
        """`volumes` (earlier payments, as a test sets them) and the freezes stored here."""
        freezes = {(t[0], t[1]) for t in self.transactions if t[0] == pool_id and t[3] == "freeze"}
        stored = sum(
            (v for p, s, _, a, v in self.entries if (p, s) in freezes and a == f"frozen:{pool_id}"),
            ZERO,
        )
        return self.volumes.get(pool_id, ZERO) + stored

    async def loans(self, loan_ids: Sequence[str]) -> dict[str, HeldLoan]:
        return {i: dataclasses.replace(self.loan_rows[i]) for i in loan_ids if i in self.loan_rows}

    async def accounts(self, pool_ids: Sequence[str]) -> dict[str, ControlledAccount]:
        for pool_id in pool_ids:
            self.account_rows.setdefault(pool_id, ControlledAccount(pool_id))
        return {p: dataclasses.replace(self.account_rows[p]) for p in pool_ids}

    async def settlements(self, payment_ids: Sequence[str]) -> dict[str, Settlement]:
        return {
            p: dataclasses.replace(self.settlement_rows[p])
            for p in payment_ids
            if p in self.settlement_rows
        }

    async def write(self, changes: LedgerChanges) -> None:
        # Checked whole before anything is kept, as PostgreSQL's one statement would be.
        posted = {(t[0], t[1]) for t in self.transactions}
        for transaction in changes.transactions:
            if (transaction[0], transaction[1]) in posted:
                raise ValueError(f"seq {transaction[1]} of pool {transaction[0]} posted twice")
        after = {
            pool_id: dataclasses.replace(self.account_rows[pool_id])
            for pool_id in {t[0] for t in changes.transactions}
        }
        for pool_id, moved in pool_balance_changes(changes.entries).items():
            after[pool_id].move(moved)
        balances = dict(self.account_balances)
        for account, amount in changes.account_moves().items():
            balances[account] = balances.get(account, ZERO) + amount
            kind = account_kind(account)
            if (kind.min_balance is not None and balances[account] < kind.min_balance) or (
                kind.max_balance is not None and balances[account] > kind.max_balance
            ):  # the table's CHECK
                raise ValueError(f"account {account} would be overdrawn: {balances[account]}")
        self.account_balances = balances
        for payout in changes.payouts:
            self.payout_rows[payout.payout_id] = dataclasses.replace(payout)
        for transaction in changes.transactions:
            self.transactions.append(transaction)
            after[transaction[0]].seq, after[transaction[0]].hash = transaction[1], transaction[6]
        self.account_rows.update(after)
        self.entries.extend(changes.entries)
        for row in changes.settlements:
            self.settlement_rows[row.payment_id] = dataclasses.replace(row)
        for pool_id, core, supplier in changes.pools:
            self.supplier_rows.setdefault(pool_id, supplier)
            self.programme_rows.setdefault(pool_id, core)
        for loan in changes.new_loans:
            if loan.loan_id in self.loan_rows:
                raise ValueError(f"loan {loan.loan_id} opened twice")
            self.loan_rows[loan.loan_id] = dataclasses.replace(loan)
        for loan_id, amount in changes.repaid.items():
            held = self.loan_rows[loan_id]
            if not 0 <= held.repaid + amount <= held.principal:  # the schema's CHECK
                raise ValueError(f"loan {loan_id} repaid beyond its principal")
            held.repaid += amount

    def head(self, pool_id: str) -> tuple[int, str]:
        """The pool's recorded chain head, as the auditor checks the chain against."""
        return self.account_rows[pool_id].head

    def balance(self, account: str) -> Decimal:
        """The sum of the account's entries (what `balances` below reads from PostgreSQL)."""
        return sum((amount for *_, name, amount in self.entries if name == account), ZERO)

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


# The messages whose handlers post to their pool's chain (or check its balances).
POSTING = (
    m.ReceivablesSettled,
    m.RepaymentInstruction,
    m.HoldSettled,
    m.PrepaymentRequested,
    m.LoanOpened,
    m.PayoutRequested,
    m.PayoutResult,
    m.HoldResolved,
    m.PaymentReversed,
)


@dataclass
class LedgerBatch:
    """What one batch transaction reads and writes in the splitter's schema.

    `prepare` locks every controlled account the batch touches (its chain head and the
    balances of the pool's frozen, held and free accounts come back with the lock) and loads
    every settlement it names, in two statements. Handlers then decide in memory: `post`
    chains a ledger transaction onto the pool's head and moves its balances, and
    `save_settlement` records the settlement's new state. `flush` writes it all in two
    statements before the batch commits. So a batch of any size costs four round trips, never
    one per message (STYLE: batches). Anything not prepared is loaded on first use, so a
    handler is correct even when called outside a prepared batch.
    """

    store: LedgerStore | None = None  # None: PostgreSQL on the batch's connection
    accounts: dict[str, ControlledAccount] = field(default_factory=dict)
    settlements: dict[str, Settlement | None] = field(default_factory=dict)
    loans: dict[str, HeldLoan | None] = field(default_factory=dict)
    payouts: dict[str, Payout | None] = field(default_factory=dict)
    changes: LedgerChanges = field(default_factory=LedgerChanges)
    _saved: dict[str, Settlement] = field(default_factory=dict)

    def _store(self, conn: Connection | None) -> LedgerStore:
        if self.store is not None:
            return self.store
        assert conn is not None, "a LedgerBatch without a store needs a connection"
        return PostgresLedgerStore(conn)

    async def prepare(self, conn: Connection | None, events: Sequence[m.Message]) -> None:
        """Lock every account and load every settlement, loan and payout the batch names, a
        statement each."""
        pools: list[str] = []
        payments: list[str] = []
        loans: list[str] = []
        payouts: list[str] = []
        for e in events:
            if isinstance(
                e,
                m.ReceivablesSettled | m.RepaymentInstruction | m.HoldResolved | m.PaymentReversed,
            ):
                payments.append(e.payment_id)
            elif isinstance(e, m.HoldSettled):
                payments.append(e.settlement_id)
            elif isinstance(e, m.PrepaymentRequested):
                payments.append(e.prepayment_id)
            elif isinstance(e, m.PayoutRequested | m.PayoutResult):
                payouts.append(e.payout_id)
            if isinstance(e, m.RepaymentInstruction | m.HoldSettled):
                loans.extend(r.loan_id for r in e.repayments)
            elif isinstance(e, m.LoanOpened):
                loans.append(e.loan_id)
            if isinstance(e, POSTING):
                pools.append(e.pool_id)
        await self._load(conn, pools, payments)
        await self._load_loans(conn, loans)
        await self._load_payouts(conn, payouts)

    async def _load_payouts(self, conn: Connection | None, payout_ids: Iterable[str]) -> None:
        wanted = sorted(set(payout_ids) - set(self.payouts))
        if wanted:
            self.payouts.update(dict.fromkeys(wanted))
            self.payouts.update(await self._store(conn).payouts(wanted))

    async def _load_loans(self, conn: Connection | None, loan_ids: Iterable[str]) -> None:
        wanted = sorted(set(loan_ids) - set(self.loans))
        if wanted:
            self.loans.update(dict.fromkeys(wanted))
            self.loans.update(await self._store(conn).loans(wanted))

    async def loan(self, conn: Connection | None, loan_id: str) -> HeldLoan | None:
        await self._load_loans(conn, [loan_id])
        return self.loans[loan_id]

    async def rules_for(self, conn: Connection | None, pool_id: str) -> PoolRules | None:
        return await self._store(conn).rules(pool_id)

    async def save_rules(
        self, conn: Connection | None, scope_key: str, rules: dict[str, Any], event_id: str
    ) -> int:
        return await self._store(conn).save_rules(scope_key, rules, event_id)

    async def volume_this_month(self, conn: Connection | None, pool_id: str) -> Decimal:
        """What the pool's buyer paid this calendar month (Asia/Shanghai), this batch's
        freezes included."""
        today = business_date()
        start = datetime.combine(today.replace(day=1), time(), tzinfo=timezone())
        stored = await self._store(conn).volume_since(pool_id, start)
        freezes = {
            (pool, seq) for pool, seq, _, kind, *_ in self.changes.transactions if kind == "freeze"
        }
        pending = sum(
            (
                amount
                for pool, seq, _, account, amount in self.changes.entries
                if (pool, seq) in freezes and pool == pool_id and account == f"frozen:{pool_id}"
            ),
            ZERO,
        )
        return stored + pending

    def open_pool(self, pool_id: str, core: str, supplier: str) -> None:
        self.changes.pools.append((pool_id, core, supplier))

    async def supplier(self, conn: Connection | None, pool_id: str) -> str | None:
        for pool, _, supplier in self.changes.pools:
            if pool == pool_id:
                return supplier
        return await self._store(conn).supplier(pool_id)

    async def core_enterprise(self, conn: Connection | None, pool_id: str) -> str | None:
        for pool, core, _ in self.changes.pools:
            if pool == pool_id:
                return core
        return await self._store(conn).core_enterprise(pool_id)

    async def payout(self, conn: Connection | None, payout_id: str) -> Payout | None:
        await self._load_payouts(conn, [payout_id])
        return self.payouts[payout_id]

    def save_payout(self, payout: Payout) -> None:
        self.payouts[payout.payout_id] = payout
        self.changes.payouts = [p for p in self.changes.payouts if p.payout_id != payout.payout_id]
        self.changes.payouts.append(payout)

    async def balances(
        self, conn: Connection | None, accounts: Sequence[str]
    ) -> dict[str, Decimal]:
        """The accounts' balances as this batch leaves them (its own postings included)."""
        stored = await self._store(conn).balances(accounts)
        pending = self.changes.account_moves()
        return {a: stored.get(a, ZERO) + pending.get(a, ZERO) for a in accounts}

    async def split_of(
        self, conn: Connection | None, payment_id: str
    ) -> tuple[list[tuple[str, Decimal]], str | None]:
        """The payment's split lines and rule version, this batch's own split included."""
        pending = [t for t in self.changes.transactions if t[2:4] == (payment_id, "split")]
        if pending:
            heads = {(t[0], t[1]) for t in pending}
            lines = [(a, v) for p, s, _, a, v in self.changes.entries if (p, s) in heads]
            return lines, json.loads(pending[0][4]).get("rule_version")
        return await self._store(conn).split_of(payment_id)

    async def posted(self, conn: Connection | None, payment_id: str, kind: str) -> bool:
        if any(t[2:4] == (payment_id, kind) for t in self.changes.transactions):
            return True
        return await self._store(conn).posted(payment_id, kind)

    def open_loan(self, loan: HeldLoan) -> None:
        self.loans[loan.loan_id] = loan
        self.changes.new_loans.append(loan)

    def repay(self, loan_id: str, principal: Decimal) -> None:
        """A posted split repaid this much of the loan's principal."""
        loan = self.loans[loan_id]
        assert loan is not None
        loan.repaid += principal
        if not any(new is loan for new in self.changes.new_loans):  # else inserted with it
            self.changes.repaid[loan_id] = self.changes.repaid.get(loan_id, ZERO) + principal

    async def _load(
        self, conn: Connection | None, pool_ids: Iterable[str], payment_ids: Iterable[str]
    ) -> None:
        pools = sorted(set(pool_ids) - set(self.accounts))
        if pools:
            self.accounts.update(await self._store(conn).accounts(pools))
        payments = sorted(set(payment_ids) - set(self.settlements))
        if payments:
            self.settlements.update(dict.fromkeys(payments))
            self.settlements.update(await self._store(conn).settlements(payments))

    async def account(self, conn: Connection | None, pool_id: str) -> ControlledAccount:
        """The pool's controlled account (chain head, balances), locked until commit."""
        if pool_id not in self.accounts:
            await self._load(conn, [pool_id], [])
        return self.accounts[pool_id]

    async def settlement(self, conn: Connection | None, payment_id: str) -> Settlement | None:
        if payment_id not in self.settlements:
            await self._load(conn, [], [payment_id])
        return self.settlements[payment_id]

    def post(
        self,
        account: ControlledAccount,
        *,
        payment_id: str,
        kind: str,
        entries: Sequence[tuple[str, Decimal]],
        inputs: Mapping[str, Any],
    ) -> str:
        """Chain one balanced transaction after the account's head, advance the head, move its
        balances, return the transaction's hash. A transaction that does not balance, or that
        would take one of the pool's accounts below zero, is a bug: it raises."""
        if sum(amount for _, amount in entries) != 0:
            raise ValueError(f"unbalanced ledger transaction for {payment_id}: {entries}")
        account.move(account.balance_changes(entries))
        pool_id = account.pool_id
        seq = account.seq + 1
        body = canonical_body(
            account.hash,
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
            (pool_id, seq, payment_id, kind, inputs_json, account.hash, digest, HASH_FORMAT, hashed)
        )
        self.changes.entries.extend(
            (pool_id, seq, line, name, amount) for line, (name, amount) in enumerate(entries)
        )
        account.seq, account.hash = seq, digest
        return digest

    def save_settlement(
        self,
        payment_id: str,
        pool_id: str,
        amount: Decimal,
        state: SettlementState,
        *,
        kind: SettlementKind = "payment",
        payment: dict[str, Any] | None = None,
        instruction: dict[str, Any] | None = None,
        released: Decimal | None = None,
    ) -> None:
        before = self.settlements.get(payment_id)
        row = Settlement(
            payment_id,
            pool_id,
            amount,
            state,
            kind,
            payment if payment is not None else (before.payment if before else None),
            instruction if instruction is not None else (before.instruction if before else None),
            released,
            before.reversed if before else ZERO,
            dict(before.reversed_parts) if before else {},
        )
        self.settlements[payment_id] = self._saved[payment_id] = row

    def save_reversal(
        self,
        settlement: Settlement,
        given_back: Mapping[str, Decimal],
        loan_parts: Mapping[str, Decimal],
    ) -> None:
        """A reversal of the settlement's payment: what each account gave back (returned or
        owed) and each loan's parts restored (keys `#<loan>/<part>`), added up."""
        parts = {a: Decimal(v) for a, v in settlement.reversed_parts.items()}
        for account, amount in (*given_back.items(), *loan_parts.items()):
            parts[account] = parts.get(account, ZERO) + amount
        row = dataclasses.replace(
            settlement,
            reversed=settlement.reversed + sum(given_back.values(), ZERO),
            reversed_parts={a: str(v) for a, v in sorted(parts.items())},
        )
        self.settlements[row.payment_id] = self._saved[row.payment_id] = row

    def end_batch(self, uow: Any) -> None:
        """Anchor each chain this batch advanced outside the database: its (seq, head hash)
        on settlement.ledger-anchors.v1, signed with the platform's key, in the same
        transaction (issue 9). A history rewritten and re-hashed in the database no longer
        matches what was published (`poolfin ledger verify --anchors`)."""
        heads: dict[str, tuple[int, str]] = {}
        for pool_id, seq, *_, digest, _, _ in self.changes.transactions:
            heads[pool_id] = (seq, digest)
        for pool_id, (seq, digest) in sorted(heads.items()):
            anchor = m.new_event(
                m.LedgerAnchored,
                source="settlement-splitter",
                pool_id=pool_id,
                seq=seq,
                head_hash=digest,
            )
            if uow.trust is not None:
                signed = uow.trust.sign(json.loads(anchor.model_dump_json()))
                anchor = anchor.model_copy(update={"signature": signed["signature"]})
            uow.emit(topics.SETTLEMENT_LEDGER_ANCHORS, anchor)

    async def flush(self, conn: Connection | None) -> None:
        self.changes.settlements = list(self._saved.values())
        if self.changes:
            await self._store(conn).write(self.changes)
        self.changes = LedgerChanges()
        self._saved.clear()


def _jsonb(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


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


async def balance_drift(conn: Connection) -> list[str]:
    """Pools whose recorded balances (frozen, held, free) differ from the sums of their
    accounts' entries: the columns are kept by the same statement that writes the entries,
    so any difference is an edit."""
    rows = await conn.fetch(
        "SELECT c.pool_id, c.frozen, c.held, c.free, s.frozen AS posted_frozen,"
        " s.held AS posted_held, s.free AS posted_free FROM controlled_accounts c,"
        " LATERAL (SELECT"
        "  coalesce(sum(amount) FILTER (WHERE account = 'frozen:' || c.pool_id), 0) AS frozen,"
        "  coalesce(sum(amount) FILTER (WHERE account = 'held:' || c.pool_id), 0) AS held,"
        "  coalesce(sum(amount) FILTER (WHERE account = 'free:' || c.pool_id), 0) AS free"
        "  FROM ledger_entries WHERE account = ANY(ARRAY['frozen:' || c.pool_id,"
        "  'held:' || c.pool_id, 'free:' || c.pool_id])) AS s"
        " ORDER BY c.pool_id"
    )
    return [
        f"pool {r['pool_id']}: recorded {name} balance {r[name]} but its entries sum to"
        f" {r['posted_' + name]}"
        for r in rows
        for name in ("frozen", "held", "free")
        if r[name] != r["posted_" + name]
    ]


async def account_drift(conn: Connection) -> list[str]:
    """Accounts whose kept balance (issue 10) differs from the sum of their entries or from
    the running balance of their last entry, and entries whose running balances do not chain:
    all are kept by the statements that write the entries, so any difference is an edit."""
    rows = await conn.fetch(
        "SELECT coalesce(a.account, s.account) AS account, a.balance, s.total, s.last"
        " FROM ledger_accounts a FULL JOIN (SELECT account, sum(amount) AS total,"
        "  (array_agg(balance_after ORDER BY transaction_id DESC, line DESC))[1] AS last"
        "  FROM ledger_entries GROUP BY account) s ON s.account = a.account"
        " WHERE a.balance IS DISTINCT FROM s.total OR a.balance IS DISTINCT FROM s.last"
        " ORDER BY 1"
    )
    problems = [
        f"account {r['account']}: kept balance {r['balance']}, its entries sum to {r['total']}"
        f" and the last one says {r['last']}"
        for r in rows
    ]
    broken = await conn.fetch(
        "SELECT account, transaction_id, line FROM (SELECT account, transaction_id, line,"
        " balance_after, amount, lag(balance_after, 1, 0::numeric) OVER (PARTITION BY account"
        " ORDER BY transaction_id, line) AS before FROM ledger_entries) e"
        " WHERE before + amount <> balance_after ORDER BY 1, 2, 3 LIMIT 100"
    )
    problems += [
        f"account {r['account']}: the running balance breaks at transaction"
        f" {r['transaction_id']} line {r['line']}"
        for r in broken
    ]
    return problems
