"""Topic creation errors surface: a topic still missing after creation is an error naming it
and the broker's reason; one created meanwhile by another process is not."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from shared import runtime


class FakeAdmin:
    """What AIOKafkaAdminClient answers, scripted: the topics that exist, and whether a
    creation fails (and if so, whether another process created the topics meanwhile)."""

    existing: ClassVar[set[str]] = set()
    fails_with: ClassVar[Exception | None] = None
    created_meanwhile: ClassVar[bool] = False

    def __init__(self, **_: Any) -> None:
        pass

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def list_topics(self) -> list[str]:
        return sorted(FakeAdmin.existing)

    async def create_topics(self, new: list[Any]) -> None:
        if FakeAdmin.created_meanwhile:
            FakeAdmin.existing.update(t.name for t in new)
        if FakeAdmin.fails_with is not None:
            raise FakeAdmin.fails_with
        FakeAdmin.existing.update(t.name for t in new)


@pytest.fixture(autouse=True)
def fake_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeAdmin.existing, FakeAdmin.fails_with, FakeAdmin.created_meanwhile = {"a"}, None, False
    monkeypatch.setattr(runtime, "AIOKafkaAdminClient", FakeAdmin)


async def test_missing_topics_are_created() -> None:
    await runtime.ensure_topics("broker:9092", ["a", "b"], 3)
    assert FakeAdmin.existing == {"a", "b"}


async def test_a_topic_the_broker_would_not_create_is_an_error_naming_it() -> None:
    FakeAdmin.fails_with = RuntimeError("policy violation: auto-creation disabled")
    with pytest.raises(RuntimeError, match=r"could not create topics \['b'\].*policy violation"):
        await runtime.ensure_topics("broker:9092", ["a", "b"], 3)


async def test_a_topic_created_meanwhile_by_another_process_is_fine() -> None:
    FakeAdmin.fails_with = RuntimeError("TopicAlreadyExistsError")
    FakeAdmin.created_meanwhile = True
    await runtime.ensure_topics("broker:9092", ["a", "b"], 3)
    assert FakeAdmin.existing == {"a", "b"}
