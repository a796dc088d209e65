"""The contract as files for integrators: one JSON Schema per message and the AsyncAPI
document FastStream generates for every topic. `poolfin contracts export` writes them; a test
checks the committed copies match the code."""

from __future__ import annotations

import json
from typing import Any, Union

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

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
FUNDER_TOPIC = t.funder_requests_topic("{funder_id}")


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def message_models() -> list[type[Any]]:
    seen: dict[str, type[Any]] = {}
    for models in TOPIC_MODELS.values():
        for model in models:
            seen[model.__name__] = model
    seen["FundingRequest"] = m.FundingRequest
    seen["DeadLetter"] = m.DeadLetter
    return [seen[name] for name in sorted(seen)]


def contract_broker() -> KafkaBroker:
    """A broker whose subscribers document every topic with its message models."""
    broker = KafkaBroker("kafka:9092")
    documented: dict[str, tuple[type[Any], ...]] = {
        **TOPIC_MODELS,
        FUNDER_TOPIC: (m.FundingRequest,),
    }
    for dead_letters in (
        t.INTAKE_REJECTED,
        t.CREDIT_REJECTED,
        t.FUNDING_GATEWAY_REJECTED,
        t.SETTLEMENT_REJECTED,
    ):
        documented[dead_letters] = (m.DeadLetter,)
    for topic, models in sorted(documented.items()):
        payload: Any = models[0] if len(models) == 1 else Union[models]  # noqa: UP007

        def document(body: Any) -> None:  # pragma: no cover - never consumed
            return None

        document.__annotations__["body"] = payload
        broker.subscriber(
            topic, title=topic, description=EXTERNAL.get(topic, "Published by poolfin.")
        )(document)
    return broker


def contract_files() -> dict[str, str]:
    files = {
        f"schemas/{model.__name__}.schema.json": _dump(model.model_json_schema())
        for model in message_models()
    }
    spec = AsyncAPI(
        contract_broker(),
        title="poolfin",
        version="1",
        description="Receivables-pool financing and settlement splitting: "
        "every topic, keyed by pool_id.",
    )
    files["asyncapi.json"] = _dump(spec.to_specification().to_jsonable())
    return files
