"""intake's state, set-based. `IntakeBatch` prepares what a batch of ERP events needs in three
reads, handlers decide in memory on it, `flush` writes the changes in one call. Storage is a
port, `IntakeStore`: `PostgresIntakeStore` is SQL on intake's own schema; `InMemoryIntakeStore`
is the fake that handler tests run on. One contract test suite runs against both."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from services.intake.domain import Receivable
from shared.contracts import messages as m
from shared.db import Connection, columns, first_time
from shared.inbox import Inbound


@dataclass(slots=True)
class Pool:
    pool_id: str
    core_enterprise_id: str
    supplier_id: str
    open_total: Decimal


@dataclass(slots=True)
class NewReceivable:
    core_enterprise_id: str
    receivable_id: str
    pool_id: str
    amount: Decimal
    issued_on: object  # datetime.date
    due_on: object | None


@dataclass(slots=True)
class NewPayment:
    payment_id: str
    pool_id: str
    amount: Decimal
    written_off: Decimal
    paid_on: object  # datetime.date


@dataclass
class IntakeChanges:
    """What one batch decided, for the store to write in one go."""

    pools: list[tuple[str, str, str, str]] = field(default_factory=list)  # id, core, supplier, name
    receivables: list[NewReceivable] = field(default_factory=list)
    payments: list[NewPayment] = field(default_factory=list)
    paid: list[tuple[str, str, str]] = field(default_factory=list)  # core, receivable, payment
    totals: dict[str, Decimal] = field(default_factory=dict)  # pool -> open total

    def __bool__(self) -> bool:
        return bool(self.pools or self.receivables or self.payments or self.paid or self.totals)


class IntakeStore(Protocol):
    async def pools(
        self, pool_ids: Sequence[str], suppliers: Sequence[tuple[str, str]]
    ) -> list[Pool]:
        """The pools named by id or by (core enterprise, supplier), locked until commit."""
        ...

    async def receivables(self, keys: Sequence[tuple[str, str]]) -> list[tuple[str, Receivable]]:
        """(core enterprise, receivable) of those that exist, locked until commit."""
        ...

    async def known_payments(self, payment_ids: Sequence[str]) -> set[str]: ...

    async def write(self, changes: IntakeChanges) -> None: ...


class PostgresIntakeStore:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def pools(
        self, pool_ids: Sequence[str], suppliers: Sequence[tuple[str, str]]
    ) -> list[Pool]:
        rows = await self.conn.fetch(
            "SELECT pool_id, core_enterprise_id, supplier_id, open_total FROM pools"
            " WHERE pool_id = ANY($1::text[]) OR (core_enterprise_id, supplier_id) IN"
            " (SELECT * FROM unnest($2::text[], $3::text[]))"
            " ORDER BY pool_id FOR UPDATE",
            list(pool_ids),
            [core for core, _ in suppliers],
            [supplier for _, supplier in suppliers],
        )
        return [
            Pool(r["pool_id"], r["core_enterprise_id"], r["supplier_id"], r["open_total"])
            for r in rows
        ]

    async def receivables(self, keys: Sequence[tuple[str, str]]) -> list[tuple[str, Receivable]]:
        rows = await self.conn.fetch(
            "SELECT core_enterprise_id, receivable_id, pool_id, amount, state FROM receivables"
            " WHERE (core_enterprise_id, receivable_id) IN"
            " (SELECT * FROM unnest($1::text[], $2::text[]))"
            " ORDER BY core_enterprise_id, receivable_id FOR UPDATE",
            [core for core, _ in keys],
            [receivable for _, receivable in keys],
        )
        return [
            (
                r["core_enterprise_id"],
                Receivable(r["receivable_id"], r["pool_id"], r["amount"], r["state"]),
            )
            for r in rows
        ]

    async def known_payments(self, payment_ids: Sequence[str]) -> set[str]:
        rows = await self.conn.fetch(
            "SELECT payment_id FROM payments WHERE payment_id = ANY($1::text[])",
            list(payment_ids),
        )
        return {r["payment_id"] for r in rows}

    async def write(self, changes: IntakeChanges) -> None:
        conn = self.conn
        if changes.pools:
            await conn.execute(
                "INSERT INTO pools(pool_id, core_enterprise_id, supplier_id, supplier_name)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])",
                *map(list, zip(*changes.pools, strict=True)),
            )
        if changes.receivables:
            new = changes.receivables
            await conn.execute(
                "INSERT INTO receivables(core_enterprise_id, receivable_id, pool_id, amount,"
                " issued_on, due_on, state) SELECT c, r, p, a, i, d, 'open' FROM unnest("
                " $1::text[], $2::text[], $3::text[], $4::numeric[], $5::date[], $6::date[])"
                " AS t(c, r, p, a, i, d)",
                *columns(
                    new,
                    "core_enterprise_id",
                    "receivable_id",
                    "pool_id",
                    "amount",
                    "issued_on",
                    "due_on",
                ),
            )
        if changes.payments:
            paid = changes.payments
            await conn.execute(
                "INSERT INTO payments(payment_id, pool_id, amount, written_off, paid_on)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[], $4::numeric[],"
                " $5::date[])",
                *columns(paid, "payment_id", "pool_id", "amount", "written_off", "paid_on"),
            )
        if changes.paid:
            await conn.execute(
                "UPDATE receivables SET state = 'paid', payment_id = t.p"
                " FROM unnest($1::text[], $2::text[], $3::text[]) AS t(c, r, p)"
                " WHERE core_enterprise_id = t.c AND receivable_id = t.r",
                *map(list, zip(*changes.paid, strict=True)),
            )
        if changes.totals:
            pools = sorted(changes.totals)
            await conn.execute(
                "UPDATE pools SET open_total = t.total"
                " FROM unnest($1::text[], $2::numeric[]) AS t(pool_id, total)"
                " WHERE pools.pool_id = t.pool_id",
                pools,
                [changes.totals[p] for p in pools],
            )


@dataclass
class InMemoryIntakeStore:
    """The fake: intake's tables as dicts, for handler tests without a database."""

    pool_rows: dict[str, Pool] = field(default_factory=dict)
    receivable_rows: dict[tuple[str, str], Receivable] = field(default_factory=dict)
    payment_rows: dict[str, NewPayment] = field(default_factory=dict)

    async def pools(
        self, pool_ids: Sequence[str], suppliers: Sequence[tuple[str, str]]
    ) -> list[Pool]:
        wanted = set(pool_ids)
        pairs = set(suppliers)
        return [
            Pool(p.pool_id, p.core_enterprise_id, p.supplier_id, p.open_total)
            for p in sorted(self.pool_rows.values(), key=lambda p: p.pool_id)
            if p.pool_id in wanted or (p.core_enterprise_id, p.supplier_id) in pairs
        ]

    async def receivables(self, keys: Sequence[tuple[str, str]]) -> list[tuple[str, Receivable]]:
        return [
            (core, self.receivable_rows[(core, r)])
            for core, r in sorted(keys)
            if (core, r) in self.receivable_rows
        ]

    async def known_payments(self, payment_ids: Sequence[str]) -> set[str]:
        return {p for p in payment_ids if p in self.payment_rows}

    async def write(self, changes: IntakeChanges) -> None:
        for pool_id, core, supplier, _ in changes.pools:
            if pool_id in self.pool_rows:
                raise ValueError(f"duplicate pool {pool_id}")  # as the primary key would
            self.pool_rows[pool_id] = Pool(pool_id, core, supplier, Decimal("0.00"))
        for n in changes.receivables:
            key = (n.core_enterprise_id, n.receivable_id)
            if key in self.receivable_rows:
                raise ValueError(f"duplicate receivable {key}")
            self.receivable_rows[key] = Receivable(n.receivable_id, n.pool_id, n.amount, "open")
        for p in changes.payments:
            if p.payment_id in self.payment_rows:
                raise ValueError(f"duplicate payment {p.payment_id}")
            self.payment_rows[p.payment_id] = p
        for core, receivable_id, _ in changes.paid:
            row = self.receivable_rows[(core, receivable_id)]
            self.receivable_rows[(core, receivable_id)] = Receivable(
                row.receivable_id, row.pool_id, row.amount, "paid"
            )
        for pool_id, total in changes.totals.items():
            self.pool_rows[pool_id].open_total = total


