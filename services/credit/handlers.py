"""credit: pool positions, applications, loans, the repayment decision (DESIGN step 4) and
loan servicing.

Handlers decide in memory on the batch's `CreditBatch` (prepared set-based, flushed once):
no statement per message."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import date, timedelta
from decimal import Decimal

import structlog

from services.credit import model
from services.credit import repository as repo
from services.credit.domain import (
    DEFAULT_PENALTY_MARKUP,
    Decision,
    Loan,
    Receivable,
    Terms,
    apply_repayment,
    available_to_borrow,
    close_day,
    decide_payment,
    document_gap,
    facility_refusal,
    level_after_write_off,
    refusal_of,
    repayment_delta,
    settle_hold,
    undo_repayment,
)
from services.credit.programmes import Agreement, route
from shared.calendar import business_date
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected, not_the_pools_buyer
from shared.inbox import UnitOfWork, dispatch
from shared.money import MAX_TOTAL, ZERO
from shared.trust import not_the_party

SOURCE = "credit"
log = structlog.get_logger(__name__)

Uow = UnitOfWork[repo.CreditBatch]
A = m.ApplicationState


async def _known_pool(uow: Uow, pool_id: str) -> repo.PoolState | Rejected:
    pool = await uow.state.pool(uow.conn, pool_id)
    if not pool.exists:
        return Rejected(m.Reason.UNKNOWN_POOL, f"pool {pool_id} is not known to credit")
    return pool


def _decide(
    uow: Uow,
    cause: m.Message,
    application_id: str,
    state: m.ApplicationState,
    amount: Decimal,
    available: Decimal,
    reason: m.Reason | None,
) -> None:
    """Tell the supplier where its application stands (refused ones with their reason)."""
    uow.emit(
        topics.CREDIT_DECISIONS,
        m.new_event(
            m.FinancingDecision,
            source=SOURCE,
            pool_id=cause.pool_id,
            cause=cause,
            application_id=application_id,
            state=state,
            amount=amount,
            available=available,
            reason=reason,
        ),
    )


def position_of(pool: repo.PoolState, cause: m.Message | None = None) -> m.PoolPosition:
    """The pool's position as the batch sees it now (no query)."""
    eligible = pool.eligibility
    return m.new_event(
        m.PoolPosition,
        source=SOURCE,
        pool_id=pool.pool_id,
        cause=cause,
        water_level=pool.water_level,
        borrowing_base=pool.base,
        loan_balance=pool.loan_balance,
        in_flight=pool.in_flight,
        available=_available(pool),
        ineligible=eligible.ineligible,
        eligible_level=eligible.eligible,
        held=pool.held + pool.held_pending,
        interest_due=sum((loan.interest_due for loan in pool.loans), ZERO),
        penalty_due=sum((loan.penalty_due for loan in pool.loans), ZERO),
        standing=pool.standing,
        business_date=pool.today,
    )


def emit_position(uow: Uow, cause: m.Message, pool: repo.PoolState) -> None:
    """Publish the pool's position after a change, and keep it as the certificate in force
    from now on (GET /pools/{id}/position?as_of=…)."""
    position = position_of(pool, cause)
    uow.emit(topics.CREDIT_POSITIONS, position)
    uow.state.record_position(position)


def _available(pool: repo.PoolState, not_counting: Decimal = ZERO) -> Decimal:
    return available_to_borrow(
        pool.eligibility.eligible, pool.facility, pool.loan_balance, pool.in_flight - not_counting
    )


def _value_date(pool: repo.PoolState, day: date) -> date:
    """Interest runs to the day the money arrived; in a pool whose days were closed ahead (a
    simulation), never before the pool's open day."""
    if pool.closed_through is None:
        return day
    return max(day, pool.closed_through + timedelta(days=1))


# ---------------------------------------------------------------- facilities and the pool


async def on_facility_set(uow: Uow, event: m.FacilitySet) -> Rejected | None:
    if reason := facility_refusal(event.discount_rate, event.annual_interest_rate):
        return Rejected(m.Reason.INVALID_FACILITY, reason)
    pool = await uow.state.pool(uow.conn, event.pool_id)  # a facility may precede the pool
    uow.state.set_facility(pool, repo.facility_of(event), event.event_id)
    if pool.exists:
        _settle_hold(uow, event, pool, "facility changed")
    emit_position(uow, event, pool)
    return None


async def on_programme_set(uow: Uow, event: m.ProgrammeSet) -> Rejected | None:
    """An operator sets a core enterprise's programme: its funders and their agreements, the
    routing rule and the intercreditor rule, for every pool of the core enterprise."""
    if event.pool_id != event.core_enterprise_id:
        return Rejected(
            m.Reason.INVALID_PROGRAMME,
            f"a programme is keyed by its core enterprise: pool_id {event.pool_id} is not "
            f"{event.core_enterprise_id}",
        )
    uow.state.save_programme(event)
    log.info(
        "programme set",
        core_enterprise_id=event.core_enterprise_id,
        funders=[f.funder_id for f in event.funders],
        routing=event.routing.value,
        intercreditor=event.intercreditor.value,
    )
    return None


async def on_pool_opened(uow: Uow, event: m.PoolOpened) -> Rejected | None:
    pool = await uow.state.pool(uow.conn, event.pool_id)
    uow.state.open_pool(pool, event.core_enterprise_id, event.supplier_id)
    emit_position(uow, event, pool)
    return None


