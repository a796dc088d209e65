"""The record key is the message's pool_id: the kernel dead-letters any other key (or none)
as `key_mismatch`, and every producer of the repository keys by pool_id."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from poolfin import scenario
from poolfin.clients import Publisher, erp_event
from shared.contracts import messages as m
from shared.contracts import topics as t
from shared.contracts.codec import TOPIC_MODELS, key_mismatch
from shared.contracts.messages import Reason
from shared.inbox import BatchConsumer, Inbound
from shared.outbox import Outbox


def consumer() -> BatchConsumer:
    """The kernel's decoding needs no database."""
    return BatchConsumer(
        service="key-test",
        schema="key_test",
        pool=cast(Any, None),
        handle=cast(Any, None),
        dead_letter_topic=t.INTAKE_REJECTED,
    )


def onboarding(pool_id: str = "CE-1/S-1") -> bytes:
    core, supplier = pool_id.split("/")
    event = erp_event(
        "SupplierOnboarded",
        pool_id,
        core_enterprise_id=core,
        supplier_id=supplier,
        supplier_name="Supplier",
    )
    return json.dumps(event).encode()


def record(value: bytes, key: bytes | None, topic: str = t.ERP_SUPPLIERS) -> Inbound:
    return Inbound(topic=topic, partition=1, offset=7, key=key, value=value)


def test_a_record_keyed_by_its_pool_id_decodes() -> None:
    item = consumer()._decode(record(onboarding(), b"CE-1/S-1"))
    assert item.refusal is None
    assert item.message is not None and item.message.pool_id == "CE-1/S-1"
    assert item.document is not None


def test_a_record_keyed_otherwise_is_refused_as_key_mismatch_with_no_message() -> None:
    item = consumer()._decode(record(onboarding(), b"CE-1"))
    assert item.refusal is not None
    assert item.refusal.reason == Reason.KEY_MISMATCH
    assert item.refusal.detail.startswith(
        "record key 'CE-1' is not the message's pool_id 'CE-1/S-1': "
    )
    assert "murmur2" in item.refusal.detail
    # Refused as undecoded: its event id is not taken, the sender may publish it again keyed
    # right (the dead letter still names the pool and event from the raw bytes).
    assert item.message is None


def test_a_record_without_a_key_is_refused_as_key_mismatch() -> None:
    item = consumer()._decode(record(onboarding(), None))
    assert item.refusal is not None and item.refusal.reason == Reason.KEY_MISMATCH
    assert item.refusal.detail.startswith(
        "record has no key; it must be the message's pool_id 'CE-1/S-1': "
    )


@pytest.mark.parametrize("key", [b"", b"ce-1/s-1", b"CE-1/S-1 ", b"\xff\xfe"])
def test_near_misses_are_mismatches_too(key: bytes) -> None:
    item = consumer()._decode(record(onboarding(), key))
    assert item.refusal is not None and item.refusal.reason == Reason.KEY_MISMATCH


def test_a_payload_refused_for_what_it_says_keeps_that_reason_whatever_its_key() -> None:
    poison = consumer()._decode(record(b"not json", b"x"))
    assert poison.refusal is not None and poison.refusal.reason == Reason.NOT_JSON
    wrong_type = json.dumps({**json.loads(onboarding()), "type": "Nope"}).encode()
    item = consumer()._decode(record(wrong_type, None))
    assert item.refusal is not None and item.refusal.reason == Reason.UNKNOWN_TYPE


def test_the_party_registry_is_keyed_by_its_constant_pool_id() -> None:
    event = erp_event(
        "KeyChangeApproved", m.REGISTRY_KEY, source="op-2", change_id="KC-1", signature=None
    )
    value = json.dumps(event).encode()
    assert consumer()._decode(record(value, b"registry", t.ADMIN_PARTIES)).refusal is None
    refused = consumer()._decode(record(value, b"op-2", t.ADMIN_PARTIES)).refusal
    assert refused is not None and refused.reason == Reason.KEY_MISMATCH


def test_key_mismatch_on_a_long_key_shows_only_its_start() -> None:
    message = m.new_event(m.DayClosed, source="t", pool_id="P", business_date="2026-01-05")
    refusal = key_mismatch(b"k" * 10_000, message)
    assert refusal is not None and len(refusal.detail) < 600
    assert key_mismatch(b"P", message) is None


def test_every_topic_the_kernel_decodes_carries_a_pool_id() -> None:
    """The rule applies to every topic: each model decoded is a Message (with pool_id)."""
    for models in TOPIC_MODELS.values():
        for model in models:
            assert issubclass(model, m.Message) and "pool_id" in model.model_fields


# ---------------------------------------------------------------- the producers key by pool_id


def test_the_outbox_keys_each_message_by_its_pool_id() -> None:
    outbox = Outbox()
    message = m.new_event(m.DayClosed, source="t", pool_id="CE-9/S-9", business_date="2026-01-05")
    outbox.emit(t.ADMIN_SERVICING, message)
    [(_, key, _, _)] = outbox.rows
    assert key == b"CE-9/S-9"


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, int | None]] = []

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None, headers: Any, partition: int | None
    ) -> None:
        self.sent.append((topic, key, partition))


async def test_the_publisher_keys_dicts_and_json_bytes_by_their_pool_id() -> None:
    publisher = Publisher("unused:9092")
    fake = FakeProducer()
    publisher._producer = cast(Any, fake)
    records = [
        scenario.onboarding("CE-1/S-1", "CE-1", "S-1"),
        scenario.split_rules("CE-1", {"receivers": []}),
        scenario.slip("CE-1/S-1", "R-1", "10.00", "2026-01-05"),
    ]
    for topic, event in records:
        await publisher.send(topic, event)
    await publisher.send(t.ERP_PAYMENTS, json.dumps({"pool_id": "CE-2/S-2"}).encode())
    await publisher.send(t.ERP_PAYMENTS, b"not json")
    await publisher.send(t.ERP_PAYMENTS, b"not json", key="CE-3/S-3", partition=2)
    assert [key for _, key, _ in fake.sent] == [
        b"CE-1/S-1",
        b"CE-1",  # split rules of a programme: pool_id is the core enterprise
        b"CE-1/S-1",
        b"CE-2/S-2",
        None,
        b"CE-3/S-3",
    ]
    assert fake.sent[-1][2] == 2
