"""The contract files, from the services themselves: a JSON Schema per message, an AsyncAPI
document per service (what it receives, what it sends) and one for the whole of poolfin, in
which each topic's operations say who sends it and who receives it."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

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


# Where a message's correlation id is: the envelope field `correlation_id` in the payload (as
# the JSON Schemas say), not a Kafka header (FastStream's default).
CORRELATION_ID = {
    "description": "The envelope's correlation_id: ties together every event of one business flow.",
    "location": "$message.payload#/correlation_id",
}


def _carries_correlation_id(components: dict[str, Any], schema: dict[str, Any]) -> bool:
    """Does every message this payload schema admits have the envelope's correlation_id?"""
    if "$ref" in schema:
        schema = components["schemas"][unquote(schema["$ref"].rsplit("/", 1)[-1])]
    variants = schema.get("oneOf") or schema.get("anyOf")
    if variants:
        return all(_carries_correlation_id(components, v) for v in variants)
    return "correlation_id" in schema.get("properties", {})


def _asyncapi(broker: KafkaBroker, title: str, description: str) -> str:
    spec = AsyncAPI(broker, title=title, version="1", description=description)
    document: dict[str, Any] = spec.to_specification().to_jsonable()
    components = document.get("components", {})
    for message in components.get("messages", {}).values():
        if "correlationId" not in message:
            continue
        if _carries_correlation_id(components, message.get("payload", {})):
            message["correlationId"] = dict(CORRELATION_ID)
        else:  # a dead letter has none
            del message["correlationId"]
    return dump(document)


def publishers_file() -> str:
    """docs/contracts/publishers.md: who may publish what (shared/contracts/permissions.py)."""
    from shared.contracts import permissions
    from shared.contracts.codec import TOPIC_MODELS

    topic_of: dict[str, list[str]] = {}
    for topic, models in TOPIC_MODELS.items():
        for model in models:
            topic_of.setdefault(model.__name__, []).append(topic)
    topic_of.setdefault("FundingRequest", []).append("funding.requests.<funder_id>.v1")
    lines = [
        "# Who may publish what",
        "",
        "Generated from `shared/contracts/permissions.py` by `poolfin contracts export`.",
        "",
        "## External messages: signed by a registered party key",
        "",
        "Every message on these topics carries `signature` = `ed25519:<key_id>:<base64url>`"
        " over its canonical JSON without that field (keys sorted, no whitespace, UTF-8)."
        " The key must be registered (trust file or `admin.parties.v1`), valid at"
        " `occurred_at`, not revoked; `occurred_at` within the window of arrival"
        " (POOLFIN_MESSAGE_MAX_AGE_S, POOLFIN_MESSAGE_MAX_SKEW_S); each event id is taken"
        " once. Refusals: `unsigned`, `malformed_signature`, `unknown_key`, `key_not_valid`,"
        " `bad_signature`, `not_permitted`, `stale`, `replayed`.",
        "",
        "| message | topic | signer's role | relationship the consumer checks | via credit's"
        " HTTP front |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, (roles, relation) in sorted(permissions.EXTERNAL.items()):
        front = "yes" if name in permissions.FRONT_MAY_SEND else ""
        lines.append(
            f"| {name} | {', '.join(topic_of.get(name, []))} |"
            f" {', '.join(sorted(r.value for r in roles))} | {relation} | {front} |"
        )
    lines += [
        "",
        "## Internal messages: the owning service's MAC",
        "",
        "Every record carries the header `poolfin-mac` = `<service>:<hex HMAC-SHA256 over"
        " topic, 0x00, key, 0x00, value>` under that service's key. Refusals:"
        " `unauthenticated` (no or bad MAC), `wrong_producer` (another service's MAC).",
        "",
        "| message | topic | only from |",
        "| --- | --- | --- |",
    ]
    for name, service in sorted(permissions.INTERNAL.items()):
        lines.append(f"| {name} | {', '.join(topic_of.get(name, []))} | {service} |")
    return "\n".join(lines) + "\n"


def contract_files() -> dict[str, str]:
    files = schema_files()
    files["publishers.md"] = publishers_file()
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
