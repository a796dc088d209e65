"""credit's money rules, pure: eligibility and the borrowing base, availability, interest,
the repayment waterfall, holds and loan servicing.

Source: the seed paper. Core rule: loan balance ≤ min(eligible pool × discount rate, credit
line). Step 7: "compare pool × rate with the loan balance; if the balance exceeds it, part of
the settlement money repays principal and interest first". Issue 8 makes the rule hold in
every ordering: requests confirmed but not yet disbursed count (their excess is *held*), the
waterfall is penalty → fees → interest → principal, and a loan is serviced day by day.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import ROUND_UP, Decimal

from shared.contracts.messages import (
    CreditBounds,
    DayCount,
    InterestCollection,
    InterestPeriod,
    Reason,
    Standing,
    TradeDocument,
)
from shared.money import FEN, ZERO, fen, fen_down, largest_remainder_split

DAYS_IN_YEAR = {DayCount.ACT_360: Decimal(360), DayCount.ACT_365: Decimal(365)}
# 罚息: without a rate of its own, penalty interest is the loan's rate plus half (the PBOC
# convention for overdue principal: "在借款合同载明的贷款利率水平上加收30%-50%").
DEFAULT_PENALTY_MARKUP = Decimal("1.5")


@dataclass(frozen=True, slots=True)
class Facility:
    credit_line: Decimal
    discount_rate: Decimal
    annual_interest_rate: Decimal
    funder_id: str
    day_count: DayCount = DayCount.ACT_360
    tenor_days: int = 180
    penalty_rate: Decimal | None = None
    interest_period: InterestPeriod = InterestPeriod.AT_REPAYMENT
    interest_collection: InterestCollection = InterestCollection.FROM_PAYMENTS
    max_days_past_due: int = 90
    max_tenor_days: int = 365
    cross_age_percent: Decimal = Decimal("0.5")
    concentration_limit: Decimal | None = None
    auto_apply: CreditBounds | None = None
    require_trade_documents: bool = False
    match_tolerance: Decimal = Decimal("0.01")
    funder_kind: str = "bank"  # bank | platform (an investor platform raises the money)

    @property
    def penalty(self) -> Decimal:
        if self.penalty_rate is not None:
            return self.penalty_rate
        return (self.annual_interest_rate * DEFAULT_PENALTY_MARKUP).quantize(Decimal("1E-8"))


@dataclass(frozen=True, slots=True)
class Terms:
    """The terms of a request as the funder accepted them: the loan takes these, never the
    facility as it stands when the money arrives (issue 8, item 4)."""

    funder_id: str
    annual_interest_rate: Decimal
    tenor_days: int
    day_count: DayCount
    penalty_rate: Decimal
    requested_on: date


@dataclass(frozen=True, slots=True)
class Loan:
    loan_id: str
    funder_id: str
    outstanding: Decimal
    annual_interest_rate: Decimal
    disbursed_on: date
    maturity_on: date
    day_count: DayCount = DayCount.ACT_360
    penalty_rate: Decimal = ZERO
    interest_from: date | None = None  # interest is paid or charged up to (not incl.) this day
    interest_due: Decimal = ZERO  # charged at a period end or at maturity, not yet paid
    penalty_due: Decimal = ZERO  # penalty accrued on closed days, not yet paid
    fees_due: Decimal = ZERO  # loan fees owed to the funder (none are charged yet)
    accrued: Decimal = ZERO  # interest booked by day closes since interest_from
    overdue: bool = False

    @property
    def interest_start(self) -> date:
        return self.interest_from or self.disbursed_on

    @property
    def dues(self) -> Decimal:
        return self.penalty_due + self.fees_due + self.interest_due


@dataclass(frozen=True, slots=True)
class Repayment:
    loan_id: str
    funder_id: str
    principal: Decimal
    interest: Decimal
    days: int
    penalty: Decimal = ZERO
    fees: Decimal = ZERO
    interest_due_paid: Decimal = ZERO  # of `interest`, what settled charged interest

    @property
    def total(self) -> Decimal:
        return self.principal + self.interest + self.penalty + self.fees


# ---------------------------------------------------------------- eligibility and the base


@dataclass(frozen=True, slots=True)
class Receivable:
    """A slip as credit keeps it for eligibility: what is open on it, its dates, its dispute."""

    receivable_id: str
    open_amount: Decimal
    issued_on: date | None
    due_on: date | None
    disputed: bool = False
    # How far its trade documents' amounts lie from the slip's, as a share of the slip (the
    # largest of the three); None while one of them is missing (three-way match).
    document_gap: Decimal | None = None


DOCUMENT_KINDS = frozenset({"purchase_order", "goods_receipt", "invoice"})


def document_gap(face: Decimal, documents: Iterable[TradeDocument]) -> Decimal | None:
    """The three-way match of a slip of `face` amount: the largest relative gap between it and
    its purchase order, goods receipt and invoice, or None when one is not there yet."""
    amounts: dict[str, Decimal | None] = {d.kind.value: d.amount for d in documents}
    present = [amounts.get(kind) for kind in sorted(DOCUMENT_KINDS)]
    if face <= 0 or any(amount is None for amount in present):
        return None
    gap = max(abs(amount - face) for amount in present if amount is not None) / face
    return gap.quantize(Decimal("1E-8"), rounding=ROUND_UP)


@dataclass(frozen=True, slots=True)
class Eligibility:
    gross: Decimal
    ineligible: dict[str, Decimal]
    eligible: Decimal


INELIGIBLE_REASONS = (
    "disputed",
    "unmatched_documents",
    "tenor",
    "past_due",
    "cross_aged",
    "concentration",
)


def ineligible_reason(receivable: Receivable, facility: Facility | None, today: date) -> str | None:
    """Why one slip does not count, or None. One reason per slip, in this order."""
    if receivable.open_amount <= 0:
        return None
    if receivable.disputed:
        return "disputed"
    if (
        facility is not None
        and facility.require_trade_documents
        and (receivable.document_gap is None or receivable.document_gap > facility.match_tolerance)
    ):
        return "unmatched_documents"
    if facility is None or receivable.due_on is None:
        return None
    if (
        receivable.issued_on is not None
        and (receivable.due_on - receivable.issued_on).days > facility.max_tenor_days
    ):
        return "tenor"
    if (today - receivable.due_on).days > facility.max_days_past_due:
        return "past_due"
    return None


def eligibility(
    gross: Decimal, flagged: Iterable[Receivable], facility: Facility | None, today: date
) -> Eligibility:
    """The pool's eligible level: gross level less the slips that do not count.

    `flagged` holds every open slip that might not count (disputed, long tenor, past due), and
    possibly others; each is judged once. Cross-aging: when more than the facility's share of
    the pool is past due, nothing counts. The buyer's concentration cap limits what is left.
    """
    by_reason = dict.fromkeys(INELIGIBLE_REASONS, ZERO)
    for receivable in flagged:
        if reason := ineligible_reason(receivable, facility, today):
            by_reason[reason] += receivable.open_amount
    eligible = gross - sum(by_reason.values(), ZERO)
    if facility is not None and gross > 0:
        if by_reason["past_due"] > gross * facility.cross_age_percent:
            by_reason["cross_aged"] = eligible
            eligible = ZERO
        if facility.concentration_limit is not None and eligible > facility.concentration_limit:
            by_reason["concentration"] = eligible - facility.concentration_limit
            eligible = facility.concentration_limit
    eligible = max(ZERO, eligible)
    return Eligibility(gross, {k: v for k, v in by_reason.items() if v > 0}, eligible)


def borrowing_base(eligible_level: Decimal, facility: Facility | None) -> Decimal:
    """min(eligible pool × rate, credit line), rounded down to the fen (never lend a cent too
    many)."""
    if facility is None or eligible_level <= 0:
        return ZERO
    return min(fen_down(eligible_level * facility.discount_rate), facility.credit_line)


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


def standing(loans: Sequence[Loan], exposure: Decimal, base: Decimal) -> Standing:
    """overdue when a loan is past maturity; margin_call when exposure is above the base."""
    if any(loan.overdue for loan in loans):
        return Standing.OVERDUE
    if exposure > base:
        return Standing.MARGIN_CALL
    return Standing.GOOD


def refusal_of(
    amount: Decimal,
    facility: Facility | None,
    available: Decimal,
    pool_standing: Standing = Standing.GOOD,
) -> Reason | None:
    if facility is None:
        return Reason.NO_FACILITY
    if pool_standing is Standing.OVERDUE:
        return Reason.POOL_OVERDUE
    if pool_standing is Standing.MARGIN_CALL:
        return Reason.MARGIN_CALL
    if amount > available:
        return Reason.EXCEEDS_AVAILABLE
    return None


# ---------------------------------------------------------------- interest


def interest(
    principal: Decimal, annual_rate: Decimal, days: int, day_count: DayCount = DayCount.ACT_360
) -> Decimal:
    """Simple daily interest on `principal` for `days` days, to the fen (half up)."""
    if days <= 0 or principal <= 0:
        return ZERO
    return fen(principal * annual_rate * days / DAYS_IN_YEAR[day_count])


def interest_days(loan: Loan, value_date: date) -> int:
    """Days of contractual interest a principal repaid on `value_date` carries: from the day
    interest was last paid or charged to the value date. Once a day close has found the loan
    overdue, its interest was charged up to maturity and penalty interest runs instead."""
    if loan.overdue:
        return 0
    return max(0, (value_date - loan.interest_start).days)


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
    return (principal, due) if principal > 0 else (ZERO, ZERO)


def _order(loans: Sequence[Loan], value_date: date) -> list[Loan]:
    """Matured (or overdue) loans first, then the oldest."""
    return sorted(
        loans,
        key=lambda loan: (
            not (loan.overdue or loan.maturity_on <= value_date),
            loan.disbursed_on,
            loan.loan_id,
        ),
    )


def waterfall(
    cash: Decimal,
    loans: Sequence[Loan],
    value_date: date,
    principal_due: Decimal,
    *,
    collect_interest_due: bool = True,
    pro_rata: bool = False,
) -> list[Repayment]:
    """Where `cash` goes on the pool's loans: penalty → fees → charged interest → principal
    with the interest it ran up, each across the loans matured first, then oldest first —
    or, under a programme's `pro_rata` intercreditor rule (issue 11), each across the loans
    in proportion to what each is owed, largest remainder to the fen.

    Principal goes only up to `principal_due`. A principal repaid carries exactly its interest
    to the value date; cash no "principal + its interest" can use is left over (never paid as
    interest not yet earned: the caller holds it). Never more than `cash` in all.
    """
    if pro_rata:
        return _pro_rata_waterfall(
            cash, loans, value_date, principal_due, collect_interest_due=collect_interest_due
        )
    order = _order(loans, value_date)
    parts: dict[str, dict[str, Decimal]] = {
        loan.loan_id: dict.fromkeys(
            ("penalty_due", "fees_due", "interest_due", "principal", "interest"), ZERO
        )
        for loan in order
    }
    days_of: dict[str, int] = {loan.loan_id: interest_days(loan, value_date) for loan in order}
    left = cash
    buckets = ["penalty_due", "fees_due"] + (["interest_due"] if collect_interest_due else [])
    for bucket in buckets:
        for loan in order:
            owed: Decimal = getattr(loan, bucket)
            paid = min(owed, left)
            if paid > 0:
                parts[loan.loan_id][bucket] += paid
                left -= paid
    for loan in order:
        if principal_due <= 0 or left <= 0:
            break
        days = days_of[loan.loan_id]
        principal = min(loan.outstanding, principal_due)
        due = interest(principal, loan.annual_interest_rate, days, loan.day_count)
        if principal + due > left:
            principal, due = _largest_principal(left, loan, days)
            if principal <= 0:
                break
        parts[loan.loan_id]["principal"] += principal
        parts[loan.loan_id]["interest"] += due
        left -= principal + due
        principal_due -= principal
    plan = []
    for loan in order:
        p = parts[loan.loan_id]
        if any(p.values()):
            plan.append(
                Repayment(
                    loan.loan_id,
                    loan.funder_id,
                    principal=p["principal"],
                    interest=p["interest"] + p["interest_due"],
                    days=days_of[loan.loan_id],
                    penalty=p["penalty_due"],
                    fees=p["fees_due"],
                    interest_due_paid=p["interest_due"],
                )
            )
    return plan


def _shares(total: Decimal, owed: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """`total` (≤ the sum owed) across the loans in proportion to what each is owed."""
    weights = [(loan_id, int(v / FEN)) for loan_id, v in owed.items() if v > 0]
    if total <= 0 or not weights:
        return {}
    return largest_remainder_split(total, weights)


def _pro_rata_waterfall(
    cash: Decimal,
    loans: Sequence[Loan],
    value_date: date,
    principal_due: Decimal,
    *,
    collect_interest_due: bool,
) -> list[Repayment]:
    order = _order(loans, value_date)
    days_of = {loan.loan_id: interest_days(loan, value_date) for loan in order}
    paid: dict[str, dict[str, Decimal]] = {
        loan.loan_id: dict.fromkeys(("penalty_due", "fees_due", "interest_due"), ZERO)
        for loan in order
    }
    left = cash
    buckets = ["penalty_due", "fees_due"] + (["interest_due"] if collect_interest_due else [])
    for bucket in buckets:
        owed = {loan.loan_id: getattr(loan, bucket) for loan in order}
        for loan_id, share in _shares(min(left, sum(owed.values(), ZERO)), owed).items():
            paid[loan_id][bucket] = share
            left -= share
    outstanding = {loan.loan_id: loan.outstanding for loan in order}
    by_id = {loan.loan_id: loan for loan in order}

    def cost(total: Decimal) -> tuple[Decimal, dict[str, Decimal]]:
        principal = _shares(total, outstanding)
        return (
            sum(
                (
                    p + interest(p, by_id[i].annual_interest_rate, days_of[i], by_id[i].day_count)
                    for i, p in principal.items()
                ),
                ZERO,
            ),
            principal,
        )

    # The largest principal, shared pro rata, whose principal and interest the cash covers.
    low, high = 0, int(min(principal_due, sum(outstanding.values(), ZERO), left) / FEN)
    while low < high:
        middle = (low + high + 1) // 2
        if cost(middle * FEN)[0] <= left:
            low = middle
        else:
            high = middle - 1
    principal = cost(low * FEN)[1]
    plan = []
    for loan in order:
        p, dues = principal.get(loan.loan_id, ZERO), paid[loan.loan_id]
        due = interest(p, loan.annual_interest_rate, days_of[loan.loan_id], loan.day_count)
        if p or any(dues.values()):
            plan.append(
                Repayment(
                    loan.loan_id,
                    loan.funder_id,
                    principal=p,
                    interest=due + dues["interest_due"],
                    days=days_of[loan.loan_id],
                    penalty=dues["penalty_due"],
                    fees=dues["fees_due"],
                    interest_due_paid=dues["interest_due"],
                )
            )
    return plan


@dataclass(frozen=True, slots=True)
class Decision:
    """What a payment (or a prepayment, or money on hold) does: repayments, the part kept on
    hold, the part released (before the splitter's fee) and the held money used."""

    repayments: list[Repayment]
    from_held: Decimal
    held: Decimal
    released: Decimal
    owing: bool = False  # principal due (above the base, or matured) is still unpaid

    @property
    def repaid(self) -> Decimal:
        return sum((r.total for r in self.repayments), ZERO)

    @property
    def principal(self) -> Decimal:
        return sum((r.principal for r in self.repayments), ZERO)


def decide_payment(
    amount: Decimal,
    *,
    base_after: Decimal,
    loans: Sequence[Loan],
    requested: Decimal,
    held: Decimal,
    held_pending: Decimal,
    value_date: date,
    facility: Facility | None,
    prepayment: bool = False,
    loan_id: str | None = None,
    pro_rata: bool = False,
) -> Decision:
    """How a payment of `amount` is used (DESIGN step 4, issue 8).

    Cash = the payment + money already on hold in the pool (`held`, confirmed by the splitter).
    1. Dues first (penalty, fees, charged interest), then principal: for a payment, as much as
       brings loans back under the base, and all matured principal; for a prepayment, all of
       it (of the named loan when one is named).
    2. Held money is used before the payment's own money.
    3. What is left of the payment is *held* when the pool is still above its base after the
       repayment (a short payment: nothing is released while a loan stays above the base), or
       as much as covers confirmed requests in flight above the base (they will become loans;
       `held_pending` is money already on hold for them); the rest is released.
    """
    balance = sum((loan.outstanding for loan in loans), ZERO)
    targets = [loan for loan in loans if loan_id is None or loan.loan_id == loan_id]
    if prepayment:
        principal_due = sum((loan.outstanding for loan in targets), ZERO)
    else:
        matured = sum(
            (ln.outstanding for ln in loans if ln.overdue or ln.maturity_on <= value_date), ZERO
        )
        principal_due = max(ZERO, balance - base_after, matured)
    collect = prepayment or (
        facility is None or facility.interest_collection is InterestCollection.FROM_PAYMENTS
    )
    plan = waterfall(
        amount + held,
        targets if prepayment else loans,
        value_date,
        principal_due,
        collect_interest_due=collect,
        pro_rata=pro_rata and not prepayment,
    )
    repaid = sum((r.total for r in plan), ZERO)
    from_held = min(held, repaid)
    left = amount - (repaid - from_held)
    repaid_principal = sum((r.principal for r in plan), ZERO)
    loans_after = balance - repaid_principal
    still_held = held - from_held + held_pending
    owing = repaid_principal < principal_due
    if owing or loans_after - still_held > base_after:
        keep = left  # principal still due, or above the base: nothing released
    else:
        keep = min(left, max(ZERO, loans_after + requested - still_held - base_after))
    return Decision(plan, from_held, keep, left - keep, owing)


def settle_hold(
    held: Decimal,
    *,
    base: Decimal,
    loans: Sequence[Loan],
    requested: Decimal,
    held_pending: Decimal,
    value_date: date,
    facility: Facility | None,
    pro_rata: bool = False,
) -> Decision:
    """What to do with money on hold now: repay loans above the base (a disbursal it covered
    arrived), keep what still covers requests in flight, release the rest."""
    decision = decide_payment(
        ZERO,
        base_after=base,
        loans=loans,
        requested=requested,
        held=held,
        held_pending=held_pending,
        value_date=value_date,
        facility=facility,
        pro_rata=pro_rata,
    )
    left = held - decision.from_held
    balance = sum((loan.outstanding for loan in loans), ZERO) - decision.principal
    if decision.owing or balance - left - held_pending > base:
        keep = left
    else:
        keep = min(left, max(ZERO, balance + requested - held_pending - base))
    return Decision(decision.repayments, decision.from_held, keep, left - keep, decision.owing)


def apply_repayment(loan: Loan, repayment: Repayment, value_date: date) -> Loan:
    """The loan after a repayment: dues reduced, principal reduced, and the interest booked
    for the remaining principal re-based (the repaid part's interest was paid with it)."""
    outstanding = loan.outstanding - repayment.principal
    accrued = loan.accrued
    if loan.outstanding > 0 and repayment.principal > 0:
        accrued = fen(loan.accrued * outstanding / loan.outstanding)
    return replace(
        loan,
        outstanding=outstanding,
        penalty_due=loan.penalty_due - repayment.penalty,
        fees_due=loan.fees_due - repayment.fees,
        interest_due=loan.interest_due - repayment.interest_due_paid,
        accrued=accrued,
    )


def repayment_delta(before: Loan, after: Loan, repayment: Repayment) -> dict[str, str]:
    """What a repayment changed on a loan, kept so that it can be undone exactly."""
    return {
        "loan_id": before.loan_id,
        "principal": str(repayment.principal),
        "interest": str(repayment.interest),
        "penalty": str(repayment.penalty),
        "fees": str(repayment.fees),
        "interest_due_paid": str(repayment.interest_due_paid),
        "accrued_released": str(before.accrued - after.accrued),
    }


def undo_repayment(
    loan: Loan,
    delta: Mapping[str, str],
    principal: Decimal,
    interest: Decimal,
    penalty: Decimal,
    fees: Decimal,
) -> Loan:
    """The loan with (part of) a repayment undone: a refused instruction (all of it) or a
    reversed payment (the part the funder returned). The principal, penalty and fees come
    back as returned; charged interest and the interest booked on the principal come back in
    proportion, so undoing a whole repayment restores the loan exactly as it was."""

    def share(whole: str, part: Decimal, of: str) -> Decimal:
        base = Decimal(delta[of])
        return (
            Decimal(whole) if part == base else fen(Decimal(whole) * part / base) if base else ZERO
        )

    return replace(
        loan,
        outstanding=loan.outstanding + principal,
        penalty_due=loan.penalty_due + penalty,
        fees_due=loan.fees_due + fees,
        interest_due=loan.interest_due + share(delta["interest_due_paid"], interest, "interest"),
        accrued=loan.accrued + share(delta["accrued_released"], principal, "principal"),
    )


# ---------------------------------------------------------------- servicing (day closes)


@dataclass(frozen=True, slots=True)
class DayEvent:
    """One servicing step of one loan on one closed day."""

    kind: str  # "accrued" | "charged" | "overdue"
    loan_id: str
    business_date: date
    interest: Decimal = ZERO
    penalty: Decimal = ZERO
    charged: Decimal = ZERO
    principal: Decimal = ZERO
    accrued: Decimal = ZERO


def period_end(day: date, period: InterestPeriod) -> bool:
    """Is `day` the last day of an interest period?"""
    if period is InterestPeriod.AT_REPAYMENT:
        return False
    last = calendar.monthrange(day.year, day.month)[1]
    if day.day != last:
        return False
    return period is InterestPeriod.MONTHLY or day.month in (3, 6, 9, 12)


@dataclass
class ServicedDay:
    loan: Loan
    events: list[DayEvent] = field(default_factory=list)


def close_day(loan: Loan, day: date, period: InterestPeriod) -> ServicedDay:
    """Close business day `day` for one loan.

    - Interest accrues for the day (booked as the change in interest to date, so the daily
      entries add up exactly to what a repayment would pay);
    - at the end of an interest period the interest to date is charged (due);
    - at the end of its maturity day an unpaid loan falls overdue: contractual interest is
      charged up to maturity and stops; from the next day penalty interest accrues daily on the
      overdue principal.
    """
    out = ServicedDay(loan)
    if loan.outstanding <= 0 or day < loan.disbursed_on:
        return out
    if loan.overdue:
        penalty = interest(loan.outstanding, loan.penalty_rate, 1, loan.day_count)
        out.loan = replace(loan, penalty_due=loan.penalty_due + penalty)
        out.events.append(
            DayEvent("accrued", loan.loan_id, day, penalty=penalty, principal=loan.outstanding)
        )
        return out
    if day >= loan.maturity_on:
        charged = interest(
            loan.outstanding,
            loan.annual_interest_rate,
            (loan.maturity_on - loan.interest_start).days,
            loan.day_count,
        )
        out.loan = replace(
            loan,
            overdue=True,
            interest_due=loan.interest_due + charged,
            interest_from=loan.maturity_on,
            accrued=ZERO,
        )
        out.events.append(
            DayEvent("overdue", loan.loan_id, day, charged=charged, principal=loan.outstanding)
        )
        return out
    to_date = interest(
        loan.outstanding,
        loan.annual_interest_rate,
        (day + timedelta(days=1) - loan.interest_start).days,
        loan.day_count,
    )
    today = max(ZERO, to_date - loan.accrued)
    loan = replace(loan, accrued=loan.accrued + today)
    out.events.append(
        DayEvent(
            "accrued",
            loan.loan_id,
            day,
            interest=today,
            principal=loan.outstanding,
            accrued=loan.accrued,
        )
    )
    if period_end(day, period):
        out.events.append(DayEvent("charged", loan.loan_id, day, charged=loan.accrued))
        loan = replace(
            loan,
            interest_due=loan.interest_due + loan.accrued,
            interest_from=day + timedelta(days=1),
            accrued=ZERO,
        )
    out.loan = loan
    return out
