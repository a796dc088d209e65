"""Golden examples pin every message version: a v1 message written today must still decode,
mean the same and encode to the same JSON. A change that breaks one is a new model on a .v2
topic, not an edit (see README, contracts). The files were written once and are committed;
no test or command regenerates them."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import TypeAdapter

from shared.contracts import messages as m
from shared.contracts.codec import TOPIC_MODELS, decode, encode

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "messages"
EVERY_MODEL = sorted(
    {model.__name__ for models in TOPIC_MODELS.values() for model in models}
    | {"FundingRequest", "DeadLetter"}
)


def golden(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((GOLDEN / f"{name}.v1.json").read_text("utf-8"))
    return document


def test_every_message_of_the_contract_has_a_golden_example() -> None:
    assert sorted(p.name.removesuffix(".v1.json") for p in GOLDEN.glob("*.v1.json")) == EVERY_MODEL


@pytest.mark.parametrize("name", [n for n in EVERY_MODEL if n != "DeadLetter"])
def test_a_golden_message_decodes_on_its_topic_and_encodes_back_unchanged(name: str) -> None:
    example = golden(name)
    # Decoded as of the day it was written: dates are checked against the day of arrival.
    written = date.fromisoformat(example["message"]["occurred_at"][:10])
    message = decode(example["topic"], json.dumps(example["message"]).encode(), today=written)
    assert type(message).__name__ == name
    assert message.schema_version == 1
    encoded = json.loads(encode(message))
    # Within v1 only optional fields are added: an old message gains them with their default
    # (null, zero, good standing, ...), and every field it had encodes back exactly as it was.
    assert _as_written(encoded, example["message"]) == example["message"]
    model = type(message)
    assert {key: value for key, value in encoded.items() if key not in example["message"]} == {
        key: _default_json(model, key) for key in encoded.keys() - example["message"].keys()
    }


def _as_written(encoded: Any, written: Any, nested: bool = False) -> Any:
    """`encoded` with only the keys the written example has, at every depth; a nested key it
    lacks (an amount added within v1, e.g. a repayment's penalty) must be zero or null (the
    top level's additions are checked against the model's defaults)."""
    if isinstance(written, dict):
        extra = {k: v for k, v in encoded.items() if k not in written}
        assert not nested or all(v in ("0.00", None) for v in extra.values()), extra
        return {k: _as_written(encoded[k], v, True) for k, v in written.items()}
    if isinstance(written, list):
        return [_as_written(e, w, True) for e, w in zip(encoded, written, strict=True)]
    return encoded


def _default_json(model: type[m.Message], key: str) -> Any:
    field = model.model_fields[key]
    annotation: Any = field.annotation
    if field.metadata:
        annotation = Annotated[annotation, *field.metadata]
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    return adapter.dump_python(field.get_default(call_default_factory=True), mode="json")


def test_the_golden_dead_letter_round_trips() -> None:
    example = golden("DeadLetter")
    letter = m.DeadLetter.model_validate(example["message"])
    assert json.loads(encode(letter)) == example["message"]


def test_golden_amounts_are_strings_with_two_decimals() -> None:
    """What integrators copy from: no JSON numbers for money anywhere in the examples."""

    def amounts(node: Any, key: str = "") -> list[tuple[str, Any]]:
        if isinstance(node, dict):
            return [found for k, v in node.items() for found in amounts(v, k)]
        if isinstance(node, list):
            return [found for item in node for found in amounts(item, key)]
        return [(key, node)] if key in MONEY_FIELDS else []

    found = [pair for name in EVERY_MODEL for pair in amounts(golden(name)["message"])]
    assert found and all(
        isinstance(v, str) and v.split(".")[1:] and len(v.split(".")[1]) == 2 for _, v in found
    ), found


MONEY_FIELDS = {
    "amount",
    "available",
    "credit_line",
    "written_off",
    "principal",
    "interest",
    "water_level",
    "borrowing_base",
    "loan_balance",
    "in_flight",
    "total",
    "released",
    "fees",
    "repaid_principal",
    "repaid_interest",
    "water_level_after",
    "loan_balance_before",
    "loan_balance_after",
    "held",
    "from_held",
    "penalty",
    "change",
    "open_after",
    "accrued",
    "outstanding_after",
    "interest_due",
    "penalty_due",
    "current_line",
}