async def on_receivable_added(uow: Uow, event: m.ReceivableAdded) -> Rejected | None:
    pool = await _known_pool(uow, event.pool_id)
    if isinstance(pool, Rejected):
        return pool
    level = pool.water_level + event.amount
    if level > MAX_TOTAL:  # intake refuses such a slip; never overflow the level's column
        return Rejected(
            m.Reason.POOL_LIMIT_EXCEEDED, f"pool level would be {level}; at most {MAX_TOTAL}"
        )
    uow.state.set_level(pool, level)
    uow.state.add_receivable(
        pool,
        Receivable(
            event.receivable_id,
            event.amount,
            event.issued_on,
            event.due_on,
            document_gap=document_gap(event.amount, event.documents),
        ),
    )
    issued = event.issued_on or pool.today
    if pool.first_slip_on is None or issued < pool.first_slip_on:
        pool.first_slip_on = issued
    uow.state.trade(event.pool_id, issued, slips=event.amount)
    emit_position(uow, event, pool)
    return None


async def on_receivable_documented(uow: Uow, event: m.ReceivableDocumented) -> Rejected | None:
    """A trade document a slip names arrived: its three-way match is judged again (it may now
    count in the base)."""
    pool = await _known_pool(uow, event.pool_id)
    if isinstance(pool, Rejected):
        return pool
    known = await uow.state.receivable(uow.conn, pool, event.receivable_id)
    if known is None:
        return Rejected(
            m.Reason.UNKNOWN_RECEIVABLE,
            f"receivable {event.receivable_id} is not known in pool {event.pool_id}",
        )
    gap = document_gap(event.amount or known.open_amount, event.documents)
    uow.state.change_receivable(pool, dataclasses.replace(known, document_gap=gap))
    emit_position(uow, event, pool)
    return None


async def on_receivable_adjusted(uow: Uow, event: m.ReceivableAdjusted) -> Rejected | None:
    """Dilution (a credit note, a cancellation, a lower amendment) lowers the level at once;
    a dispute takes the slip out of the base until it is closed."""
    pool = await _known_pool(uow, event.pool_id)
    if isinstance(pool, Rejected):
        return pool
    level = pool.water_level + event.change
    if level < 0 or level > MAX_TOTAL:
        return Rejected(
            m.Reason.LEVEL_BELOW_ZERO if level < 0 else m.Reason.POOL_LIMIT_EXCEEDED,
            f"adjusting {event.receivable_id} by {event.change} would take pool "
            f"{event.pool_id} from {pool.water_level} to {level}",
        )
    known = await uow.state.receivable(uow.conn, pool, event.receivable_id)
    slip = known or Receivable(event.receivable_id, ZERO, None, None)
    uow.state.change_receivable(
        pool,
        dataclasses.replace(slip, open_amount=event.open_after, disputed=event.disputed),
    )
    uow.state.set_level(pool, level)
    if event.change < 0:
        uow.state.trade(event.pool_id, pool.today, diluted=-event.change)
    _settle_hold(uow, event, pool, f"{event.kind.value} on {event.receivable_id}")
    emit_position(uow, event, pool)
    return None


# ---------------------------------------------------------------- payments and prepayments


def _record(
    uow: Uow,
    cause: m.Message,
    pool: repo.PoolState,
    payment_id: str,
    amount: Decimal,
    decision: Decision,
    value_date: date,
    kind: str,
) -> list[m.LoanRepayment]:
    """Apply a decision to the pool's loans and holds, book each loan's part in the loan
    ledger and on credit.servicing, and reserve it until the splitter confirms."""
    loans = {loan.loan_id: loan for loan in pool.loans}
    parts = []
    deltas = []
    for r in decision.repayments:
        after = apply_repayment(loans[r.loan_id], r, value_date)
        deltas.append(repayment_delta(loans[r.loan_id], after, r))
        loans[r.loan_id] = after
        uow.state.replace_loan(pool, after)
        for kind_of, value in (
            ("repaid_penalty", r.penalty),
            ("repaid_fees", r.fees),
            ("repaid_interest", r.interest),
            ("repaid_principal", r.principal),
        ):
            if value:
                uow.state.entry(pool, r.loan_id, value_date, kind_of, value, payment_id)
        uow.emit(
            topics.CREDIT_SERVICING,
            m.new_event(
                m.LoanRepaid,
                source=SOURCE,
                pool_id=pool.pool_id,
                cause=cause,
                loan_id=r.loan_id,
                payment_id=payment_id,
                penalty=r.penalty,
                fees=r.fees,
                interest=r.interest,
                principal=r.principal,
                outstanding_after=after.outstanding,
                value_date=value_date,
            ),
        )
        parts.append(
            m.LoanRepayment(
                loan_id=r.loan_id,
                funder_id=r.funder_id,
                principal=r.principal,
                interest=r.interest,
                days=r.days,
                penalty=r.penalty,
                fees=r.fees,
            )
        )
    pool.held -= decision.from_held
    pool.held_pending += decision.held
    uow.state.touch(pool)
    uow.state.record_decision(
        repo.Repaid(
            payment_id,
            pool.pool_id,
            amount,
            decision.principal,
            decision.repaid - decision.principal,
            {},
            decision.held,
            decision.from_held,
            kind,
            loans=deltas,
        )
    )
    return parts


