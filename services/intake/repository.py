"""intake's state, set-based. `IntakeBatch` prepares what a batch of ERP events needs in three
reads, handlers decide in memory on it, `flush` writes the changes in one call. Storage is a
port, `IntakeStore`: `PostgresIntakeStore` is SQL on intake's own schema; `InMemoryIntakeStore`
is the fake that handler tests run on. One contract test suite runs against both."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from services.intake.documents import release_closed
from services.intake.domain import Adjusted, Allocation, Receivable, after_payment
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import parse_json
from shared.db import Connection, columns, first_time
from shared.inbox import Inbound, peek_envelope

ADJUSTMENTS = (
    m.CreditNoteIssued,
    m.SlipCancelled,
    m.SlipAmended,
    m.DisputeOpened,
    m.DisputeClosed,
)


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
    issued_on: date
    due_on: date | None


@dataclass(slots=True)
class NewPayment:
    payment_id: str
    pool_id: str
    amount: Decimal
    written_off: Decimal
    paid_on: date


@dataclass(slots=True)
class NewAdjustment:
    core_enterprise_id: str
    receivable_id: str
    pool_id: str
    kind: str
    change: Decimal
    open_after: Decimal
    reason: str
    reference: str | None
    event_id: str


@dataclass(slots=True)
class ParkedPayment:
    """A payment naming slips intake has not seen yet, waiting for them until `deadline`
    (POOLFIN_UNSEEN_SLIP_WAIT_S). Booking the last of them takes it; past its deadline, or
    refused once they came (`reason`), the parking watch dead-letters it."""

    event_id: str
    payment_id: str
    pool_id: str
    core_enterprise_id: str
    missing: list[str]  # the receivables it names not seen yet
    record: Inbound  # as read: its raw bytes, key and headers go into its dead letter
    parked_at: datetime
    deadline: datetime
    reason: str | None = None  # its refusal, once its slips came and it was refused all the same
    detail: str | None = None


@dataclass
class IntakeChanges:
    """What one batch decided, for the store to write in one go."""

    pools: list[tuple[str, str, str, str]] = field(default_factory=list)  # id, core, supplier, name
    receivables: list[NewReceivable] = field(default_factory=list)
    payments: list[NewPayment] = field(default_factory=list)
    updated: dict[tuple[str, str], Receivable] = field(default_factory=dict)  # (core, slip)
    adjustments: list[NewAdjustment] = field(default_factory=list)
    totals: dict[str, Decimal] = field(default_factory=dict)  # pool -> open total
    parked: dict[str, ParkedPayment] = field(default_factory=dict)  # event id -> new or changed
    unparked: set[str] = field(default_factory=set)  # event ids of parked payments taken

    def __bool__(self) -> bool:
        return any(vars(self).values())


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

    async def credit_notes(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """(core enterprise, credit note id) of those already recorded."""
        ...

    async def parked(
        self, pool_ids: Sequence[str], payment_ids: Sequence[str]
    ) -> list[ParkedPayment]:
        """The payments still waiting for slips, of these pools or with these payment ids,
        locked until commit."""
        ...

    async def write(self, changes: IntakeChanges) -> None: ...


PARKED_COLUMNS = (
    "event_id, payment_id, pool_id, core_enterprise_id, missing, source_topic,"
    " source_partition, source_offset, source_timestamp, source_key, source_headers,"
    " raw_payload, parked_at, deadline, reason, detail"
)


def _parked(row: Any) -> ParkedPayment:  # a row of PARKED_COLUMNS
    return ParkedPayment(
        row["event_id"],
        row["payment_id"],
        row["pool_id"],
        row["core_enterprise_id"],
        list(row["missing"]),
        Inbound(
            row["source_topic"],
            row["source_partition"],
            row["source_offset"],
            row["source_key"],
            row["raw_payload"],
            row["source_timestamp"],
            tuple(
                (name, base64.b64decode(value) if value is not None else None)
                for name, value in row["source_headers"]
            ),
        ),
        row["parked_at"],
        row["deadline"],
        row["reason"],
        row["detail"],
    )


def _parked_row(p: ParkedPayment) -> tuple[Any, ...]:
    record = p.record
    headers = [
        [name, base64.b64encode(value).decode() if value is not None else None]
        for name, value in record.headers
    ]
    return (
        p.event_id,
        p.payment_id,
        p.pool_id,
        p.core_enterprise_id,
        p.missing,
        record.topic,
        record.partition,
        record.offset,
        record.timestamp,
        record.key,
        headers,
        record.value,
        p.parked_at,
        p.deadline,
        p.reason,
        p.detail,
    )


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
            "SELECT core_enterprise_id, receivable_id, pool_id, amount, state, open_amount,"
            " due_on, disputed, dispute_id, payment_id FROM receivables"
            " WHERE (core_enterprise_id, receivable_id) IN"
            " (SELECT * FROM unnest($1::text[], $2::text[]))"
            " ORDER BY core_enterprise_id, receivable_id FOR UPDATE",
            [core for core, _ in keys],
            [receivable for _, receivable in keys],
        )
        return [
            (
                r["core_enterprise_id"],
                Receivable(
                    r["receivable_id"],
                    r["pool_id"],
                    r["amount"],
                    r["state"],
                    r["open_amount"],
                    r["due_on"],
                    r["disputed"],
                    r["dispute_id"],
                    r["payment_id"],
                ),
            )
            for r in rows
        ]

    async def known_payments(self, payment_ids: Sequence[str]) -> set[str]:
        rows = await self.conn.fetch(
            "SELECT payment_id FROM payments WHERE payment_id = ANY($1::text[])",
            list(payment_ids),
        )
        return {r["payment_id"] for r in rows}

    async def credit_notes(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        rows = await self.conn.fetch(
            "SELECT core_enterprise_id, reference FROM adjustments WHERE kind = 'credit_note'"
            " AND (core_enterprise_id, reference) IN"
            " (SELECT * FROM unnest($1::text[], $2::text[]))",
            [core for core, _ in keys],
            [note for _, note in keys],
        )
        return {(r["core_enterprise_id"], r["reference"]) for r in rows}

    async def parked(
        self, pool_ids: Sequence[str], payment_ids: Sequence[str]
    ) -> list[ParkedPayment]:
        rows = await self.conn.fetch(
            f"SELECT {PARKED_COLUMNS} FROM parked_payments WHERE reason IS NULL"
            " AND (pool_id = ANY($1::text[]) OR payment_id = ANY($2::text[]))"
            " ORDER BY event_id FOR UPDATE",
            list(pool_ids),
            list(payment_ids),
        )
        return [_parked(r) for r in rows]

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
                " issued_on, due_on, state, open_amount) SELECT c, r, p, a, i, d, 'open', a"
                " FROM unnest("
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
        if changes.updated:
            keys = sorted(changes.updated)
            rows = [changes.updated[k] for k in keys]
            closed = [k for k in keys if changes.updated[k].state != "open"]
            await conn.execute(
                "UPDATE receivables SET amount = t.a, open_amount = t.o, state = t.s,"
                " disputed = t.d, dispute_id = t.di, payment_id = t.p"
                " FROM unnest($1::text[], $2::text[], $3::numeric[], $4::numeric[], $5::text[],"
                " $6::bool[], $7::text[], $8::text[]) AS t(c, r, a, o, s, d, di, p)"
                " WHERE core_enterprise_id = t.c AND receivable_id = t.r",
                [core for core, _ in keys],
                [rid for _, rid in keys],
                [r.amount for r in rows],
                [r.open for r in rows],
                [r.state for r in rows],
                [r.disputed for r in rows],
                [r.dispute_id for r in rows],
                [r.payment_id for r in rows],
            )
            if closed:  # invoices backing slips now closed are free again (issue 9)
                await release_closed(conn, closed)
        if changes.adjustments:
            await conn.execute(
                "INSERT INTO adjustments(core_enterprise_id, receivable_id, pool_id, kind,"
                " change, open_after, reason, reference, event_id) SELECT * FROM unnest("
                " $1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::numeric[],"
                " $7::text[], $8::text[], $9::text[])",
                *columns(
                    changes.adjustments,
                    "core_enterprise_id",
                    "receivable_id",
                    "pool_id",
                    "kind",
                    "change",
                    "open_after",
                    "reason",
                    "reference",
                    "event_id",
                ),
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
        if changes.parked:  # rare (an ERP's payment ahead of its slip): one statement each
            await conn.executemany(
                f"INSERT INTO parked_payments({PARKED_COLUMNS}) VALUES ($1, $2, $3, $4, $5,"
                " $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (event_id)"
                " DO UPDATE SET missing = excluded.missing, deadline = excluded.deadline,"
                " reason = excluded.reason, detail = excluded.detail",
                [_parked_row(p) for p in changes.parked.values()],
            )
        if changes.unparked:
            await conn.execute(
                "DELETE FROM parked_payments WHERE event_id = ANY($1::text[])",
                sorted(changes.unparked),
            )


async def expire_parked(conn: Connection, limit: int = 500) -> list[ParkedPayment]:
    """The parked payments past their deadline (or refused once their slips came), removed:
    the parking watch dead-letters them in the same transaction. Rows a slip's batch holds
    are skipped (it is taking them); several intake instances share the work."""
    rows = await conn.fetch(
        "DELETE FROM parked_payments WHERE event_id IN ("
        " SELECT event_id FROM parked_payments WHERE deadline <= now()"
        " ORDER BY deadline LIMIT $1 FOR UPDATE SKIP LOCKED)"
        f" RETURNING {PARKED_COLUMNS}",
        limit,
    )
    return sorted((_parked(r) for r in rows), key=lambda p: (p.deadline, p.event_id))


@dataclass
class InMemoryIntakeStore:
    """The fake: intake's tables as dicts, for handler tests without a database."""

    pool_rows: dict[str, Pool] = field(default_factory=dict)
    receivable_rows: dict[tuple[str, str], Receivable] = field(default_factory=dict)
    payment_rows: dict[str, NewPayment] = field(default_factory=dict)
    adjustment_rows: list[NewAdjustment] = field(default_factory=list)
    parked_rows: dict[str, ParkedPayment] = field(default_factory=dict)

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

    async def credit_notes(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        recorded = {
            (a.core_enterprise_id, a.reference)
            for a in self.adjustment_rows
            if a.kind == "credit_note"
        }
        return {k for k in keys if k in recorded}

    async def parked(
        self, pool_ids: Sequence[str], payment_ids: Sequence[str]
    ) -> list[ParkedPayment]:
        pools, payments = set(pool_ids), set(payment_ids)
        return [
            dataclasses.replace(p, missing=list(p.missing))
            for _, p in sorted(self.parked_rows.items())
            if p.reason is None and (p.pool_id in pools or p.payment_id in payments)
        ]

    async def write(self, changes: IntakeChanges) -> None:
        for pool_id, core, supplier, _ in changes.pools:
            if pool_id in self.pool_rows:
                raise ValueError(f"duplicate pool {pool_id}")  # as the primary key would
            self.pool_rows[pool_id] = Pool(pool_id, core, supplier, Decimal("0.00"))
        for n in changes.receivables:
            key = (n.core_enterprise_id, n.receivable_id)
            if key in self.receivable_rows:
                raise ValueError(f"duplicate receivable {key}")
            self.receivable_rows[key] = Receivable(
                n.receivable_id, n.pool_id, n.amount, "open", n.amount, n.due_on
            )
        for p in changes.payments:
            if p.payment_id in self.payment_rows:
                raise ValueError(f"duplicate payment {p.payment_id}")
            self.payment_rows[p.payment_id] = p
        for key, receivable in changes.updated.items():
            if key not in self.receivable_rows:
                raise ValueError(f"no receivable {key} to update")
            self.receivable_rows[key] = dataclasses.replace(receivable, open_amount=receivable.open)
        for adjustment in changes.adjustments:
            note = (adjustment.core_enterprise_id, adjustment.reference or "")
            if adjustment.kind == "credit_note" and await self.credit_notes([note]):
                raise ValueError(f"duplicate credit note {note}")  # as the unique index would
            self.adjustment_rows.append(adjustment)
        for pool_id, total in changes.totals.items():
            self.pool_rows[pool_id].open_total = total
        for event_id, parked in changes.parked.items():
            waiting = {p.payment_id for p in self.parked_rows.values() if p.reason is None}
            if event_id not in self.parked_rows and parked.payment_id in waiting:
                raise ValueError(f"payment {parked.payment_id} waits already")  # as the index
            self.parked_rows[event_id] = dataclasses.replace(parked, missing=list(parked.missing))
        for event_id in changes.unparked:
            self.parked_rows.pop(event_id, None)


@dataclass
class IntakeBatch:
    """What one batch transaction reads and writes in intake's schema.

    `prepare` locks the pools the batch names and loads the receivables and payments it names.
    Handlers read and change only this state; `flush` writes what changed. A receivable or pool
    that was not prepared (a slip for a pool onboarded in the same batch) is loaded on first
    use, so a handler is correct outside a prepared batch too.
    """

    store: IntakeStore | None = None  # None: PostgreSQL on the batch's connection
    # How long a payment naming a slip not seen yet waits for it (POOLFIN_UNSEEN_SLIP_WAIT_S);
    # 0: it is refused at once, `unknown_receivable`.
    unseen_slip_wait_s: float = 0.0
    # The batch's records as read (intake's `archive_batch`): a payment is parked with its own.
    inbound: Sequence[Inbound] = ()
    pools: dict[str, Pool] = field(default_factory=dict)
    pool_of_supplier: dict[tuple[str, str], str] = field(default_factory=dict)
    receivables: dict[tuple[str, str], Receivable] = field(default_factory=dict)
    payments: set[str] = field(default_factory=set)
    credit_notes: set[tuple[str, str]] = field(default_factory=set)
    parked: dict[str, ParkedPayment] = field(default_factory=dict)  # waiting, by event id
    changes: IntakeChanges = field(default_factory=IntakeChanges)
    _looked_up_pools: set[str] = field(default_factory=set)
    _looked_up_suppliers: set[tuple[str, str]] = field(default_factory=set)
    _looked_up_receivables: set[tuple[str, str]] = field(default_factory=set)
    _looked_up_payments: set[str] = field(default_factory=set)
    _looked_up_notes: set[tuple[str, str]] = field(default_factory=set)
    _looked_up_parked_pools: set[str] = field(default_factory=set)
    _looked_up_parked_payments: set[str] = field(default_factory=set)
    _records: dict[str, list[Inbound]] | None = None  # `inbound` by event id, on first use

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
            elif isinstance(e, ADJUSTMENTS):
                keys.add((pool.core_enterprise_id, e.receivable_id))
        await self._load_receivables(conn, keys)
        await self._load_payments(
            conn, {e.payment_id for e in events if isinstance(e, m.PaymentReceived)}
        )
        # Payments waiting for the batch's slips, and for its payments' ids (one waits once).
        await self._load_parked(
            conn,
            {e.pool_id for e in events if isinstance(e, m.SettlementSlipIssued)},
            {e.payment_id for e in events if isinstance(e, m.PaymentReceived)},
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

    async def _load_parked(
        self, conn: Connection | None, pool_ids: Iterable[str], payment_ids: Iterable[str]
    ) -> None:
        pools = first_time(pool_ids, self._looked_up_parked_pools)
        payments = first_time(payment_ids, self._looked_up_parked_payments)
        if pools or payments:
            decided = self.changes.unparked | set(self.changes.parked)  # in this batch already
            for parked in await self._store(conn).parked(pools, payments):
                if parked.event_id not in decided:
                    self.parked.setdefault(parked.event_id, parked)

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

    async def parked_payment(
        self, conn: Connection | None, payment_id: str
    ) -> ParkedPayment | None:
        """The payment with this id waiting for its slips, if one does."""
        await self._load_parked(conn, [], [payment_id])
        return next((p for p in self.parked.values() if p.payment_id == payment_id), None)

    async def parked_for(
        self, conn: Connection | None, pool_id: str, receivable_id: str
    ) -> list[ParkedPayment]:
        """The pool's payments waiting for this slip, in the order they were parked."""
        await self._load_parked(conn, [pool_id], [])
        return sorted(
            (
                p
                for p in self.parked.values()
                if p.pool_id == pool_id and receivable_id in p.missing
            ),
            key=lambda p: (p.parked_at, p.event_id),
        )

    def record_of(self, payment: m.PaymentReceived, document: dict[str, Any] | None) -> Inbound:
        """The record `payment` was decoded from (its raw bytes, key and headers as read)."""
        if self._records is None:
            self._records = {}
            for record in self.inbound:
                if record.topic != topics.ERP_PAYMENTS:
                    continue
                event_id = peek_envelope(record.value)[1]
                if event_id is not None:
                    self._records.setdefault(event_id, []).append(record)
        candidates = self._records.get(payment.event_id, [])
        if len(candidates) > 1 and document is not None:  # a replay in the same batch
            candidates = [r for r in candidates if parse_json(r.value) == document] or candidates
        if candidates:
            return candidates[0]
        # Outside a consumer's batch (a handler test): the message as it would be sent.
        return Inbound(
            topics.ERP_PAYMENTS,
            -1,
            -1,
            payment.pool_id.encode(),
            payment.model_dump_json(exclude_none=True).encode(),
        )

    async def credit_note_known(self, conn: Connection | None, core: str, note_id: str) -> bool:
        wanted = first_time([(core, note_id)], self._looked_up_notes)
        if wanted:
            self.credit_notes.update(await self._store(conn).credit_notes(wanted))
        return (core, note_id) in self.credit_notes

    # ------------------------------------------------------------ decisions (in memory)

    def open_pool(self, event: m.SupplierOnboarded) -> None:
        pool = Pool(event.pool_id, event.core_enterprise_id, event.supplier_id, Decimal("0.00"))
        self.pools[pool.pool_id] = pool
        self.pool_of_supplier[(pool.core_enterprise_id, pool.supplier_id)] = pool.pool_id
        self.changes.pools.append(
            (event.pool_id, event.core_enterprise_id, event.supplier_id, event.supplier_name)
        )

    def add_receivable(self, pool: Pool, slip: m.SettlementSlipIssued) -> None:
        receivable = Receivable(
            slip.receivable_id, pool.pool_id, slip.amount, "open", slip.amount, slip.due_on
        )
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

    def record_payment(
        self, pool: Pool, payment: m.PaymentReceived, allocations: Sequence[Allocation]
    ) -> None:
        self.payments.add(payment.payment_id)
        self.changes.payments.append(
            NewPayment(
                payment.payment_id, payment.pool_id, payment.amount, payment.amount, payment.paid_on
            )
        )
        for allocation in allocations:
            key = (pool.core_enterprise_id, allocation.receivable_id)
            self._update(key, after_payment(self.receivables[key], allocation, payment.payment_id))
        pool.open_total -= payment.amount
        self.changes.totals[pool.pool_id] = pool.open_total

    def park(
        self,
        pool: Pool,
        payment: m.PaymentReceived,
        record: Inbound,
        missing: Sequence[str],
        now: datetime,
        deadline: datetime,
    ) -> ParkedPayment:
        parked = ParkedPayment(
            payment.event_id,
            payment.payment_id,
            pool.pool_id,
            pool.core_enterprise_id,
            list(missing),
            record,
            now,
            deadline,
        )
        self.parked[parked.event_id] = parked
        self.changes.parked[parked.event_id] = parked
        return parked

    def keep_waiting(self, parked: ParkedPayment, missing: Sequence[str]) -> None:
        """Some of its slips came, not all: it waits for the rest, until the same deadline."""
        parked.missing = list(missing)
        self.changes.parked[parked.event_id] = parked

    def unpark(self, parked: ParkedPayment) -> None:
        """Its slips came and it took effect."""
        del self.parked[parked.event_id]
        self.changes.parked.pop(parked.event_id, None)
        self.changes.unparked.add(parked.event_id)

    def refuse_parked(self, parked: ParkedPayment, reason: str, detail: str, now: datetime) -> None:
        """Its slips came and it is refused all the same: due now, for the watch to dead-letter
        with this reason (its own transaction holds the dead letter's writer)."""
        del self.parked[parked.event_id]
        parked.reason, parked.detail, parked.deadline = reason, detail, now
        self.changes.parked[parked.event_id] = parked

    def record_adjustment(self, pool: Pool, adjusted: Adjusted, event_id: str) -> None:
        receivable = adjusted.receivable
        self._update((pool.core_enterprise_id, receivable.receivable_id), receivable)
        self.changes.adjustments.append(
            NewAdjustment(
                pool.core_enterprise_id,
                receivable.receivable_id,
                pool.pool_id,
                adjusted.kind.value,
                adjusted.change,
                receivable.open,
                adjusted.reason,
                adjusted.reference,
                event_id,
            )
        )
        if adjusted.kind is m.AdjustmentKind.CREDIT_NOTE and adjusted.reference:
            self.credit_notes.add((pool.core_enterprise_id, adjusted.reference))
        pool.open_total += adjusted.change
        self.changes.totals[pool.pool_id] = pool.open_total

    def _update(self, key: tuple[str, str], receivable: Receivable) -> None:
        """A slip changed; written after any insert of it in this batch, so a slip added and
        paid in one batch ends as paid."""
        self.receivables[key] = receivable
        self.changes.updated[key] = receivable

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
