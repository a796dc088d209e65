"""`poolfin status`: what an operator checks first. For each service: how far its consumer
group lags behind its input topics, how many messages wait in its outbox, and how many inputs
it has dead-lettered (with the latest reason)."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from poolfin.registry import SERVICES
from shared.settings import Settings


async def _lag(
    admin: AIOKafkaAdminClient,
    consumer: AIOKafkaConsumer,
    group: str,
    partitions: list[TopicPartition],
) -> tuple[int, int]:
    """(messages not yet consumed, partitions) of `group` over `partitions`."""
    if not partitions:
        return 0, 0
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    positions = {}
    for tp in partitions:
        done = committed.get(tp)
        positions[tp] = done.offset if done is not None and done.offset >= 0 else 0
    ends = await _end_offsets(consumer, positions)
    return sum(max(0, ends[tp] - positions[tp]) for tp in partitions), len(partitions)


async def _end_offsets(
    consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """The end of each partition: the larger of what ListOffsets says and the high watermark
    of a fetch from the group's position. Tansu answers ListOffsets with the count of record
    batches rather than the next offset, so ListOffsets alone under-reports its lag."""
    listed = await consumer.end_offsets(list(positions))
    consumer.assign(list(positions))
    for tp, offset in positions.items():
        consumer.seek(tp, offset)
    for _ in range(10):  # a fetch or two tells every partition's high watermark
        await consumer.getmany(timeout_ms=200, max_records=1)
        if all(consumer.highwater(tp) is not None for tp in positions):
            break
    return {tp: max(listed[tp], consumer.highwater(tp) or 0) for tp in positions}


async def _backlog(conn: asyncpg.Connection, schema: str) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"SELECT (SELECT count(*) FROM {schema}.outbox) AS outbox,"  # schema names are ours
        f" (SELECT count(*) FROM {schema}.dead_letters) AS dead_letters,"
        f" (SELECT reason FROM {schema}.dead_letters ORDER BY id DESC LIMIT 1) AS last_reason"
    )
    assert row is not None
    return dict(row)


async def status(settings: Settings) -> list[dict[str, Any]]:
    specs = [make(settings) for make in SERVICES.values()]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=1024,
        fetch_max_wait_ms=50,
    )
    await admin.start()
    try:
        await consumer.start()
        await consumer.topics()  # metadata of every topic, read before any assign() narrows it
        partitions = {
            spec.name: [
                TopicPartition(topic, p)
                for topic in spec.topics
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            for spec in specs
        }
        conn = await asyncpg.connect(settings.database_url)
        try:
            rows = []
            for spec in specs:
                group = f"{settings.group_prefix}.{spec.name}"
                lag, count = await _lag(admin, consumer, group, partitions[spec.name])
                backlog = await _backlog(conn, spec.schema)
                rows.append(
                    {
                        "service": spec.name,
                        "group": group,
                        "partitions": count,
                        "lag": lag,
                        **backlog,
                    }
                )
            return rows
        finally:
            await conn.close()
            await consumer.stop()
    finally:
        await admin.close()


def render(rows: list[dict[str, Any]]) -> str:
    header = f"{'service':<20} {'group':<29} {'lag':>7} {'outbox':>7} {'dead letters':>13}  latest"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['service']:<20} {row['group']:<29} {row['lag']:>7} "
            f"{row['outbox']:>7} {row['dead_letters']:>13}  {row['last_reason'] or '-'}"
        )
    return "\n".join(lines)
