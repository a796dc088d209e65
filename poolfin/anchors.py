"""`poolfin ledger verify --anchors`: the ledger's chain heads as the splitter published them,
signed, on settlement.ledger-anchors.v1, checked against the database. Re-hashing a rewritten
history makes the chain verify again, but its entries no longer carry the hashes that were
anchored outside the database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.contracts.messages import PartyRole
from shared.signatures import unproven
from shared.trust import RegisteredKey, key_id_of


async def read_topic(bootstrap: str, topic: str, say: Any = None) -> list[bytes]:
    """Every record of `topic` up to its end at the moment of reading (no consumer group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        found: set[int] | None = None
        for _ in range(50):
            found = consumer.partitions_for_topic(topic)
            if found:
                break
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        partitions = [TopicPartition(topic, p) for p in sorted(found or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        values: list[bytes] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in partitions])

        while await behind():
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                values.extend(r.value or b"" for r in records)
            if say is not None and batches:
                say(f"read {len(values)} anchors …")
        return values
    finally:
        await consumer.stop()


def check_anchors(
    raw_anchors: Sequence[bytes],
    keys: Mapping[str, RegisteredKey],
    recorded: Mapping[tuple[str, int], str],
) -> tuple[list[str], dict[tuple[str, int], str]]:
    """(problems, the anchors that are proven: (pool, seq) → hash). An anchor that is not
    signed by a platform key is reported and never trusted; a proven one must match the
    database's entry at its seq."""
    problems: list[str] = []
    proven: dict[tuple[str, int], str] = {}
    for raw in raw_anchors:
        try:
            document = json.loads(raw)
            pool_id, seq, digest = document["pool_id"], int(document["seq"]), document["head_hash"]
            at = datetime.fromisoformat(document["occurred_at"])
        except (ValueError, KeyError, TypeError):
            problems.append(f"an anchor is not a LedgerAnchored message: {raw[:80]!r}")
            continue
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        public = {k: v.key for k, v in keys.items() if v.role == PartyRole.PLATFORM.value}
        failure = unproven(document, public, at)
        if failure is not None:
            problems.append(
                f"anchor of {pool_id} at seq {seq} is not signed by the platform "
                f"({failure[0].value}: {failure[1]}); not trusted"
            )
            continue
        signer = keys[key_id_of(document) or ""].party_id
        if signer != "settlement-splitter":
            problems.append(f"anchor of {pool_id} at seq {seq} is signed by {signer}")
            continue
        proven[(pool_id, seq)] = digest
    for (pool_id, seq), digest in sorted(proven.items()):
        in_database = recorded.get((pool_id, seq))
        if in_database is None:
            problems.append(
                f"pool {pool_id}: seq {seq} was anchored ({digest[:16]}…) but the database "
                "has no such entry (history cut)"
            )
        elif in_database != digest:
            problems.append(
                f"pool {pool_id}: seq {seq} was anchored as {digest[:16]}… but the database "
                f"holds {in_database[:16]}… (history rewritten)"
            )
    return problems, proven


async def recorded_hashes(
    conn: Any, wanted: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    rows = await conn.fetch(
        "SELECT t.pool_id, t.seq, t.hash FROM settlement.ledger_transactions t"
        " JOIN unnest($1::text[], $2::bigint[]) AS w(pool_id, seq)"
        " ON t.pool_id = w.pool_id AND t.seq = w.seq",
        [pool for pool, _ in wanted],
        [seq for _, seq in wanted],
    )
    return {(r["pool_id"], r["seq"]): r["hash"] for r in rows}


async def audit_anchors(
    raw: Sequence[bytes], database_url: str, keys: Mapping[str, RegisteredKey]
) -> dict[str, Any]:
    """The anchors read from the topic (`read_topic`) against the database."""
    import asyncpg

    wanted: list[tuple[str, int]] = []
    for value in raw:
        try:
            document = json.loads(value)
            wanted.append((str(document["pool_id"]), int(document["seq"])))
        except (ValueError, KeyError, TypeError):
            continue
    conn = await asyncpg.connect(database_url)
    try:
        recorded = await recorded_hashes(conn, wanted)
    finally:
        await conn.close()
    problems, proven = check_anchors(raw, keys, recorded)
    return {
        "anchors": len(raw),
        "anchors_proven": len(proven),
        "pools_anchored": len({pool for pool, _ in proven}),
        "problems": problems,
    }
