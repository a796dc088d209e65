"""credit's money rules: borrowing base, availability, interest and the repayment plan.

Seed paper: loan balance ≤ min(pool × discount rate, credit line); on a payment the platform
compares pool × rate with the loan balance and repays the excess (plus interest) first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from services.credit.domain import (
    Decision,
    Facility,
    Loan,
    Repayment,
    available_to_borrow,
    borrowing_base,
    decide_payment,
    interest,
    level_after_write_off,
    refusal_of,
)
from shared.contracts.messages import DayCount, Reason
from shared.money import FEN, ZERO

WAN = Decimal(10_000)  # 万


def decision_for(
    amount: Decimal, level_after: Decimal, f: Facility | None, loans: list[Loan], paid_on: date
) -> Decision:
    """A buyer's payment with nothing in flight and nothing on hold."""
    return decide_payment(
        amount,
        base_after=borrowing_base(level_after, f),
        loans=loans,
        requested=ZERO,
        held=ZERO,
        held_pending=ZERO,
        value_date=paid_on,
        facility=f,
    )


def repayment_plan(
    amount: Decimal, level_after: Decimal, f: Facility | None, loans: list[Loan], paid_on: date
) -> list[Repayment]:
    return decision_for(amount, level_after, f, loans, paid_on).repayments


PAID_ON = date(2026, 8, 31)


def facility(
    *,
    line: str = "10000000.00",
    rate: str = "0.8",
    interest_rate: str = "0",
    day_count: DayCount = DayCount.ACT_360,
) -> Facility:
    return Facility(
        credit_line=Decimal(line),
        discount_rate=Decimal(rate),
        annual_interest_rate=Decimal(interest_rate),
        funder_id="bank-a",
        day_count=day_count,
    )


def loan(
    loan_id: str,
    outstanding: str,
    *,
    disbursed: date = PAID_ON,
    tenor_days: int = 180,
    interest_rate: str = "0",
    day_count: DayCount = DayCount.ACT_360,
    funder: str = "bank-a",
) -> Loan:
    return Loan(
        loan_id=loan_id,
        funder_id=funder,
        outstanding=Decimal(outstanding),
        annual_interest_rate=Decimal(interest_rate),
        disbursed_on=disbursed,
        maturity_on=disbursed + timedelta(days=tenor_days),
        day_count=day_count,
    )


def repaid(plan: list[Repayment]) -> Decimal:
    return sum((r.principal + r.interest for r in plan), ZERO)


# ---------------------------------------------------------------- the seed example


def test_seed_pool_of_100_wan_at_0_8_has_a_borrowing_base_of_80_wan() -> None:
    assert borrowing_base(100 * WAN, facility()) == Decimal("800000.00")


def test_payment_of_10_repays_8_and_releases_2() -> None:
    """Pool 100万, rate 0.8, loan 80万; a payment of 10万 writes off 10万 → level 90万, cap 72万,
    so 8万 goes to the funder and 2万 is released (no interest on a same-day payment)."""
    level_after = 100 * WAN - 10 * WAN
    assert level_after == Decimal("900000.00")
    assert borrowing_base(level_after, facility()) == Decimal("720000.00")
    plan = repayment_plan(
        Decimal("100000.00"),
        level_after,
        facility(),
        [loan("L1", "800000.00", interest_rate="0.0435")],
        PAID_ON,
    )
    assert plan == [Repayment("L1", "bank-a", Decimal("80000.00"), Decimal("0.00"), 0)]
    assert Decimal("100000.00") - repaid(plan) == Decimal("20000.00")  # released
    assert Decimal("800000.00") - plan[0].principal == borrowing_base(level_after, facility())


