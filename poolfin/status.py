"""`poolfin status`: what an operator checks first. For each service: whether each instance
is live (its /health, with a short timeout: a frozen one is down, "no answer"), how far its
consumer group lags behind its input topics, partition by partition, how many messages wait
in its outbox, and how many inputs it has dead-lettered (with the latest reason and when)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from poolfin.registry import SERVICES
from shared.lag import group_lag, partitions_of, probe_consumer
from shared.runtime import subscribed_topics
from shared.settings import Settings


async def _backlog(conn: asyncpg.Connection, schema: str) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"SELECT (SELECT count(*) FROM {schema}.outbox) AS outbox,"  # schema names are ours
        f" (SELECT count(*) FROM {schema}.dead_letters) AS dead_letters,"
        f" (SELECT reason FROM {schema}.dead_letters ORDER BY id DESC LIMIT 1) AS last_reason,"
        f" (SELECT max(rejected_at) FROM {schema}.dead_letters) AS last_dead_letter_at"
    )
    assert row is not None
    found = dict(row)
    at = found["last_dead_letter_at"]
    found["last_dead_letter_at"] = at.isoformat(timespec="seconds") if at else None
    return found


async def status(
    settings: Settings, health_urls: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One row per service. `health_urls`: instance name → its /health URL (from the running
    stack's stack.json); without them liveness is "unknown"."""
    from poolfin.dashboard import probe_health

    specs = [make(settings) for make in SERVICES.values()]
    urls = dict(health_urls or {})
    answers = await asyncio.gather(
        *(asyncio.to_thread(probe_health, url.removesuffix("/health")) for url in urls.values())
    )
    health = dict(zip(urls, answers, strict=True))
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = probe_consumer(settings.kafka_bootstrap)
    await admin.start()
    try:
        await consumer.start()
        conn = await asyncpg.connect(settings.database_url)
        try:
            rows = []
            partitions = {
                spec.name: await partitions_of(admin, subscribed_topics(spec)) for spec in specs
            }
            for spec in specs:
                group = f"{settings.group_prefix}.{spec.name}"
                lags = await group_lag(admin, consumer, group, partitions[spec.name])
                instances = {
                    name: answer
                    for name, answer in health.items()
                    if name.partition("#")[0] == spec.name
                }
                live = (
                    "unknown"
                    if not instances
                    else "up"
                    if all(a["status"] == "up" for a in instances.values())
                    else "down"
                )
                rows.append(
                    {
                        "service": spec.name,
                        "group": group,
                        "live": live,
                        "reasons": [
                            f"{name}: {why}"
                            for name, answer in instances.items()
                            for why in answer["reasons"]
                        ],
                        "lag": sum(p.lag for p in lags),
                        "partitions": [p.as_json() for p in lags],
                        **await _backlog(conn, spec.schema),
                    }
                )
            return rows
        finally:
            await conn.close()
            await consumer.stop()
    finally:
        await admin.close()


def render(rows: list[dict[str, Any]], all_partitions: bool = False) -> str:
    header = f"{'service':<20} {'live':<8} {'lag':>7} {'outbox':>7} {'dead letters':>13}  latest"
    lines = [header, "-" * len(header)]
    for row in rows:
        latest = (
            f"{row['last_reason']} at {row['last_dead_letter_at']}" if row["last_reason"] else "-"
        )
        lines.append(
            f"{row['service']:<20} {row['group']:<29} {row['live']:<8} {row['lag']:>7} "
            f"{row['outbox']:>7} {row['dead_letters']:>13}  {latest}"
        )
        lines += [f"    down: {why}" for why in row["reasons"]]
        for p in row["partitions"]:
            if all_partitions or p["lag"]:
                lines.append(
                    f"    {p['topic']}[{p['partition']}]  committed {p['committed']}"
                    f"  end {p['end']}  lag {p['lag']}"
                )
    return "\n".join(lines)