def _instruct(
    uow: Uow,
    cause: m.Message,
    pool: repo.PoolState,
    payment_id: str,
    amount: Decimal,
    decision: Decision,
    value_date: date,
    kind: str,
) -> None:
    balance_before = pool.loan_balance
    parts = _record(uow, cause, pool, payment_id, amount, decision, value_date, kind)
    instruction = m.new_event(
        m.RepaymentInstruction,
        source=SOURCE,
        pool_id=pool.pool_id,
        cause=cause,
        payment_id=payment_id,
        amount=amount,
        repayments=parts,
        water_level_after=pool.water_level,
        discount_rate=pool.facility.discount_rate if pool.facility else Decimal(0),
        credit_line=pool.facility.credit_line if pool.facility else ZERO,
        loan_balance_before=balance_before,
        loan_balance_after=pool.loan_balance,
        held=decision.held,
        from_held=decision.from_held,
        value_date=value_date,
        kind=kind,
        grade=pool.grade,
    )
    uow.state.decided[payment_id].instruction = instruction.model_dump(mode="json")
    uow.emit(topics.CREDIT_REPAYMENT_INSTRUCTIONS, instruction)


async def on_receivables_settled(uow: Uow, event: m.ReceivablesSettled) -> Rejected | None:
    pool = await _known_pool(uow, event.pool_id)
    if isinstance(pool, Rejected):
        return pool
    if await uow.state.payment_decided(uow.conn, event.payment_id):
        return Rejected(
            m.Reason.DUPLICATE_PAYMENT, f"payment {event.payment_id} was already decided"
        )
    level = level_after_write_off(pool.water_level, event.written_off)
    if level is None:
        return Rejected(
            m.Reason.LEVEL_BELOW_ZERO,
            f"writing off {event.written_off} would take pool {event.pool_id} from "
            f"{pool.water_level} below zero",
        )
    uow.state.set_level(pool, level)
    late = ZERO
    for allocation in event.allocations:
        known = pool.flagged.get(allocation.receivable_id)
        due_on = allocation.due_on if allocation.due_on else (known.due_on if known else None)
        if due_on is not None and event.paid_on > due_on:
            late += allocation.amount
        uow.state.pay_receivable(pool, allocation.receivable_id, allocation.open_after)
    uow.state.trade(event.pool_id, event.paid_on, paid=event.amount, paid_late=late)
    value_date = _value_date(pool, event.interest_date)
    decision = decide_payment(
        event.amount,
        base_after=pool.base,
        loans=pool.loans,
        requested=pool.requested,
        held=pool.held,
        held_pending=pool.held_pending,
        value_date=value_date,
        facility=pool.facility,
        pro_rata=pool.pro_rata,
    )
    _instruct(uow, event, pool, event.payment_id, event.amount, decision, value_date, "payment")
    emit_position(uow, event, pool)
    return None


async def on_prepayment_frozen(uow: Uow, event: m.PrepaymentFrozen) -> Rejected | None:
    """随借随还: the supplier's own money, frozen by the splitter, repays early — dues first,
    then principal with its interest to today; what no loan needs goes back (or stays held
    while the pool is above its base)."""
    pool = await _known_pool(uow, event.pool_id)
    if isinstance(pool, Rejected):
        return pool
    if await uow.state.payment_decided(uow.conn, event.prepayment_id):
        return Rejected(
            m.Reason.DUPLICATE_PAYMENT, f"prepayment {event.prepayment_id} was already decided"
        )
    value_date = _value_date(pool, uow.state.business_day())
    decision = decide_payment(
        event.amount,
        base_after=pool.base,
        loans=pool.loans,
        requested=pool.requested,
        held=ZERO,
        held_pending=pool.held + pool.held_pending,
        value_date=value_date,
        facility=pool.facility,
        prepayment=True,
        loan_id=event.loan_id,
    )
    _instruct(
        uow, event, pool, event.prepayment_id, event.amount, decision, value_date, "prepayment"
    )
    emit_position(uow, event, pool)
    return None


def _settle_hold(uow: Uow, cause: m.Message, pool: repo.PoolState, why: str) -> None:
    """Move money on hold that is no longer needed as it is: to the funders when a loan is
    above the base (a disbursal it covered arrived), back to the supplier when the requests it
    covered are gone or the pool is under its base. Only money the splitter has posted."""
    if pool.held <= 0:
        return
    value_date = _value_date(pool, uow.state.business_day())
    decision = settle_hold(
        pool.held,
        base=pool.base,
        loans=pool.loans,
        requested=pool.requested,
        held_pending=pool.held_pending,
        value_date=value_date,
        facility=pool.facility,
        pro_rata=pool.pro_rata,
    )
    moved = decision.repaid + decision.released
    if moved <= 0:
        return
    settlement_id = f"hold:{cause.event_id}"
    parts = _record(
        uow,
        cause,
        pool,
        settlement_id,
        moved,
        Decision(decision.repayments, ZERO, ZERO, decision.released),
        value_date,
        "hold",
    )
    pool.held -= moved
    settled = m.new_event(
        m.HoldSettled,
        source=SOURCE,
        pool_id=pool.pool_id,
        cause=cause,
        settlement_id=settlement_id,
        amount=moved,
        repayments=parts,
        released=decision.released,
        reason=why,
    )
    # Kept with the reservation: if the splitter refuses it, credit undoes exactly this one.
    uow.state.decided[settlement_id].instruction = settled.model_dump(mode="json")
    uow.emit(topics.CREDIT_REPAYMENT_INSTRUCTIONS, settled)