def test_seed_payment_30_days_after_disbursal_also_pays_act360_interest_on_the_8() -> None:
    plan = repayment_plan(
        Decimal("100000.00"),
        90 * WAN,
        facility(),
        [loan("L1", "800000.00", disbursed=PAID_ON - timedelta(days=30), interest_rate="0.0435")],
        PAID_ON,
    )
    # 80,000 × 4.35% × 30 / 360 = 290.00; the rest, 19,710.00, is released.
    assert plan == [Repayment("L1", "bank-a", Decimal("80000.00"), Decimal("290.00"), 30)]
    assert Decimal("100000.00") - repaid(plan) == Decimal("19710.00")


def test_payment_that_leaves_the_loan_under_the_base_repays_nothing() -> None:
    # Level 100万 → 99万 leaves a base of 79.2万 < loan 80万: 0.8万 due; with loan 70万, nothing.
    assert (
        repayment_plan(
            Decimal("10000.00"), 99 * WAN, facility(), [loan("L1", "700000.00")], PAID_ON
        )
        == []
    )


def test_payment_smaller_than_the_excess_goes_wholly_to_the_funder() -> None:
    plan = repayment_plan(Decimal("10.00"), ZERO, facility(), [loan("L1", "800000.00")], PAID_ON)
    assert plan == [Repayment("L1", "bank-a", Decimal("10.00"), Decimal("0.00"), 0)]


# ---------------------------------------------------------------- borrowing base


def test_credit_line_caps_the_borrowing_base() -> None:
    assert borrowing_base(100 * WAN, facility(line="500000.00")) == Decimal("500000.00")


def test_no_facility_or_empty_pool_has_no_borrowing_base() -> None:
    assert borrowing_base(100 * WAN, None) == ZERO
    assert borrowing_base(ZERO, facility()) == ZERO
    assert borrowing_base(Decimal("-5.00"), facility()) == ZERO


def test_borrowing_base_rounds_down_to_the_fen() -> None:
    # 0.07 × 0.6 = 0.042 → 0.04, never 0.05.
    assert borrowing_base(Decimal("0.07"), facility(rate="0.6")) == Decimal("0.04")
    assert borrowing_base(Decimal("0.01"), facility(rate="0.6")) == Decimal("0.00")


# ---------------------------------------------------------------- interest


def test_interest_act360_on_a_million_at_4_35_percent_for_30_days_is_3625() -> None:
    assert interest(Decimal("1000000.00"), Decimal("0.0435"), 30, DayCount.ACT_360) == Decimal(
        "3625.00"
    )


def test_interest_act365_on_a_million_at_4_35_percent_for_30_days_is_3575_34() -> None:
    # 1,000,000 × 0.0435 × 30 / 365 = 3575.342…
    assert interest(Decimal("1000000.00"), Decimal("0.0435"), 30, DayCount.ACT_365) == Decimal(
        "3575.34"
    )


def test_interest_defaults_to_act360() -> None:
    assert interest(Decimal("1000000.00"), Decimal("0.0435"), 30) == Decimal("3625.00")


def test_interest_rounds_half_up_to_the_fen() -> None:
    # 10.00 × 18% × 1 / 360 = 0.005 → 0.01.
    assert interest(Decimal("10.00"), Decimal("0.18"), 1) == Decimal("0.01")


@pytest.mark.parametrize(("principal", "days"), [("1000.00", 0), ("1000.00", -3), ("0.00", 30)])
def test_no_interest_for_no_days_or_no_principal(principal: str, days: int) -> None:
    assert interest(Decimal(principal), Decimal("0.24"), days) == ZERO


@settings(max_examples=200, deadline=None)
@given(
    cents=st.integers(1, 10**11),
    rate_bp=st.integers(0, 2400),
    days=st.integers(1, 366),
    day_count=st.sampled_from(list(DayCount)),
)
def test_interest_is_the_exact_simple_interest_within_half_a_fen(
    cents: int, rate_bp: int, days: int, day_count: DayCount
) -> None:
    principal, rate = Decimal(cents) * FEN, Decimal(rate_bp) / 10_000
    year = 360 if day_count is DayCount.ACT_360 else 365
    exact = Fraction(principal) * Fraction(rate) * days / year
    due = interest(principal, rate, days, day_count)
    assert due == due.quantize(FEN)
    assert abs(Fraction(due) - exact) <= Fraction(1, 200)


