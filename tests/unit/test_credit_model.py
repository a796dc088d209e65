"""The credit model: worked examples computed by hand, then properties.

Seed paper: deliveries of 102, 107, 103, 104 万 in April to July, paid in the third month,
the pool about two months of deliveries; the article: credit scored dynamically on repayment
capacity and trade frequency, adjusting limit and rate automatically.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.credit.model import (
    LINE_CAP,
    RATE_CEILING,
    RATE_FLOOR,
    MonthTrade,
    Suggestion,
    suggest,
)
from shared.money import ZERO

WAN = Decimal(10_000)  # 万
AS_OF = date(2026, 8, 1)  # the window is then April..July 2026 (Feb, Mar have no record)


def month(
    year: int,
    month_: int,
    slips: str,
    paid: str = "0.00",
    *,
    paid_late: str = "0.00",
    diluted: str = "0.00",
    overdue_days: int = 0,
) -> MonthTrade:
    return MonthTrade(
        month=date(year, month_, 1),
        slips=Decimal(slips),
        paid=Decimal(paid),
        paid_late=Decimal(paid_late),
        diluted=Decimal(diluted),
        overdue_days=overdue_days,
    )


def seed_history() -> list[MonthTrade]:
    """Slips 102/107/103/104 万; April's paid in late June, May's in late July, on time."""
    return [
        month(2026, 4, "1020000.00"),
        month(2026, 5, "1070000.00"),
        month(2026, 6, "1030000.00", paid="1020000.00"),
        month(2026, 7, "1040000.00", paid="1070000.00"),
    ]


def suggested(
    history: list[MonthTrade], first_slip_on: date | None = date(2026, 4, 3), as_of: date = AS_OF
) -> Suggestion:
    result = suggest(history, first_slip_on, as_of)
    assert result is not None
    return result


# ---------------------------------------------------------------- worked examples


def test_seed_pool_is_grade_a_at_0_80_with_a_line_of_166_wan() -> None:
    """V = (102+107+103+104)/4 = 104万. CV: deviations −2, 3, −1, 0 万, variance 14/4 = 3.5,
    σ = √3.5 = 1.8708…, CV = 1.8708/104 = 0.01798… → 0.0180 ≤ 0.10: 20. Punctuality 1.0000: 25.
    Dilution 0: 20. No overdue: 25. April → August = 4 months: 2. Score 92 → A (0.80, × 1.00).
    Line = 104万 × 2 × 0.80 × 1.00 = 166.4万 → 166万, the seed's July pool (207万) × 0.8."""
    s = suggested(seed_history())
    assert (s.grade, s.discount_rate, s.credit_line) == ("A", Decimal("0.80"), 166 * WAN)
    assert s.factors == {
        "window": "2026-04 to 2026-07",
        "months_in_window": "4",
        "slips_in_window": "4160000.00",
        "average_monthly_slips": "1040000.00",
        "slips_cv": "0.0180",
        "paid_in_window": "2090000.00",
        "paid_late_in_window": "0.00",
        "punctuality": "1.0000",
        "diluted_in_window": "0.00",
        "dilution_rate": "0.0000",
        "overdue_months": "0",
        "max_overdue_days": "0",
        "overdue_now": "no",
        "relationship_months": "4",
        "score": "92",
    }
    text = "\n".join(s.explanation)
    assert "V = 4160000.00 / 4 = 1040000.00 CNY" in text
    assert "deviation 18708.29 CNY over their mean 1040000.00 CNY" in text  # √3.5 万
    assert "coefficient of variation of 0.0180" in text and "20 of 20 points" in text
    assert "1 − 0.00 / 2090000.00 = 1.0000" in text and "25 of 25 points" in text
    assert "a rate of 0.0000" in text
    assert "no loan was overdue" in text
    assert "4 months from the first slip (2026-04)" in text and "2 of 10 points" in text
    assert "Grade A: 92 of 100 points" in text
    assert "1040000.00 × 2 × 0.80 × 1.00 = 1664000.00" in text
    assert s.explanation[-1].endswith("rounded down to 10,000: 1660000.00 CNY.")