async def on_instruction_refused(uow: Uow, event: m.InstructionRefused) -> Rejected | None:
    """The splitter refused our instruction: no money moved, so the repayments reserved for
    it are undone, the loans restored as they were and the hold given back (issue 10)."""
    decided = await uow.state.payment(uow.conn, event.payment_id)
    if (
        decided is None
        or decided.state != "reserved"
        or decided.instruction.get("event_id") != event.instruction_event_id
    ):
        log.info(
            "refused instruction has no reservation to undo",
            payment_id=event.payment_id,
            state=decided.state if decided else None,
        )
        return None
    pool = await uow.state.pool(uow.conn, event.pool_id)
    for delta in decided.loans:
        await _restore(uow, pool, delta, event.payment_id, "undone", whole=True)
    if decided.kind == "hold":
        pool.held += decided.amount
    else:
        pool.held += decided.from_held
        pool.held_pending -= min(decided.held, pool.held_pending)
    if event.returned_to_buyer > 0:
        # Voided: the money went back to the buyer, who owes the receivables again.
        uow.state.set_level(pool, pool.water_level + event.returned_to_buyer)
    uow.state.touch(pool)
    uow.state.undo(decided)
    log.warning(
        "reservation undone: the splitter refused the instruction",
        payment_id=event.payment_id,
        reason=event.reason.value,
    )
    emit_position(uow, event, pool)
    return None


async def on_settlement_reversed(uow: Uow, event: m.SettlementReversed) -> Rejected | None:
    """A split payment was reversed: the funders returned their part, so each loan comes
    back by the part restored (a whole reversal: exactly as it was before the payment)."""
    decided = await uow.state.payment(uow.conn, event.payment_id)
    pool = await uow.state.pool(uow.conn, event.pool_id)
    deltas = {d["loan_id"]: d for d in (decided.loans if decided else [])}
    for part in event.loans:
        delta = deltas.get(part.loan_id) or {
            "loan_id": part.loan_id,
            "principal": str(part.principal),
            "interest": str(part.interest),
            "interest_due_paid": "0",
            "accrued_released": "0",
        }
        await _restore(uow, pool, delta, event.reversal_id, "reversed", part=part)
    # The money returned to the buyer is owed again: the pool's level rises by it, so the
    # loans restored count against the receivables that stand behind them again.
    uow.state.set_level(pool, pool.water_level + event.amount)
    uow.state.touch(pool)
    emit_position(uow, event, pool)
    return None


async def _restore(
    uow: Uow,
    pool: repo.PoolState,
    delta: dict[str, str],
    reference: str,
    why: str,
    *,
    whole: bool = False,
    part: m.LoanRepayment | None = None,
) -> None:
    loan = await uow.state.loan_of(uow.conn, pool, delta["loan_id"])
    if loan is None:
        log.error("a loan to restore is not held", loan_id=delta["loan_id"], pool_id=pool.pool_id)
        return
    figures = (
        {k: Decimal(delta.get(k, "0")) for k in ("principal", "interest", "penalty", "fees")}
        if whole or part is None
        else {
            "principal": part.principal,
            "interest": part.interest,
            "penalty": part.penalty,
            "fees": part.fees,
        }
    )
    after = undo_repayment(loan, delta, **figures)
    uow.state.replace_loan(pool, after)
    day = uow.state.business_day()
    for kind_of in ("penalty", "fees", "interest", "principal"):
        if figures[kind_of]:
            uow.state.entry(
                pool, loan.loan_id, day, f"{why}_{kind_of}", -figures[kind_of], reference
            )


async def on_settlement_released(uow: Uow, event: m.SettlementReleased) -> Rejected | None:
    """Step 6: the splitter posted the split; what it put on hold is now usable."""
    uow.state.confirm(event.pool_id, event.payment_id)  # written at flush
    decided = await uow.state.payment(uow.conn, event.payment_id)
    if decided is None or decided.held <= 0:
        return None
    pool = await uow.state.pool(uow.conn, event.pool_id)
    moved = min(decided.held, pool.held_pending)
    pool.held_pending -= moved
    pool.held += moved
    uow.state.touch(pool)
    _settle_hold(uow, event, pool, f"hold of {event.payment_id} posted")
    emit_position(uow, event, pool)
    return None


# ---------------------------------------------------------------- applications and loans


async def on_financing_applied(uow: Uow, event: m.FinancingApplied) -> Rejected | None:
    pool = await _known_pool(uow, event.pool_id)
    if isinstance(pool, Rejected):
        return pool
    # Only the pool's own supplier applies (signed by its key, or via credit's HTTP front).
    if refusal := not_the_party(uow.principal, pool.supplier_id, "the pool's supplier", event):
        return refusal
    holder = await uow.state.holder(uow.conn, event.application_id)
    if holder is not None and (
        holder != event.pool_id or event.application_id in uow.state.applications
    ):
        return Rejected(
            m.Reason.DUPLICATE_APPLICATION,
            f"application id {event.application_id} is already taken"
            + ("" if holder == event.pool_id else " by another pool"),
        )
    available = _available(pool)
    reason = refusal_of(event.amount, pool.facility, available, pool.standing)
    if reason is None and event.funder_id is not None:
        programme = pool.programme
        if programme is None or programme.agreement(event.funder_id) is None:
            reason = m.Reason.NOT_IN_PROGRAMME  # a named funder must be one of the programme's
    state = A.REFUSED if reason else A.AWAITING_BUYER
    uow.state.add_application(
        pool,
        repo.Application(
            event.application_id,
            event.pool_id,
            event.amount,
            state.value,
            reason.value if reason else None,
            event.funder_id or (pool.facility.funder_id if pool.facility else None),
            named_funder=event.funder_id,
        ),
    )
    _decide(uow, event, event.application_id, state, event.amount, available, reason)
    emit_position(uow, event, pool)
    return None


