"""Split rules as data (services/settlement_splitter/rules.py): validation, the worked
examples, and the property that any rule set splits any amount to exactly that amount."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.settlement_splitter.rules import Facts, refusal, split
from shared.contracts.split_rules import RuleSet

D = Decimal


def rules(*receivers: dict[str, Any]) -> RuleSet:
    return RuleSet.model_validate({"receivers": list(receivers)})


FEE = {"account": "platform:fee", "share": {"kind": "of_payment", "rate": {"rate": "0.003"}}}
PREMIUM = {
    "account": "guarantor:cgc",
    "share": {"kind": "of_remainder", "rate": {"rate": "0.1"}},
    "cap": "500.00",
}
LOGISTICS = {"account": "logistics:sf", "share": {"kind": "fixed", "amount": "120.00"}}
SUPPLIER = {"account": "supplier", "share": {"kind": "rest"}}


def test_a_three_receiver_rule_with_a_cap_and_a_rest_splits_to_the_fen() -> None:
    rule = rules(FEE, PREMIUM, LOGISTICS, SUPPLIER)
    assert refusal(rule) is None
    # 100,000.00 paid, 80,000.00 to the funders: 20,000.00 to split.
    parts = split(rule, D("100000.00"), D("20000.00"))
    assert parts == {
        "platform:fee": D("300.00"),  # 0.3% of the payment
        "guarantor:cgc": D("500.00"),  # 10% of 19,700.00 = 1,970.00, capped at 500.00
        "logistics:sf": D("120.00"),
        "supplier": D("19080.00"),
    }
    assert sum(parts.values()) == D("20000.00")


def test_a_receiver_never_takes_more_than_is_left() -> None:
    parts = split(rules(LOGISTICS, FEE, SUPPLIER), D("100.00"), D("50.00"))
    assert parts == {"logistics:sf": D("50.00"), "platform:fee": D("0.00"), "supplier": D("0.00")}


def test_rounding_is_largest_remainder_to_the_fen() -> None:
    third = {"kind": "of_remainder", "rate": {"rate": "0.33333333"}}
    rule = rules(
        {"account": "guarantor:a", "share": third},
        {"account": "insurer:b", "share": third},
        SUPPLIER,
    )
    parts = split(rule, D("0.10"), D("0.10"))
    assert sum(parts.values()) == D("0.10")
    # Exactly 0.0333…, 0.0222… and 0.0444…: rounded down 0.03 + 0.02 + 0.04, and the fen
    # left over goes to the largest remainder (the supplier's 0.0044…).
    assert parts == {"guarantor:a": D("0.03"), "insurer:b": D("0.02"), "supplier": D("0.05")}


def test_the_fee_falls_with_the_volume_tier_and_follows_the_grade() -> None:
    tiered = {
        "account": "platform:fee",
        "share": {
            "kind": "of_payment",
            "rate": {
                "by_volume": [
                    {"above": "0.00", "rate": "0.003"},
                    {"above": "50000000.00", "rate": "0.001"},
                ]
            },
        },
    }
    rule = rules(tiered, SUPPLIER)
    assert refusal(rule) is None
    low = split(rule, D("100000.00"), D("20000.00"), Facts(volume_this_month=D("49999999.99")))
    high = split(rule, D("100000.00"), D("20000.00"), Facts(volume_this_month=D("50000000.00")))
    assert (low["platform:fee"], high["platform:fee"]) == (D("300.00"), D("100.00"))
    graded = {
        "account": "insurer:pic",
        "share": {
            "kind": "of_payment",
            "rate": {
                "by_grade": {"A": "0.001", "B": "0.002", "C": "0.003", "D": "0.004", "E": "0.005"}
            },
        },
    }
    assert split(rules(graded, SUPPLIER), D("1000.00"), D("1000.00"), Facts(grade="B")) == {
        "insurer:pic": D("2.00"),
        "supplier": D("998.00"),
    }


@pytest.mark.parametrize(
    ("receivers", "why"),
    [
        ([FEE], "exactly one receiver takes the rest"),
        ([SUPPLIER, FEE], "exactly one receiver takes the rest"),
        ([{**FEE, "before_funders": True}, SUPPLIER], "before the funders"),
        ([{**FEE, "account": "funder:bank-a"}, SUPPLIER], "unknown account"),
        ([FEE, FEE, SUPPLIER], "appears twice"),
        (
            [
                {
                    "account": "platform:fee",
                    "share": {"kind": "of_payment", "rate": {"rate": "0.7"}},
                },
                {"account": "insurer:x", "share": {"kind": "of_payment", "rate": {"rate": "0.4"}}},
                SUPPLIER,
            ],
            "above 100%",
        ),
        ([{**PREMIUM, "floor": "600.00"}, SUPPLIER], "floor 600.00 is above cap"),
    ],
)
def test_rules_that_cannot_hold_are_refused_with_a_reason(
    receivers: list[dict[str, Any]], why: str
) -> None:
    reason = refusal(rules(*receivers))
    assert reason is not None and why in reason


fen = st.integers(min_value=0, max_value=10**11).map(
    lambda n: (Decimal(n) / 100).quantize(Decimal("0.01"))
)
rate = st.integers(min_value=0, max_value=10**8).map(lambda n: f"{Decimal(n) / 10**8:.8f}")
share = st.one_of(
    fen.map(lambda a: {"kind": "fixed", "amount": f"{a:.2f}"}),
    rate.map(lambda r: {"kind": "of_payment", "rate": {"rate": r}}),
    rate.map(lambda r: {"kind": "of_remainder", "rate": {"rate": r}}),
)


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleSet:
    shares = draw(st.lists(share, min_size=0, max_size=5))
    receivers: list[dict[str, Any]] = []
    for n, s in enumerate(shares):
        receiver: dict[str, Any] = {"account": f"guarantor:g{n}", "share": s}
        if draw(st.booleans()):
            receiver["cap"] = f"{draw(fen):.2f}"
        receivers.append(receiver)
    return RuleSet.model_validate({"receivers": [*receivers, SUPPLIER]})


@settings(max_examples=500, deadline=None)
@given(rule=rule_sets(), payment=fen, funders=fen)
def test_any_rule_set_splits_any_amount_to_exactly_that_amount(
    rule: RuleSet, payment: Decimal, funders: Decimal
) -> None:
    splittable = max(payment - funders, Decimal("0.00"))
    parts = split(rule, payment, splittable)
    assert sum(parts.values()) == splittable
    assert all(v >= 0 and v == v.quantize(Decimal("0.01")) for v in parts.values())
