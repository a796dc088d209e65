"""The relay creates a topic first seen in the outbox once, before publishing to it."""

from __future__ import annotations

from shared.outbox import KnownTopics


async def test_only_unknown_topics_are_created_and_each_only_once() -> None:
    created: list[list[str]] = []

    async def create(names: list[str]) -> None:
        created.append(names)

    topics = KnownTopics(create, known=["pool.events.v1"])
    await topics.ensure(
        [
            "pool.events.v1",
            "funding.requests.bank-b.v1",
            "funding.requests.bank-a.v1",
            "funding.requests.bank-b.v1",
        ]
    )
    await topics.ensure(["funding.requests.bank-a.v1", "pool.events.v1"])
    await topics.ensure([])
    assert created == [["funding.requests.bank-a.v1", "funding.requests.bank-b.v1"]]


async def test_a_failed_creation_is_tried_again_on_the_next_publish() -> None:
    attempts: list[list[str]] = []

    async def create(names: list[str]) -> None:
        attempts.append(names)
        if len(attempts) == 1:
            raise ConnectionError("broker unreachable")

    topics = KnownTopics(create)
    try:
        await topics.ensure(["funding.requests.bank-c.v1"])
    except ConnectionError:
        pass
    assert "funding.requests.bank-c.v1" not in topics.known
    await topics.ensure(["funding.requests.bank-c.v1"])
    assert attempts == [["funding.requests.bank-c.v1"]] * 2
    assert "funding.requests.bank-c.v1" in topics.known