async def _pending_application(
    uow: Uow, pool_id: str, application_id: str, expected: m.ApplicationState
) -> repo.Application | Rejected:
    """The pool's application in state `expected`; refused with a reason when the id is
    unknown, belongs to another pool, or is not in that state (every lookup scoped by pool)."""
    application = await uow.state.application(uow.conn, application_id)
    if application is None:
        return Rejected(
            m.Reason.UNKNOWN_APPLICATION, f"application {application_id} of {pool_id} unknown"
        )
    if application.pool_id != pool_id:
        return Rejected(
            m.Reason.APPLICATION_NOT_IN_POOL,
            f"application {application_id} belongs to another pool, not {pool_id}",
        )
    if application.state != expected.value:
        return Rejected(
            m.Reason.APPLICATION_NOT_PENDING,
            f"application {application_id} is {application.state}, not {expected.value}",
        )
    return application


async def on_buyer_confirmation(uow: Uow, event: m.BuyerConfirmedFinancing) -> Rejected | None:
    pool = await _known_pool(uow, event.pool_id)
    if isinstance(pool, Rejected):
        return pool
    if refusal := not_the_pools_buyer(
        event.pool_id, pool.core_enterprise_id, event.core_enterprise_id
    ):
        return refusal
    application = await _pending_application(
        uow, event.pool_id, event.application_id, A.AWAITING_BUYER
    )
    if isinstance(application, Rejected):
        return application
    amount = application.amount
    # The level may have dropped since the application: check again, without counting the
    # application's own reservation (invariant 4 at the moment the request leaves).
    available = _available(pool, not_counting=amount)
    reason = (
        m.Reason.REJECTED_BY_BUYER
        if not event.confirmed
        else refusal_of(amount, pool.facility, available, pool.standing)
    )
    if reason is not None:
        uow.state.move_application(pool, application, A.REFUSED.value, reason.value)
        _decide(uow, event, event.application_id, A.REFUSED, amount, available, reason)
        emit_position(uow, event, pool)
        return None
    facility = pool.facility
    assert facility is not None and pool.supplier_id is not None
    # The terms leave with the request and bind the loan (issue 8, item 4): the facility's,
    # or those of the programme's funder the application is routed to (issue 11).
    terms = Terms(
        facility.funder_id,
        facility.annual_interest_rate,
        facility.tenor_days,
        facility.day_count,
        facility.penalty,
        uow.state.business_day(),  # the calendar's day: the funder's value date is checked on it
    )
    if pool.programme is None:
        _request(uow, event, pool, application, terms, facility.funder_kind, False, available)
        emit_position(uow, event, pool)
        return None
    parts = await _route(uow, event, pool, application, amount, available)
    if parts is None:
        return None
    if len(parts) > 1:  # each part an application of its own, the whole one `split`
        uow.state.move_application(pool, application, A.SPLIT.value)
        _decide(uow, event, application.application_id, A.SPLIT, amount, available, None)
    for agreement, part in parts:
        if part.application_id != application.application_id:
            uow.state.add_application(pool, part)
        uow.state.route(pool, agreement.funder_id, part.amount)
        routed = dataclasses.replace(
            terms,
            funder_id=agreement.funder_id,
            annual_interest_rate=agreement.annual_interest_rate,
            tenor_days=agreement.tenor_days,
            penalty_rate=facility.penalty_rate
            or (agreement.annual_interest_rate * DEFAULT_PENALTY_MARKUP).quantize(Decimal("1E-8")),
        )
        _request(uow, event, pool, part, routed, agreement.kind, agreement.partial_raise, available)
    emit_position(uow, event, pool)
    return None


def _request(
    uow: Uow,
    event: m.BuyerConfirmedFinancing,
    pool: repo.PoolState,
    application: repo.Application,
    terms: Terms,
    funder_kind: str,
    partial_raise: bool,
    available: Decimal,
) -> None:
    """The confirmed application (or a part of it) leaves for its funder, with its terms."""
    assert pool.supplier_id is not None
    amount = application.amount
    uow.state.move_application(pool, application, A.REQUESTED.value, None, terms)
    _decide(uow, event, application.application_id, A.REQUESTED, amount, available, None)
    uow.emit(
        topics.CREDIT_LOAN_REQUESTS,
        m.new_event(
            m.LoanRequested,
            source=SOURCE,
            pool_id=event.pool_id,
            cause=event,
            request_id=application.application_id,
            funder_id=terms.funder_id,
            funder_kind=funder_kind,
            partial_raise=partial_raise,
            supplier_id=pool.supplier_id,
            amount=amount,
            annual_interest_rate=terms.annual_interest_rate,
            tenor_days=terms.tenor_days,
            day_count=terms.day_count,
            requested_on=terms.requested_on,
            water_level=pool.water_level,
        ),
    )