# ---------------------------------------------------------------- maturity and order


def test_matured_loan_is_repaid_even_when_the_pool_covers_it() -> None:
    matured = loan("L1", "5000.00", disbursed=PAID_ON - timedelta(days=90), tenor_days=90)
    plan = repayment_plan(Decimal("8000.00"), 1000 * WAN, facility(), [matured], PAID_ON)
    assert [(r.loan_id, r.principal) for r in plan] == [("L1", Decimal("5000.00"))]


def test_matured_loans_are_repaid_before_older_ones_then_oldest_first() -> None:
    old = loan("A-old", "1000.00", disbursed=PAID_ON - timedelta(days=100), tenor_days=365)
    matured = loan("B-matured", "1000.00", disbursed=PAID_ON - timedelta(days=40), tenor_days=30)
    young = loan("C-young", "1000.00", disbursed=PAID_ON - timedelta(days=10), tenor_days=365)
    # Level 0: everything is due; only 2,500 to pay with.
    plan = repayment_plan(Decimal("2500.00"), ZERO, facility(), [young, old, matured], PAID_ON)
    assert [(r.loan_id, r.principal) for r in plan] == [
        ("B-matured", Decimal("1000.00")),
        ("A-old", Decimal("1000.00")),
        ("C-young", Decimal("500.00")),
    ]


def test_interest_runs_from_disbursal_to_the_payment_date_per_loan() -> None:
    a = loan("A", "1000.00", disbursed=PAID_ON - timedelta(days=36), interest_rate="0.1")
    plan = repayment_plan(Decimal("5000.00"), ZERO, facility(), [a], PAID_ON)
    assert plan == [Repayment("A", "bank-a", Decimal("1000.00"), Decimal("10.00"), 36)]


def test_payment_dated_before_disbursal_counts_no_days() -> None:
    a = loan("A", "1000.00", disbursed=PAID_ON + timedelta(days=5), interest_rate="0.1")
    plan = repayment_plan(Decimal("5000.00"), ZERO, facility(), [a], PAID_ON)
    assert plan == [Repayment("A", "bank-a", Decimal("1000.00"), ZERO, 0)]


def test_when_cash_is_short_interest_comes_out_of_the_same_payment() -> None:
    # 36 days at 10% ACT/360 = 1% per yuan: 101.00 pays 100.00 principal + 1.00 interest.
    a = loan("A", "1000.00", disbursed=PAID_ON - timedelta(days=36), interest_rate="0.1")
    plan = repayment_plan(Decimal("101.00"), ZERO, facility(), [a], PAID_ON)
    assert plan == [Repayment("A", "bank-a", Decimal("100.00"), Decimal("1.00"), 36)]


# ---------------------------------------------------------------- properties of the plan


@dataclass(frozen=True)
class Case:
    amount: Decimal
    level_after: Decimal
    facility: Facility
    loans: list[Loan]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    fac = Facility(
        credit_line=Decimal(draw(st.integers(1, 10**11))) * FEN,
        discount_rate=Decimal(draw(st.integers(60, 80))) / 100,
        annual_interest_rate=Decimal(draw(st.integers(0, 2400))) / 10_000,
        funder_id="bank-a",
        day_count=draw(st.sampled_from(list(DayCount))),
    )
    loans = []
    for i in range(draw(st.integers(1, 4))):
        disbursed = PAID_ON - timedelta(days=draw(st.integers(0, 366)))
        loans.append(
            Loan(
                loan_id=f"L{i}",
                funder_id=draw(st.sampled_from(["bank-a", "bank-b"])),
                outstanding=Decimal(draw(st.integers(1, 10**10))) * FEN,
                annual_interest_rate=Decimal(draw(st.integers(0, 2400))) / 10_000,
                disbursed_on=disbursed,
                maturity_on=disbursed + timedelta(days=draw(st.integers(1, 400))),  # maybe matured
                day_count=draw(st.sampled_from(list(DayCount))),
            )
        )
    return Case(
        amount=Decimal(draw(st.integers(1, 10**10))) * FEN,
        level_after=Decimal(draw(st.integers(0, 10**11))) * FEN,
        facility=fac,
        loans=loans,
    )


