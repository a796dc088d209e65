"""credit: pool positions, applications, loans and the repayment decision (DESIGN step 4)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from services.credit import repository as repo
from services.credit.domain import (
    Facility,
    Loan,
    available_to_borrow,
    borrowing_base,
    refusal_of,
    repayment_plan,
)
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected
from shared.inbox import UnitOfWork
from shared.money import MAX_TOTAL, ZERO

SOURCE = "credit"


async def handle(uow: UnitOfWork, event: m.Message) -> None:
    match event:
        case m.FacilitySet():
            await on_facility_set(uow, event)
        case m.PoolOpened():
            await repo.create_pool(
                uow.conn, event.pool_id, event.core_enterprise_id, event.supplier_id
            )
            uow.scratch.pop(("pool", event.pool_id), None)
            await emit_position(uow, event, ZERO)
        case m.ReceivableAdded():
            await on_receivable_added(uow, event)
        case m.ReceivablesSettled():
            await on_receivables_settled(uow, event)
        case m.FinancingApplied():
            await on_financing_applied(uow, event)
        case m.BuyerConfirmedFinancing():
            await on_buyer_confirmation(uow, event)
        case m.FundingResult():
            await on_funding_result(uow, event)
        case m.SettlementReleased():
            # Confirmed for the whole batch at once, by `flush` before commit.
            uow.scratch.setdefault("confirmed", []).append((event.pool_id, event.payment_id))
        case _:
            raise Rejected(m.Reason.UNKNOWN_TYPE, f"credit does not handle {event.type}")


async def flush(uow: UnitOfWork) -> None:
    """Write what handlers left for the end of the batch: the repayments settled."""
    if confirmed := uow.scratch.pop("confirmed", None):
        await repo.confirm_repayments(uow.conn, confirmed)


# A batch's transaction locks each pool once and remembers it (and its facility) in
# uow.scratch until commit; every write below goes through these helpers, which keep the
# remembered copy equal to the row.


async def _pool_row(uow: UnitOfWork, pool_id: str) -> dict[str, Any] | None:
    key = ("pool", pool_id)
    if key not in uow.scratch:
        row = await repo.lock_pool(uow.conn, pool_id)
        if row is None:
            return None  # not remembered: a PoolOpened later in the batch may create it
        uow.scratch[key] = dict(row)
    pool: dict[str, Any] = uow.scratch[key]
    return pool


async def _locked_pool(uow: UnitOfWork, pool_id: str) -> Decimal:
    pool = await _pool_row(uow, pool_id)
    if pool is None:
        raise Rejected(m.Reason.UNKNOWN_POOL, f"pool {pool_id} is not known to credit")
    return Decimal(pool["water_level"])


async def _set_level(uow: UnitOfWork, pool_id: str, level: Decimal) -> None:
    await repo.set_water_level(uow.conn, pool_id, level)
    pool = await _pool_row(uow, pool_id)
    assert pool is not None
    pool["water_level"] = level


async def _facility(uow: UnitOfWork, pool_id: str) -> Facility | None:
    key = ("facility", pool_id)
    if key not in uow.scratch:
        uow.scratch[key] = await repo.facility(uow.conn, pool_id)
    facility: Facility | None = uow.scratch[key]
    return facility


def _decide(
    uow: UnitOfWork,
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


async def emit_position(uow: UnitOfWork, cause: m.Message, level: Decimal) -> Decimal:
    """Publish the pool's position after a change; returns what is available."""
    facility = await _facility(uow, cause.pool_id)
    loans, in_flight = await repo.loan_balance_and_in_flight(uow.conn, cause.pool_id)
    available = available_to_borrow(level, facility, loans, in_flight)
    uow.emit(
        topics.CREDIT_POSITIONS,
        m.new_event(
            m.PoolPosition,
            source=SOURCE,
            pool_id=cause.pool_id,
            cause=cause,
            water_level=level,
            borrowing_base=borrowing_base(level, facility),
            loan_balance=loans,
            in_flight=in_flight,
            available=available,
        ),
    )
    return available