async def _route(
    uow: Uow,
    event: m.BuyerConfirmedFinancing,
    pool: repo.PoolState,
    application: repo.Application,
    amount: Decimal,
    available: Decimal,
) -> list[tuple[Agreement, repo.Application]] | None:
    """Route the confirmed application to the programme's funders (services/credit/
    programmes.py), under the programme's lock, counting every request in flight; publish
    the decision with every candidate. The application itself when routed whole, or a new
    application per part (`<id>/1`, `<id>/2`…, in the order of the parts) when split; None:
    refused (and published as such)."""
    programme = pool.programme
    assert programme is not None and pool.supplier_id is not None and pool.facility is not None
    exposure, in_pool = await uow.state.exposure(uow.conn, pool)
    found = route(
        programme,
        amount,
        supplier_id=pool.supplier_id,
        discount_rate=pool.facility.discount_rate,
        named=application.named_funder,
        exposure=exposure,
        supplier_exposure=in_pool,
    )
    parts: list[tuple[Agreement, repo.Application]] = []
    if len(found.parts) == 1:
        parts = [(found.parts[0][0], application)]
    else:
        taken = 0
        for agreement, share in found.parts:
            part_id = await _part_id(uow, application.application_id, taken)
            taken = int(part_id.rsplit("/", 1)[1])
            parts.append(
                (
                    agreement,
                    repo.Application(
                        part_id,
                        pool.pool_id,
                        share,
                        A.AWAITING_BUYER.value,
                        None,
                        agreement.funder_id,
                        named_funder=None,
                        split_of=application.application_id,
                    ),
                )
            )
    uow.emit(
        topics.CREDIT_DECISIONS,
        m.new_event(
            m.ApplicationRouted,
            source=SOURCE,
            pool_id=pool.pool_id,
            cause=event,
            application_id=application.application_id,
            amount=amount,
            rule=m.Routing.NAMED if application.named_funder else programme.routing,
            funder_id=found.chosen.funder_id if found.chosen else None,
            candidates=found.candidates,
            parts=[
                m.RoutePart(request_id=a.application_id, funder_id=f.funder_id, amount=a.amount)
                for f, a in parts
            ],
        ),
    )
    if not parts:
        reason = found.reason or m.Reason.FUNDER_LIMIT_EXCEEDED
        uow.state.move_application(pool, application, A.REFUSED.value, reason.value)
        _decide(uow, event, application.application_id, A.REFUSED, amount, available, reason)
        emit_position(uow, event, pool)
        return None
    return parts


async def _part_id(uow: Uow, application_id: str, after: int) -> str:
    """The next free id `<application id>/<n>` for a part of a split application (an id is
    at most 128 characters: a longer application's parts are named by its digest)."""
    stem = application_id
    if len(stem) > 120:
        stem = hashlib.sha256(application_id.encode()).hexdigest()[:40]
    n = after + 1
    while await uow.state.holder(uow.conn, f"{stem}/{n}") is not None:
        n += 1
    return f"{stem}/{n}"


def _terms_of(application: repo.Application, pool: repo.PoolState) -> Terms | None:
    """The request's terms; a request sent before terms were kept takes the facility's."""
    if application.terms is not None:
        return application.terms
    f = pool.facility
    if f is None:
        return None
    return Terms(
        application.funder_id or f.funder_id,
        f.annual_interest_rate,
        f.tenor_days,
        f.day_count,
        f.penalty,
        pool.today,
    )


async def on_funding_result(uow: Uow, event: m.FundingResult) -> Rejected | None:
    pool = await _known_pool(uow, event.pool_id)
    if isinstance(pool, Rejected):
        return pool
    application = await _pending_application(uow, event.pool_id, event.request_id, A.REQUESTED)
    if isinstance(application, Rejected):
        return application
    amount = application.amount
    if event.decision == m.FunderDecision.APPROVED:
        return None  # approved, money not yet paid out: still in flight
    if event.decision == m.FunderDecision.REJECTED:
        # A platform's raise that expired is its own reason; any other refusal, the funder's.
        why = (
            m.Reason.RAISE_EXPIRED
            if event.reason_code is m.Reason.RAISE_EXPIRED
            else m.Reason.REJECTED_BY_FUNDER
        )
        uow.state.move_application(pool, application, A.REFUSED.value, why.value)
        _decide(uow, event, event.request_id, A.REFUSED, amount, ZERO, why)
        _settle_hold(uow, event, pool, f"request {event.request_id} rejected by the funder")
        emit_position(uow, event, pool)
        return None
    # A platform's raise that closed at its deadline short (its agreement allows it) lends
    # what was raised: a smaller loan; the rest of the application is simply not lent.
    if event.amount != amount and not (event.partial and ZERO < event.amount < amount):
        return Rejected(
            m.Reason.AMOUNT_MISMATCH,
            f"funder disbursed {event.amount}, the request was for {amount}",
        )
    amount = event.amount
    terms = _terms_of(application, pool)
    assert terms is not None
    if terms.funder_id != event.funder_id:
        return Rejected(
            m.Reason.UNKNOWN_REQUEST,
            f"request {event.request_id} went to {terms.funder_id}, not {event.funder_id}",
        )
    today = max(business_date(), pool.today)
    disbursed_on = event.value_date or today
    if not terms.requested_on <= disbursed_on <= today:
        return Rejected(
            m.Reason.INVALID_DATE,
            f"value date {disbursed_on} must lie between the request's day "
            f"{terms.requested_on} and today {today}",
        )
    loan = Loan(
        loan_id=event.request_id,
        funder_id=terms.funder_id,
        outstanding=amount,
        annual_interest_rate=terms.annual_interest_rate,
        disbursed_on=disbursed_on,
        maturity_on=disbursed_on + timedelta(days=terms.tenor_days),
        day_count=terms.day_count,
        penalty_rate=terms.penalty_rate,
        interest_from=disbursed_on,
    )
    uow.state.move_application(pool, application, A.FUNDED.value)
    uow.state.open_loan(pool, loan)
    uow.state.entry(pool, loan.loan_id, disbursed_on, "disbursed", amount, event.event_id)
    opened = m.new_event(
        m.LoanOpened,
        source=SOURCE,
        pool_id=event.pool_id,
        cause=event,
        loan_id=loan.loan_id,
        funder_id=loan.funder_id,
        principal=amount,
        disbursed_on=loan.disbursed_on,
        maturity_on=loan.maturity_on,
        annual_interest_rate=loan.annual_interest_rate,
        day_count=loan.day_count,
        contract_hash=event.contract_hash,
        investors=event.investors,
    )
    uow.emit(topics.CREDIT_DECISIONS, opened)
    # Also where the splitter reads instructions, before any that names the loan (the pool's
    # order): it pays only loans credit holds, reconciled by id.
    uow.emit(topics.CREDIT_REPAYMENT_INSTRUCTIONS, opened)
    # Re-checked against the base now: money held for this request repays what is above it;
    # anything still above puts the pool in margin call (later payments are swept).
    _settle_hold(uow, event, pool, f"disbursal of {event.request_id}")
    emit_position(uow, event, pool)
    return None


