"""Issue 9: the ledger's chain heads anchored outside the database. Someone who can write the
splitter's tables rewrites a payment's history and re-hashes the chain so that the plain
`poolfin ledger verify` passes; `--anchors` replays the signed heads the splitter published
and finds it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from typing import Any

import asyncpg
import pytest

from poolfin.clients import Observer, Publisher, erp_event
from poolfin.stack import Stack
from services.settlement_splitter.domain import canonical_body, encode_canonical
from services.settlement_splitter.repository import chain
from shared.contracts import topics
from tests.environment import user_env
from tests.integration.scenario import open_pool, payment

pytestmark = pytest.mark.integration


async def verify(stack: Stack, *flags: str) -> tuple[int, dict[str, Any]]:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "poolfin.cli", "ledger", "verify", *flags],
        capture_output=True,
        text=True,
        timeout=180,
        env=user_env(
            POOLFIN_KAFKA_BOOTSTRAP=stack.bootstrap,
            POOLFIN_DATABASE_URL=stack.database_url,
            POOLFIN_KEYS_DIR=str(stack.keyring.directory),
        ),
    )
    assert done.stdout, done.stderr[-2000:]
    return done.returncode, json.loads(done.stdout)


async def rewrite_and_rehash(db: asyncpg.Connection, pool_id: str) -> None:
    """The attack: the first transaction's inputs changed, every hash after it recomputed,
    the links and the account's head moved along — a chain that verifies on its own."""
    await db.execute("SET search_path TO settlement")
    try:
        posted = await chain(db, pool_id)
        prev = posted[0].prev_hash
        for n, tx in enumerate(posted):
            inputs = json.loads(tx.inputs) if isinstance(tx.inputs, str) else dict(tx.inputs)
            if n == 0:
                inputs["paid_on"] = "2000-01-01"  # history says something else now
            body = canonical_body(
                prev,
                pool_id=tx.pool_id,
                seq=tx.seq,
                payment_id=tx.payment_id,
                kind=tx.kind,
                entries=tx.entries,
                inputs=inputs,
            )
            hashed = encode_canonical(body)
            digest = hashlib.sha256(hashed).hexdigest()
            await db.execute(
                "UPDATE ledger_transactions SET inputs = $3::jsonb, prev_hash = $4, hash = $5,"
                " hashed = $6 WHERE pool_id = $1 AND seq = $2",
                tx.pool_id,
                tx.seq,
                json.dumps(body["inputs"]),
                prev,
                digest,
                hashed,
            )
            prev = digest
        await db.execute(
            "UPDATE controlled_accounts SET head_hash = $2 WHERE pool_id = $1", pool_id, prev
        )
    finally:
        await db.execute("SET search_path TO public")


async def test_a_rewritten_and_rehashed_history_is_caught_by_the_anchors(
    stack: Stack, publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100.00", "50.00"])
    first, second = list(pool.slips)
    for slip, amount in ((first, "100.00"), (second, "50.00")):
        paid = payment(pool, amount, [slip])
        await publisher.send(topics.ERP_PAYMENTS, paid)
        await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=paid["payment_id"])
    anchors = await observer.wait_for(
        topics.SETTLEMENT_LEDGER_ANCHORS, pool_id=pool.pool_id, where=lambda a: a["seq"] == 4
    )
    assert anchors[0]["signature"].startswith("ed25519:settlement-splitter")
    code, report = await verify(stack, "--anchors")
    assert (code, report["problems"]) == (0, []), report
    assert report["anchors"]["anchors_proven"] >= 2

    await rewrite_and_rehash(db, pool.pool_id)
    code, plain = await verify(stack)
    assert [p for p in plain["problems"] if pool.pool_id in p] == []  # re-hashed: it passes
    code, report = await verify(stack, "--anchors")
    assert code == 1
    mine = [p for p in report["problems"] if pool.pool_id in p]
    assert mine and all("history rewritten" in p for p in mine), report["problems"]


async def test_a_forged_anchor_is_reported_and_never_trusted(
    stack: Stack, publisher: Publisher, observer: Observer
) -> None:
    forged = erp_event(
        "LedgerAnchored",
        "CE-TEST/forged-anchor",
        source="settlement-splitter",
        seq=1,
        head_hash="0" * 64,
    )
    await publisher.send(topics.SETTLEMENT_LEDGER_ANCHORS, forged, as_service="settlement-splitter")
    await observer.wait_for(topics.SETTLEMENT_LEDGER_ANCHORS, event_id=forged["event_id"])
    code, report = await verify(stack, "--anchors")
    assert code == 1
    assert any(
        "CE-TEST/forged-anchor" in p and "not signed by the platform" in p
        for p in report["problems"]
    ), report["problems"]
