"""SQL for credit's own schema: `CreditBatch` prepares a batch set-based (pools, facilities,
open loans, amounts in flight, the applications and payments it names), handlers decide in
memory, `flush` writes what changed set-based. The single-row functions below serve the HTTP
front's reads and the id claims."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from services.credit.domain import IN_FLIGHT, Facility, Loan, Repayment
from shared.contracts import messages as m
from shared.contracts.messages import DayCount, FacilitySet
from shared.db import Connection, columns, first_time
from shared.money import FEN, ZERO, json_default


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
    return None if row is None else _facility_of(row)


async def loan_balance_and_in_flight(conn: Connection, pool_id: str) -> tuple[Decimal, Decimal]:
    row = await conn.fetchrow(
        "SELECT (SELECT coalesce(sum(outstanding), 0) FROM loans WHERE pool_id = $1) AS loans,"
        " (SELECT coalesce(sum(amount), 0) FROM applications WHERE pool_id = $1"
        "   AND state IN ('awaiting_buyer', 'requested')) AS in_flight",
        pool_id,
    )
    assert row is not None
    return Decimal(row["loans"]).quantize(FEN), Decimal(row["in_flight"]).quantize(FEN)


async def claim_application_id(conn: Connection, pool_id: str, application_id: str) -> bool:
    """Reserve an application id for a pool before its application is published (the HTTP
    front), so that a collision is refused at once. False when another pool holds the id or
    it was already decided; claiming it again for the same pool before then (a client's
    retry) is allowed."""
    if await conn.fetchval(
        "SELECT true FROM applications WHERE application_id = $1", application_id
    ):
        return False
    holder = await conn.fetchval(
        "WITH claimed AS (INSERT INTO application_claims(application_id, pool_id)"
        " VALUES ($1, $2) ON CONFLICT (application_id) DO NOTHING RETURNING pool_id)"
        " SELECT pool_id FROM claimed UNION ALL"
        " SELECT pool_id FROM application_claims WHERE application_id = $1 LIMIT 1",
        application_id,
        pool_id,
    )
    return bool(holder == pool_id)


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


async def confirm_repayments(conn: Connection, settled: Sequence[tuple[str, str]]) -> None:
    """Confirm the reserved repayments of these (pool_id, payment_id) pairs."""
    await conn.execute(
        "UPDATE repayments SET state = 'confirmed' FROM unnest($1::text[], $2::text[])"
        " AS s(pool_id, payment_id)"
        " WHERE repayments.payment_id = s.payment_id AND repayments.pool_id = s.pool_id",
        [pool_id for pool_id, _ in settled],
        [payment_id for _, payment_id in settled],
    )


@dataclass(slots=True)
class PoolState:
    """One pool as this batch sees it, its row locked until commit."""

    pool_id: str
    core_enterprise_id: str | None
    supplier_id: str | None
    water_level: Decimal
    facility: Facility | None
    loans: list[Loan]  # open loans, oldest first
    in_flight: Decimal  # applications awaiting the buyer or the funder
    exists: bool = True  # a row in credit.pools

    @property
    def loan_balance(self) -> Decimal:
        return sum((loan.outstanding for loan in self.loans), ZERO)


@dataclass(slots=True)
class Application:
    application_id: str
    pool_id: str
    amount: Decimal
    state: str
    reason: str | None
    funder_id: str | None


@dataclass(slots=True)
class Repaid:
    payment_id: str
    pool_id: str
    amount: Decimal
    principal: Decimal
    interest: Decimal
    instruction: dict[str, Any]


@dataclass
class CreditChanges:
    """What one batch decided, for the store to write in one go."""

    pools: list[PoolState] = field(default_factory=list)  # rows to insert or update
    facilities: list[FacilitySet] = field(default_factory=list)
    new_applications: list[Application] = field(default_factory=list)
    moved_applications: list[Application] = field(default_factory=list)
    new_loans: list[tuple[str, Loan]] = field(default_factory=list)
    outstanding: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # (pool, loan)
    repayments: list[Repaid] = field(default_factory=list)
    confirmed: list[tuple[str, str]] = field(default_factory=list)  # (pool, payment)


class CreditStore(Protocol):
    async def pools(self, pool_ids: Sequence[str]) -> list[PoolState]:
        """Every pool asked for (`exists` False for one credit has no row of), with its
        facility, open loans and amount in flight; rows locked until commit."""
        ...

    async def applications(
        self, application_ids: Sequence[str]
    ) -> tuple[list[Application], dict[str, str]]:
        """The applications with these ids, and the ids claimed by the HTTP front (-> pool)."""
        ...

    async def decided_payments(self, payment_ids: Sequence[str]) -> set[str]: ...

    async def write(self, changes: CreditChanges) -> None: ...


class PostgresCreditStore:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def pools(self, pool_ids: Sequence[str]) -> list[PoolState]:
        conn, wanted = self.conn, list(pool_ids)
        rows = {
            r["pool_id"]: r
            for r in await conn.fetch(
                "SELECT pool_id, core_enterprise_id, supplier_id, water_level FROM pools"
                " WHERE pool_id = ANY($1::text[]) ORDER BY pool_id FOR UPDATE",
                wanted,
            )
        }
        facilities = {
            r["pool_id"]: _facility_of(r)
            for r in await conn.fetch(
                "SELECT * FROM facilities WHERE pool_id = ANY($1::text[])", wanted
            )
        }
        loans: dict[str, list[Loan]] = {}
        for r in await conn.fetch(
            "SELECT * FROM loans WHERE pool_id = ANY($1::text[]) AND outstanding > 0"
            " ORDER BY pool_id, disbursed_on, loan_id FOR UPDATE",
            wanted,
        ):
            loans.setdefault(r["pool_id"], []).append(_loan_of(r))
        in_flight = {
            r["pool_id"]: Decimal(r["total"]).quantize(FEN)
            for r in await conn.fetch(
                "SELECT pool_id, sum(amount) AS total FROM applications"
                " WHERE pool_id = ANY($1::text[]) AND state = ANY($2::text[]) GROUP BY pool_id",
                wanted,
                list(IN_FLIGHT),
            )
        }
        return [
            PoolState(
                pool_id,
                row["core_enterprise_id"] if row else None,
                row["supplier_id"] if row else None,
                Decimal(row["water_level"]) if row else ZERO,
                facilities.get(pool_id),
                loans.get(pool_id, []),
                in_flight.get(pool_id, ZERO),
                exists=row is not None,
            )
            for pool_id in wanted
            for row in [rows.get(pool_id)]
        ]

    async def applications(
        self, application_ids: Sequence[str]
    ) -> tuple[list[Application], dict[str, str]]:
        wanted = list(application_ids)
        found = [
            Application(
                r["application_id"],
                r["pool_id"],
                r["amount"],
                r["state"],
                r["reason"],
                r["funder_id"],
            )
            for r in await self.conn.fetch(
                "SELECT application_id, pool_id, amount, state, reason, funder_id"
                " FROM applications WHERE application_id = ANY($1::text[])"
                " ORDER BY application_id FOR UPDATE",
                wanted,
            )
        ]
        claims = {
            r["application_id"]: r["pool_id"]
            for r in await self.conn.fetch(
                "SELECT application_id, pool_id FROM application_claims"
                " WHERE application_id = ANY($1::text[])",
                wanted,
            )
        }
        return found, claims

    async def decided_payments(self, payment_ids: Sequence[str]) -> set[str]:
        rows = await self.conn.fetch(
            "SELECT payment_id FROM repayments WHERE payment_id = ANY($1::text[])",
            list(payment_ids),
        )
        return {r["payment_id"] for r in rows}

    async def write(self, changes: CreditChanges) -> None:
        conn = self.conn
        if changes.pools:
            await conn.execute(
                "INSERT INTO pools(pool_id, core_enterprise_id, supplier_id, water_level)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[])"
                " ON CONFLICT (pool_id) DO UPDATE SET"
                " core_enterprise_id = EXCLUDED.core_enterprise_id,"
                " supplier_id = EXCLUDED.supplier_id, water_level = EXCLUDED.water_level",
                *columns(
                    changes.pools, "pool_id", "core_enterprise_id", "supplier_id", "water_level"
                ),
            )
        for event in changes.facilities:  # rare: an operator's change
            await upsert_facility(conn, event)
        if changes.new_applications:
            await conn.execute(
                "INSERT INTO applications(application_id, pool_id, amount, state, reason,"
                " funder_id) SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[],"
                " $4::text[], $5::text[], $6::text[])",
                *columns(
                    changes.new_applications,
                    "application_id",
                    "pool_id",
                    "amount",
                    "state",
                    "reason",
                    "funder_id",
                ),
            )
        if changes.moved_applications:
            await conn.execute(
                "UPDATE applications SET state = t.state, reason = t.reason, updated_at = now()"
                " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
                " AS t(application_id, pool_id, state, reason)"
                " WHERE applications.application_id = t.application_id"
                " AND applications.pool_id = t.pool_id",
                *columns(
                    changes.moved_applications, "application_id", "pool_id", "state", "reason"
                ),
            )
        for pool_id, loan in changes.new_loans:  # rare: one per disbursal
            await open_loan(conn, loan, pool_id)
        if changes.outstanding:
            keys = sorted(changes.outstanding)
            await conn.execute(
                "UPDATE loans SET outstanding = t.outstanding"
                " FROM unnest($1::text[], $2::text[], $3::numeric[])"
                " AS t(pool_id, loan_id, outstanding)"
                " WHERE loans.pool_id = t.pool_id AND loans.loan_id = t.loan_id",
                [pool_id for pool_id, _ in keys],
                [loan_id for _, loan_id in keys],
                [changes.outstanding[k] for k in keys],
            )
        if changes.repayments:
            await conn.execute(
                "INSERT INTO repayments(payment_id, pool_id, amount, principal, interest, state,"
                " instruction) SELECT p, pool, a, pr, i, 'reserved', ins::jsonb FROM unnest("
                " $1::text[], $2::text[], $3::numeric[], $4::numeric[], $5::numeric[],"
                " $6::text[]) AS t(p, pool, a, pr, i, ins)",
                *columns(
                    changes.repayments, "payment_id", "pool_id", "amount", "principal", "interest"
                ),
                [json.dumps(r.instruction, default=json_default) for r in changes.repayments],
            )
        if changes.confirmed:
            await confirm_repayments(conn, changes.confirmed)


@dataclass
class InMemoryCreditStore:
    """The fake: credit's tables as dicts, for handler tests without a database."""

    pool_rows: dict[str, tuple[str | None, str | None, Decimal]] = field(default_factory=dict)
    facilities: dict[str, Facility] = field(default_factory=dict)
    loans: dict[tuple[str, str], Loan] = field(default_factory=dict)  # (pool, loan id)
    application_rows: dict[str, Application] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)
    repayments: dict[str, Repaid] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)

    async def pools(self, pool_ids: Sequence[str]) -> list[PoolState]:
        found = []
        for pool_id in pool_ids:
            row = self.pool_rows.get(pool_id)
            loans = sorted(
                (
                    loan
                    for (p, _), loan in self.loans.items()
                    if p == pool_id and loan.outstanding > 0
                ),
                key=lambda loan: (loan.disbursed_on, loan.loan_id),
            )
            in_flight = sum(
                (
                    a.amount
                    for a in self.application_rows.values()
                    if a.pool_id == pool_id and a.state in IN_FLIGHT
                ),
                ZERO,
            )
            found.append(
                PoolState(
                    pool_id,
                    row[0] if row else None,
                    row[1] if row else None,
                    row[2] if row else ZERO,
                    self.facilities.get(pool_id),
                    loans,
                    in_flight,
                    exists=row is not None,
                )
            )
        return found

    async def applications(
        self, application_ids: Sequence[str]
    ) -> tuple[list[Application], dict[str, str]]:
        return (
            [
                dataclasses.replace(self.application_rows[a])
                for a in application_ids
                if a in self.application_rows
            ],
            {a: self.claims[a] for a in application_ids if a in self.claims},
        )

    async def decided_payments(self, payment_ids: Sequence[str]) -> set[str]:
        return {p for p in payment_ids if p in self.repayments}

    async def write(self, changes: CreditChanges) -> None:
        for pool in changes.pools:
            self.pool_rows[pool.pool_id] = (
                pool.core_enterprise_id,
                pool.supplier_id,
                pool.water_level,
            )
        for event in changes.facilities:
            self.facilities[event.pool_id] = facility_of(event)
        for application in changes.new_applications:
            if application.application_id in self.application_rows:
                raise ValueError(f"duplicate application {application.application_id}")
            self.application_rows[application.application_id] = dataclasses.replace(application)
        for application in changes.moved_applications:
            self.application_rows[application.application_id] = dataclasses.replace(application)
        for pool_id, loan in changes.new_loans:
            self.loans[(pool_id, loan.loan_id)] = loan
        for (pool_id, loan_id), outstanding in changes.outstanding.items():
            self.loans[(pool_id, loan_id)] = dataclasses.replace(
                self.loans[(pool_id, loan_id)], outstanding=outstanding
            )
        for repaid in changes.repayments:
            if repaid.payment_id in self.repayments:
                raise ValueError(f"payment {repaid.payment_id} decided twice")
            self.repayments[repaid.payment_id] = repaid
        self.confirmed.update(payment_id for _, payment_id in changes.confirmed)


