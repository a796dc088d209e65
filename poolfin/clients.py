"""What an ERP, a funder or an operator uses against a running poolfin: publish raw JSON the
way an ERP does, and observe topics (no consumer group: assigned partitions, from the start)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from poolfin.keys import Keyring, Signers
from shared.contracts.messages import PartyRole
from shared.contracts.topics import is_external
from shared.inbox import peek_envelope
from shared.runtime import ensure_topics
from shared.trust import MAC_HEADER


def erp_event(type_: str, pool_id: str, source: str = "erp-demo", **fields: Any) -> dict[str, Any]:
    """A raw ERP event as JSON-ready dict, amounts already strings."""
    return {
        "event_id": fields.pop("event_id", str(uuid.uuid4())),
        "type": type_,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": source,
        "pool_id": pool_id,
        "schema_version": 1,
        **fields,
    }


class Publisher:
    """Publishes as the parties it acts for: with a keyring, every JSON message to an external
    topic is signed by the party `Signers` names (or `signer=`); raw bytes go as they are.
    Every record is keyed by its message's pool_id unless `key=` says otherwise."""

    def __init__(self, bootstrap: str, keyring: Keyring | None = None) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
        self.keyring = keyring
        self.signers = Signers()

    def signed(
        self, topic: str, event: dict[str, Any], signer: tuple[str, PartyRole] | None = None
    ) -> dict[str, Any]:
        """The event as its party signs it (unchanged without a keyring or on internal
        topics)."""
        if self.keyring is None or not is_external(topic):
            return event
        party, role = signer or self.signers(topic, event)
        return self.keyring.sign(event, party, role)

    async def start(self) -> Publisher:
        try:
            await self._producer.start()
        except BaseException:
            await self._producer.stop()  # release what a failed bootstrap opened
            raise
        return self

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(
        self,
        topic: str,
        event: dict[str, Any] | bytes,
        key: str | None = None,
        headers: dict[str, str] | Sequence[tuple[str, bytes | None]] | None = None,
        *,
        signer: tuple[str, PartyRole] | None = None,
        sign: bool = True,
        as_service: str | None = None,
        partition: int | None = None,
    ) -> float:
        """Publish raw bytes (or a dict as JSON, signed when `sign`); returns the monotonic
        time it was sent. Headers as text, or as raw (name, bytes or None) pairs the way any
        client may send. `partition` overrides the partitioner (the key stays the pool's)."""
        if isinstance(event, dict) and sign:
            event = self.signed(topic, event, signer)
        value = event if isinstance(event, bytes) else json.dumps(event).encode()
        # Keyed by the message's pool_id (consumers dead-letter any other key as key_mismatch);
        # raw bytes that are a JSON object naming a pool are keyed by it too.
        pool_id: str | None
        if key is not None:
            pool_id = key
        elif isinstance(event, dict):
            pool_id = event.get("pool_id")
        else:
            pool_id = peek_envelope(event)[0]
        raw_headers = (
            [(name, text.encode()) for name, text in headers.items()]
            if isinstance(headers, dict)
            else list(headers or ())
        )
        record_key = pool_id.encode() if pool_id else None
        if as_service is not None:  # a test acting as that service, with the stack's secrets
            assert self.keyring is not None, "sealing as a service needs the stack's keyring"
            raw_headers.append(
                (MAC_HEADER, self.keyring.seal(as_service, topic, record_key, value))
            )
        sent_at = time.monotonic()
        await self._producer.send(
            topic, value, key=record_key, headers=raw_headers or None, partition=partition
        )
        return sent_at

    async def flush(self) -> None:
        await self._producer.flush()

    async def __aenter__(self) -> Publisher:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class Observer:
    """Reads topics from the beginning into memory; `wait_for` polls with a deadline."""

    def __init__(
        self,
        bootstrap: str,
        topics: Iterable[str],
        accept: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.accept = accept or (lambda _: True)
        self.messages: list[tuple[str, dict[str, Any], float]] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Observer:
        await ensure_topics(self.bootstrap, self.topics, 3)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=20,
        )
        await self._consumer.start()
        partitions = []
        for topic in self.topics:
            for _ in range(50):
                found = self._consumer.partitions_for_topic(topic)
                if found:
                    break
                await self._consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            partitions += [TopicPartition(topic, p) for p in sorted(found or {0})]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=2000)
            now = time.monotonic()
            for tp, records in batches.items():
                for record in records:
                    try:
                        body = json.loads(record.value)
                    except (ValueError, TypeError):
                        continue
                    if isinstance(body, dict) and self.accept(body):
                        self.messages.append((tp.topic, body, now))

    def find(self, topic: str | None = None, **match: Any) -> list[dict[str, Any]]:
        return [
            body
            for t, body, _ in self.messages
            if (topic is None or t == topic) and all(body.get(k) == v for k, v in match.items())
        ]

    async def wait_for(
        self,
        topic: str | None = None,
        *,
        count: int = 1,
        timeout: float = 30,
        where: Callable[[dict[str, Any]], bool] | None = None,
        **match: Any,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(topic, **match)
            if where is not None:
                found = [body for body in found if where(body)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"waited {timeout}s for {count} message(s) on {topic} "
                    f"matching {match}; saw {len(found)}"
                )
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()

    async def __aenter__(self) -> Observer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