# ---------------------------------------------------------------- servicing


async def on_day_closed(uow: Uow, event: m.DayClosed) -> Rejected | None:
    pool = await _known_pool(uow, event.pool_id)
    if isinstance(pool, Rejected):
        return pool
    day = event.business_date
    if pool.closed_through is not None and day <= pool.closed_through:
        return Rejected(
            m.Reason.DAY_ALREADY_CLOSED,
            f"pool {event.pool_id} is closed through {pool.closed_through}; {day} was closed",
        )
    latest = uow.state.business_day() + timedelta(days=uow.state.day_close_lead_days)
    if day > latest:
        return Rejected(
            m.Reason.DAY_NOT_BEGUN,
            f"{day} has not begun (today is {uow.state.business_day()}; "
            f"POOLFIN_DAY_CLOSE_LEAD_DAYS={uow.state.day_close_lead_days})",
        )
    if pool.closed_through is not None:
        first = pool.closed_through + timedelta(days=1)
    else:  # the pool's first close starts from its oldest loan, so each day has its accrual
        first = min(
            (loan.disbursed_on for loan in pool.loans if loan.disbursed_on <= day), default=day
        )
    period = pool.facility.interest_period if pool.facility else m.InterestPeriod.AT_REPAYMENT
    current = first
    while current <= day:
        _close_one_day(uow, event, pool, current, period)
        current += timedelta(days=1)
    pool.closed_through = day
    pool.today = max(pool.today, day + timedelta(days=1))
    uow.state.touch(pool)
    await _suggest(uow, event, pool)
    _settle_hold(uow, event, pool, f"day {day} closed")
    emit_position(uow, event, pool)
    return None


def _close_one_day(
    uow: Uow, cause: m.Message, pool: repo.PoolState, day: date, period: m.InterestPeriod
) -> None:
    for loan in list(pool.loans):
        serviced = close_day(loan, day, period)
        if serviced.loan != loan:
            uow.state.replace_loan(pool, serviced.loan)
        for step in serviced.events:
            if step.kind == "accrued":
                if step.interest:
                    uow.state.entry(pool, loan.loan_id, day, "interest_accrued", step.interest)
                if step.penalty:
                    uow.state.entry(pool, loan.loan_id, day, "penalty_accrued", step.penalty)
                message: m.Message = m.new_event(
                    m.InterestAccrued,
                    source=SOURCE,
                    pool_id=pool.pool_id,
                    cause=cause,
                    loan_id=loan.loan_id,
                    business_date=day,
                    principal=step.principal,
                    interest=step.interest,
                    penalty=step.penalty,
                    accrued=step.accrued,
                )
                if serviced.loan.overdue:
                    overdue_days = (day - serviced.loan.maturity_on).days
                    uow.state.trade(pool.pool_id, day, overdue_days=overdue_days)
            elif step.kind == "charged":
                uow.state.entry(pool, loan.loan_id, day, "interest_charged", step.charged)
                message = m.new_event(
                    m.InterestCharged,
                    source=SOURCE,
                    pool_id=pool.pool_id,
                    cause=cause,
                    loan_id=loan.loan_id,
                    period_end=day,
                    amount=step.charged,
                    collection=pool.facility.interest_collection
                    if pool.facility
                    else m.InterestCollection.FROM_PAYMENTS,
                )
            else:
                uow.state.entry(pool, loan.loan_id, day, "interest_charged", step.charged)
                uow.state.entry(pool, loan.loan_id, day, "overdue", step.principal)
                message = m.new_event(
                    m.LoanOverdue,
                    source=SOURCE,
                    pool_id=pool.pool_id,
                    cause=cause,
                    loan_id=loan.loan_id,
                    maturity_on=loan.maturity_on,
                    overdue_principal=step.principal,
                    penalty_rate=loan.penalty_rate,
                )
            uow.emit(topics.CREDIT_SERVICING, message)