async def on_facility_set(uow: UnitOfWork, event: m.FacilitySet) -> None:
    if not (0 < event.discount_rate <= 1):
        raise Rejected(
            m.Reason.INVALID_FACILITY, f"discount_rate {event.discount_rate} must be in (0, 1]"
        )
    if event.annual_interest_rate > 1:
        raise Rejected(
            m.Reason.INVALID_FACILITY,
            f"annual_interest_rate {event.annual_interest_rate} must be at most 1",
        )
    pool = await _pool_row(uow, event.pool_id)
    await repo.upsert_facility(uow.conn, event)
    uow.scratch.pop(("facility", event.pool_id), None)
    await emit_position(uow, event, Decimal(pool["water_level"]) if pool else ZERO)


async def on_receivable_added(uow: UnitOfWork, event: m.ReceivableAdded) -> None:
    level = await _locked_pool(uow, event.pool_id) + event.amount
    if level > MAX_TOTAL:  # intake refuses such a slip; never overflow the level's column
        raise Rejected(
            m.Reason.POOL_LIMIT_EXCEEDED, f"pool level would be {level}; at most {MAX_TOTAL}"
        )
    await _set_level(uow, event.pool_id, level)
    await emit_position(uow, event, level)


async def on_receivables_settled(uow: UnitOfWork, event: m.ReceivablesSettled) -> None:
    level_before = await _locked_pool(uow, event.pool_id)
    level = max(ZERO, level_before - event.written_off)
    facility = await _facility(uow, event.pool_id)
    loans = await repo.lock_open_loans(uow.conn, event.pool_id)
    plan = repayment_plan(event.amount, level, facility, loans, event.paid_on)
    balance_before = sum((loan.outstanding for loan in loans), ZERO)
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
        discount_rate=facility.discount_rate if facility else Decimal(0),
        credit_line=facility.credit_line if facility else ZERO,
        loan_balance_before=balance_before,
        loan_balance_after=balance_before - repaid,
    )
    if not await repo.reserve_repayment(
        uow.conn,
        event.pool_id,
        event.payment_id,
        event.amount,
        plan,
        level,
        instruction.model_dump(mode="json"),
    ):
        raise Rejected(
            m.Reason.DUPLICATE_PAYMENT, f"payment {event.payment_id} was already decided"
        )
    pool = await _pool_row(uow, event.pool_id)
    assert pool is not None
    pool["water_level"] = level  # the statement above set it
    uow.emit(topics.CREDIT_REPAYMENT_INSTRUCTIONS, instruction)
    await emit_position(uow, event, level)


async def on_financing_applied(uow: UnitOfWork, event: m.FinancingApplied) -> None:
    level = await _locked_pool(uow, event.pool_id)
    holder = await repo.application_pool(uow.conn, event.application_id)
    if holder is not None and (
        holder != event.pool_id
        or await repo.application(uow.conn, event.pool_id, event.application_id) is not None
    ):
        raise Rejected(
            m.Reason.DUPLICATE_APPLICATION,
            f"application id {event.application_id} is already taken"
            + ("" if holder == event.pool_id else " by another pool"),
        )
    facility = await _facility(uow, event.pool_id)
    loans, in_flight = await repo.loan_balance_and_in_flight(uow.conn, event.pool_id)
    available = available_to_borrow(level, facility, loans, in_flight)
    reason = refusal_of(event.amount, facility, available)
    state = m.ApplicationState.REFUSED if reason else m.ApplicationState.AWAITING_BUYER
    await repo.insert_application(
        uow.conn,
        event.application_id,
        event.pool_id,
        event.amount,
        state.value,
        reason.value if reason else None,
        facility.funder_id if facility else None,
    )
    _decide(uow, event, event.application_id, state, event.amount, available, reason)
    await emit_position(uow, event, level)