def test_seed_pool_with_15_wan_paid_late_drops_to_grade_b_and_124_wan() -> None:
    """Punctuality 1 − 15/209 = 0.92822… → 0.9282 ≥ 0.90: 12 points; 20+12+20+25+2 = 79 → B
    (0.75, × 0.80). Line = 104万 × 2 × 0.75 × 0.80 = 124.8万 → 124万."""
    history = seed_history()
    history[3] = dataclasses.replace(history[3], paid_late=Decimal("150000.00"))
    s = suggested(history)
    assert s.factors["punctuality"] == "0.9282"
    assert (s.grade, s.discount_rate, s.credit_line, s.factors["score"]) == (
        "B",
        Decimal("0.75"),
        124 * WAN,
        "79",
    )
    assert "1040000.00 × 2 × 0.75 × 0.80 = 1248000.00" in s.explanation[-1]


def test_old_relationship_with_8_percent_dilution_and_a_20_day_overdue_is_grade_c() -> None:
    """Since 2024-03: 29 months: 10. Dilution 33.28/416 = 0.0800 ≤ 0.10: 6. Overdue in two
    months, at most 20 days: 5. 20+25+6+5+10 = 66 → C (0.70, × 0.60).
    Line = 104万 × 2 × 0.70 × 0.60 = 87.36万 → 87万."""
    history = seed_history()
    history[1] = dataclasses.replace(history[1], overdue_days=3)
    history[3] = dataclasses.replace(history[3], diluted=Decimal("332800.00"), overdue_days=20)
    s = suggested(history, first_slip_on=date(2024, 3, 10))
    assert s.factors["dilution_rate"] == "0.0800"
    assert (s.factors["overdue_months"], s.factors["max_overdue_days"]) == ("2", "20")
    assert s.factors["relationship_months"] == "29"
    assert (s.grade, s.discount_rate, s.credit_line) == ("C", Decimal("0.70"), 87 * WAN)


def test_a_loan_overdue_this_month_suspends_the_line() -> None:
    """August (in progress) shows 5 days overdue: one month ≤ 7 days: 15 points; 20+25+20+15+2
    = 82 → B, but the line is 0 while it may still be open."""
    history = [*seed_history(), month(2026, 8, "0", overdue_days=5)]
    s = suggested(history, as_of=date(2026, 8, 20))
    assert (s.grade, s.discount_rate, s.credit_line) == ("B", Decimal("0.75"), ZERO)
    assert s.factors["overdue_now"] == "yes"
    assert "overdue this month, so the line is 0.00 CNY" in s.explanation[-1]


def test_unstable_volume_without_payments_yet_is_grade_c() -> None:
    """Slips 50/150/50/150 万: mean 100万, σ 50万, CV 0.5000 ≤ 0.50: 8. Nothing paid yet: 12.
    8+12+20+25+2 = 67 → C. Line = 100万 × 2 × 0.70 × 0.60 = 84万."""
    history = [
        month(2026, 4, "500000.00"),
        month(2026, 5, "1500000.00"),
        month(2026, 6, "500000.00"),
        month(2026, 7, "1500000.00"),
    ]
    s = suggested(history)
    assert (s.factors["slips_cv"], s.factors["punctuality"]) == ("0.5000", "none")
    assert (s.grade, s.discount_rate, s.credit_line) == ("C", Decimal("0.70"), 84 * WAN)
    assert "paid nothing in the window yet" in s.explanation[2]


def test_a_month_without_a_record_counts_as_no_trade() -> None:
    """120万 in April, June, July and nothing in May: V = 360/4 = 90万; deviations 30, −90, 30,
    30 万: variance (900+8100+900+900)/4 = 2700, σ = 51.96…, CV = 0.57735… → 0.5774 > 0.50:
    0 points."""
    history = [month(2026, m, "1200000.00") for m in (4, 6, 7)]
    s = suggested(history)
    assert s.factors["months_in_window"] == "4"
    assert s.factors["average_monthly_slips"] == "900000.00"
    assert s.factors["slips_cv"] == "0.5774"
    assert s.explanation[1].endswith("0 of 20 points.")
    assert "2026-05 0.00" in s.explanation[0]


def test_only_the_last_six_complete_months_count() -> None:
    """December and January (1,000万 each) are out of the window February..July; August is in
    progress. V = 6 × 100万 / 6."""
    history = [month(2025, 12, "10000000.00"), month(2026, 1, "10000000.00")]
    history += [month(2026, m, "1000000.00") for m in range(2, 9)]
    s = suggested(history, as_of=date(2026, 8, 31))
    assert s.factors["window"] == "2026-02 to 2026-07"
    assert s.factors["average_monthly_slips"] == "1000000.00"
    assert s.factors["slips_cv"] == "0.0000"


