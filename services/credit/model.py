"""The credit model, pure: a suggested credit line, discount rate and grade for one pool.

Source: the split-payment article asks for credit "scored dynamically (repayment capacity,
trade frequency), adjusting limit and rate automatically"; the seed paper sets the terms as a
credit line and a discount rate (usually 0.6–0.8) assessed on "a period of historical trade
data" the core enterprise pushes.

The rule, in the order it is applied:

1. Window: the last `WINDOW_MONTHS` complete calendar months before the month of `as_of`,
   starting no earlier than the first recorded month (months before it are not zero trade:
   the pool did not exist yet). A month inside the window without a record had no trade.
2. Factors: the average monthly slips V (to the fen, rounded down) and their coefficient of
   variation; punctuality = 1 − paid late / paid; dilution = diluted / slips; overdue months and
   the longest overdue over `OVERDUE_LOOKBACK_MONTHS` complete months plus the month in
   progress; relationship age in calendar months since the first slip. Ratios are rounded
   against the supplier to 4 places, then scored on the rounded value a credit officer reads.
3. Each factor scores points (100 in all); the sum gives a grade A..E.
4. The grade gives the discount rate (A 0.80 … E 0.50) and a multiplier; the line is
   V × `POOL_MONTHS` × rate × multiplier, capped at `LINE_CAP`, rounded down to 10,000 CNY.
   Grade E, or an overdue loan in the month in progress, gives no line.

Monotone by construction: late payment, dilution and overdue only ever take points away, a
longer relationship only adds them, and both the rate and the multiplier fall with the grade;
none of them changes V. Volume sizes the line; it never earns points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext

from shared.money import FEN, MAX_AMOUNT, ZERO

# Six months is long enough to see a seasonal dip and a payment term of two months or more
# (the seed's slips are paid in the third month), short enough to follow a supplier's trend.
WINDOW_MONTHS = 6
# A default is remembered longer than a volume: a year of overdue history, plus this month.
OVERDUE_LOOKBACK_MONTHS = 12
# The seed's pool holds "about two months of deliveries" (102, 209, 210, 207 万 at month ends
# on deliveries of ~104 万 a month): a line of two months' slips × rate covers a typical pool.
POOL_MONTHS = Decimal(2)
# The seed paper: the discount rate is "usually 0.6–0.8"; a weak grade goes down to 0.50.
RATE_FLOOR = Decimal("0.50")
RATE_CEILING = Decimal("0.80")
# Lines are granted in whole 万, rounded down: never promise a yuan the model did not earn.
LINE_STEP = Decimal(10_000)
# The largest line a FacilitySet can carry (a PositiveAmount), in whole 万.
LINE_CAP = (MAX_AMOUNT / LINE_STEP).to_integral_value(rounding=ROUND_FLOOR) * LINE_STEP
# Fewer months than this say nothing about stability (one month has no variation at all).
MIN_MONTHS_FOR_STABILITY = 3
# Ratios are shown and scored to 4 places.
RATIO_PLACES = Decimal("0.0001")
# Enough digits for any sum of 15-digit amounts and their squares' deviations.
_PRECISION = 50

# Points per factor, best first: (threshold, points). 100 points in all.
# Stability: a coefficient of variation at most this → points (steady deliveries keep the
# pool, and so the collateral, steady between assessments).
STABILITY_POINTS = ((Decimal("0.10"), 20), (Decimal("0.25"), 15), (Decimal("0.50"), 8))
STABILITY_MAX = 20
# Punctuality: a share paid on time at least this → points. Late payment by the buyer means
# the pool turns slower than its terms, and the loans with it (repayment capacity).
PUNCTUALITY_POINTS = (
    (Decimal("0.98"), 25),
    (Decimal("0.95"), 20),
    (Decimal("0.90"), 12),
    (Decimal("0.80"), 5),
)
PUNCTUALITY_MAX = 25
# No payment yet (a pool younger than its payment term): no evidence either way, so the
# points of a merely acceptable payer, never more than a proven one.
PUNCTUALITY_UNKNOWN = 12
# Dilution: credit notes and cancellations at most this share of slips → points. Diluted
# receivables are collateral that vanishes without paying anything back.
DILUTION_POINTS = ((Decimal("0.02"), 20), (Decimal("0.05"), 14), (Decimal("0.10"), 6))
DILUTION_MAX = 20
# Overdue: (at most this many months with an overdue loan, at most this many days) → points.
# Each set holds the one before it, so more months or more days never earn more.
OVERDUE_POINTS = ((0, 0, 25), (1, 7, 15), (3, 30, 5))
OVERDUE_MAX = 25
# Relationship: at least this many months since the first slip → points. Trade that has
# lasted is less likely to be fictitious (the article: "verify the trade background").
AGE_POINTS = ((24, 10), (12, 7), (6, 4), (3, 2))
AGE_MAX = 10

# Grade: at least this many points → grade, discount rate, line multiplier. Below the last,
# grade E. The multiplier shrinks the line faster than the rate shrinks the borrowing base,
# so a weaker grade is capped by its line before its pool runs out.
GRADES = (
    ("A", 85, Decimal("0.80"), Decimal("1.00")),
    ("B", 70, Decimal("0.75"), Decimal("0.80")),
    ("C", 55, Decimal("0.70"), Decimal("0.60")),
    ("D", 40, Decimal("0.60"), Decimal("0.40")),
)
GRADE_E = ("E", 0, RATE_FLOOR, Decimal("0.00"))


@dataclass(frozen=True, slots=True)
class MonthTrade:
    """One calendar month of a pool's trade, as credit records it."""

    month: date  # first day of the month
    slips: Decimal  # face value of slips issued that month
    paid: Decimal  # money paid by the buyer that month
    paid_late: Decimal  # of which on slips paid after their due date
    diluted: Decimal  # credit notes, cancellations, downward amendments that month
    overdue_days: int  # max days any loan of the pool was overdue that month (0: none)

    def __post_init__(self) -> None:
        if self.month.day != 1:
            raise ValueError(f"month {self.month} must be the first day of a month")
        for name in ("slips", "paid", "paid_late", "diluted"):
            value: Decimal = getattr(self, name)
            if not value.is_finite() or value < 0 or value != value.quantize(FEN):
                raise ValueError(f"{name} {value} must be a non-negative amount to the fen")
        if self.paid_late > self.paid:
            raise ValueError(f"paid_late {self.paid_late} exceeds paid {self.paid}")
        if self.overdue_days < 0:
            raise ValueError(f"overdue_days {self.overdue_days} must not be negative")


