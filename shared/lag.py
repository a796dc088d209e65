"""Consumer lag per partition: what a consumer group has committed against where each
partition ends. Used by `poolfin status`, the operators' dashboard and each service's own
`/metrics` and health.

On the embedded broker (Tansu), ListOffsets answers with the count of record batches rather
than the next offset, so the end offset it gives can lie below the committed offset (a lag
of −2 was seen). The end of a partition here is the larger of ListOffsets and the high
watermark a fetch from the group's position reports, which is right on both brokers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int  # the group's next offset to read (0 when it never committed)
    end: int  # the partition's next offset to be written

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)

    def as_json(self) -> dict[str, str | int]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "committed": self.committed,
            "end": self.end,
            "lag": self.lag,
        }


def probe_consumer(bootstrap: str) -> AIOKafkaConsumer:
    """A consumer in no group that reads at most a record of each partition: to learn the
    high watermarks."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=1024,
        fetch_max_wait_ms=50,
        request_timeout_ms=5000,
    )


async def partitions_of(admin: AIOKafkaAdminClient, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of these topics, as the broker describes them now. (Not from a
    consumer's metadata: once it assign()s, its metadata covers only what it assigned.)"""
    wanted = list(dict.fromkeys(topics))
    described = {t["topic"]: t for t in await admin.describe_topics(wanted)}
    return [
        TopicPartition(topic, p["partition"])
        for topic in wanted
        if topic in described and not described[topic]["error_code"]
        for p in sorted(described[topic]["partitions"], key=lambda p: p["partition"])
    ]


async def group_lag(
    admin: AIOKafkaAdminClient,
    consumer: AIOKafkaConsumer,
    group: str,
    partitions: list[TopicPartition],
) -> list[PartitionLag]:
    """Each partition's lag for `group`, in the order given."""
    if not partitions:
        return []
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    positions = {}
    for tp in partitions:
        done = committed.get(tp)
        positions[tp] = done.offset if done is not None and done.offset >= 0 else 0
    ends = await end_offsets(consumer, positions)
    return [PartitionLag(tp.topic, tp.partition, positions[tp], ends[tp]) for tp in partitions]


async def end_offsets(
    consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """The end of each partition: the larger of what ListOffsets says and the high watermark
    of a fetch from the group's position (see the module's note on Tansu)."""
    listed = await consumer.end_offsets(list(positions))
    consumer.assign(list(positions))
    try:
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        for _ in range(10):  # a fetch or two tells every partition's high watermark
            await consumer.getmany(timeout_ms=200, max_records=1)
            if all(consumer.highwater(tp) is not None for tp in positions):
                break
        return {tp: max(listed[tp], consumer.highwater(tp) or 0) for tp in positions}
    finally:
        # Assigned, the consumer would go on fetching in the background until the next call:
        # load on the broker (and on a service that probes itself every two seconds).
        consumer.unsubscribe()