def test_poor_record_everywhere_is_grade_e_at_0_50_with_no_line() -> None:
    """Slips 10/90/10 万: mean 36.67万, σ 37.71万, CV 1.0286 > 0.50: 0. All paid late: 0.
    Dilution 30/110 = 0.2728: 0. Overdue in three months, up to 90 days: 0. May → August,
    3 months: 2. Score 2 → E."""
    history = [
        month(2026, 5, "100000.00", paid="100000.00", paid_late="100000.00", overdue_days=60),
        month(2026, 6, "900000.00", diluted="300000.00", overdue_days=45),
        month(2026, 7, "100000.00", overdue_days=90),
    ]
    s = suggested(history, first_slip_on=None)
    assert (s.grade, s.discount_rate, s.credit_line, s.factors["score"]) == (
        "E",
        RATE_FLOOR,
        ZERO,
        "2",
    )
    assert "grade E gets no line" in s.explanation[-1]


def test_a_pool_without_a_complete_month_gets_no_line() -> None:
    s = suggested([month(2026, 8, "500000.00")], first_slip_on=None, as_of=date(2026, 8, 20))
    assert s.credit_line == ZERO
    assert s.factors["months_in_window"] == "0"
    assert "no complete month of trade yet" in s.explanation[0]


def test_a_huge_pool_is_capped_at_the_largest_facility_line() -> None:
    history = [month(2026, m, "100000000000000.00") for m in (4, 5, 6, 7)]
    s = suggested(history)
    assert s.credit_line == LINE_CAP == Decimal("999999990000")
    assert "capped at 999999990000.00" in s.explanation[-1]


def test_no_trade_history_gives_no_suggestion() -> None:
    assert suggest([], date(2026, 4, 3), AS_OF) is None
    assert suggest([month(2026, 9, "100.00")], None, AS_OF) is None  # only after as_of


def test_two_records_for_one_month_are_refused() -> None:
    with pytest.raises(ValueError, match="same month"):
        suggest([month(2026, 4, "1.00"), month(2026, 4, "2.00")], None, AS_OF)


@pytest.mark.parametrize(
    ("first_day", "slips", "paid", "paid_late", "diluted", "overdue_days"),
    [
        (date(2026, 4, 2), "1.00", "0", "0", "0", 0),  # not the first of the month
        (date(2026, 4, 1), "-1.00", "0", "0", "0", 0),  # negative
        (date(2026, 4, 1), "1.00", "0.001", "0", "0", 0),  # below the fen
        (date(2026, 4, 1), "1.00", "0", "0", "NaN", 0),  # not a number
        (date(2026, 4, 1), "1.00", "1.00", "2.00", "0", 0),  # more late than paid
        (date(2026, 4, 1), "1.00", "0", "0", "0", -1),  # negative days
    ],
)
def test_an_impossible_month_is_refused(
    first_day: date, slips: str, paid: str, paid_late: str, diluted: str, overdue_days: int
) -> None:
    with pytest.raises(ValueError):
        MonthTrade(
            first_day,
            Decimal(slips),
            Decimal(paid),
            Decimal(paid_late),
            Decimal(diluted),
            overdue_days,
        )


# ---------------------------------------------------------------- properties

FIRST_MONTH = date(2024, 1, 1)
cents = st.integers(min_value=0, max_value=10**13).map(lambda c: Decimal(c).scaleb(-2))


