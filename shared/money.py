"""Money: one Decimal type, quantized to the fen (0.01), never a float.

Amounts travel as JSON strings. A JSON number (which a parser may have turned into a float), a
third decimal or a non-positive amount is refused at the edge, with the field named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer

FEN = Decimal("0.01")
ZERO = Decimal("0.00")
CURRENCY = "CNY"

K = TypeVar("K")


def reject_float(value: Any) -> Any:
    """Refuse floats and JSON numbers: an amount must be written as a decimal string."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError("amounts must be decimal strings such as \"10.00\", not JSON numbers")
    if isinstance(value, int):
        raise ValueError("amounts must be decimal strings such as \"10.00\", not JSON numbers")
    if isinstance(value, str):
        try:
            parsed = Decimal(value)
        except InvalidOperation as exc:
            raise ValueError(f"{value!r} is not a decimal amount") from exc
        if not parsed.is_finite():
            raise ValueError(f"{value!r} is not a finite amount")
        return parsed
    return value


def _as_text(value: Decimal) -> str:
    return format(value, "f")


# An amount of money in CNY: a decimal string with at most two decimals.
Amount = Annotated[
    Decimal,
    BeforeValidator(reject_float),
    Field(max_digits=18, decimal_places=2),
    AfterValidator(lambda d: d.quantize(FEN)),
    PlainSerializer(_as_text, return_type=str, when_used="json"),
]
# A strictly positive amount (what an ERP may send as a slip or a payment).
PositiveAmount = Annotated[Amount, Field(gt=0)]
# A rate (discount rate, annual interest rate) as a decimal string, e.g. "0.8" or "0.0435".
Rate = Annotated[
    Decimal,
    BeforeValidator(reject_float),
    Field(ge=0, max_digits=12, decimal_places=8),
    PlainSerializer(_as_text, return_type=str, when_used="json"),
]


def fen(value: Decimal | int | str) -> Decimal:
    """Quantize to the fen, half up (the bank convention for computed amounts)."""
    return Decimal(value).quantize(FEN, rounding=ROUND_HALF_UP)


def fen_down(value: Decimal) -> Decimal:
    """Quantize to the fen, towards zero: never promise a cent that is not there."""
    return value.quantize(FEN, rounding=ROUND_DOWN)


def money_text(value: Decimal) -> str:
    """The exact decimal text of an amount, as it enters hashes and JSON (never rounded)."""
    return format(value, "f")


def largest_remainder_split(total: Decimal, weights: Mapping[K, int] | Sequence[tuple[K, int]]
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