@dataclass
class IntakeBatch:
    """What one batch transaction reads and writes in intake's schema.

    `prepare` locks the pools the batch names and loads the receivables and payments it names.
    Handlers read and change only this state; `flush` writes what changed. A receivable or pool
    that was not prepared (a slip for a pool onboarded in the same batch) is loaded on first
    use, so a handler is correct outside a prepared batch too.
    """

    store: IntakeStore | None = None  # None: PostgreSQL on the batch's connection
    pools: dict[str, Pool] = field(default_factory=dict)
    pool_of_supplier: dict[tuple[str, str], str] = field(default_factory=dict)
    receivables: dict[tuple[str, str], Receivable] = field(default_factory=dict)
    payments: set[str] = field(default_factory=set)
    changes: IntakeChanges = field(default_factory=IntakeChanges)
    _looked_up_pools: set[str] = field(default_factory=set)
    _looked_up_suppliers: set[tuple[str, str]] = field(default_factory=set)
    _looked_up_receivables: set[tuple[str, str]] = field(default_factory=set)
    _looked_up_payments: set[str] = field(default_factory=set)

    def _store(self, conn: Connection | None) -> IntakeStore:
        if self.store is not None:
            return self.store
        assert conn is not None, "an IntakeBatch without a store needs a connection"
        return PostgresIntakeStore(conn)

    async def prepare(self, conn: Connection | None, events: Sequence[m.Message]) -> None:
        await self._load_pools(
            conn,
            {e.pool_id for e in events},
            {
                (e.core_enterprise_id, e.supplier_id)
                for e in events
                if isinstance(e, m.SupplierOnboarded)
            },
        )
        keys: set[tuple[str, str]] = set()
        for e in events:
            pool = self.pools.get(e.pool_id)
            if pool is None:
                continue
            if isinstance(e, m.SettlementSlipIssued):
                keys.add((pool.core_enterprise_id, e.receivable_id))
            elif isinstance(e, m.PaymentReceived):
                keys.update((pool.core_enterprise_id, r) for r in e.receivable_ids)
        await self._load_receivables(conn, keys)
        await self._load_payments(
            conn, {e.payment_id for e in events if isinstance(e, m.PaymentReceived)}
        )

    async def _load_pools(
        self,
        conn: Connection | None,
        pool_ids: Iterable[str],
        suppliers: Iterable[tuple[str, str]],
    ) -> None:
        wanted = first_time(pool_ids, self._looked_up_pools)
        pairs = first_time(suppliers, self._looked_up_suppliers)
        if not wanted and not pairs:
            return
        for pool in await self._store(conn).pools(wanted, pairs):
            self.pools.setdefault(pool.pool_id, pool)
            self.pool_of_supplier[(pool.core_enterprise_id, pool.supplier_id)] = pool.pool_id

    async def _load_receivables(
        self, conn: Connection | None, keys: Iterable[tuple[str, str]]
    ) -> None:
        wanted = first_time(keys, self._looked_up_receivables)
        if wanted:
            for core, receivable in await self._store(conn).receivables(wanted):
                self.receivables.setdefault((core, receivable.receivable_id), receivable)

    async def _load_payments(self, conn: Connection | None, payment_ids: Iterable[str]) -> None:
        wanted = first_time(payment_ids, self._looked_up_payments)
        if wanted:
            self.payments.update(await self._store(conn).known_payments(wanted))

    # ------------------------------------------------------------ reads (loaded on first use)

    async def pool(self, conn: Connection | None, pool_id: str) -> Pool | None:
        await self._load_pools(conn, [pool_id], [])
        return self.pools.get(pool_id)

    async def pool_of(self, conn: Connection | None, core: str, supplier: str) -> str | None:
        await self._load_pools(conn, [], [(core, supplier)])
        return self.pool_of_supplier.get((core, supplier))

    async def receivables_of(
        self, conn: Connection | None, core: str, receivable_ids: Iterable[str]
    ) -> dict[str, Receivable]:
        ids = list(receivable_ids)
        await self._load_receivables(conn, [(core, r) for r in ids])
        return {r: self.receivables[(core, r)] for r in ids if (core, r) in self.receivables}

    async def payment_known(self, conn: Connection | None, payment_id: str) -> bool:
        await self._load_payments(conn, [payment_id])
        return payment_id in self.payments

    # ------------------------------------------------------------ decisions (in memory)

    def open_pool(self, event: m.SupplierOnboarded) -> None:
        pool = Pool(event.pool_id, event.core_enterprise_id, event.supplier_id, Decimal("0.00"))
        self.pools[pool.pool_id] = pool
        self.pool_of_supplier[(pool.core_enterprise_id, pool.supplier_id)] = pool.pool_id
        self.changes.pools.append(
            (event.pool_id, event.core_enterprise_id, event.supplier_id, event.supplier_name)
        )

    def add_receivable(self, pool: Pool, slip: m.SettlementSlipIssued) -> None:
        receivable = Receivable(slip.receivable_id, pool.pool_id, slip.amount, "open")
        self.receivables[(pool.core_enterprise_id, slip.receivable_id)] = receivable
        self.changes.receivables.append(
            NewReceivable(
                pool.core_enterprise_id,
                slip.receivable_id,
                pool.pool_id,
                slip.amount,
                slip.issued_on,
                slip.due_on,
            )
        )
        pool.open_total += slip.amount
        self.changes.totals[pool.pool_id] = pool.open_total

    def record_payment(self, pool: Pool, payment: m.PaymentReceived, written_off: Decimal) -> None:
        self.payments.add(payment.payment_id)
        self.changes.payments.append(
            NewPayment(
                payment.payment_id, payment.pool_id, payment.amount, written_off, payment.paid_on
            )
        )
        for receivable_id in payment.receivable_ids:
            key = (pool.core_enterprise_id, receivable_id)
            self.receivables[key] = Receivable(
                receivable_id, pool.pool_id, self.receivables[key].amount, "paid"
            )
            self.changes.paid.append((pool.core_enterprise_id, receivable_id, payment.payment_id))
        pool.open_total -= written_off
        self.changes.totals[pool.pool_id] = pool.open_total

    async def flush(self, conn: Connection | None) -> None:
        if self.changes:
            await self._store(conn).write(self.changes)
        self.changes = IntakeChanges()


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
