"""Kafka headers are opaque bytes to poolfin: a header value that is not UTF-8, or is null,
costs no record its effect, neither its own nor its neighbours' in the same fetch (defect 2)."""

from __future__ import annotations

import uuid

import pytest

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher
from poolfin.registry import SERVICES
from poolfin.scenario import Record
from shared.contracts import topics
from shared.settings import Settings
from tests.integration.scenario import CORE, today

pytestmark = pytest.mark.integration

BAD_HEADERS: list[tuple[str, bytes | None]] = [
    ("trace", b"\xff\xfe"),
    ("tenant", None),
    ("ok", b"fine"),
]


def consumed_topics() -> dict[str, list[str]]:
    """Every topic a service consumes, with the dead-letter topic of each consumer."""
    consumed: dict[str, list[str]] = {}
    for build in SERVICES.values():
        spec = build(Settings())
        for topic in spec.topics:
            consumed.setdefault(topic, []).append(spec.dead_letter_topic)
    return consumed


CONSUMED = consumed_topics()


@pytest.mark.parametrize("topic", sorted(CONSUMED))
async def test_a_bad_header_costs_no_record_of_the_batch(
    topic: str, publisher: Publisher, observer: Observer
) -> None:
    """Three records in one fetch, the middle one with a non-UTF-8 and a null header: every
    consumer of the topic dead-letters all three (they are not JSON), none vanishes."""
    run = uuid.uuid4().hex[:12]
    bodies = [f"not json {run} {n}".encode() for n in range(3)]
    for n, body in enumerate(bodies):
        await publisher.send(topic, body, key="CE-HDR/S-1", headers=BAD_HEADERS if n == 1 else None)
    await publisher.flush()
    for dead_letter_topic in CONSUMED[topic]:
        letters = await observer.wait_for(
            dead_letter_topic,
            count=3,
            timeout=60,
            where=lambda body: run in (body.get("raw_text") or ""),
        )
        assert sorted(letter["raw_text"] for letter in letters) == sorted(
            b.decode() for b in bodies
        )
        assert {letter["reason"] for letter in letters} == {"not_json"}


async def _around_a_bad_header(publisher: Publisher, records: list[Record]) -> None:
    """Publish on one partition (each record keyed by its own pool, as every record must be),
    the middle record with the bad headers."""
    for n, (topic, event) in enumerate(records):
        await publisher.send(topic, event, partition=0, headers=BAD_HEADERS if n == 1 else None)
    await publisher.flush()


async def test_valid_erp_records_around_a_bad_header_all_take_effect(
    publisher: Publisher, observer: Observer
) -> None:
    """Onboardings and slips of three pools, the middle ones with bad headers: all three
    pools open and every slip fills its pool."""
    run = uuid.uuid4().hex[:10]
    pools = [f"{CORE}/H-{run}-{n}" for n in range(3)]
    onboardings = [erp.onboarding(p, CORE, p.split("/")[1], "Header Test") for p in pools]
    await _around_a_bad_header(publisher, onboardings)
    for _, event in onboardings:
        await observer.wait_for(topics.POOL_EVENTS, type="PoolOpened", pool_id=event["pool_id"])
    slips = [erp.slip(p, f"R-{run}-{n}", "1000.00", today()) for n, p in enumerate(pools)]
    await _around_a_bad_header(publisher, slips)
    for _, event in slips:
        position = await observer.wait_for(
            topics.CREDIT_POSITIONS, correlation_id=event["event_id"]
        )
        assert position[0]["water_level"] == "1000.00"
