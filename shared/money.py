"""Money: one Decimal type, quantized to the fen (0.01), never a float.

Amounts travel as JSON strings. A JSON number (which a parser may have turned into a float), a
third decimal or a non-positive amount is refused at the edge, with the field named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, WithJsonSchema

FEN = Decimal("0.01")
ZERO = Decimal("0.00")

K = TypeVar("K")

# Digits, an optional point and decimals, an optional leading minus: no exponent, no NaN, no
# spaces, no thousands separators (bounded, so a huge string is refused before Decimal sees it).
_DECIMAL_TEXT = re.compile(r"-?[0-9]{1,30}(\.[0-9]{1,30})?")


def reject_float(value: Any) -> Any:
    """Refuse floats and JSON numbers: an amount must be written as a decimal string."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError('amounts must be decimal strings such as "10.00", not JSON numbers')
    if isinstance(value, int):
        raise ValueError('amounts must be decimal strings such as "10.00", not JSON numbers')
    if isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value):
            raise ValueError(f'{value[:40]!r} is not a plain decimal such as "10.00"')
        try:
            return Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - the pattern admits only decimals
            raise ValueError(f"{value[:40]!r} is not a decimal amount") from exc
    return value


def _as_text(value: Decimal) -> str:
    return format(value, "f")


# Bounds every table and sum can hold (PostgreSQL numeric(18,2): below 10^16). One message
# moves at most MAX_AMOUNT (a slip, a payment, an application, a credit line); a pool's level
# and every total stay at most MAX_TOTAL, which intake enforces per pool. The JSON Schemas
# publish the same bounds as patterns, so no service accepts what another refuses.
AMOUNT_DIGITS = 12
TOTAL_DIGITS = 15
MAX_AMOUNT = Decimal("9" * AMOUNT_DIGITS + ".99")
MAX_TOTAL = Decimal("9" * TOTAL_DIGITS + ".99")


def _amount_rules(
    digits: int, *, signed: bool, positive: bool, description: str
) -> tuple[Any, ...]:
    """The metadata of one amount type: the text rule the JSON Schema publishes (one pattern,
    used by both), the bounds, quantizing to the fen, and the decimal-string serializer."""
    pattern = ("-?" if signed else "") + rf"[0-9]{{1,{digits}}}(\.[0-9]{{1,2}})?"
    matches = re.compile(pattern).fullmatch
    ceiling = Decimal("9" * digits + ".99")

    def check(value: Any) -> Any:
        if isinstance(value, str) and not matches(value):
            raise ValueError(
                f"{value[:40]!r} is not an amount: at most {digits} digits before the point"
                " and 2 decimal places"
            )
        value = reject_float(value)
        if isinstance(value, Decimal):
            if not value.is_finite() or abs(value) > ceiling:
                raise ValueError(f"amount {value} is outside the bounds (at most {ceiling})")
            text = format(value, "f")
            if "." in text and len(text.split(".")[1].rstrip("0")) > 2:
                raise ValueError(f"{text[:40]!r} has more than 2 decimal places")
        return value

    return (
        BeforeValidator(check),
        Field(max_digits=digits + 2, decimal_places=2, gt=0 if positive else None),
        AfterValidator(lambda d: d.quantize(FEN)),
        PlainSerializer(_as_text, return_type=str, when_used="json"),
        WithJsonSchema(
            {
                "type": "string",
                "pattern": f"^{pattern}$",
                "examples": ["100000.00"],
                "description": description,
            }
        ),
    )


# An amount of money in CNY: a decimal string with at most two decimals (totals and balances).
Amount = Annotated[
    Decimal,
    *_amount_rules(
        TOTAL_DIGITS,
        signed=True,
        positive=False,
        description=f"CNY as a decimal string, at most two decimals, at most {MAX_TOTAL}.",
    ),
]
# A strictly positive amount one message moves (what an ERP may send as a slip or a payment).
PositiveAmount = Annotated[
    Decimal,
    *_amount_rules(
        AMOUNT_DIGITS,
        signed=False,
        positive=True,
        description="CNY as a decimal string greater than zero, at most two decimals, "
        f"at most {MAX_AMOUNT}.",
    ),
]
# A strictly positive total (e.g. the receivables one payment writes off).
PositiveTotal = Annotated[
    Decimal,
    *_amount_rules(
        TOTAL_DIGITS,
        signed=False,
        positive=True,
        description="CNY as a decimal string greater than zero, at most two decimals, "
        f"at most {MAX_TOTAL}.",
    ),
]


def rate_text(value: Decimal) -> str:
    """A rate's canonical text: fixed-point, no trailing zeros, no exponent ("0.0435", "0.8",
    "1"), the same for every way of writing one value. A rate read back from a numeric(10,8)
    column (0.04350000) is written as the party wrote it (0.0435)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("0", "-0") else text


# A rate (discount rate, annual interest rate) as a decimal string, e.g. "0.8" or "0.0435".
# Written canonically (rate_text); the value a model holds is the Decimal as given.
Rate = Annotated[
    Decimal,
    BeforeValidator(reject_float),
    Field(ge=0, max_digits=12, decimal_places=8),
    PlainSerializer(rate_text, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9]{1,4}(\.[0-9]{1,8})?$",
            "examples": ["0.8", "0.0435"],
            "description": "A non-negative decimal string, at most eight decimals.",
        }
    ),
]


def fen(value: Decimal | int | str) -> Decimal:
    """Quantize to the fen, half up (the bank convention for computed amounts)."""
    return Decimal(value).quantize(FEN, rounding=ROUND_HALF_UP)


def fen_down(value: Decimal) -> Decimal:
    """Quantize to the fen, towards zero: never promise a cent that is not there."""
    return value.quantize(FEN, rounding=ROUND_DOWN)


def json_default(value: object) -> Any:
    """The one way poolfin writes a Decimal (or a date) into JSON: its exact decimal text."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def money_text(value: Decimal) -> str:
    """The exact decimal text of an amount, as it enters hashes and JSON (never rounded)."""
    return format(value, "f")


def largest_remainder_split(
    total: Decimal, weights: Mapping[K, int] | Sequence[tuple[K, int]]
) -> dict[K, Decimal]:
    """Split `total` (whole fen) by integer weights so the parts sum to `total` exactly.

    Each part gets the floor of its share in fen; the fen left over go one each to the parts
    with the largest remainders (ties: the earlier part first). Zero weights get zero.
    """
    items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
    if total != total.quantize(FEN):
        raise ValueError(f"total {total} is not a whole number of fen")
    if total < 0:
        raise ValueError("total must not be negative")
    if not items:
        raise ValueError("at least one weight is needed")
    if any(w < 0 for _, w in items):
        raise ValueError("weights must not be negative")
    weight_sum = sum(w for _, w in items)
    if weight_sum == 0:
        raise ValueError("weights must not all be zero")
    cents = int(total / FEN)
    floors: list[int] = []
    remainders: list[tuple[int, int]] = []
    for index, (_, weight) in enumerate(items):
        share, remainder = divmod(cents * weight, weight_sum)
        floors.append(share)
        remainders.append((remainder, -index))
    left = cents - sum(floors)
    for _, neg_index in sorted(remainders, reverse=True)[:left]:
        floors[-neg_index] += 1
    return {key: Decimal(part) * FEN for (key, _), part in zip(items, floors, strict=True)}