@dataclass(frozen=True, slots=True)
class Suggestion:
    """The model's terms for a pool, with what produced them (a CreditSuggested's body)."""

    credit_line: Decimal  # to the 10,000 CNY (round down)
    discount_rate: Decimal  # 2 decimals, within [RATE_FLOOR, RATE_CEILING]
    grade: str  # "A".."E"
    factors: dict[str, str]  # each input factor's value as text
    explanation: list[str]  # what a credit officer reads: one sentence per factor + the result


def suggest(
    history: Sequence[MonthTrade], first_slip_on: date | None, as_of: date
) -> Suggestion | None:
    """The suggested terms for a pool as of `as_of`, or None without any trade up to then.

    `history` holds at most one record per month (ValueError otherwise); records after the
    month of `as_of` are ignored.
    """
    months = [t.month for t in history]
    if len(set(months)) != len(months):
        raise ValueError("history holds two records for the same month")
    this_month = as_of.replace(day=1)
    known = {t.month: t for t in history if t.month <= this_month}
    if not known:
        return None
    with localcontext(prec=_PRECISION, rounding=ROUND_HALF_EVEN):
        return _suggest(known, first_slip_on, this_month)


def _suggest(
    known: dict[date, MonthTrade], first_slip_on: date | None, this_month: date
) -> Suggestion:
    first_recorded = min(known)
    window = [
        m
        for m in (_add_months(this_month, -k) for k in range(WINDOW_MONTHS, 0, -1))
        if m >= first_recorded
    ]
    empty = MonthTrade(this_month, ZERO, ZERO, ZERO, ZERO, 0)
    trades = [known.get(m, empty) for m in window]
    volumes = [t.slips for t in trades]
    slips = sum(volumes, ZERO)
    paid = sum((t.paid for t in trades), ZERO)
    paid_late = sum((t.paid_late for t in trades), ZERO)
    diluted = sum((t.diluted for t in trades), ZERO)
    n = len(window)
    average = (slips / n).quantize(FEN, rounding=ROUND_DOWN) if n else ZERO

    cv = _coefficient_of_variation(volumes)
    if n < MIN_MONTHS_FOR_STABILITY or cv is None:
        stability_points = 0
    else:
        stability_points = _at_most(cv, STABILITY_POINTS)

    punctuality = None if paid == 0 else _ratio(1 - paid_late / paid, ROUND_FLOOR)
    punctuality_points = (
        PUNCTUALITY_UNKNOWN if punctuality is None else _at_least(punctuality, PUNCTUALITY_POINTS)
    )

    dilution = _dilution(diluted, slips)
    dilution_points = 0 if dilution is None else _at_most(dilution, DILUTION_POINTS)

    lookback = [_add_months(this_month, -k) for k in range(OVERDUE_LOOKBACK_MONTHS, -1, -1)]
    overdue = [known[m].overdue_days for m in lookback if m in known]
    overdue_months = sum(1 for d in overdue if d > 0)
    longest_overdue = max(overdue, default=0)
    overdue_points = _overdue_points(overdue_months, longest_overdue)
    overdue_now = this_month in known and known[this_month].overdue_days > 0

    start = first_recorded if first_slip_on is None else min(first_slip_on, first_recorded)
    age = max(0, _month_index(this_month) - _month_index(start))
    age_points = next((p for months, p in AGE_POINTS if age >= months), 0)

    score = stability_points + punctuality_points + dilution_points + overdue_points + age_points
    grade, _, rate, multiplier = next((g for g in GRADES if score >= g[1]), GRADE_E)
    raw_line = average * POOL_MONTHS * rate * multiplier
    line = ZERO if overdue_now else _round_line(min(raw_line, LINE_CAP))

    span = f"{window[0]:%Y-%m} to {window[-1]:%Y-%m}" if window else "none"
    factors = {
        "window": span,
        "months_in_window": str(n),
        "slips_in_window": _money(slips),
        "average_monthly_slips": _money(average),
        "slips_cv": "none" if cv is None else format(cv, "f"),
        "paid_in_window": _money(paid),
        "paid_late_in_window": _money(paid_late),
        "punctuality": "none" if punctuality is None else format(punctuality, "f"),
        "diluted_in_window": _money(diluted),
        "dilution_rate": "none" if dilution is None else format(dilution, "f"),
        "overdue_months": str(overdue_months),
        "max_overdue_days": str(longest_overdue),
        "overdue_now": "yes" if overdue_now else "no",
        "relationship_months": str(age),
        "score": str(score),
    }
    explanation = [
        _window_sentence(window, volumes, slips, average),
        _stability_sentence(volumes, cv, stability_points),
        _punctuality_sentence(paid, paid_late, punctuality, punctuality_points),
        _dilution_sentence(diluted, slips, dilution, dilution_points),
        _overdue_sentence(lookback, overdue_months, longest_overdue, overdue_now, overdue_points),
        f"Relationship: {age} months from the first slip ({start:%Y-%m}) to {this_month:%Y-%m}"
        f" ({_thresholds_at_least(AGE_POINTS)}): {age_points} of {AGE_MAX} points.",
        f"Grade {grade}: {score} of 100 points ("
        + ", ".join(f"{g} from {p}" for g, p, _, _ in GRADES)
        + f", else E), so the discount rate is {rate} and the line multiplier {multiplier}.",
        _line_sentence(average, rate, multiplier, raw_line, line, grade, overdue_now),
    ]
    return Suggestion(line, rate, grade, factors, explanation)


