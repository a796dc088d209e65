"""credit: pool positions, applications, loans and the repayment decision (DESIGN step 4).

Handlers decide in memory on the batch's `CreditBatch` (prepared set-based, flushed once):
no statement per message."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from services.credit import repository as repo
from services.credit.domain import (
    Loan,
    available_to_borrow,
    borrowing_base,
    facility_refusal,
    level_after_write_off,
    refusal_of,
    repayment_plan,
)
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected, not_the_pools_buyer
from shared.inbox import UnitOfWork, dispatch
from shared.money import MAX_TOTAL, ZERO

SOURCE = "credit"

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


def emit_position(uow: Uow, cause: m.Message, pool: repo.PoolState) -> None:
    """Publish the pool's position after a change, from the batch's state (no query)."""
    uow.emit(
        topics.CREDIT_POSITIONS,
        m.new_event(
            m.PoolPosition,
            source=SOURCE,
            pool_id=cause.pool_id,
            cause=cause,
            water_level=pool.water_level,
            borrowing_base=borrowing_base(pool.water_level, pool.facility),
            loan_balance=pool.loan_balance,
            in_flight=pool.in_flight,
            available=_available(pool),
        ),
    )


def _available(pool: repo.PoolState, not_counting: Decimal = ZERO) -> Decimal:
    return available_to_borrow(
        pool.water_level, pool.facility, pool.loan_balance, pool.in_flight - not_counting
    )


async def on_facility_set(uow: Uow, event: m.FacilitySet) -> Rejected | None:
    if reason := facility_refusal(event.discount_rate, event.annual_interest_rate):
        return Rejected(m.Reason.INVALID_FACILITY, reason)
    pool = await uow.state.pool(uow.conn, event.pool_id)  # a facility may precede the pool
    uow.state.set_facility(pool, event)
    emit_position(uow, event, pool)
    return None


async def on_pool_opened(uow: Uow, event: m.PoolOpened) -> Rejected | None:
    pool = await uow.state.pool(uow.conn, event.pool_id)
    uow.state.open_pool(pool, event.core_enterprise_id, event.supplier_id)
    pool.exists = True
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
    emit_position(uow, event, pool)
    return None


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
    plan = repayment_plan(event.amount, level, pool.facility, pool.loans, event.paid_on)
    balance_before = pool.loan_balance
    repaid = sum((r.principal for r in plan), ZERO)
    instruction = m.new_event(
        m.RepaymentInstruction,
        source=SOURCE,
        pool_id=event.pool_id,
        cause=event,
        payment_id=event.payment_id,
        amount=event.amount,
        repayments=[
            m.LoanRepayment(
                loan_id=r.loan_id,
                funder_id=r.funder_id,
                principal=r.principal,
                interest=r.interest,
                days=r.days,
            )
            for r in plan
        ],
        water_level_after=level,
        discount_rate=pool.facility.discount_rate if pool.facility else Decimal(0),
        credit_line=pool.facility.credit_line if pool.facility else ZERO,
        loan_balance_before=balance_before,
        loan_balance_after=balance_before - repaid,
    )
    uow.state.repay(pool, event.payment_id, event.amount, plan, instruction.model_dump(mode="json"))
    uow.state.set_level(pool, level)
    uow.emit(topics.CREDIT_REPAYMENT_INSTRUCTIONS, instruction)
    emit_position(uow, event, pool)
    return None


async def on_financing_applied(uow: Uow, event: m.FinancingApplied) -> Rejected | None:
    pool = await _known_pool(uow, event.pool_id)
    if isinstance(pool, Rejected):
        return pool
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
    reason = refusal_of(event.amount, pool.facility, available)
    state = A.REFUSED if reason else A.AWAITING_BUYER
    uow.state.add_application(
        pool,
        repo.Application(
            event.application_id,
            event.pool_id,
            event.amount,
            state.value,
            reason.value if reason else None,
            pool.facility.funder_id if pool.facility else None,
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
        else refusal_of(amount, pool.facility, available)
    )
    state = A.REFUSED if reason else A.REQUESTED
    uow.state.move_application(pool, application, state.value, reason.value if reason else None)
    _decide(uow, event, event.application_id, state, amount, available, reason)
    if reason is None:
        assert pool.facility is not None and pool.supplier_id is not None
        uow.emit(
            topics.CREDIT_LOAN_REQUESTS,
            m.new_event(
                m.LoanRequested,
                source=SOURCE,
                pool_id=event.pool_id,
                cause=event,
                request_id=event.application_id,
                funder_id=pool.facility.funder_id,
                supplier_id=pool.supplier_id,
                amount=amount,
                annual_interest_rate=pool.facility.annual_interest_rate,
                tenor_days=pool.facility.tenor_days,
            ),
        )
    emit_position(uow, event, pool)
    return None


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
        uow.state.move_application(
            pool, application, A.REFUSED.value, m.Reason.REJECTED_BY_FUNDER.value
        )
        _decide(uow, event, event.request_id, A.REFUSED, amount, ZERO, m.Reason.REJECTED_BY_FUNDER)
        emit_position(uow, event, pool)
        return None
    if event.amount != amount:
        return Rejected(
            m.Reason.AMOUNT_MISMATCH,
            f"funder disbursed {event.amount}, the request was for {amount}",
        )
    facility = pool.facility
    assert facility is not None
    disbursed_on = event.value_date or event.occurred_at.date()
    loan = Loan(
        loan_id=event.request_id,
        funder_id=event.funder_id,
        outstanding=amount,
        annual_interest_rate=facility.annual_interest_rate,
        disbursed_on=disbursed_on,
        maturity_on=disbursed_on + timedelta(days=facility.tenor_days),
        day_count=facility.day_count,
    )
    uow.state.move_application(pool, application, A.FUNDED.value)
    uow.state.open_loan(pool, loan)
    uow.emit(
        topics.CREDIT_DECISIONS,
        m.new_event(
            m.LoanOpened,
            source=SOURCE,
            pool_id=event.pool_id,
            cause=event,
            loan_id=loan.loan_id,
            funder_id=loan.funder_id,
            principal=amount,
            disbursed_on=loan.disbursed_on,
            maturity_on=loan.maturity_on,
        ),
    )
    emit_position(uow, event, pool)
    return None


async def on_settlement_released(uow: Uow, event: m.SettlementReleased) -> Rejected | None:
    uow.state.confirm(event.pool_id, event.payment_id)  # step 6, written at flush
    return None


handle = dispatch(
    {
        m.FacilitySet: on_facility_set,
        m.PoolOpened: on_pool_opened,
        m.ReceivableAdded: on_receivable_added,
        m.ReceivablesSettled: on_receivables_settled,
        m.FinancingApplied: on_financing_applied,
        m.BuyerConfirmedFinancing: on_buyer_confirmation,
        m.FundingResult: on_funding_result,
        m.SettlementReleased: on_settlement_released,
    }
)