async def _pending_application(
    uow: UnitOfWork, pool_id: str, application_id: str, expected: m.ApplicationState
) -> Decimal:
    """The amount of the pool's application in state `expected`; refused with a reason when
    the id is unknown, belongs to another pool, or is not in that state."""
    application = await repo.application(uow.conn, pool_id, application_id)
    if application is None:
        elsewhere = await repo.application_pool(uow.conn, application_id)
        if elsewhere is not None:
            raise Rejected(
                m.Reason.APPLICATION_NOT_IN_POOL,
                f"application {application_id} belongs to another pool, not {pool_id}",
            )
        raise Rejected(
            m.Reason.UNKNOWN_APPLICATION, f"application {application_id} of {pool_id} unknown"
        )
    if application["state"] != expected.value:
        raise Rejected(
            m.Reason.APPLICATION_NOT_PENDING,
            f"application {application_id} is {application['state']}, not {expected.value}",
        )
    return Decimal(application["amount"])


async def on_buyer_confirmation(uow: UnitOfWork, event: m.BuyerConfirmedFinancing) -> None:
    level = await _locked_pool(uow, event.pool_id)
    pool = await _pool_row(uow, event.pool_id)
    assert pool is not None
    if (
        event.core_enterprise_id is not None
        and event.core_enterprise_id != pool["core_enterprise_id"]
    ):
        raise Rejected(
            m.Reason.NOT_THE_POOLS_BUYER,
            f"{event.core_enterprise_id} is not the core enterprise of pool {event.pool_id}",
        )
    amount = await _pending_application(
        uow, event.pool_id, event.application_id, m.ApplicationState.AWAITING_BUYER
    )
    facility = await _facility(uow, event.pool_id)
    loans, in_flight = await repo.loan_balance_and_in_flight(uow.conn, event.pool_id)
    # The level may have dropped since the application: check again, without counting the
    # application's own reservation (invariant 4 at the moment the request leaves).
    available = available_to_borrow(level, facility, loans, in_flight - amount)
    reason = (
        m.Reason.REJECTED_BY_BUYER
        if not event.confirmed
        else refusal_of(amount, facility, available)
    )
    state = m.ApplicationState.REFUSED if reason else m.ApplicationState.REQUESTED
    await repo.set_application_state(
        uow.conn, event.pool_id, event.application_id, state.value, reason.value if reason else None
    )
    _decide(uow, event, event.application_id, state, amount, available, reason)
    if reason is None:
        assert facility is not None
        uow.emit(
            topics.CREDIT_LOAN_REQUESTS,
            m.new_event(
                m.LoanRequested,
                source=SOURCE,
                pool_id=event.pool_id,
                cause=event,
                request_id=event.application_id,
                funder_id=facility.funder_id,
                supplier_id=pool["supplier_id"],
                amount=amount,
                annual_interest_rate=facility.annual_interest_rate,
                tenor_days=facility.tenor_days,
            ),
        )
    await emit_position(uow, event, level)


async def on_funding_result(uow: UnitOfWork, event: m.FundingResult) -> None:
    level = await _locked_pool(uow, event.pool_id)
    amount = await _pending_application(
        uow, event.pool_id, event.request_id, m.ApplicationState.REQUESTED
    )
    if event.decision == m.FunderDecision.APPROVED:
        return  # approved, money not yet paid out: still in flight
    if event.decision == m.FunderDecision.REJECTED:
        await repo.set_application_state(
            uow.conn,
            event.pool_id,
            event.request_id,
            m.ApplicationState.REFUSED.value,
            m.Reason.REJECTED_BY_FUNDER.value,
        )
        _decide(
            uow,
            event,
            event.request_id,
            m.ApplicationState.REFUSED,
            amount,
            ZERO,
            m.Reason.REJECTED_BY_FUNDER,
        )
        await emit_position(uow, event, level)
        return
    if event.amount != amount:
        raise Rejected(
            m.Reason.AMOUNT_MISMATCH,
            f"funder disbursed {event.amount}, the request was for {amount}",
        )
    facility = await _facility(uow, event.pool_id)
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
    await repo.open_loan(uow.conn, loan, event.pool_id)
    await repo.set_application_state(
        uow.conn, event.pool_id, event.request_id, m.ApplicationState.FUNDED.value
    )
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
    await emit_position(uow, event, level)
