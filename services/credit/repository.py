"""SQL for credit's own schema: `CreditBatch` prepares a batch set-based (pools with their
facility, open loans, amounts in flight and on hold, the slips that may not count; the
applications, payments and suggestions it names), handlers decide in memory, `flush` writes
what changed set-based. The single-row functions below serve the HTTP front's reads and the
id claims."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from services.credit.domain import (
    IN_FLIGHT,
    Eligibility,
    Facility,
    Loan,
    Receivable,
    Terms,
    borrowing_base,
    eligibility,
    standing,
)
from services.credit.model import MonthTrade
from services.credit.programmes import Programme
from shared.calendar import business_date
from shared.contracts import messages as m
from shared.contracts.messages import (
    CreditBounds,
    DayCount,
    FacilitySet,
    InterestCollection,
    InterestPeriod,
)
from shared.db import Connection, columns, first_time
from shared.money import FEN, ZERO, json_default


async def upsert_facility(conn: Connection, pool_id: str, f: Facility, event_id: str) -> None:
    await conn.execute(
        "INSERT INTO facilities(pool_id, credit_line, discount_rate, annual_interest_rate,"
        " funder_id, funder_kind, day_count, tenor_days, set_by_event, penalty_rate,"
        " interest_period, interest_collection, max_days_past_due, max_tenor_days,"
        " cross_age_percent, concentration_limit, auto_apply, require_trade_documents,"
        " match_tolerance)"
        " VALUES ($1, $2, $3, $4, $5, $19, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,"
        " $16::jsonb, $17, $18)"
        " ON CONFLICT (pool_id) DO UPDATE SET credit_line = $2, discount_rate = $3,"
        " annual_interest_rate = $4, funder_id = $5, funder_kind = $19, day_count = $6,"
        " tenor_days = $7, set_by_event = $8, penalty_rate = $9, interest_period = $10,"
        " interest_collection = $11, max_days_past_due = $12, max_tenor_days = $13,"
        " cross_age_percent = $14, concentration_limit = $15, auto_apply = $16::jsonb,"
        " require_trade_documents = $17, match_tolerance = $18, updated_at = now()",
        pool_id,
        f.credit_line,
        f.discount_rate,
        f.annual_interest_rate,
        f.funder_id,
        f.day_count.value,
        f.tenor_days,
        event_id,
        f.penalty_rate,
        f.interest_period.value,
        f.interest_collection.value,
        f.max_days_past_due,
        f.max_tenor_days,
        f.cross_age_percent,
        f.concentration_limit,
        None if f.auto_apply is None else f.auto_apply.model_dump_json(),
        f.require_trade_documents,
        f.match_tolerance,
        f.funder_kind,
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


async def position_as_of(conn: Connection, pool_id: str, instant: datetime) -> Any:
    """The position credit published for a pool last at or before `instant` (None: none)."""
    return await conn.fetchval(
        "SELECT body FROM positions WHERE pool_id = $1 AND occurred_at <= $2"
        " ORDER BY occurred_at DESC, event_id DESC LIMIT 1",
        pool_id,
        instant,
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
    loans: list[Loan]  # open loans (principal or dues), oldest first
    in_flight: Decimal  # applications awaiting the buyer or the funder
    exists: bool = True  # a row in credit.pools
    requested: Decimal = ZERO  # of in_flight: confirmed by the buyer, sent to the funder
    held: Decimal = ZERO  # payment money on hold, posted by the splitter (usable)
    held_pending: Decimal = ZERO  # on hold by instructions the splitter has not posted yet
    closed_through: date | None = None  # the last business day closed for the pool
    first_slip_on: date | None = None
    grade: str | None = None  # the credit model's grade at the last day close (A..E)
    programme: Programme | None = None  # its core enterprise's programme (issue 11)
    flagged: dict[str, Receivable] = field(default_factory=dict)  # slips that may not count
    today: date = field(default_factory=business_date)

    @property
    def loan_balance(self) -> Decimal:
        return sum((loan.outstanding for loan in self.loans), ZERO)

    @property
    def pro_rata(self) -> bool:
        """Repayments shared across funders in proportion (the programme's intercreditor)."""
        return (
            self.programme is not None and self.programme.intercreditor is m.Intercreditor.PRO_RATA
        )

    @property
    def eligibility(self) -> Eligibility:
        return eligibility(self.water_level, self.flagged.values(), self.facility, self.today)

    @property
    def base(self) -> Decimal:
        return borrowing_base(self.eligibility.eligible, self.facility)

    @property
    def exposure(self) -> Decimal:
        """Loans and confirmed requests, less the money on hold against them."""
        return self.loan_balance + self.requested - self.held - self.held_pending

    @property
    def standing(self) -> m.Standing:
        return standing(self.loans, self.exposure, self.base)


@dataclass(slots=True)
class Application:
    application_id: str
    pool_id: str
    amount: Decimal
    state: str
    reason: str | None
    funder_id: str | None
    terms: Terms | None = None
    named_funder: str | None = None  # the funder the application asked for (issue 11)
    split_of: str | None = None  # the application this one is a part of (split routing)


@dataclass(slots=True)
class Repaid:
    payment_id: str
    pool_id: str
    amount: Decimal
    principal: Decimal
    interest: Decimal
    instruction: dict[str, Any]
    held: Decimal = ZERO
    from_held: Decimal = ZERO
    kind: str = "payment"
    state: str = "reserved"  # reserved → confirmed (split posted) | undone (refused)
    # What the decision changed on each loan, to undo it exactly (issue 10): loan_id,
    # principal, interest, penalty, fees, interest_due_paid, accrued_released (text).
    loans: list[dict[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class Suggestion:
    suggestion_id: str
    pool_id: str
    credit_line: Decimal
    discount_rate: Decimal
    grade: str
    state: str
    body: dict[str, Any]


@dataclass(slots=True)
class LoanEntry:
    pool_id: str
    loan_id: str
    business_date: date
    kind: str
    amount: Decimal
    reference: str | None = None


@dataclass
class CreditChanges:
    """What one batch decided, for the store to write in one go."""

    pools: list[PoolState] = field(default_factory=list)  # rows to insert or update
    facilities: list[tuple[str, Facility, str]] = field(default_factory=list)  # pool, f, event
    new_applications: list[Application] = field(default_factory=list)
    moved_applications: list[Application] = field(default_factory=list)
    new_loans: list[tuple[str, Loan]] = field(default_factory=list)
    loans: dict[tuple[str, str], Loan] = field(default_factory=dict)  # (pool, loan) -> after
    repayments: list[Repaid] = field(default_factory=list)
    confirmed: list[tuple[str, str]] = field(default_factory=list)  # (pool, payment)
    undone: list[str] = field(default_factory=list)  # payment ids whose reservation is undone
    programmes: list[m.ProgrammeSet] = field(default_factory=list)
    receivables: dict[tuple[str, str], Receivable] = field(default_factory=dict)  # new/changed
    open_amounts: dict[tuple[str, str], Decimal] = field(default_factory=dict)  # paid on
    entries: list[LoanEntry] = field(default_factory=list)
    trade: dict[tuple[str, date], list[Any]] = field(default_factory=dict)
    suggestions: list[Suggestion] = field(default_factory=list)  # new or moved
    positions: list[tuple[str, str, datetime, dict[str, Any]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(vars(self).values())


class CreditStore(Protocol):
    async def pools(self, pool_ids: Sequence[str], today: date) -> list[PoolState]:
        """Every pool asked for (`exists` False for one credit has no row of), with its
        facility, open loans, amounts in flight and on hold, and the open slips that may not
        count as of `today` (disputed, longer than the facility's tenor, past due beyond its
        limit); rows locked until commit."""
        ...

    async def receivables(self, keys: Sequence[tuple[str, str]]) -> list[tuple[str, Receivable]]:
        """(pool, slip) of those credit knows."""
        ...

    async def applications(
        self, application_ids: Sequence[str]
    ) -> tuple[list[Application], dict[str, str]]:
        """The applications with these ids, and the ids claimed by the HTTP front (-> pool)."""
        ...

    async def loans_by_id(self, pool_id: str, loan_ids: Sequence[str]) -> list[Loan]:
        """These loans of the pool, open or closed."""
        ...

    async def programmes(self, cores: Sequence[str], lock: bool = False) -> dict[str, Programme]:
        """The programmes of these core enterprises; with `lock`, locked until commit in one
        order (routing of their applications is serialized by them)."""
        ...

    async def exposure(
        self, core: str, pool_id: str
    ) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
        """Each funder's exposure (outstanding principal + requests in flight) to the core
        enterprise, and to the pool's supplier (the pool), as committed."""
        ...

    async def payments(self, payment_ids: Sequence[str]) -> dict[str, Repaid]:
        """The payments (and prepayments, and hold settlements) already decided."""
        ...

    async def suggestions(self, suggestion_ids: Sequence[str]) -> list[Suggestion]: ...

    async def trade_history(self, pool_ids: Sequence[str]) -> dict[str, list[MonthTrade]]: ...

    async def write(self, changes: CreditChanges) -> None: ...


class PostgresCreditStore:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def pools(self, pool_ids: Sequence[str], today: date) -> list[PoolState]:
        conn, wanted = self.conn, list(pool_ids)
        rows = {
            r["pool_id"]: r
            for r in await conn.fetch(
                "SELECT * FROM pools WHERE pool_id = ANY($1::text[]) ORDER BY pool_id FOR UPDATE",
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
            "SELECT * FROM loans WHERE pool_id = ANY($1::text[]) AND (outstanding > 0"
            " OR penalty_due > 0 OR interest_due > 0 OR fees_due > 0)"
            " ORDER BY pool_id, disbursed_on, loan_id FOR UPDATE",
            wanted,
        ):
            loans.setdefault(r["pool_id"], []).append(_loan_of(r))
        in_flight: dict[str, tuple[Decimal, Decimal]] = {
            r["pool_id"]: (Decimal(r["total"]).quantize(FEN), Decimal(r["requested"]).quantize(FEN))
            for r in await conn.fetch(
                "SELECT pool_id, sum(amount) AS total,"
                " coalesce(sum(amount) FILTER (WHERE state = 'requested'), 0) AS requested"
                " FROM applications"
                " WHERE pool_id = ANY($1::text[]) AND state = ANY($2::text[]) GROUP BY pool_id",
                wanted,
                list(IN_FLIGHT),
            )
        }
        days = {
            pool_id: _pool_today(
                today, rows[pool_id]["closed_through"] if pool_id in rows else None
            )
            for pool_id in wanted
        }
        flagged: dict[str, dict[str, Receivable]] = {}
        with_facility = [p for p in wanted if p in facilities]
        if with_facility:
            for r in await conn.fetch(
                "SELECT r.* FROM unnest($1::text[], $2::int[], $3::date[], $4::bool[])"
                "   AS p(pool_id, max_tenor, cutoff, documents)"
                " CROSS JOIN LATERAL ("
                "   SELECT * FROM receivables r WHERE r.pool_id = p.pool_id"
                "     AND r.open_amount > 0 AND r.disputed"
                "   UNION SELECT * FROM receivables r WHERE r.pool_id = p.pool_id"
                "     AND r.open_amount > 0 AND r.tenor_days > p.max_tenor"
                "   UNION SELECT * FROM receivables r WHERE r.pool_id = p.pool_id"
                "     AND r.open_amount > 0 AND r.due_on < p.cutoff"
                "   UNION SELECT * FROM receivables r WHERE p.documents AND r.pool_id = p.pool_id"
                "     AND r.open_amount > 0 AND (r.document_gap IS NULL OR r.document_gap > 0)"
                " ) r",
                with_facility,
                [facilities[p].max_tenor_days for p in with_facility],
                [days[p] - timedelta(days=facilities[p].max_days_past_due) for p in with_facility],
                [facilities[p].require_trade_documents for p in with_facility],
            ):
                flagged.setdefault(r["pool_id"], {})[r["receivable_id"]] = _receivable_of(r)
        found = []
        for pool_id in wanted:
            row = rows.get(pool_id)
            total, requested = in_flight.get(pool_id, (ZERO, ZERO))
            found.append(
                PoolState(
                    pool_id,
                    row["core_enterprise_id"] if row else None,
                    row["supplier_id"] if row else None,
                    Decimal(row["water_level"]) if row else ZERO,
                    facilities.get(pool_id),
                    loans.get(pool_id, []),
                    total,
                    exists=row is not None,
                    requested=requested,
                    held=Decimal(row["held"]) if row else ZERO,
                    held_pending=Decimal(row["held_pending"]) if row else ZERO,
                    closed_through=row["closed_through"] if row else None,
                    first_slip_on=row["first_slip_on"] if row else None,
                    grade=row["grade"] if row else None,
                    flagged=flagged.get(pool_id, {}),
                    today=days[pool_id],
                )
            )
        return found

    async def receivables(self, keys: Sequence[tuple[str, str]]) -> list[tuple[str, Receivable]]:
        rows = await self.conn.fetch(
            "SELECT * FROM receivables WHERE (pool_id, receivable_id) IN"
            " (SELECT * FROM unnest($1::text[], $2::text[]))",
            [pool for pool, _ in keys],
            [receivable for _, receivable in keys],
        )
        return [(r["pool_id"], _receivable_of(r)) for r in rows]

    async def applications(
        self, application_ids: Sequence[str]
    ) -> tuple[list[Application], dict[str, str]]:
        wanted = list(application_ids)
        found = [
            _application_of(r)
            for r in await self.conn.fetch(
                "SELECT * FROM applications WHERE application_id = ANY($1::text[])"
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

    async def programmes(self, cores: Sequence[str], lock: bool = False) -> dict[str, Programme]:
        rows = await self.conn.fetch(
            "SELECT core_enterprise_id, routing, intercreditor, funders FROM programmes"
            " WHERE core_enterprise_id = ANY($1::text[]) ORDER BY core_enterprise_id"
            + (" FOR UPDATE" if lock else ""),
            sorted(set(cores)),
        )
        return {r["core_enterprise_id"]: _programme_of(r) for r in rows}

    async def exposure(
        self, core: str, pool_id: str
    ) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
        rows = await self.conn.fetch(
            "SELECT x.funder_id, sum(x.amount) AS total,"
            " coalesce(sum(x.amount) FILTER (WHERE x.pool_id = $2), 0) AS in_pool FROM ("
            "  SELECT l.pool_id, l.funder_id, l.outstanding AS amount FROM loans l"
            "  JOIN pools p ON p.pool_id = l.pool_id"
            "  WHERE p.core_enterprise_id = $1 AND l.outstanding > 0"
            "  UNION ALL SELECT a.pool_id, a.funder_id, a.amount FROM applications a"
            "  JOIN pools p ON p.pool_id = a.pool_id"
            "  WHERE p.core_enterprise_id = $1 AND a.state = 'requested') x"
            " GROUP BY x.funder_id",
            core,
            pool_id,
        )
        return (
            {r["funder_id"]: r["total"] for r in rows},
            {r["funder_id"]: r["in_pool"] for r in rows},
        )

    async def loans_by_id(self, pool_id: str, loan_ids: Sequence[str]) -> list[Loan]:
        rows = await self.conn.fetch(
            "SELECT * FROM loans WHERE pool_id = $1 AND loan_id = ANY($2::text[])"
            " ORDER BY loan_id FOR UPDATE",
            pool_id,
            list(loan_ids),
        )
        return [_loan_of(r) for r in rows]

    async def payments(self, payment_ids: Sequence[str]) -> dict[str, Repaid]:
        rows = await self.conn.fetch(
            "SELECT payment_id, pool_id, amount, principal, interest, held, from_held, kind,"
            " state, loans, instruction->>'event_id' AS instruction_event_id"
            " FROM repayments WHERE payment_id = ANY($1::text[])",
            list(payment_ids),
        )
        return {
            r["payment_id"]: Repaid(
                r["payment_id"],
                r["pool_id"],
                r["amount"],
                r["principal"],
                r["interest"],
                {"event_id": r["instruction_event_id"]},
                r["held"],
                r["from_held"],
                r["kind"],
                r["state"],
                json.loads(r["loans"]) if isinstance(r["loans"], str) else r["loans"],
            )
            for r in rows
        }

    async def suggestions(self, suggestion_ids: Sequence[str]) -> list[Suggestion]:
        rows = await self.conn.fetch(
            "SELECT * FROM suggestions WHERE suggestion_id = ANY($1::text[]) FOR UPDATE",
            list(suggestion_ids),
        )
        return [
            Suggestion(
                r["suggestion_id"],
                r["pool_id"],
                r["credit_line"],
                r["discount_rate"],
                r["grade"],
                r["state"],
                json.loads(r["body"]) if isinstance(r["body"], str) else r["body"],
            )
            for r in rows
        ]

    async def trade_history(self, pool_ids: Sequence[str]) -> dict[str, list[MonthTrade]]:
        history: dict[str, list[MonthTrade]] = {}
        for r in await self.conn.fetch(
            "SELECT * FROM trade_months WHERE pool_id = ANY($1::text[]) ORDER BY pool_id, month",
            list(pool_ids),
        ):
            history.setdefault(r["pool_id"], []).append(
                MonthTrade(
                    r["month"],
                    r["slips"],
                    r["paid"],
                    r["paid_late"],
                    r["diluted"],
                    r["overdue_days"],
                )
            )
        return history

    async def write(self, changes: CreditChanges) -> None:
        conn = self.conn
        if changes.pools:
            await conn.execute(
                "INSERT INTO pools(pool_id, core_enterprise_id, supplier_id, water_level, held,"
                " held_pending, closed_through, eligible_level, first_slip_on, grade)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[],"
                " $5::numeric[], $6::numeric[], $7::date[], $8::numeric[], $9::date[],"
                " $10::text[])"
                " ON CONFLICT (pool_id) DO UPDATE SET"
                " core_enterprise_id = EXCLUDED.core_enterprise_id,"
                " supplier_id = EXCLUDED.supplier_id, water_level = EXCLUDED.water_level,"
                " held = EXCLUDED.held, held_pending = EXCLUDED.held_pending,"
                " closed_through = EXCLUDED.closed_through,"
                " eligible_level = EXCLUDED.eligible_level,"
                " first_slip_on = EXCLUDED.first_slip_on, grade = EXCLUDED.grade",
                *columns(
                    changes.pools,
                    "pool_id",
                    "core_enterprise_id",
                    "supplier_id",
                    "water_level",
                    "held",
                    "held_pending",
                    "closed_through",
                ),
                [p.eligibility.eligible for p in changes.pools],
                [p.first_slip_on for p in changes.pools],
                [p.grade for p in changes.pools],
            )
        for pool_id, new, event_id in changes.facilities:  # rare: an operator's change
            await upsert_facility(conn, pool_id, new, event_id)
        if changes.new_applications:
            await conn.execute(
                "INSERT INTO applications(application_id, pool_id, amount, state, reason,"
                " funder_id, named_funder, split_of) SELECT * FROM unnest($1::text[],"
                " $2::text[], $3::numeric[], $4::text[], $5::text[], $6::text[], $7::text[],"
                " $8::text[])",
                *columns(
                    changes.new_applications,
                    "application_id",
                    "pool_id",
                    "amount",
                    "state",
                    "reason",
                    "funder_id",
                    "named_funder",
                    "split_of",
                ),
            )
        if changes.moved_applications:
            moved = changes.moved_applications
            terms = [a.terms for a in moved]
            await conn.execute(
                "UPDATE applications SET state = t.state, reason = t.reason,"
                " funder_id = coalesce(t.funder_id, applications.funder_id),"
                " annual_interest_rate = coalesce(t.rate, applications.annual_interest_rate),"
                " tenor_days = coalesce(t.tenor, applications.tenor_days),"
                " day_count = coalesce(t.day_count, applications.day_count),"
                " penalty_rate = coalesce(t.penalty, applications.penalty_rate),"
                " requested_on = coalesce(t.requested_on, applications.requested_on),"
                " updated_at = now()"
                " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
                " $6::numeric[], $7::int[], $8::text[], $9::numeric[], $10::date[])"
                " AS t(application_id, pool_id, state, reason, funder_id, rate, tenor,"
                " day_count, penalty, requested_on)"
                " WHERE applications.application_id = t.application_id"
                " AND applications.pool_id = t.pool_id",
                *columns(moved, "application_id", "pool_id", "state", "reason"),
                [t.funder_id if t else None for t in terms],
                [t.annual_interest_rate if t else None for t in terms],
                [t.tenor_days if t else None for t in terms],
                [t.day_count.value if t else None for t in terms],
                [t.penalty_rate if t else None for t in terms],
                [t.requested_on if t else None for t in terms],
            )
        if changes.new_loans:
            await _write_loans(conn, changes.new_loans, insert=True)
        if changes.loans:
            await _write_loans(conn, list(_by_key(changes.loans)), insert=False)
        if changes.repayments:
            await conn.execute(
                "INSERT INTO repayments(payment_id, pool_id, amount, principal, interest, state,"
                " instruction, held, from_held, kind, loans)"
                " SELECT p, pool, a, pr, i, st, ins::jsonb, h, fh, k, l::jsonb FROM"
                " unnest($1::text[], $2::text[], $3::numeric[], $4::numeric[], $5::numeric[],"
                " $6::text[], $7::numeric[], $8::numeric[], $9::text[], $10::text[], $11::text[])"
                " AS t(p, pool, a, pr, i, ins, h, fh, k, l, st)",
                *columns(
                    changes.repayments, "payment_id", "pool_id", "amount", "principal", "interest"
                ),
                [json.dumps(r.instruction, default=json_default) for r in changes.repayments],
                *columns(changes.repayments, "held", "from_held", "kind"),
                [json.dumps(r.loans) for r in changes.repayments],
                [r.state for r in changes.repayments],
            )
        if changes.programmes:
            await conn.executemany(
                "INSERT INTO programmes(core_enterprise_id, routing, intercreditor, funders,"
                " event_id) VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (core_enterprise_id)"
                " DO UPDATE SET routing = EXCLUDED.routing, intercreditor ="
                " EXCLUDED.intercreditor, funders = EXCLUDED.funders, event_id ="
                " EXCLUDED.event_id, set_at = now()",
                [
                    (
                        p.core_enterprise_id,
                        p.routing.value,
                        p.intercreditor.value,
                        json.dumps([f.model_dump(mode="json") for f in p.funders]),
                        p.event_id,
                    )
                    for p in changes.programmes
                ],
            )
        if changes.undone:
            await conn.execute(
                "UPDATE repayments SET state = 'undone' WHERE payment_id = ANY($1::text[])",
                changes.undone,
            )
        if changes.confirmed:
            await confirm_repayments(conn, changes.confirmed)
        if changes.receivables:
            keys = sorted(changes.receivables)
            rows = [changes.receivables[k] for k in keys]
            await conn.execute(
                "INSERT INTO receivables(pool_id, receivable_id, open_amount, issued_on, due_on,"
                " tenor_days, disputed, document_gap) SELECT * FROM unnest($1::text[],"
                " $2::text[], $3::numeric[], $4::date[], $5::date[], $6::int[], $7::bool[],"
                " $8::numeric[])"
                " ON CONFLICT (pool_id, receivable_id) DO UPDATE SET"
                " open_amount = EXCLUDED.open_amount, disputed = EXCLUDED.disputed,"
                " document_gap = EXCLUDED.document_gap",
                [pool for pool, _ in keys],
                *columns(rows, "receivable_id", "open_amount", "issued_on", "due_on"),
                [_tenor(r) for r in rows],
                [r.disputed for r in rows],
                [r.document_gap for r in rows],
            )
        if changes.open_amounts:
            keys = sorted(changes.open_amounts)
            await conn.execute(
                "UPDATE receivables SET open_amount = t.open"
                " FROM unnest($1::text[], $2::text[], $3::numeric[]) AS t(pool_id, rid, open)"
                " WHERE receivables.pool_id = t.pool_id AND receivables.receivable_id = t.rid",
                [pool for pool, _ in keys],
                [rid for _, rid in keys],
                [changes.open_amounts[k] for k in keys],
            )
        if changes.entries:
            await conn.execute(
                "INSERT INTO loan_entries(pool_id, loan_id, business_date, kind, amount,"
                " reference) SELECT * FROM unnest($1::text[], $2::text[], $3::date[],"
                " $4::text[], $5::numeric[], $6::text[])",
                *columns(
                    changes.entries,
                    "pool_id",
                    "loan_id",
                    "business_date",
                    "kind",
                    "amount",
                    "reference",
                ),
            )
        if changes.trade:
            keys2 = sorted(changes.trade)
            values = [changes.trade[k] for k in keys2]
            await conn.execute(
                "INSERT INTO trade_months AS t(pool_id, month, slips, paid, paid_late, diluted,"
                " overdue_days) SELECT * FROM unnest($1::text[], $2::date[], $3::numeric[],"
                " $4::numeric[], $5::numeric[], $6::numeric[], $7::int[])"
                " ON CONFLICT (pool_id, month) DO UPDATE SET slips = t.slips + EXCLUDED.slips,"
                " paid = t.paid + EXCLUDED.paid, paid_late = t.paid_late + EXCLUDED.paid_late,"
                " diluted = t.diluted + EXCLUDED.diluted,"
                " overdue_days = greatest(t.overdue_days, EXCLUDED.overdue_days)",
                [pool for pool, _ in keys2],
                [month for _, month in keys2],
                *(list(col) for col in zip(*values, strict=True)),
            )
        if changes.suggestions:
            await conn.execute(
                "INSERT INTO suggestions(suggestion_id, pool_id, credit_line, discount_rate,"
                " grade, state, body) SELECT s, p, l, r, g, st, b::jsonb FROM unnest("
                " $1::text[], $2::text[], $3::numeric[], $4::numeric[], $5::text[], $6::text[],"
                " $7::text[]) AS t(s, p, l, r, g, st, b)"
                " ON CONFLICT (suggestion_id) DO UPDATE SET state = EXCLUDED.state,"
                " body = EXCLUDED.body",
                *columns(
                    changes.suggestions,
                    "suggestion_id",
                    "pool_id",
                    "credit_line",
                    "discount_rate",
                    "grade",
                    "state",
                ),
                [json.dumps(s.body, default=json_default) for s in changes.suggestions],
            )
        if changes.positions:
            await conn.execute(
                "INSERT INTO positions(event_id, pool_id, occurred_at, body)"
                " SELECT e, p, o, b::jsonb FROM unnest($1::text[], $2::text[],"
                " $3::timestamptz[], $4::text[]) AS t(e, p, o, b)",
                [e for e, _, _, _ in changes.positions],
                [p for _, p, _, _ in changes.positions],
                [o for _, _, o, _ in changes.positions],
                [json.dumps(b, default=json_default) for _, _, _, b in changes.positions],
            )


def _by_key(loans: dict[tuple[str, str], Loan]) -> Iterable[tuple[str, Loan]]:
    for pool_id, loan_id in sorted(loans):
        yield pool_id, loans[(pool_id, loan_id)]


LOAN_COLUMNS = (
    "loan_id",
    "funder_id",
    "outstanding",
    "annual_interest_rate",
    "disbursed_on",
    "maturity_on",
    "penalty_rate",
    "interest_from",
    "interest_due",
    "penalty_due",
    "fees_due",
    "accrued",
    "overdue",
)


async def _write_loans(conn: Connection, loans: Sequence[tuple[str, Loan]], insert: bool) -> None:
    only = [loan for _, loan in loans]
    values = [
        [pool for pool, _ in loans],
        *columns(only, *LOAN_COLUMNS),
        [loan.day_count.value for loan in only],
    ]
    source = (
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::numeric[],"
        " $6::date[], $7::date[], $8::numeric[], $9::date[], $10::numeric[], $11::numeric[],"
        " $12::numeric[], $13::numeric[], $14::bool[], $15::text[])"
        " AS t(pool_id, loan_id, funder_id, outstanding, rate, disbursed_on, maturity_on,"
        " penalty_rate, interest_from, interest_due, penalty_due, fees_due, accrued, overdue,"
        " day_count)"
    )
    if insert:
        await conn.execute(
            "INSERT INTO loans(pool_id, loan_id, funder_id, principal, outstanding,"
            " annual_interest_rate, disbursed_on, maturity_on, penalty_rate, interest_from,"
            " interest_due, penalty_due, fees_due, accrued, overdue, day_count)"
            " SELECT pool_id, loan_id, funder_id, outstanding, outstanding, rate, disbursed_on,"
            " maturity_on, penalty_rate, interest_from, interest_due, penalty_due, fees_due,"
            " accrued, overdue, day_count" + source,
            *values,
        )
        return
    await conn.execute(
        "UPDATE loans SET outstanding = t.outstanding, interest_from = t.interest_from,"
        " interest_due = t.interest_due, penalty_due = t.penalty_due, fees_due = t.fees_due,"
        " accrued = t.accrued, overdue = t.overdue" + source + " WHERE loans.pool_id = t.pool_id"
        " AND loans.loan_id = t.loan_id",
        *values,
    )


@dataclass
class PoolRow:
    core_enterprise_id: str | None
    supplier_id: str | None
    water_level: Decimal
    held: Decimal = ZERO
    held_pending: Decimal = ZERO
    closed_through: date | None = None
    first_slip_on: date | None = None
    grade: str | None = None


@dataclass
class InMemoryCreditStore:
    """The fake: credit's tables as dicts, for handler tests without a database."""

    pool_rows: dict[str, PoolRow] = field(default_factory=dict)
    facilities: dict[str, Facility] = field(default_factory=dict)
    loans: dict[tuple[str, str], Loan] = field(default_factory=dict)  # (pool, loan id)
    application_rows: dict[str, Application] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)
    repayments: dict[str, Repaid] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)
    receivable_rows: dict[tuple[str, str], Receivable] = field(default_factory=dict)
    entries: list[LoanEntry] = field(default_factory=list)
    trade: dict[tuple[str, date], MonthTrade] = field(default_factory=dict)
    suggestion_rows: dict[str, Suggestion] = field(default_factory=dict)
    positions: list[tuple[str, str, datetime, dict[str, Any]]] = field(default_factory=list)
    programme_rows: dict[str, m.ProgrammeSet] = field(default_factory=dict)

    async def pools(self, pool_ids: Sequence[str], today: date) -> list[PoolState]:
        found = []
        for pool_id in pool_ids:
            row = self.pool_rows.get(pool_id)
            loans = sorted(
                (
                    loan
                    for (p, _), loan in self.loans.items()
                    if p == pool_id and (loan.outstanding > 0 or loan.dues > 0)
                ),
                key=lambda loan: (loan.disbursed_on, loan.loan_id),
            )
            flying = [
                a
                for a in self.application_rows.values()
                if a.pool_id == pool_id and a.state in IN_FLIGHT
            ]
            day = _pool_today(today, row.closed_through if row else None)
            f = self.facilities.get(pool_id)
            flagged = {}
            if f is not None:
                cutoff = day - timedelta(days=f.max_days_past_due)
                flagged = {
                    rid: r
                    for (p, rid), r in self.receivable_rows.items()
                    if p == pool_id
                    and r.open_amount > 0
                    and (
                        r.disputed
                        or (_tenor(r) or 0) > f.max_tenor_days
                        or (r.due_on is not None and r.due_on < cutoff)
                        or (
                            f.require_trade_documents
                            and (r.document_gap is None or r.document_gap > 0)
                        )
                    )
                }
            found.append(
                PoolState(
                    pool_id,
                    row.core_enterprise_id if row else None,
                    row.supplier_id if row else None,
                    row.water_level if row else ZERO,
                    f,
                    loans,
                    sum((a.amount for a in flying), ZERO),
                    exists=row is not None,
                    requested=sum((a.amount for a in flying if a.state == "requested"), ZERO),
                    held=row.held if row else ZERO,
                    held_pending=row.held_pending if row else ZERO,
                    closed_through=row.closed_through if row else None,
                    first_slip_on=row.first_slip_on if row else None,
                    grade=row.grade if row else None,
                    flagged=flagged,
                    today=day,
                )
            )
        return found

    async def receivables(self, keys: Sequence[tuple[str, str]]) -> list[tuple[str, Receivable]]:
        return [(k[0], self.receivable_rows[k]) for k in keys if k in self.receivable_rows]

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

    async def payments(self, payment_ids: Sequence[str]) -> dict[str, Repaid]:
        return {p: self.repayments[p] for p in payment_ids if p in self.repayments}

    async def loans_by_id(self, pool_id: str, loan_ids: Sequence[str]) -> list[Loan]:
        return [self.loans[(pool_id, i)] for i in sorted(loan_ids) if (pool_id, i) in self.loans]

    async def programmes(self, cores: Sequence[str], lock: bool = False) -> dict[str, Programme]:
        return {c: Programme.of(self.programme_rows[c]) for c in cores if c in self.programme_rows}

    async def exposure(
        self, core: str, pool_id: str
    ) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
        pools = {p for p, row in self.pool_rows.items() if row.core_enterprise_id == core}
        total: dict[str, Decimal] = {}
        in_pool: dict[str, Decimal] = {}
        owed = [(p, loan.funder_id, loan.outstanding) for (p, _), loan in self.loans.items()]
        flying = [
            (a.pool_id, a.funder_id or "", a.amount)
            for a in self.application_rows.values()
            if a.state == "requested"
        ]
        for p, funder, amount in owed + flying:
            if p in pools and amount > 0:
                total[funder] = total.get(funder, ZERO) + amount
                if p == pool_id:
                    in_pool[funder] = in_pool.get(funder, ZERO) + amount
        return total, in_pool

    async def suggestions(self, suggestion_ids: Sequence[str]) -> list[Suggestion]:
        return [
            dataclasses.replace(self.suggestion_rows[s])
            for s in suggestion_ids
            if s in self.suggestion_rows
        ]

    async def trade_history(self, pool_ids: Sequence[str]) -> dict[str, list[MonthTrade]]:
        history: dict[str, list[MonthTrade]] = {}
        for (pool_id, _), month in sorted(self.trade.items()):
            if pool_id in pool_ids:
                history.setdefault(pool_id, []).append(month)
        return history

    async def write(self, changes: CreditChanges) -> None:
        for pool in changes.pools:
            self.pool_rows[pool.pool_id] = PoolRow(
                pool.core_enterprise_id,
                pool.supplier_id,
                pool.water_level,
                pool.held,
                pool.held_pending,
                pool.closed_through,
                pool.first_slip_on,
                pool.grade,
            )
        for pool_id, new, _ in changes.facilities:
            self.facilities[pool_id] = new
        for application in changes.new_applications:
            if application.application_id in self.application_rows:
                raise ValueError(f"duplicate application {application.application_id}")
            self.application_rows[application.application_id] = dataclasses.replace(application)
        for application in changes.moved_applications:
            self.application_rows[application.application_id] = dataclasses.replace(application)
        for pool_id, loan in changes.new_loans:
            if (pool_id, loan.loan_id) in self.loans:
                raise ValueError(f"duplicate loan {loan.loan_id}")
            self.loans[(pool_id, loan.loan_id)] = loan
        self.loans.update(changes.loans)
        for repaid in changes.repayments:
            if repaid.payment_id in self.repayments:
                raise ValueError(f"payment {repaid.payment_id} decided twice")
            self.repayments[repaid.payment_id] = repaid
        self.confirmed.update(payment_id for _, payment_id in changes.confirmed)
        for programme in changes.programmes:
            self.programme_rows[programme.core_enterprise_id] = programme
        for payment_id in changes.undone:
            self.repayments[payment_id] = dataclasses.replace(
                self.repayments[payment_id], state="undone"
            )
        self.receivable_rows.update(changes.receivables)
        for key, open_amount in changes.open_amounts.items():
            if key in self.receivable_rows:
                self.receivable_rows[key] = dataclasses.replace(
                    self.receivable_rows[key], open_amount=open_amount
                )
        self.entries.extend(changes.entries)
        for (pool_id, month), (slips, paid, late, diluted, overdue) in changes.trade.items():
            was = self.trade.get((pool_id, month), MonthTrade(month, ZERO, ZERO, ZERO, ZERO, 0))
            self.trade[(pool_id, month)] = MonthTrade(
                month,
                was.slips + slips,
                was.paid + paid,
                was.paid_late + late,
                was.diluted + diluted,
                max(was.overdue_days, overdue),
            )
        for suggestion in changes.suggestions:
            self.suggestion_rows[suggestion.suggestion_id] = dataclasses.replace(suggestion)
        self.positions.extend(changes.positions)


@dataclass
class CreditBatch:
    """What one batch transaction reads and writes in credit's schema: prepared set-based,
    decided in memory by the handlers, flushed in one call to the store."""

    store: CreditStore | None = None  # None: PostgreSQL on the batch's connection
    day_close_lead_days: int = 0
    today: date | None = None  # the business day (None: the calendar's, per batch)
    pools: dict[str, PoolState] = field(default_factory=dict)
    applications: dict[str, Application] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)  # application id -> pool
    decided: dict[str, Repaid] = field(default_factory=dict)  # payment id -> decision
    suggestions: dict[str, Suggestion] = field(default_factory=dict)
    _looked_up_pools: set[str] = field(default_factory=set)
    _looked_up_applications: set[str] = field(default_factory=set)
    _looked_up_payments: set[str] = field(default_factory=set)
    _looked_up_receivables: set[tuple[str, str]] = field(default_factory=set)
    _looked_up_suggestions: set[str] = field(default_factory=set)
    _pools_changed: set[str] = field(default_factory=set)
    _new_applications: set[str] = field(default_factory=set)
    _applications_changed: set[str] = field(default_factory=set)
    # Requests this batch sent, not yet written: (core, funder) and (pool, funder) -> amount.
    routed: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    routed_in_pool: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    changes: CreditChanges = field(default_factory=CreditChanges)

    def _store(self, conn: Connection | None) -> CreditStore:
        if self.store is not None:
            return self.store
        assert conn is not None, "a CreditBatch without a store needs a connection"
        return PostgresCreditStore(conn)

    def business_day(self) -> date:
        return self.today or business_date()

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
            conn,
            {
                e.payment_id
                for e in events
                if isinstance(e, m.ReceivablesSettled | m.SettlementReleased)
            }
            | {e.prepayment_id for e in events if isinstance(e, m.PrepaymentFrozen)},
        )
        await self._load_receivables(
            conn,
            {(e.pool_id, e.receivable_id) for e in events if isinstance(e, m.ReceivableAdjusted)},
        )
        # Routing a request counts every funder's exposure to the core enterprise: the
        # programme rows of the batch's confirmations are locked first, in one order.
        routed_cores = {
            self.pools[e.pool_id].core_enterprise_id
            for e in events
            if isinstance(e, m.BuyerConfirmedFinancing) and e.pool_id in self.pools
        }
        if routed_cores - {None}:
            await self._store(conn).programmes(sorted(c for c in routed_cores if c), lock=True)

    async def exposure(
        self, conn: Connection | None, pool: PoolState
    ) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
        """Each funder's exposure to the pool's core enterprise and to its supplier, counting
        the requests this batch routed (call under the programme's lock)."""
        assert pool.core_enterprise_id is not None
        core, in_pool = await self._store(conn).exposure(pool.core_enterprise_id, pool.pool_id)
        for (c, funder), amount in self.routed.items():
            if c == pool.core_enterprise_id:
                core[funder] = core.get(funder, ZERO) + amount
        for (p, funder), amount in self.routed_in_pool.items():
            if p == pool.pool_id:
                in_pool[funder] = in_pool.get(funder, ZERO) + amount
        return core, in_pool

    def route(self, pool: PoolState, funder_id: str, amount: Decimal) -> None:
        assert pool.core_enterprise_id is not None
        key = (pool.core_enterprise_id, funder_id)
        self.routed[key] = self.routed.get(key, ZERO) + amount
        pool_key = (pool.pool_id, funder_id)
        self.routed_in_pool[pool_key] = self.routed_in_pool.get(pool_key, ZERO) + amount

    def save_programme(self, event: m.ProgrammeSet) -> None:
        self.changes.programmes.append(event)
        programme = Programme.of(event)
        for pool in self.pools.values():
            if pool.core_enterprise_id == event.core_enterprise_id:
                pool.programme = programme

    async def _load_pools(self, conn: Connection | None, pool_ids: Iterable[str]) -> None:
        wanted = first_time(pool_ids, self._looked_up_pools)
        if wanted:
            found = await self._store(conn).pools(wanted, self.business_day())
            cores = {p.core_enterprise_id for p in found if p.core_enterprise_id}
            programmes = await self._store(conn).programmes(sorted(cores)) if cores else {}
            for pool in found:
                if pool.core_enterprise_id:
                    pool.programme = programmes.get(pool.core_enterprise_id)
            for pool in found:
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
            self.decided.update(await self._store(conn).payments(wanted))

    async def _load_receivables(
        self, conn: Connection | None, keys: Iterable[tuple[str, str]]
    ) -> None:
        wanted = first_time(keys, self._looked_up_receivables)
        if wanted:
            for pool_id, receivable in await self._store(conn).receivables(wanted):
                pool = self.pools.get(pool_id)
                if pool is not None:
                    pool.flagged.setdefault(receivable.receivable_id, receivable)

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

    async def payment(self, conn: Connection | None, payment_id: str) -> Repaid | None:
        await self._load_payments(conn, [payment_id])
        return self.decided.get(payment_id)

    async def payment_decided(self, conn: Connection | None, payment_id: str) -> bool:
        return await self.payment(conn, payment_id) is not None

    async def receivable(
        self, conn: Connection | None, pool: PoolState, receivable_id: str
    ) -> Receivable | None:
        await self._load_receivables(conn, [(pool.pool_id, receivable_id)])
        return pool.flagged.get(receivable_id)

    async def suggestion(self, conn: Connection | None, suggestion_id: str) -> Suggestion | None:
        wanted = first_time([suggestion_id], self._looked_up_suggestions)
        if wanted:
            for found in await self._store(conn).suggestions(wanted):
                self.suggestions[found.suggestion_id] = found
        return self.suggestions.get(suggestion_id)

    async def trade_history(self, conn: Connection | None, pool_id: str) -> list[MonthTrade]:
        """The pool's recorded months plus what this batch added (not yet written)."""
        stored = (await self._store(conn).trade_history([pool_id])).get(pool_id, [])
        months = {t.month: t for t in stored}
        for (p, month), (slips, paid, late, diluted, overdue) in self.changes.trade.items():
            if p == pool_id:
                was = months.get(month, MonthTrade(month, ZERO, ZERO, ZERO, ZERO, 0))
                months[month] = MonthTrade(
                    month,
                    was.slips + slips,
                    was.paid + paid,
                    was.paid_late + late,
                    was.diluted + diluted,
                    max(was.overdue_days, overdue),
                )
        return [months[k] for k in sorted(months)]

    # ------------------------------------------------------------ decisions (in memory)

    def touch(self, pool: PoolState) -> None:
        self._pools_changed.add(pool.pool_id)

    def open_pool(self, pool: PoolState, core: str, supplier: str) -> None:
        pool.core_enterprise_id, pool.supplier_id, pool.exists = core, supplier, True
        self.touch(pool)

    def set_level(self, pool: PoolState, level: Decimal) -> None:
        pool.water_level = level
        self.touch(pool)

    def set_facility(self, pool: PoolState, new: Facility, event_id: str) -> None:
        pool.facility = new
        self.changes.facilities.append((pool.pool_id, new, event_id))

    def add_receivable(self, pool: PoolState, receivable: Receivable) -> None:
        pool.flagged[receivable.receivable_id] = receivable
        self.changes.receivables[(pool.pool_id, receivable.receivable_id)] = receivable

    def change_receivable(self, pool: PoolState, receivable: Receivable) -> None:
        """A slip credit has loaded (flagged, or named by an adjustment) changed."""
        self.add_receivable(pool, receivable)

    def pay_receivable(self, pool: PoolState, receivable_id: str, open_after: Decimal) -> None:
        known = pool.flagged.get(receivable_id)
        if known is not None:
            self.add_receivable(pool, dataclasses.replace(known, open_amount=open_after))
        else:
            self.changes.open_amounts[(pool.pool_id, receivable_id)] = open_after

    def add_application(self, pool: PoolState, application: Application) -> None:
        self.applications[application.application_id] = application
        self._new_applications.add(application.application_id)
        if application.state in IN_FLIGHT:
            pool.in_flight += application.amount
        if application.state == "requested":
            pool.requested += application.amount

    def move_application(
        self,
        pool: PoolState,
        application: Application,
        state: str,
        reason: str | None = None,
        terms: Terms | None = None,
    ) -> None:
        was = application.state
        application.state, application.reason = state, reason
        if terms is not None:
            application.terms, application.funder_id = terms, terms.funder_id
        if was in IN_FLIGHT and state not in IN_FLIGHT:
            pool.in_flight -= application.amount
        if was == "requested" and state != "requested":
            pool.requested -= application.amount
        if was != "requested" and state == "requested":
            pool.requested += application.amount
        self._applications_changed.add(application.application_id)

    def open_loan(self, pool: PoolState, loan: Loan) -> None:
        pool.loans.append(loan)
        pool.loans.sort(key=lambda open_loan: (open_loan.disbursed_on, open_loan.loan_id))
        self.changes.new_loans.append((pool.pool_id, loan))

    def replace_loan(self, pool: PoolState, loan: Loan) -> None:
        """A loan changed (repaid, serviced): kept in the pool while anything is owed on it."""
        pool.loans = [
            loan if open_loan.loan_id == loan.loan_id else open_loan for open_loan in pool.loans
        ]
        pool.loans = [ln for ln in pool.loans if ln.outstanding > 0 or ln.dues > 0]
        if any(new.loan_id == loan.loan_id for _, new in self.changes.new_loans):
            self.changes.new_loans = [
                (p, loan if new.loan_id == loan.loan_id else new)
                for p, new in self.changes.new_loans
            ]
        else:
            self.changes.loans[(pool.pool_id, loan.loan_id)] = loan

    def entry(
        self,
        pool: PoolState,
        loan_id: str,
        day: date,
        kind: str,
        amount: Decimal,
        reference: str | None = None,
    ) -> None:
        self.changes.entries.append(LoanEntry(pool.pool_id, loan_id, day, kind, amount, reference))

    def record_decision(self, repaid: Repaid) -> None:
        self.decided[repaid.payment_id] = repaid
        self.changes.repayments.append(repaid)

    def undo(self, repaid: Repaid) -> None:
        repaid.state = "undone"
        if not any(r is repaid for r in self.changes.repayments):  # else inserted undone
            self.changes.undone.append(repaid.payment_id)

    async def loan_of(self, conn: Connection | None, pool: PoolState, loan_id: str) -> Loan | None:
        """One of the pool's loans, open or closed: a closed one is back among its loans."""
        for loan in pool.loans:
            if loan.loan_id == loan_id:
                return loan
        found = await self._store(conn).loans_by_id(pool.pool_id, [loan_id])
        if not found:
            return None
        pool.loans = sorted([*pool.loans, found[0]], key=lambda ln: (ln.disbursed_on, ln.loan_id))
        return found[0]

    def confirm(self, pool_id: str, payment_id: str) -> None:
        self.changes.confirmed.append((pool_id, payment_id))

    def trade(
        self,
        pool_id: str,
        day: date,
        *,
        slips: Decimal = ZERO,
        paid: Decimal = ZERO,
        paid_late: Decimal = ZERO,
        diluted: Decimal = ZERO,
        overdue_days: int = 0,
    ) -> None:
        month = day.replace(day=1)
        row = self.changes.trade.setdefault((pool_id, month), [ZERO, ZERO, ZERO, ZERO, 0])
        row[0] += slips
        row[1] += paid
        row[2] += paid_late
        row[3] += diluted
        row[4] = max(row[4], overdue_days)

    def save_suggestion(self, suggestion: Suggestion) -> None:
        self.suggestions[suggestion.suggestion_id] = suggestion
        self.changes.suggestions = [
            s for s in self.changes.suggestions if s.suggestion_id != suggestion.suggestion_id
        ] + [suggestion]

    def record_position(self, event: m.PoolPosition) -> None:
        self.changes.positions.append(
            (event.event_id, event.pool_id, event.occurred_at, event.model_dump(mode="json"))
        )

    # ------------------------------------------------------------ writes

    async def flush(self, conn: Connection | None) -> None:
        changes = self.changes
        changes.pools = [self.pools[p] for p in sorted(self._pools_changed)]
        changes.new_applications = [self.applications[a] for a in sorted(self._new_applications)]
        # A new application that already has its terms (a part of a split one) is inserted,
        # then given them as a moved one is.
        changes.moved_applications = [
            self.applications[a]
            for a in sorted(self._applications_changed)
            if a not in self._new_applications or self.applications[a].terms is not None
        ]
        if changes:
            await self._store(conn).write(changes)
        self.changes = CreditChanges()
        self._pools_changed.clear()
        self._new_applications.clear()
        self._applications_changed.clear()


def _pool_today(today: date, closed_through: date | None) -> date:
    """A pool's business day: the calendar's, or the day after its last closed day when an
    operator closed days ahead (a simulation)."""
    if closed_through is None:
        return today
    return max(today, closed_through + timedelta(days=1))


def _tenor(receivable: Receivable) -> int | None:
    if receivable.issued_on is None or receivable.due_on is None:
        return None
    return (receivable.due_on - receivable.issued_on).days


def facility_of(event: FacilitySet) -> Facility:
    return Facility(
        event.credit_line,
        event.discount_rate,
        event.annual_interest_rate,
        event.funder_id,
        event.day_count,
        event.tenor_days,
        event.penalty_rate,
        event.interest_period,
        event.interest_collection,
        event.max_days_past_due,
        event.max_tenor_days,
        event.cross_age_percent,
        event.concentration_limit,
        event.auto_apply,
        event.require_trade_documents,
        event.match_tolerance,
        event.funder_kind,
    )


def _facility_of(row: Any) -> Facility:
    auto = row["auto_apply"]
    return Facility(
        row["credit_line"],
        row["discount_rate"],
        row["annual_interest_rate"],
        row["funder_id"],
        DayCount(row["day_count"]),
        row["tenor_days"],
        row["penalty_rate"],
        InterestPeriod(row["interest_period"]),
        InterestCollection(row["interest_collection"]),
        row["max_days_past_due"],
        row["max_tenor_days"],
        row["cross_age_percent"],
        row["concentration_limit"],
        None if auto is None else CreditBounds.model_validate_json(auto),
        row["require_trade_documents"],
        row["match_tolerance"],
        row["funder_kind"],
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
        r["penalty_rate"],
        r["interest_from"],
        r["interest_due"],
        r["penalty_due"],
        r["fees_due"],
        r["accrued"],
        r["overdue"],
    )


def _receivable_of(r: Any) -> Receivable:
    return Receivable(
        r["receivable_id"],
        r["open_amount"],
        r["issued_on"],
        r["due_on"],
        r["disputed"],
        r["document_gap"],
    )


def _programme_of(r: Any) -> Programme:
    funders = r["funders"] if not isinstance(r["funders"], str) else json.loads(r["funders"])
    return Programme.of(
        m.ProgrammeSet.model_validate(
            {
                "event_id": "stored",
                "occurred_at": "2026-01-01T00:00:00+00:00",
                "source": "credit",
                "pool_id": r["core_enterprise_id"],
                "core_enterprise_id": r["core_enterprise_id"],
                "routing": r["routing"],
                "intercreditor": r["intercreditor"],
                "funders": funders,
            }
        )
    )


def _application_of(r: Any) -> Application:
    terms = None
    if r["annual_interest_rate"] is not None:
        terms = Terms(
            r["funder_id"],
            r["annual_interest_rate"],
            r["tenor_days"],
            DayCount(r["day_count"]),
            r["penalty_rate"],
            r["requested_on"],
        )
    return Application(
        r["application_id"],
        r["pool_id"],
        r["amount"],
        r["state"],
        r["reason"],
        r["funder_id"],
        terms,
        r["named_funder"],
        r["split_of"],
    )
