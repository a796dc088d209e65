"""The contract as files for integrators: one JSON Schema per message. The AsyncAPI documents
are generated from the services themselves (`poolfin.contracts`); `poolfin contracts export`
writes them all, and a test checks the committed copies match the code."""

from __future__ import annotations

import json
from typing import Any, Union

from shared.contracts import messages as m
from shared.contracts import topics as t
from shared.contracts.codec import TOPIC_MODELS

EXTERNAL = {
    t.ERP_SUPPLIERS: "ERP systems publish supplier onboarding here.",
    t.ERP_SETTLEMENT_SLIPS: "ERP systems publish confirmed settlement slips (receivables).",
    t.ERP_PAYMENTS: "ERP systems publish payments and the receivables they write off.",
    t.ERP_FINANCING_CONFIRMATIONS: "ERP systems confirm or decline financing applications.",
    t.ADMIN_FACILITIES: "Operators set a pool's credit facility.",
    t.SUPPLIER_FINANCING_APPLICATIONS: "Suppliers apply for financing.",
    t.FUNDING_RESPONSES: "Funders answer loan requests (approved, rejected, disbursed).",
}


def dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def message_models() -> list[type[Any]]:
    seen: dict[str, type[Any]] = {}
    for models in TOPIC_MODELS.values():
        for model in models:
            seen[model.__name__] = model
    seen["FundingRequest"] = m.FundingRequest
    seen["DeadLetter"] = m.DeadLetter
    return [seen[name] for name in sorted(seen)]


def payload_of(models: tuple[type[Any], ...]) -> Any:
    return models[0] if len(models) == 1 else Union[models]  # noqa: UP007


def schema_files() -> dict[str, str]:
    """One JSON Schema per message (and the dead letter)."""
    return {
        f"schemas/{model.__name__}.schema.json": dump(model.model_json_schema())
        for model in message_models()
    }