def _month_at(index: int) -> date:
    return date(FIRST_MONTH.year + index // 12, index % 12 + 1, 1)


def _share(amount: Decimal, share: Decimal) -> Decimal:
    return (amount * share).quantize(Decimal("0.01"), rounding=ROUND_DOWN)


@st.composite
def trades(draw: st.DrawFn, index: int, volume: Decimal, clean: bool, steady: bool) -> MonthTrade:
    """A month around `volume`, steady or not, clean or not; sometimes anything."""
    swings = ["1", "0.95", "1.05"] if steady else ["1", "0.95", "1.05", "0.5", "0"]
    swing = draw(st.sampled_from(swings).map(Decimal))
    anything = not steady and draw(st.integers(0, 9)) == 0
    slips = draw(cents) if anything else _share(volume, swing)
    paid = draw(cents) if anything else slips
    shares = st.sampled_from(["0"] if clean else ["0", "0.01", "0.03", "0.08", "0.2", "1"])
    return MonthTrade(
        month=_month_at(index),
        slips=slips,
        paid=paid,
        paid_late=_share(paid, draw(shares.map(Decimal))),
        diluted=_share(slips, draw(shares.map(Decimal))),
        overdue_days=0 if clean else draw(st.sampled_from([0, 0, 0, 3, 15, 45, 120])),
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[MonthTrade], date | None, date]:
    volume = draw(
        cents.filter(lambda v: v >= 10_000) | st.sampled_from(["1040000.00", "1e11"]).map(Decimal)
    )
    clean, steady = draw(st.booleans()), draw(st.booleans())
    if steady:  # every month recorded
        start = draw(st.integers(0, 20))
        indexes = list(range(start, start + draw(st.integers(1, 10))))
    else:
        indexes = sorted(draw(st.sets(st.integers(0, 30), min_size=1, max_size=14)))
    history = [draw(trades(i, volume, clean, steady)) for i in indexes]
    as_of_month = _month_at(max(0, indexes[-1] + draw(st.integers(-1, 3))))
    as_of = as_of_month.replace(day=draw(st.integers(1, 28)))
    first = draw(st.none() | st.dates(min_value=date(2020, 1, 1), max_value=date(2027, 6, 30)))
    return history, first, as_of


def _changed(history: list[MonthTrade], data: st.DataObject, how: str) -> list[MonthTrade]:
    i = data.draw(st.integers(min_value=0, max_value=len(history) - 1))
    t = history[i]
    extra = data.draw(cents)
    if how == "late":
        if data.draw(st.booleans()):  # more of what was paid was late
            t = dataclasses.replace(t, paid_late=t.paid_late + min(extra, t.paid - t.paid_late))
        else:  # a late payment on top
            t = dataclasses.replace(t, paid=t.paid + extra, paid_late=t.paid_late + extra)
    elif how == "dilution":
        t = dataclasses.replace(t, diluted=t.diluted + extra)
    else:
        days = data.draw(st.integers(min_value=1, max_value=200))
        t = dataclasses.replace(t, overdue_days=t.overdue_days + days)
    return [*history[:i], t, *history[i + 1 :]]


@given(cases())
@settings(max_examples=300)
def test_terms_stay_within_bounds(case: tuple[list[MonthTrade], date | None, date]) -> None:
    history, first, as_of = case
    s = suggest(history, first, as_of)
    if s is None:
        assert all(t.month > as_of for t in history)
        return
    assert RATE_FLOOR <= s.discount_rate <= RATE_CEILING
    assert s.discount_rate.as_tuple().exponent == -2
    assert s.credit_line >= 0 and s.credit_line % 10_000 == 0 and s.credit_line <= LINE_CAP
    assert s.grade in {"A", "B", "C", "D", "E"}
    if s.grade == "E":
        assert s.credit_line == 0


@pytest.mark.parametrize("how", ["late", "dilution", "overdue"])
@given(case=cases(), data=st.data())
@settings(max_examples=200)
def test_worse_behaviour_never_raises_the_line_or_the_rate(
    how: str, case: tuple[list[MonthTrade], date | None, date], data: st.DataObject
) -> None:
    history, first, as_of = case
    before = suggest(history, first, as_of)
    after = suggest(_changed(history, data, how), first, as_of)
    if before is None or after is None:
        assert before is None and after is None
        return
    assert after.credit_line <= before.credit_line
    assert after.discount_rate <= before.discount_rate


@given(case=cases(), earlier_by=st.integers(min_value=1, max_value=3000))
@settings(max_examples=200)
def test_a_longer_relationship_never_lowers_the_line_or_the_rate(
    case: tuple[list[MonthTrade], date | None, date], earlier_by: int
) -> None:
    history, first, as_of = case
    before = suggest(history, first, as_of)
    longer = (first or as_of) - timedelta(days=earlier_by)
    after = suggest(history, longer, as_of)
    if before is None or after is None:
        assert before is None and after is None
        return
    assert after.credit_line >= before.credit_line
    assert after.discount_rate >= before.discount_rate


FLOAT_LIKE = re.compile(r"\d[eE][+-]?\d|\d\.\d{5,}|\bnan\b|\binf", re.IGNORECASE)
FACTOR_TEXT = re.compile(r"-?\d+(\.\d{1,4})?|none|yes|no|\d{4}-\d{2} to \d{4}-\d{2}")


@given(cases())
@settings(max_examples=200)
def test_factors_and_explanation_are_plain_text_without_floats(
    case: tuple[list[MonthTrade], date | None, date],
) -> None:
    s = suggest(*case)
    if s is None:
        return
    assert s.factors and s.explanation
    for name, value in s.factors.items():
        assert FACTOR_TEXT.fullmatch(value), (name, value)
    for sentence in s.explanation:
        assert sentence and not FLOAT_LIKE.search(sentence), sentence
