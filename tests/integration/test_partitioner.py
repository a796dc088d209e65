"""An outside client on librdkafka puts a pool's records on the partition poolfin's own
producers (aiokafka: the Java client's murmur2) do, only with `partitioner=murmur2_random`;
librdkafka's default (`consistent_random`, CRC32) puts many elsewhere. Checked on the broker:
each record is read back from the partition it landed on."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer

from poolfin.clients import Publisher
from poolfin.stack import Stack
from shared.runtime import ensure_topics

pytestmark = pytest.mark.integration

PARTITIONS = 7
POOLS = [f"CE-PART-{n % 5}/S-{uuid.uuid4().hex[:8]}-{n}" for n in range(200)]


def librdkafka_publish(bootstrap: str, topic: str, tag: str, config: dict[str, str]) -> None:
    """One record per pool, keyed by its pool_id, from a confluent-kafka (librdkafka) Producer;
    every delivery must succeed."""
    failures: list[str] = []

    def delivered(error: object, _: object) -> None:
        if error is not None:
            failures.append(str(error))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **config})
    for pool_id in POOLS:
        producer.produce(
            topic, key=pool_id.encode(), value=f"{tag} {pool_id}".encode(), on_delivery=delivered
        )
        producer.poll(0)
    assert producer.flush(30) == 0, "librdkafka did not deliver every record"
    assert not failures, failures[:3]


async def read_partitions(bootstrap: str, topic: str, count: int) -> dict[str, dict[str, int]]:
    """Every record of the topic: producer tag -> pool_id -> the partition it was read from."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    found: dict[str, dict[str, int]] = defaultdict(dict)
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = asyncio.get_running_loop().time() + 60
        seen = 0
        while seen < count:
            assert asyncio.get_running_loop().time() < deadline, f"read {seen}/{count} records"
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                for record in records:
                    tag, pool_id = (record.value or b"").decode().split(" ", 1)
                    assert record.key == pool_id.encode()
                    found[tag][pool_id] = tp.partition
                    seen += 1
    finally:
        await consumer.stop()
    return found


async def test_murmur2_random_places_every_pool_where_poolfin_does(stack: Stack) -> None:
    topic = f"partitioner-test-{uuid.uuid4().hex[:8]}"
    await ensure_topics(stack.bootstrap, [topic], PARTITIONS)

    async with Publisher(stack.bootstrap) as publisher:  # what poolfin's tools publish with
        for pool_id in POOLS:
            await publisher.send(topic, f"poolfin {pool_id}".encode(), key=pool_id)
        await publisher.flush()
    await asyncio.to_thread(
        librdkafka_publish,
        stack.bootstrap,
        topic,
        "murmur2_random",
        {"partitioner": "murmur2_random"},
    )
    await asyncio.to_thread(librdkafka_publish, stack.bootstrap, topic, "default", {})

    found = await read_partitions(stack.bootstrap, topic, 3 * len(POOLS))

    poolfin, murmur2, default = found["poolfin"], found["murmur2_random"], found["default"]
    assert len(poolfin) == len(murmur2) == len(default) == len(POOLS)
    assert len(set(poolfin.values())) == PARTITIONS  # the keys spread over every partition
    misplaced = [p for p in POOLS if murmur2[p] != poolfin[p]]
    assert not misplaced, f"{len(misplaced)} pools on another partition, e.g. {misplaced[:3]}"
    # Why the setting matters: librdkafka's default partitioner disagrees for many pools.
    assert sum(default[p] != poolfin[p] for p in POOLS) > len(POOLS) // 2