# ---------------------------------------------------------------- dynamic credit


async def _suggest(uow: Uow, cause: m.Message, pool: repo.PoolState) -> None:
    """Recompute the pool's suggested line and rate from its trade history; publish it when
    it differs from the facility in force; apply it at once within the facility's bounds."""
    facility = pool.facility
    if facility is None:
        return
    history = await uow.state.trade_history(uow.conn, pool.pool_id)
    suggestion = model.suggest(history, pool.first_slip_on, pool.today)
    if suggestion is not None and suggestion.grade != pool.grade:
        pool.grade = suggestion.grade  # what the next instructions carry to the splitter
        uow.state.touch(pool)
    if suggestion is None or (
        suggestion.credit_line == facility.credit_line
        and suggestion.discount_rate == facility.discount_rate
    ):
        return
    bounds = facility.auto_apply
    automatic = (
        bounds is not None
        and bounds.line_min <= suggestion.credit_line <= bounds.line_max
        and bounds.rate_min <= suggestion.discount_rate <= bounds.rate_max
    )
    suggestion_id = f"{pool.pool_id}:{pool.today.isoformat()}"
    message = m.new_event(
        m.CreditSuggested,
        source=SOURCE,
        pool_id=pool.pool_id,
        cause=cause,
        suggestion_id=suggestion_id,
        credit_line=suggestion.credit_line,
        discount_rate=suggestion.discount_rate,
        current_line=facility.credit_line,
        current_rate=facility.discount_rate,
        grade=suggestion.grade,
        factors=suggestion.factors,
        explanation=suggestion.explanation,
        state="applied" if automatic else "pending",
    )
    uow.state.save_suggestion(
        repo.Suggestion(
            suggestion_id,
            pool.pool_id,
            suggestion.credit_line,
            suggestion.discount_rate,
            suggestion.grade,
            message.state,
            message.model_dump(mode="json"),
        )
    )
    if automatic:
        _apply_suggestion(uow, pool, suggestion.credit_line, suggestion.discount_rate, message)
    uow.emit(topics.CREDIT_SUGGESTIONS, message)


SUGGESTION_FIELDS = tuple(
    name
    for name in m.CreditSuggested.model_fields
    if name not in m.Message.model_fields and name != "state"
)


def _apply_suggestion(
    uow: Uow, pool: repo.PoolState, line: Decimal, rate: Decimal, cause: m.Message
) -> None:
    assert pool.facility is not None
    new = dataclasses.replace(pool.facility, credit_line=line, discount_rate=rate)
    uow.state.set_facility(pool, new, cause.event_id)


async def on_suggestion_approved(uow: Uow, event: m.CreditSuggestionApproved) -> Rejected | None:
    pool = await _known_pool(uow, event.pool_id)
    if isinstance(pool, Rejected):
        return pool
    found = await uow.state.suggestion(uow.conn, event.suggestion_id)
    if found is None or found.pool_id != event.pool_id:
        return Rejected(
            m.Reason.UNKNOWN_SUGGESTION,
            f"suggestion {event.suggestion_id} of pool {event.pool_id} is not known",
        )
    if found.state != "pending":
        return Rejected(
            m.Reason.UNKNOWN_SUGGESTION, f"suggestion {event.suggestion_id} is {found.state}"
        )
    if pool.facility is None:
        return Rejected(m.Reason.NO_FACILITY, f"pool {event.pool_id} has no facility to change")
    state = "applied" if event.approved else "rejected"
    was = m.CreditSuggested.model_validate(found.body)
    message = m.new_event(
        m.CreditSuggested,
        source=SOURCE,
        pool_id=event.pool_id,
        cause=event,
        **{
            **{k: getattr(was, k) for k in SUGGESTION_FIELDS},
            "state": state,
        },
    )
    body = message.model_dump(mode="json")
    uow.state.save_suggestion(dataclasses.replace(found, state=state, body=body))
    if event.approved:
        _apply_suggestion(uow, pool, found.credit_line, found.discount_rate, event)
        _settle_hold(uow, event, pool, f"suggestion {event.suggestion_id} applied")
    uow.emit(topics.CREDIT_SUGGESTIONS, message)
    emit_position(uow, event, pool)
    return None


handle = dispatch(
    {
        m.FacilitySet: on_facility_set,
        m.CreditSuggestionApproved: on_suggestion_approved,
        m.DayClosed: on_day_closed,
        m.PoolOpened: on_pool_opened,
        m.ReceivableAdded: on_receivable_added,
        m.ReceivableAdjusted: on_receivable_adjusted,
        m.ReceivableDocumented: on_receivable_documented,
        m.ReceivablesSettled: on_receivables_settled,
        m.FinancingApplied: on_financing_applied,
        m.BuyerConfirmedFinancing: on_buyer_confirmation,
        m.FundingResult: on_funding_result,
        m.SettlementReleased: on_settlement_released,
        m.ProgrammeSet: on_programme_set,
        m.InstructionRefused: on_instruction_refused,
        m.SettlementReversed: on_settlement_reversed,
        m.PrepaymentFrozen: on_prepayment_frozen,
    }
)