def plan_for(case: Case) -> list[Repayment]:
    return repayment_plan(case.amount, case.level_after, case.facility, case.loans, PAID_ON)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_plan_never_takes_more_than_the_payment(case: Case) -> None:
    assert repaid(plan_for(case)) <= case.amount


@settings(max_examples=300, deadline=None)
@given(cases())
def test_each_repaid_principal_is_positive_and_at_most_that_loans_outstanding(case: Case) -> None:
    plan = plan_for(case)
    by_id = {ln.loan_id: ln for ln in case.loans}
    assert len({r.loan_id for r in plan}) == len(plan)  # each loan at most once
    for r in plan:
        ln = by_id[r.loan_id]
        assert 0 < r.principal <= ln.outstanding
        assert r.principal == r.principal.quantize(FEN)
        assert r.funder_id == ln.funder_id
        assert r.days == max(0, (PAID_ON - ln.disbursed_on).days)
        # Each repaid yuan carries the interest it accrued since disbursal; only the last
        # repayment of a payment it uses up may carry one more fen that no principal could use.
        accrued = interest(r.principal, ln.annual_interest_rate, r.days, ln.day_count)
        if r is plan[-1] and repaid(plan) == case.amount:
            assert accrued <= r.interest <= accrued + FEN
        else:
            assert r.interest == accrued


@settings(max_examples=300, deadline=None)
@given(cases())
def test_plan_repays_no_principal_that_is_not_due(case: Case) -> None:
    """Only the excess over the base (or what has matured) is taken: the rest is released."""
    balance = sum((ln.outstanding for ln in case.loans), ZERO)
    matured = sum((ln.outstanding for ln in case.loans if ln.maturity_on <= PAID_ON), ZERO)
    due = max(ZERO, balance - borrowing_base(case.level_after, case.facility), matured)
    principal = sum((r.principal for r in plan_for(case)), ZERO)
    assert principal <= due
    if due == 0:
        assert plan_for(case) == []


def one_day_old_loan(outstanding: str = "1000.00", rate: str = "0.0435", days: int = 1) -> Loan:
    return loan("L1", outstanding, disbursed=PAID_ON - timedelta(days=days), interest_rate=rate)


@pytest.mark.parametrize(
    ("amount", "principal", "interest_due"),
    [
        ("100.00", "99.99", "0.01"),
        ("1.00", "1.00", "0.00"),
        ("0.01", "0.01", "0.00"),
    ],
)
def test_short_payment_repays_the_largest_principal_it_can_cover(
    amount: str, principal: str, interest_due: str
) -> None:
    """Level 0 after the write-off: the whole loan is due and the payment cannot cover it, so
    every fen of the payment must go to the funder (interest on 99.99 for one day at 4.35%
    ACT/360 is 0.0121 → 0.01, so 99.99 + 0.01 = 100.00 fits exactly)."""
    plan = repayment_plan(Decimal(amount), ZERO, facility(), [one_day_old_loan()], PAID_ON)
    assert plan == [Repayment("L1", "bank-a", Decimal(principal), Decimal(interest_due), 1)]
    assert repaid(plan) == Decimal(amount)


def test_a_fen_no_principal_can_use_is_held_never_paid_as_unearned_interest() -> None:
    """366 days at 24% ACT/360: 0.02 + 0.00 fits in 0.03, 0.03 + 0.01 does not. The loan is
    above the base, so the last fen is neither released nor paid as interest not yet earned:
    it stays on hold (issue 8, item 8) for the next repayment."""
    old_loan = one_day_old_loan(rate="0.24", days=366)
    decision = decision_for(Decimal("0.03"), ZERO, facility(), [old_loan], PAID_ON)
    assert decision.repayments == [Repayment("L1", "bank-a", Decimal("0.02"), ZERO, 366)]
    assert (decision.held, decision.released) == (Decimal("0.01"), ZERO)