@dataclass
class CreditBatch:
    """What one batch transaction reads and writes in credit's schema: prepared set-based,
    decided in memory by the handlers, flushed in one call to the store."""

    store: CreditStore | None = None  # None: PostgreSQL on the batch's connection
    pools: dict[str, PoolState] = field(default_factory=dict)
    applications: dict[str, Application] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)  # application id -> pool
    decided: set[str] = field(default_factory=set)  # payment ids
    _looked_up_pools: set[str] = field(default_factory=set)
    _looked_up_applications: set[str] = field(default_factory=set)
    _looked_up_payments: set[str] = field(default_factory=set)
    _pools_changed: set[str] = field(default_factory=set)
    _new_applications: set[str] = field(default_factory=set)
    _applications_changed: set[str] = field(default_factory=set)
    changes: CreditChanges = field(default_factory=CreditChanges)

    def _store(self, conn: Connection | None) -> CreditStore:
        if self.store is not None:
            return self.store
        assert conn is not None, "a CreditBatch without a store needs a connection"
        return PostgresCreditStore(conn)

    async def prepare(self, conn: Connection | None, events: Sequence[m.Message]) -> None:
        await self._load_pools(conn, {e.pool_id for e in events})
        await self._load_applications(
            conn,
            {
                e.application_id
                for e in events
                if isinstance(e, m.FinancingApplied | m.BuyerConfirmedFinancing)
            }
            | {e.request_id for e in events if isinstance(e, m.FundingResult)},
        )
        await self._load_payments(
            conn, {e.payment_id for e in events if isinstance(e, m.ReceivablesSettled)}
        )

    async def _load_pools(self, conn: Connection | None, pool_ids: Iterable[str]) -> None:
        wanted = first_time(pool_ids, self._looked_up_pools)
        if wanted:
            for pool in await self._store(conn).pools(wanted):
                self.pools[pool.pool_id] = pool

    async def _load_applications(self, conn: Connection | None, ids: Iterable[str]) -> None:
        wanted = first_time(ids, self._looked_up_applications)
        if wanted:
            found, claims = await self._store(conn).applications(wanted)
            self.applications.update((a.application_id, a) for a in found)
            self.claims.update(claims)

    async def _load_payments(self, conn: Connection | None, payment_ids: Iterable[str]) -> None:
        wanted = first_time(payment_ids, self._looked_up_payments)
        if wanted:
            self.decided.update(await self._store(conn).decided_payments(wanted))

    # ------------------------------------------------------------ reads (loaded on first use)

    async def pool(self, conn: Connection | None, pool_id: str) -> PoolState:
        await self._load_pools(conn, [pool_id])
        return self.pools[pool_id]

    async def application(self, conn: Connection | None, application_id: str) -> Application | None:
        await self._load_applications(conn, [application_id])
        return self.applications.get(application_id)

    async def holder(self, conn: Connection | None, application_id: str) -> str | None:
        """The pool an application id belongs to (or is claimed by), if any."""
        application = await self.application(conn, application_id)
        return application.pool_id if application else self.claims.get(application_id)

    async def payment_decided(self, conn: Connection | None, payment_id: str) -> bool:
        await self._load_payments(conn, [payment_id])
        return payment_id in self.decided

    # ------------------------------------------------------------ decisions (in memory)

    def open_pool(self, pool: PoolState, core: str, supplier: str) -> None:
        pool.core_enterprise_id, pool.supplier_id, pool.exists = core, supplier, True
        self._pools_changed.add(pool.pool_id)

    def set_level(self, pool: PoolState, level: Decimal) -> None:
        pool.water_level = level
        self._pools_changed.add(pool.pool_id)

    def set_facility(self, pool: PoolState, event: FacilitySet) -> None:
        pool.facility = facility_of(event)
        self.changes.facilities.append(event)

    def add_application(self, pool: PoolState, application: Application) -> None:
        self.applications[application.application_id] = application
        self._new_applications.add(application.application_id)
        if application.state in IN_FLIGHT:
            pool.in_flight += application.amount

    def move_application(
        self, pool: PoolState, application: Application, state: str, reason: str | None = None
    ) -> None:
        was_in_flight = application.state in IN_FLIGHT
        application.state, application.reason = state, reason
        if was_in_flight and state not in IN_FLIGHT:
            pool.in_flight -= application.amount
        self._applications_changed.add(application.application_id)

    def open_loan(self, pool: PoolState, loan: Loan) -> None:
        pool.loans.append(loan)
        pool.loans.sort(key=lambda open_loan: (open_loan.disbursed_on, open_loan.loan_id))
        self.changes.new_loans.append((pool.pool_id, loan))

    def repay(
        self,
        pool: PoolState,
        payment_id: str,
        amount: Decimal,
        plan: Sequence[Repayment],
        instruction: dict[str, Any],
    ) -> None:
        """Reserve the repayment decided for a payment and reduce the loans at once, so the
        next payment (in this batch too) sees the reduced balance (DESIGN step 4)."""
        repaid = {r.loan_id: r.principal for r in plan}
        loans = []
        for loan in pool.loans:
            if loan.loan_id in repaid:
                left = loan.outstanding - repaid[loan.loan_id]
                loan = dataclasses.replace(loan, outstanding=left)
                self.changes.outstanding[(pool.pool_id, loan.loan_id)] = left
            if loan.outstanding > 0:
                loans.append(loan)
        pool.loans = loans
        self.decided.add(payment_id)
        self.changes.repayments.append(
            Repaid(
                payment_id,
                pool.pool_id,
                amount,
                sum((r.principal for r in plan), ZERO),
                sum((r.interest for r in plan), ZERO),
                instruction,
            )
        )

    def confirm(self, pool_id: str, payment_id: str) -> None:
        self.changes.confirmed.append((pool_id, payment_id))

    # ------------------------------------------------------------ writes

    async def flush(self, conn: Connection | None) -> None:
        changes = self.changes
        changes.pools = [self.pools[p] for p in sorted(self._pools_changed)]
        changes.new_applications = [self.applications[a] for a in sorted(self._new_applications)]
        changes.moved_applications = [
            self.applications[a]
            for a in sorted(self._applications_changed - self._new_applications)
        ]
        if any(vars(changes).values()):
            await self._store(conn).write(changes)
        self.changes = CreditChanges()
        self._pools_changed.clear()
        self._new_applications.clear()
        self._applications_changed.clear()


def facility_of(event: FacilitySet) -> Facility:
    return Facility(
        event.credit_line,
        event.discount_rate,
        event.annual_interest_rate,
        event.funder_id,
        event.day_count,
        event.tenor_days,
    )


def _facility_of(row: Any) -> Facility:
    return Facility(
        row["credit_line"],
        row["discount_rate"],
        row["annual_interest_rate"],
        row["funder_id"],
        DayCount(row["day_count"]),
        row["tenor_days"],
    )


def _loan_of(r: Any) -> Loan:
    return Loan(
        r["loan_id"],
        r["funder_id"],
        r["outstanding"],
        r["annual_interest_rate"],
        r["disbursed_on"],
        r["maturity_on"],
        DayCount(r["day_count"]),
    )
