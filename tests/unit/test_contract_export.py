"""The exported contract says what the decoder needs: `type` is required in every message's
JSON Schema (its default only fills the field in Python), and the correlation id is the
payload's `correlation_id` field, not a Kafka header."""

from __future__ import annotations

import json
from typing import Any

import pytest

from poolfin.contracts import contract_files
from shared.contracts import messages as m
from shared.contracts import topics as t
from shared.contracts.codec import Rejected, decode
from shared.contracts.publish import message_models

FILES = contract_files()


def test_type_is_required_in_every_exported_message_schema() -> None:
    schemas = {
        name: json.loads(text) for name, text in FILES.items() if name.startswith("schemas/")
    }
    assert len(schemas) == len(message_models())
    for name, schema in schemas.items():
        assert "type" in schema["required"], name
        kind = schema["properties"]["type"]
        assert kind.get("const") == name.removeprefix("schemas/").removesuffix(".schema.json")


def _message_schemas(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        name: schema
        for name, schema in spec["components"]["schemas"].items()
        if "type" in schema.get("properties", {}) and "event_id" in schema["properties"]
    }


@pytest.mark.parametrize("name", sorted(n for n in FILES if n.startswith("asyncapi")))
def test_the_asyncapi_documents_agree(name: str) -> None:
    spec = json.loads(FILES[name])
    messages = spec["components"]["messages"]
    assert messages
    for title, message in messages.items():
        if message["payload"] == {"$ref": "#/components/schemas/DeadLetter"}:
            assert "correlationId" not in message, title  # a dead letter has none
            continue
        location = message["correlationId"]["location"]
        assert location == "$message.payload#/correlation_id", title
    schemas = _message_schemas(spec)
    assert schemas
    for schema_name, schema in schemas.items():
        assert "type" in schema["required"], schema_name


def test_runtime_behaviour_is_unchanged_a_model_still_defaults_its_type() -> None:
    """Only the schema changed: the model fills `type` itself; the decoder refuses a payload
    without it (unknown_type), as before."""
    onboarded = m.SupplierOnboarded(
        event_id="e-1",
        occurred_at="2026-08-31T10:00:00+08:00",
        source="erp-1",
        pool_id="CE-1/S-1",
        core_enterprise_id="CE-1",
        supplier_id="S-1",
        supplier_name="Supplier",
    )
    assert onboarded.type == "SupplierOnboarded"
    document = json.loads(onboarded.model_dump_json())
    del document["type"]
    with pytest.raises(Rejected) as refused:
        decode(t.ERP_SUPPLIERS, json.dumps(document).encode())
    assert refused.value.reason == m.Reason.UNKNOWN_TYPE
