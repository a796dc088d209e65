"""SQL for intake's own schema, set-based: `IntakeBatch` prepares what a batch of ERP events
needs in three statements, handlers decide in memory, `flush` writes it in five."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from services.intake.domain import Receivable
from shared.contracts import messages as m
from shared.db import Connection, first_time
from shared.inbox import Inbound


@dataclass(slots=True)
class Pool:
    pool_id: str
    core_enterprise_id: str
    supplier_id: str
    open_total: Decimal


@dataclass
class IntakeBatch:
    """What one batch transaction reads and writes in intake's schema.

    `prepare` locks the pools the batch names and loads the receivables and payments it names.
    Handlers read and change only this state; `flush` writes what changed. A receivable or pool
    that was not prepared (a slip for a pool onboarded in the same batch) is loaded on first
    use, so a handler is correct outside a prepared batch too.
    """

    pools: dict[str, Pool] = field(default_factory=dict)
    pool_of_supplier: dict[tuple[str, str], str] = field(default_factory=dict)
    receivables: dict[tuple[str, str], Receivable] = field(default_factory=dict)
    payments: set[str] = field(default_factory=set)
    _looked_up_pools: set[str] = field(default_factory=set)
    _looked_up_receivables: set[tuple[str, str]] = field(default_factory=set)
    _looked_up_payments: set[str] = field(default_factory=set)
    _new_pools: list[tuple[str, str, str, str]] = field(default_factory=list)
    _new_receivables: list[tuple[str, Receivable, m.SettlementSlipIssued]] = field(
        default_factory=list
    )
    _new_payments: list[tuple[m.PaymentReceived, Decimal]] = field(default_factory=list)
    _paid: list[tuple[str, str, str]] = field(default_factory=list)
    _totals: set[str] = field(default_factory=set)

    async def prepare(self, conn: Connection, events: Sequence[m.Message]) -> None:
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
            core = pool.core_enterprise_id if pool else None
            if core is None:
                continue
            if isinstance(e, m.SettlementSlipIssued):
                keys.add((core, e.receivable_id))
            elif isinstance(e, m.PaymentReceived):
                keys.update((core, r) for r in e.receivable_ids)
        await self._load_receivables(conn, keys)
        await self._load_payments(
            conn, {e.payment_id for e in events if isinstance(e, m.PaymentReceived)}
        )

    async def _load_pools(
        self, conn: Connection, pool_ids: Iterable[str], suppliers: Iterable[tuple[str, str]]
    ) -> None:
        wanted = sorted(set(pool_ids) - self._looked_up_pools)
        pairs = sorted(set(suppliers) - set(self.pool_of_supplier))
        if not wanted and not pairs:
            return
        self._looked_up_pools.update(wanted)
        for row in await conn.fetch(
            "SELECT pool_id, core_enterprise_id, supplier_id, open_total FROM pools"
            " WHERE pool_id = ANY($1::text[]) OR (core_enterprise_id, supplier_id) IN"
            " (SELECT * FROM unnest($2::text[], $3::text[]))"
            " ORDER BY pool_id FOR UPDATE",
            wanted,
            [core for core, _ in pairs],
            [supplier for _, supplier in pairs],
        ):
            pool = Pool(
                row["pool_id"], row["core_enterprise_id"], row["supplier_id"], row["open_total"]
            )
            self.pools.setdefault(pool.pool_id, pool)
            self.pool_of_supplier[(pool.core_enterprise_id, pool.supplier_id)] = pool.pool_id

    async def _load_receivables(self, conn: Connection, keys: Iterable[tuple[str, str]]) -> None:
        wanted = first_time(keys, self._looked_up_receivables)
        if not wanted:
            return
        for row in await conn.fetch(
            "SELECT core_enterprise_id, receivable_id, pool_id, amount, state FROM receivables"
            " WHERE (core_enterprise_id, receivable_id) IN"
            " (SELECT * FROM unnest($1::text[], $2::text[]))"
            " ORDER BY core_enterprise_id, receivable_id FOR UPDATE",
            [core for core, _ in wanted],
            [receivable for _, receivable in wanted],
        ):
            self.receivables[(row["core_enterprise_id"], row["receivable_id"])] = Receivable(
                row["receivable_id"], row["pool_id"], row["amount"], row["state"]
            )

    async def _load_payments(self, conn: Connection, payment_ids: Iterable[str]) -> None:
        wanted = first_time(payment_ids, self._looked_up_payments)
        if not wanted:
            return
        self.payments.update(
            row["payment_id"]
            for row in await conn.fetch(
                "SELECT payment_id FROM payments WHERE payment_id = ANY($1::text[])", wanted
            )
        )

    # ------------------------------------------------------------ reads (loaded on first use)

    async def pool(self, conn: Connection, pool_id: str) -> Pool | None:
        await self._load_pools(conn, [pool_id], [])
        return self.pools.get(pool_id)

    async def pool_of(self, conn: Connection, core: str, supplier: str) -> str | None:
        await self._load_pools(conn, [], [(core, supplier)])
        return self.pool_of_supplier.get((core, supplier))

    async def receivables_of(
        self, conn: Connection, core: str, receivable_ids: Iterable[str]
    ) -> dict[str, Receivable]:
        ids = list(receivable_ids)
        await self._load_receivables(conn, [(core, r) for r in ids])
        return {r: self.receivables[(core, r)] for r in ids if (core, r) in self.receivables}

    async def payment_known(self, conn: Connection, payment_id: str) -> bool:
        await self._load_payments(conn, [payment_id])
        return payment_id in self.payments

    # ------------------------------------------------------------ decisions (in memory)

    def open_pool(self, event: m.SupplierOnboarded) -> None:
        pool = Pool(event.pool_id, event.core_enterprise_id, event.supplier_id, Decimal("0.00"))
        self.pools[pool.pool_id] = pool
        self.pool_of_supplier[(pool.core_enterprise_id, pool.supplier_id)] = pool.pool_id
        self._new_pools.append(
            (event.pool_id, event.core_enterprise_id, event.supplier_id, event.supplier_name)
        )

    def add_receivable(self, pool: Pool, slip: m.SettlementSlipIssued) -> None:
        receivable = Receivable(slip.receivable_id, pool.pool_id, slip.amount, "open")
        self.receivables[(pool.core_enterprise_id, slip.receivable_id)] = receivable
        self._new_receivables.append((pool.core_enterprise_id, receivable, slip))
        pool.open_total += slip.amount
        self._totals.add(pool.pool_id)

    def record_payment(self, pool: Pool, payment: m.PaymentReceived, written_off: Decimal) -> None:
        self.payments.add(payment.payment_id)
        self._new_payments.append((payment, written_off))
        for receivable_id in payment.receivable_ids:
            key = (pool.core_enterprise_id, receivable_id)
            self.receivables[key] = Receivable(
                receivable_id, pool.pool_id, self.receivables[key].amount, "paid"
            )
            self._paid.append((pool.core_enterprise_id, receivable_id, payment.payment_id))
        pool.open_total -= written_off
        self._totals.add(pool.pool_id)

    # ------------------------------------------------------------ writes

    async def flush(self, conn: Connection) -> None:
        if self._new_pools:
            await conn.execute(
                "INSERT INTO pools(pool_id, core_enterprise_id, supplier_id, supplier_name)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])",
                *map(list, zip(*self._new_pools, strict=True)),
            )
        if self._new_receivables:
            await conn.execute(
                "INSERT INTO receivables(core_enterprise_id, receivable_id, pool_id, amount,"
                " issued_on, due_on, state) SELECT c, r, p, a, i, d, 'open' FROM unnest("
                " $1::text[], $2::text[], $3::text[], $4::numeric[], $5::date[], $6::date[])"
                " AS t(c, r, p, a, i, d)",
                [core for core, _, _ in self._new_receivables],
                [r.receivable_id for _, r, _ in self._new_receivables],
                [r.pool_id for _, r, _ in self._new_receivables],
                [r.amount for _, r, _ in self._new_receivables],
                [slip.issued_on for _, _, slip in self._new_receivables],
                [slip.due_on for _, _, slip in self._new_receivables],
            )
        if self._new_payments:
            await conn.execute(
                "INSERT INTO payments(payment_id, pool_id, amount, written_off, paid_on)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[], $4::numeric[],"
                " $5::date[])",
                [p.payment_id for p, _ in self._new_payments],
                [p.pool_id for p, _ in self._new_payments],
                [p.amount for p, _ in self._new_payments],
                [written_off for _, written_off in self._new_payments],
                [p.paid_on for p, _ in self._new_payments],
            )
        if self._paid:
            await conn.execute(
                "UPDATE receivables SET state = 'paid', payment_id = t.p"
                " FROM unnest($1::text[], $2::text[], $3::text[]) AS t(c, r, p)"
                " WHERE core_enterprise_id = t.c AND receivable_id = t.r",
                *map(list, zip(*self._paid, strict=True)),
            )
        if self._totals:
            changed = sorted(self._totals)
            await conn.execute(
                "UPDATE pools SET open_total = t.total"
                " FROM unnest($1::text[], $2::numeric[]) AS t(pool_id, total)"
                " WHERE pools.pool_id = t.pool_id",
                changed,
                [self.pools[p].open_total for p in changed],
            )
        self._new_pools.clear()
        self._new_receivables.clear()
        self._new_payments.clear()
        self._paid.clear()
        self._totals.clear()


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
