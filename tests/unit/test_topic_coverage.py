"""Every message a service publishes on a topic is handled by every service that reads that
topic: a type nobody handles would be dead-lettered `unknown_type` on every occurrence (the
splitter did that to every ReceivableDocumented on pool.events.v1 until this test)."""

from __future__ import annotations

from poolfin.registry import SERVICES
from shared.contracts.codec import TOPIC_MODELS
from shared.contracts.topics import ADMIN_PARTIES
from shared.settings import Settings


def test_every_type_published_on_a_topic_is_handled_by_each_of_its_readers() -> None:
    specs = [make(Settings()) for make in SERVICES.values()]
    unhandled = []
    for reader in specs:
        handles = getattr(reader.handle, "handles", None)
        assert handles is not None, f"{reader.name}'s handler is not a dispatch table"
        for topic in reader.topics:
            if topic == ADMIN_PARTIES:  # the registry's: every kernel applies it itself
                continue
            unhandled += [
                f"{reader.name} does not handle {model.__name__} on {topic}"
                for model in TOPIC_MODELS[topic]
                if model not in handles
            ]
    assert unhandled == []