def test_nothing_is_released_while_matured_principal_is_unpaid() -> None:
    """Found by the invariant-2 property: a matured loan of 3.03 at 22.05% for 326 days owes
    3.03 + 0.61; a payment of 3.63 repays 3.02 + 0.60 and the fen left over is held (the
    pool is within its base, but a matured fen is still owed)."""
    matured = loan(
        "L0",
        "3.03",
        disbursed=PAID_ON - timedelta(days=326),
        interest_rate="0.2205",
        tenor_days=1,
    )
    decision = decision_for(
        Decimal("3.63"), Decimal("0.02"), facility(line="0.01"), [matured], PAID_ON
    )
    [part] = decision.repayments
    assert (part.principal, part.interest) == (Decimal("3.02"), Decimal("0.60"))
    assert (decision.held, decision.released, decision.owing) == (Decimal("0.01"), ZERO, True)


def test_a_payment_too_small_for_any_principal_is_held_whole() -> None:
    """At 100% for 366 days, 0.01 of principal carries 0.01 of interest: 0.01 covers none."""
    old_loan = one_day_old_loan(rate="1", days=366)
    decision = decision_for(Decimal("0.01"), ZERO, facility(), [old_loan], PAID_ON)
    assert decision.repayments == []
    assert (decision.held, decision.released) == (Decimal("0.01"), ZERO)


def exposure_case(amount: str, loan_: Loan) -> Case:
    return Case(amount=Decimal(amount), level_after=ZERO, facility=facility(), loans=[loan_])


@settings(max_examples=300, deadline=None)
@given(cases())
# 99.99 + 0.01 fits exactly; a search from fen_down(cash / factor) would stop at 99.98.
@example(exposure_case("100.00", one_day_old_loan()))
# 0.02 + 0.00 fits and 0.03 + 0.01 does not (366 days at 24% ACT/360): the fen no principal
# can use is held, so nothing is released.
@example(exposure_case("0.03", one_day_old_loan(rate="0.24", days=366)))
def test_invariant_2_exposure_after_the_plan_unless_all_of_the_payment_repaid(case: Case) -> None:
    decision = decision_for(case.amount, case.level_after, case.facility, case.loans, PAID_ON)
    plan = decision.repayments
    principal = sum((r.principal for r in plan), ZERO)
    balance_after = sum((ln.outstanding for ln in case.loans), ZERO) - principal
    assert decision.repaid + decision.held + decision.released == case.amount
    assert decision.repaid <= case.amount  # no fen paid beyond the payment
    if decision.released > 0:  # something is released: exposure must be restored
        assert balance_after <= borrowing_base(case.level_after, case.facility)
        repaid_ids = {r.loan_id: r.principal for r in plan}
        for ln in case.loans:
            if ln.maturity_on <= PAID_ON:  # matured loans are repaid in full
                assert repaid_ids.get(ln.loan_id) == ln.outstanding


@settings(max_examples=200, deadline=None)
@given(cases())
def test_zero_interest_plan_uses_every_fen_when_the_excess_is_larger(case: Case) -> None:
    loans = [
        Loan(
            ln.loan_id,
            ln.funder_id,
            ln.outstanding,
            ZERO,
            ln.disbursed_on,
            ln.maturity_on,
            ln.day_count,
        )
        for ln in case.loans
    ]
    balance = sum((ln.outstanding for ln in loans), ZERO)
    excess = balance - borrowing_base(case.level_after, case.facility)
    assume(excess >= case.amount)
    plan = repayment_plan(case.amount, case.level_after, case.facility, loans, PAID_ON)
    assert repaid(plan) == case.amount


