"""Golden examples pin every message version: a v1 message written today must still decode,
mean the same and encode to the same JSON. A change that breaks one is a new model on a .v2
topic, not an edit (see README, contracts). The files were written once and are committed;
no test or command regenerates them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

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
    message = decode(example["topic"], json.dumps(example["message"]).encode())
    assert type(message).__name__ == name
    assert message.schema_version == 1
    encoded = json.loads(encode(message))
    # Within v1 only optional fields are added: an old message gains them as null, and every
    # field it had encodes back exactly as it was.
    assert {key: encoded[key] for key in example["message"]} == example["message"]
    assert {key: value for key, value in encoded.items() if key not in example["message"]} == {
        key: None for key in encoded.keys() - example["message"].keys()
    }


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
}
