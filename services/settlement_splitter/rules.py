"""Split rules as data (groundwork for issue 10; not wired into the splitter yet).

A rule set lists receivers in priority order. The funders' repayment, as credit instructs it,
always comes first and no rule can reduce it: the rule splits what is left of the payment
(the *splittable* amount: payment − funders − money kept on hold). Each receiver takes one
share, optionally bounded by a floor and a cap:

    fixed            a fixed amount                      {"kind": "fixed", "amount": "10.00"}
    of_payment       a rate of the whole payment         {"kind": "of_payment", "rate": "0.003"}
    of_remainder     a rate of what is left at its turn  {"kind": "of_remainder", "rate": "0.1"}
    rest             whatever is left (exactly one, last) {"kind": "rest"}

A rate may depend on facts resolved at split time: the supplier's grade from credit's model
(`by_grade`: {"A": "0.001", "B": "0.002", …}) or its volume this month (`by_volume`: tiers
[{"above": "0.00", "rate": "0.003"}, {"above": "50000000.00", "rate": "0.001"}]); the resolved
facts go with the split. Like Formance's Numscript (`portions`, `remaining`, `max … to`) and
WeChat Pay's 分账 (receivers, unfreeze of the remainder), in a form an operator can validate
before it takes effect.

Amounts are worked out exactly, each receiver never taking more than is left, and rounded to
the fen by largest remainder, so the parts always sum to the splittable amount.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from shared.contracts.split_rules import GRADES, Rate, RuleSet
from shared.money import FEN, ZERO

# Ledger accounts a rule may pay: the platform's fee, a guarantor's or insurer's premium, a
# logistics provider, tax withheld, or the supplier's free balance.
ACCOUNT = re.compile(
    r"^(platform:fee|guarantor:[\w.-]+|insurer:[\w.-]+|logistics:[\w.-]+|tax:withholding"
    r"|supplier)$"
)


@dataclass(frozen=True, slots=True)
class Facts:
    """What a dynamic rate is resolved from, at split time (goes into the hash chain)."""

    grade: str | None = None
    volume_this_month: Decimal = ZERO


def refusal(rules: RuleSet) -> str | None:
    """Why a rule set may not take effect, or None."""
    rests = [i for i, r in enumerate(rules.receivers) if r.share.kind == "rest"]
    if len(rests) != 1 or rests[0] != len(rules.receivers) - 1:
        return "exactly one receiver takes the rest, and it comes last"
    seen: set[str] = set()
    payment_rates = ZERO
    for r in rules.receivers:
        if r.before_funders:
            return f"{r.account} would be paid before the funders: funders always come first"
        if not ACCOUNT.fullmatch(r.account):
            return f"unknown account {r.account!r}"
        if r.account in seen:
            return f"{r.account} appears twice"
        seen.add(r.account)
        if r.floor is not None and r.cap is not None and r.floor > r.cap:
            return f"{r.account}: floor {r.floor} is above cap {r.cap}"
        share = r.share
        if share.kind == "fixed" and (share.amount is None or share.rate is not None):
            return f"{r.account}: a fixed share has an amount and no rate"
        if share.kind in ("of_payment", "of_remainder"):
            if share.rate is None or share.amount is not None:
                return f"{r.account}: a {share.kind} share has a rate and no amount"
            given = (share.rate.rate, share.rate.by_grade, share.rate.by_volume)
            if sum(x is not None for x in given) != 1:
                return f"{r.account}: give one of rate, by_grade, by_volume"
            if share.rate.by_grade is not None and set(share.rate.by_grade) != set(GRADES):
                return f"{r.account}: by_grade needs a rate for each grade {', '.join(GRADES)}"
            if share.rate.by_volume is not None:
                starts = [t.above for t in share.rate.by_volume]
                if not starts or starts[0] != 0 or starts != sorted(set(starts)):
                    return f"{r.account}: volume tiers start at 0.00 and rise"
            if share.kind == "of_payment":
                payment_rates += max(_rates(share.rate))
        if share.kind == "rest" and (share.amount is not None or share.rate is not None):
            return f"{r.account}: the rest takes no amount or rate"
    if payment_rates > 1:
        return f"shares of the payment can reach {payment_rates:%}, above 100%"
    return None


def _rates(rate: Rate) -> list[Decimal]:
    if rate.rate is not None:
        return [rate.rate]
    if rate.by_grade is not None:
        return list(rate.by_grade.values())
    return [t.rate for t in rate.by_volume or ()]


def resolve(rate: Rate, facts: Facts) -> Decimal:
    """The rate in force for these facts."""
    if rate.rate is not None:
        return rate.rate
    if rate.by_grade is not None:
        return rate.by_grade[facts.grade or "E"]
    tiers = rate.by_volume or []
    return [t.rate for t in tiers if facts.volume_this_month >= t.above][-1]


def split(
    rules: RuleSet, payment: Decimal, splittable: Decimal, facts: Facts = Facts()
) -> dict[str, Decimal]:
    """The splittable amount (payment − funders − held) over the receivers, in priority
    order, to the fen, summing exactly to `splittable`."""
    if splittable < 0 or splittable != splittable.quantize(FEN):
        raise ValueError(f"splittable amount {splittable} is not a whole number of fen >= 0")
    exact: dict[str, Decimal] = {}
    left = splittable
    for r in rules.receivers:
        share = r.share
        if share.kind == "fixed":
            wanted = share.amount or ZERO
        elif share.kind == "of_payment":
            assert share.rate is not None
            wanted = payment * resolve(share.rate, facts)
        elif share.kind == "of_remainder":
            assert share.rate is not None
            wanted = left * resolve(share.rate, facts)
        else:
            wanted = left
        if r.floor is not None:
            wanted = max(wanted, r.floor)
        if r.cap is not None:
            wanted = min(wanted, r.cap)
        taken = min(max(wanted, ZERO), left)
        exact[r.account] = taken
        left -= taken
    return largest_remainder(exact, splittable)


def largest_remainder(exact: Mapping[str, Decimal], total: Decimal) -> dict[str, Decimal]:
    """Each part rounded down to the fen, the fen left over given one each to the parts with
    the largest remainders (ties: in priority order), so they sum exactly to `total`."""
    floors = {k: v.quantize(FEN, rounding=ROUND_DOWN) for k, v in exact.items()}
    short = int((total - sum(floors.values(), ZERO)) / FEN)
    order: Sequence[str] = sorted(
        exact, key=lambda k: (-(exact[k] - floors[k]), list(exact).index(k))
    )
    for k in order[:short]:
        floors[k] += FEN
    return floors