# ---------------------------------------------------------------- availability (invariant 4)


@st.composite
def positions(draw: st.DrawFn) -> tuple[Decimal, Facility, Decimal, Decimal]:
    fac = facility(
        line=str(Decimal(draw(st.integers(1, 10**11))) * FEN),
        rate=str(Decimal(draw(st.integers(60, 80))) / 100),
    )
    level = Decimal(draw(st.integers(0, 10**11))) * FEN
    loans = Decimal(draw(st.integers(0, 10**11))) * FEN
    in_flight = Decimal(draw(st.integers(0, 10**10))) * FEN
    return level, fac, loans, in_flight


@settings(max_examples=300, deadline=None)
@given(positions())
def test_available_is_never_negative(pos: tuple[Decimal, Facility, Decimal, Decimal]) -> None:
    level, fac, loans, in_flight = pos
    assert available_to_borrow(level, fac, loans, in_flight) >= 0


@settings(max_examples=300, deadline=None)
@given(positions(), st.integers(0, 10**6))
def test_invariant_4_a_request_within_available_never_over_lends(
    pos: tuple[Decimal, Facility, Decimal, Decimal], fraction_ppm: int
) -> None:
    level, fac, loans, in_flight = pos
    available = available_to_borrow(level, fac, loans, in_flight)
    request = (available * fraction_ppm / 10**6).quantize(FEN, rounding="ROUND_DOWN")
    assert refusal_of(request, fac, available) is None
    in_flight_after = in_flight + request
    if request > 0:
        assert loans + in_flight_after <= borrowing_base(level, fac)
        # …and the next request sees the smaller availability.
        assert available_to_borrow(level, fac, loans, in_flight_after) == available - request


@settings(max_examples=300, deadline=None)
@given(positions(), st.integers(1, 10**8))
def test_a_request_above_available_is_refused_as_exceeding_it(
    pos: tuple[Decimal, Facility, Decimal, Decimal], extra_cents: int
) -> None:
    level, fac, loans, in_flight = pos
    available = available_to_borrow(level, fac, loans, in_flight)
    assert (
        refusal_of(available + Decimal(extra_cents) * FEN, fac, available)
        == Reason.EXCEEDS_AVAILABLE
    )


def test_available_counts_requests_still_in_flight() -> None:
    fac = facility()
    assert available_to_borrow(100 * WAN, fac, 50 * WAN, ZERO) == 30 * WAN
    assert available_to_borrow(100 * WAN, fac, 50 * WAN, 20 * WAN) == 10 * WAN
    assert available_to_borrow(100 * WAN, fac, 50 * WAN, 40 * WAN) == ZERO


def test_exactly_the_available_amount_is_allowed_and_a_fen_more_is_not() -> None:
    available = available_to_borrow(100 * WAN, facility(), 50 * WAN, ZERO)
    assert refusal_of(available, facility(), available) is None
    assert refusal_of(available + FEN, facility(), available) == Reason.EXCEEDS_AVAILABLE


@pytest.mark.parametrize("amount", ["0.01", "1000000.00"])
def test_no_facility_is_refused_as_no_facility(amount: str) -> None:
    available = available_to_borrow(100 * WAN, None, ZERO, ZERO)
    assert available == ZERO
    assert refusal_of(Decimal(amount), None, available) == Reason.NO_FACILITY
    assert refusal_of(Decimal(amount), None, Decimal("10000000.00")) == Reason.NO_FACILITY


@given(st.integers(0, 10**12), st.integers(1, 10**12))
def test_a_write_off_never_takes_the_level_below_zero_it_is_refused(
    level_fen: int, written_off_fen: int
) -> None:
    level, written_off = Decimal(level_fen) * FEN, Decimal(written_off_fen) * FEN
    after = level_after_write_off(level, written_off)
    if written_off > level:
        assert after is None  # refused, never clamped to zero
    else:
        assert after == level - written_off and after >= 0
