"""The contract files, from the services themselves: a JSON Schema per message, an AsyncAPI
document per service (what it receives, what it sends) and one for the whole of poolfin, in
which each topic's operations say who sends it and who receives it."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from poolfin.registry import SERVICES
from shared.contracts.codec import models_for
from shared.contracts.publish import EXTERNAL, dump, payload_of, schema_files
from shared.runtime import ServiceSpec, declare_publishers
from shared.settings import Settings


def document(broker: KafkaBroker, spec: ServiceSpec) -> None:
    """Declare a service's subscriptions (with the messages each topic carries) and its
    publishers on `broker`, for the AsyncAPI document only."""
    for topic in spec.topics:

        def consume(body: Any) -> None:  # pragma: no cover - never consumed
            return None

        consume.__annotations__["body"] = payload_of(models_for(topic))
        broker.subscriber(
            topic,
            group_id=f"poolfin.{spec.name}",
            title=f"{spec.name} receives {topic}",
            description=EXTERNAL.get(topic, f"Consumed by {spec.name}."),
        )(consume)
    declare_publishers(broker, spec)


def _asyncapi(broker: KafkaBroker, title: str, description: str) -> str:
    spec = AsyncAPI(broker, title=title, version="1", description=description)
    return dump(spec.to_specification().to_jsonable())


def contract_files() -> dict[str, str]:
    files = schema_files()
    specs = [build(Settings()) for build in SERVICES.values()]
    whole = KafkaBroker("kafka:9092")
    for spec in specs:
        document(whole, spec)
        own = KafkaBroker("kafka:9092")
        document(own, spec)
        files[f"asyncapi/{spec.name}.json"] = _asyncapi(
            own, f"poolfin {spec.name}", spec.description
        )
    files["asyncapi.json"] = _asyncapi(
        whole,
        "poolfin",
        "Receivables-pool financing and settlement splitting: every topic, keyed by pool_id, "
        "with the service that sends it and the services that receive it.",
    )
    return files
