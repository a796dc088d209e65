"""credit's money rules, pure: borrowing base, availability, interest, the repayment plan.

Source: the seed paper. Core rule: loan balance ≤ min(pool × discount rate, credit line).
Step 7: "compare pool × rate with the loan balance; if the balance exceeds it, part of the
settlement money repays principal and interest first".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from shared.contracts.messages import DayCount, Reason
from shared.money import FEN, ZERO, fen, fen_down

DAYS_IN_YEAR = {DayCount.ACT_360: Decimal(360), DayCount.ACT_365: Decimal(365)}


@dataclass(frozen=True, slots=True)
class Facility:
    credit_line: Decimal
    discount_rate: Decimal
    annual_interest_rate: Decimal
    funder_id: str
    day_count: DayCount = DayCount.ACT_360
    tenor_days: int = 180


@dataclass(frozen=True, slots=True)
class Loan:
    loan_id: str
    funder_id: str
    outstanding: Decimal
    annual_interest_rate: Decimal
    disbursed_on: date
    maturity_on: date
    day_count: DayCount = DayCount.ACT_360


@dataclass(frozen=True, slots=True)
class Repayment:
    loan_id: str
    funder_id: str
    principal: Decimal
    interest: Decimal
    days: int


def borrowing_base(water_level: Decimal, facility: Facility | None) -> Decimal:
    """min(pool × rate, credit line), rounded down to the fen (never lend a cent too many)."""
    if facility is None or water_level <= 0:
        return ZERO
    return min(fen_down(water_level * facility.discount_rate), facility.credit_line)


def available_to_borrow(
    water_level: Decimal, facility: Facility | None, loan_balance: Decimal, in_flight: Decimal
) -> Decimal:
    """What may still be requested: base − loans − requests not yet decided (invariant 4)."""
    return max(ZERO, borrowing_base(water_level, facility) - loan_balance - in_flight)


# An application "in flight" is one requested and not yet decided: it counts against what is
# available (invariant 4) until the buyer declines it, the funder rejects it or the loan opens.
IN_FLIGHT = ("awaiting_buyer", "requested")


def level_after_write_off(level: Decimal, written_off: Decimal) -> Decimal | None:
    """The pool's level once receivables are written off, or None when that would go below
    zero: intake never writes off more than the pool holds, so the two would disagree (an
    error to refuse, never a level to clamp)."""
    after = level - written_off
    return after if after >= 0 else None


def facility_refusal(discount_rate: Decimal, annual_interest_rate: Decimal) -> str | None:
    """Why a facility cannot be set, or None: the rate must be in (0, 1], interest at most 1."""
    if not (0 < discount_rate <= 1):
        return f"discount_rate {discount_rate} must be in (0, 1]"
    if annual_interest_rate > 1:
        return f"annual_interest_rate {annual_interest_rate} must be at most 1"
    return None


def refusal_of(amount: Decimal, facility: Facility | None, available: Decimal) -> Reason | None:
    if facility is None:
        return Reason.NO_FACILITY
    if amount > available:
        return Reason.EXCEEDS_AVAILABLE
    return None


def interest(
    principal: Decimal, annual_rate: Decimal, days: int, day_count: DayCount = DayCount.ACT_360
) -> Decimal:
    """Simple daily interest on `principal` for `days` days, to the fen (half up)."""
    if days <= 0 or principal <= 0:
        return ZERO
    return fen(principal * annual_rate * days / DAYS_IN_YEAR[day_count])


def _largest_principal(cash: Decimal, loan: Loan, days: int) -> tuple[Decimal, Decimal]:
    """The largest principal p ≤ outstanding with p + interest(p) ≤ cash, and its interest.

    p + interest(p) never decreases as p grows, and the half-up rounding of interest can shave
    up to half a fen off it, so the answer is at most (cash + ½ fen) / factor: search down from
    there.
    """
    factor = 1 + loan.annual_interest_rate * days / DAYS_IN_YEAR[loan.day_count]
    principal = min(loan.outstanding, fen_down((cash + FEN / 2) / factor))
    due = interest(principal, loan.annual_interest_rate, days, loan.day_count)
    while principal > 0 and principal + due > cash:
        principal -= FEN
        due = interest(principal, loan.annual_interest_rate, days, loan.day_count)
    return principal, due if principal > 0 else ZERO


def repayment_plan(
    amount: Decimal,
    water_level_after: Decimal,
    facility: Facility | None,
    loans: Sequence[Loan],
    paid_on: date,
) -> list[Repayment]:
    """How much of a payment of `amount` repays which loan (DESIGN step 4).

    Principal due = max(loan balance − borrowing base after the write-off, matured principal);
    each repaid yuan of principal carries the interest it accrued since disbursement. Matured
    loans first, then oldest first; interest before principal within a loan; never more than
    `amount` in all.
    """
    balance = sum((loan.outstanding for loan in loans), ZERO)
    matured = sum((loan.outstanding for loan in loans if loan.maturity_on <= paid_on), ZERO)
    principal_due = max(ZERO, balance - borrowing_base(water_level_after, facility), matured)
    order = sorted(
        loans, key=lambda loan: (loan.maturity_on > paid_on, loan.disbursed_on, loan.loan_id)
    )
    cash = amount
    plan: list[Repayment] = []
    for loan in order:
        if principal_due <= 0 or cash <= 0:
            break
        days = max(0, (paid_on - loan.disbursed_on).days)
        principal = min(loan.outstanding, principal_due)
        due = interest(principal, loan.annual_interest_rate, days, loan.day_count)
        if principal + due > cash:
            # Short payment: all of it goes to this loan. When rounding leaves a fen that no
            # "principal + its interest" can use, the funder takes it as interest, so nothing is
            # released while the loan is still above the base (invariant 2).
            principal, due = _largest_principal(cash, loan, days)
            if principal <= 0:
                break
            due = cash - principal
        plan.append(Repayment(loan.loan_id, loan.funder_id, principal, due, days))
        cash -= principal + due
        principal_due -= principal
    return plan
