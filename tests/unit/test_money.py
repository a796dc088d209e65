"""Money: fen-exact splits and the Amount types that refuse floats at the edge (DESIGN "Money")."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.money import (
    FEN,
    MAX_AMOUNT,
    MAX_TOTAL,
    Amount,
    PositiveAmount,
    Rate,
    fen,
    fen_down,
    largest_remainder_split,
    reject_float,
)

AMOUNT = TypeAdapter(Amount)
POSITIVE = TypeAdapter(PositiveAmount)
RATE = TypeAdapter(Rate)

totals = st.integers(min_value=0, max_value=10**12).map(lambda cents: Decimal(cents) * FEN)
weight_lists = st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=8).filter(
    lambda ws: sum(ws) > 0
)


def exact_share(total: Decimal, weight: int, weight_sum: int) -> Fraction:
    return Fraction(total) * weight / weight_sum


# ---------------------------------------------------------------- largest_remainder_split


@settings(max_examples=200, deadline=None)
@given(total=totals, weights=weight_lists)
def test_split_parts_sum_exactly_to_the_total(total: Decimal, weights: list[int]) -> None:
    parts = largest_remainder_split(total, [(i, w) for i, w in enumerate(weights)])
    assert sum(parts.values(), Decimal(0)) == total
    assert list(parts) == list(range(len(weights)))  # every part, in the given order


@settings(max_examples=200, deadline=None)
@given(total=totals, weights=weight_lists)
def test_each_part_is_whole_fen_within_one_fen_of_its_exact_share(
    total: Decimal, weights: list[int]
) -> None:
    parts = largest_remainder_split(total, [(i, w) for i, w in enumerate(weights)])
    weight_sum = sum(weights)
    for i, weight in enumerate(weights):
        part = parts[i]
        assert part == part.quantize(FEN)
        assert part >= 0
        # Floor of the share, or one fen more: never a whole fen away from the exact share.
        assert abs(Fraction(part) - exact_share(total, weight, weight_sum)) < Fraction(1, 100)


@settings(max_examples=200, deadline=None)
@given(total=totals, weights=weight_lists)
def test_zero_weights_get_zero(total: Decimal, weights: list[int]) -> None:
    parts = largest_remainder_split(total, [(i, w) for i, w in enumerate(weights)])
    for i, weight in enumerate(weights):
        if weight == 0:
            assert parts[i] == 0


@settings(max_examples=200, deadline=None)
@given(total=totals, weights=weight_lists)
def test_mapping_and_pairs_give_the_same_split(total: Decimal, weights: list[int]) -> None:
    pairs = [(f"k{i}", w) for i, w in enumerate(weights)]
    assert largest_remainder_split(total, dict(pairs)) == largest_remainder_split(total, pairs)


def test_one_yuan_in_three_equal_parts_gives_the_leftover_fen_to_the_first() -> None:
    parts = largest_remainder_split(Decimal("1.00"), {"a": 1, "b": 1, "c": 1})
    assert parts == {"a": Decimal("0.34"), "b": Decimal("0.33"), "c": Decimal("0.33")}


def test_leftover_fen_goes_to_the_largest_remainder_not_the_largest_weight() -> None:
    # 0.10 by 2:1 → exact 0.0666… and 0.0333…: the first part has the larger remainder.
    parts = largest_remainder_split(Decimal("0.10"), {"big": 2, "small": 1})
    assert parts == {"big": Decimal("0.07"), "small": Decimal("0.03")}


def test_a_single_fen_split_between_equals_goes_to_the_earlier_part() -> None:
    assert largest_remainder_split(Decimal("0.01"), [("x", 5), ("y", 5)]) == {
        "x": Decimal("0.01"),
        "y": Decimal("0.00"),
    }


def test_negative_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        largest_remainder_split(Decimal("10.00"), {"a": 3, "b": -1})


def test_weights_summing_to_zero_are_refused() -> None:
    with pytest.raises(ValueError, match="zero"):
        largest_remainder_split(Decimal("10.00"), {"a": 0, "b": 0})


def test_no_weights_at_all_is_refused() -> None:
    with pytest.raises(ValueError):
        largest_remainder_split(Decimal("10.00"), {})


@pytest.mark.parametrize("total", ["0.001", "10.005", "1E-3"])
def test_total_with_a_third_decimal_is_refused(total: str) -> None:
    with pytest.raises(ValueError, match="fen"):
        largest_remainder_split(Decimal(total), {"a": 1})


def test_negative_total_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        largest_remainder_split(Decimal("-0.01"), {"a": 1})


# ---------------------------------------------------------------- fen rounding


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.005", "0.01"),
        ("0.015", "0.02"),
        ("0.0049", "0.00"),
        ("-0.005", "-0.01"),
        ("3625", "3625.00"),
    ],
)
def test_fen_rounds_half_up_like_a_bank(value: str, expected: str) -> None:
    assert fen(Decimal(value)) == Decimal(expected)
    assert str(fen(Decimal(value))) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.019", "0.01"),
        ("0.999", "0.99"),
        ("-0.019", "-0.01"),
        ("7.2", "7.20"),
    ],
)
def test_fen_down_never_promises_a_cent_that_is_not_there(value: str, expected: str) -> None:
    assert fen_down(Decimal(value)) == Decimal(expected)


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=0, max_value=10**9, places=6))
def test_fen_down_is_below_by_less_than_a_fen_and_fen_within_half_a_fen(value: Decimal) -> None:
    down = fen_down(value)
    assert down <= value < down + FEN
    assert abs(fen(value) - value) <= FEN / 2
    assert fen(value) == fen(value).quantize(FEN)


# ---------------------------------------------------------------- reject_float and the types


@pytest.mark.parametrize("value", [10, 10.0, 0.1, True, False, 0])
def test_reject_float_refuses_numbers(value: object) -> None:
    with pytest.raises(ValueError, match="decimal strings"):
        reject_float(value)


@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "",
        "1,000.00",
        "NaN",
        "Infinity",
        "-inf",
        "1E-3",
        "1e5",
        " 10.00",
        "10.00 ",
        "+1",
        ".5",
        "1.",
        "9" * 31,
    ],
)
def test_reject_float_refuses_text_that_is_not_a_finite_amount(value: str) -> None:
    with pytest.raises(ValueError):
        reject_float(value)


def test_reject_float_parses_decimal_text_exactly() -> None:
    assert reject_float("0.1") == Decimal("0.1")
    assert reject_float("0.10").as_tuple() == Decimal("0.10").as_tuple()  # text kept exact
    assert reject_float(Decimal("5.5")) == Decimal("5.5")


def test_amount_text_10_becomes_10_00_and_serialises_as_the_string_10_00() -> None:
    value = AMOUNT.validate_python("10")
    assert value == Decimal("10.00")
    assert value.as_tuple().exponent == -2
    assert AMOUNT.dump_json(value) == b'"10.00"'
    assert AMOUNT.dump_python(value) == Decimal("10.00")  # python mode keeps the Decimal


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_any_fen_amount_round_trips_through_json_as_a_string(cents: int) -> None:
    text = format(Decimal(cents) * FEN, "f")
    value = AMOUNT.validate_json(f'"{text}"')
    assert value == Decimal(text)
    assert AMOUNT.dump_json(value) == f'"{text}"'.encode()


@pytest.mark.parametrize("json_number", ["10", "10.0", "10.5", "1e3", "0"])
def test_amount_as_a_json_number_is_refused(json_number: str) -> None:
    with pytest.raises(ValidationError, match="decimal strings"):
        AMOUNT.validate_json(json_number)


@pytest.mark.parametrize("value", [10.0, 10, 0.1])
def test_amount_as_a_python_float_or_int_is_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        AMOUNT.validate_python(value)


@pytest.mark.parametrize("text", ["1.234", "0.001", "10.005", "10.0001"])
def test_amount_with_a_third_decimal_is_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="decimal places"):
        AMOUNT.validate_python(text)
    with pytest.raises(ValidationError):
        POSITIVE.validate_python(text)


@pytest.mark.parametrize("text", ["0", "0.00"])
def test_positive_amount_refuses_zero(text: str) -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        POSITIVE.validate_python(text)


@pytest.mark.parametrize("text", ["-0.01", "-5"])
def test_positive_amount_refuses_a_sign_as_its_schema_does(text: str) -> None:
    with pytest.raises(ValidationError, match="is not an amount"):
        POSITIVE.validate_python(text)


def test_plain_amount_admits_zero() -> None:
    assert AMOUNT.validate_python("0") == Decimal("0.00")


def test_amounts_are_bounded_where_every_table_and_sum_can_hold_them() -> None:
    """One message moves at most MAX_AMOUNT; totals (a pool's level) stay within MAX_TOTAL,
    far below numeric(18,2)'s 10^16 (issue 6, defect 3)."""
    assert POSITIVE.validate_python(str(MAX_AMOUNT)) == MAX_AMOUNT
    assert AMOUNT.validate_python(str(MAX_TOTAL)) == MAX_TOTAL
    assert MAX_TOTAL < Decimal(10) ** 16
    for text in ("1000000000000.00", "9999999999999999.99"):
        with pytest.raises(ValidationError, match="at most 12 digits"):
            POSITIVE.validate_python(text)
    with pytest.raises(ValidationError, match="at most 15 digits"):
        AMOUNT.validate_python("9999999999999999.99")
    with pytest.raises(ValidationError, match="outside the bounds"):
        POSITIVE.validate_python(MAX_AMOUNT + FEN)  # a Decimal built in code, too


@pytest.mark.parametrize("text", ["1.000", "10.50000", "0.100"])
def test_amount_text_follows_the_published_pattern_exactly(text: str) -> None:
    """The schema's pattern allows two decimals at most; so does decode (was: "1.000" passed)."""
    with pytest.raises(ValidationError, match="2 decimal places"):
        POSITIVE.validate_python(text)


def test_refusal_names_the_field() -> None:
    class Slip(BaseModel):
        amount: PositiveAmount

    with pytest.raises(ValidationError) as info:
        Slip.model_validate_json('{"amount": 12.5}')
    assert [err["loc"] for err in info.value.errors()] == [("amount",)]
    assert Slip.model_validate_json('{"amount": "12.5"}').amount == Decimal("12.50")
    assert Slip(amount="12.5").model_dump_json() == '{"amount":"12.50"}'


def test_rate_is_decimal_text_not_a_float_and_not_negative() -> None:
    assert RATE.validate_python("0.8") == Decimal("0.8")
    assert RATE.dump_json(Decimal("0.0435")) == b'"0.0435"'
    with pytest.raises(ValidationError):
        RATE.validate_python(0.8)
    with pytest.raises(ValidationError):
        RATE.validate_python("-0.1")