# ---------------------------------------------------------------- the arithmetic


def _add_months(month: date, k: int) -> date:
    index = _month_index(month) + k
    return date(index // 12, index % 12 + 1, 1)


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def _ratio(value: Decimal, rounding: str) -> Decimal:
    return value.quantize(RATIO_PLACES, rounding=rounding)


def _deviation(volumes: Sequence[Decimal]) -> Decimal:
    """The population standard deviation of the monthly slips."""
    mean = sum(volumes, ZERO) / len(volumes)
    return (sum(((v - mean) ** 2 for v in volumes), ZERO) / len(volumes)).sqrt()


def _coefficient_of_variation(volumes: Sequence[Decimal]) -> Decimal | None:
    """Population standard deviation / mean, rounded up to 4 places; None with no volume."""
    total = sum(volumes, ZERO)
    if not volumes or total == 0:
        return None
    return _ratio(_deviation(volumes) * len(volumes) / total, ROUND_CEILING)


def _dilution(diluted: Decimal, slips: Decimal) -> Decimal | None:
    """diluted / slips rounded up to 4 places; None (the worst) when dilution has no slips."""
    if slips == 0:
        return None if diluted > 0 else _ratio(ZERO, ROUND_CEILING)
    return _ratio(diluted / slips, ROUND_CEILING)


def _at_most(value: Decimal, table: Sequence[tuple[Decimal, int]]) -> int:
    return next((points for limit, points in table if value <= limit), 0)


def _at_least(value: Decimal, table: Sequence[tuple[Decimal, int]]) -> int:
    return next((points for limit, points in table if value >= limit), 0)


def _overdue_points(months: int, longest: int) -> int:
    return next((p for most, days, p in OVERDUE_POINTS if months <= most and longest <= days), 0)


def _round_line(value: Decimal) -> Decimal:
    steps = (value / LINE_STEP).to_integral_value(rounding=ROUND_FLOOR)
    return (steps * LINE_STEP).quantize(FEN)


def _money(value: Decimal) -> str:
    return format(value.quantize(FEN), "f")


# ---------------------------------------------------------------- what the officer reads


def _thresholds_at_most(table: Sequence[tuple[Decimal, int]]) -> str:
    return "; ".join(f"at most {limit}: {points}" for limit, points in table) + "; else 0"


def _thresholds_at_least(table: Sequence[tuple[object, int]]) -> str:
    return "; ".join(f"at least {limit}: {points}" for limit, points in table) + "; else 0"


def _window_sentence(
    window: Sequence[date], volumes: Sequence[Decimal], slips: Decimal, average: Decimal
) -> str:
    if not window:
        return (
            "Volume: no complete month of trade yet (the window is the last "
            f"{WINDOW_MONTHS} complete months), so the average monthly slips V = 0.00 CNY."
        )
    months = ", ".join(f"{m:%Y-%m} {_money(v)}" for m, v in zip(window, volumes, strict=True))
    return (
        f"Volume: slips in the {len(window)} complete months of the window ({months}; at most "
        f"{WINDOW_MONTHS}, from the first recorded month, a month without a record counting as "
        f"none) total {_money(slips)} CNY, so the average monthly slips "
        f"V = {_money(slips)} / {len(window)} = {_money(average)} CNY (rounded down to the fen)."
    )


def _stability_sentence(volumes: Sequence[Decimal], cv: Decimal | None, points: int) -> str:
    if cv is None:
        return f"Stability: no slips in the window to measure: 0 of {STABILITY_MAX} points."
    n = len(volumes)
    mean = sum(volumes, ZERO) / n
    measured = (
        f"Stability: the monthly slips' population standard deviation "
        f"{_money(_deviation(volumes))} CNY over their mean {_money(mean)} CNY gives a "
        f"coefficient of variation of {cv}"
    )
    if n < MIN_MONTHS_FOR_STABILITY:
        return (
            f"{measured} (rounded up), but {n} months are fewer than the "
            f"{MIN_MONTHS_FOR_STABILITY} needed to judge stability: 0 of {STABILITY_MAX} points."
        )
    return (
        f"{measured} (rounded up; {_thresholds_at_most(STABILITY_POINTS)}): "
        f"{points} of {STABILITY_MAX} points."
    )


def _punctuality_sentence(
    paid: Decimal, paid_late: Decimal, punctuality: Decimal | None, points: int
) -> str:
    if punctuality is None:
        return (
            "Punctuality: the buyer paid nothing in the window yet, so there is no evidence "
            f"either way: {points} of {PUNCTUALITY_MAX} points."
        )
    return (
        f"Punctuality: the buyer paid {_money(paid)} CNY in the window, {_money(paid_late)} of "
        f"it after the due date, so 1 − {_money(paid_late)} / {_money(paid)} = {punctuality} "
        f"was paid on time (rounded down; {_thresholds_at_least(PUNCTUALITY_POINTS)}): "
        f"{points} of {PUNCTUALITY_MAX} points."
    )


def _dilution_sentence(
    diluted: Decimal, slips: Decimal, dilution: Decimal | None, points: int
) -> str:
    if dilution is None:
        return (
            f"Dilution: {_money(diluted)} CNY of credit notes, cancellations and downward "
            f"amendments against no slips in the window: 0 of {DILUTION_MAX} points."
        )
    return (
        f"Dilution: {_money(diluted)} CNY of credit notes, cancellations and downward "
        f"amendments against {_money(slips)} CNY of slips, a rate of {dilution} (rounded up; "
        f"{_thresholds_at_most(DILUTION_POINTS)}): {points} of {DILUTION_MAX} points."
    )


def _overdue_sentence(
    lookback: Sequence[date], months: int, longest: int, now: bool, points: int
) -> str:
    rule = "; ".join(
        "none" + f": {p}" if m == 0 else f"at most {m} month(s) and {d} days: {p}"
        for m, d, p in OVERDUE_POINTS
    )
    span = (
        f"in the {len(lookback) - 1} complete months and the month in progress, "
        f"{lookback[0]:%Y-%m} to {lookback[-1]:%Y-%m},"
    )
    found = (
        "no loan was overdue"
        if months == 0
        else f"a loan was overdue in {months} months, at most {longest} days"
    )
    current = " One is overdue this month, which suspends the line." if now else ""
    return f"Overdue: {span} {found} ({rule}; else 0): {points} of {OVERDUE_MAX} points.{current}"


def _line_sentence(
    average: Decimal,
    rate: Decimal,
    multiplier: Decimal,
    raw_line: Decimal,
    line: Decimal,
    grade: str,
    overdue_now: bool,
) -> str:
    formula = (
        f"V × {POOL_MONTHS} pool months × rate × multiplier = {_money(average)} × {POOL_MONTHS}"
        f" × {rate} × {multiplier} = {format(raw_line.quantize(FEN, rounding=ROUND_DOWN), 'f')}"
    )
    if overdue_now:
        return f"Credit line: {formula}, but a loan is overdue this month, so the line is 0.00 CNY."
    if grade == GRADE_E[0]:
        return f"Credit line: {formula}: grade E gets no line, 0.00 CNY."
    capped = f", capped at {_money(LINE_CAP)}" if raw_line > LINE_CAP else ""
    return f"Credit line: {formula}{capped}, rounded down to 10,000: {_money(line)} CNY."
