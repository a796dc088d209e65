"""`poolfin bench`: push N payments through a fresh embedded stack (four service processes)
and print settlements per second, latency percentiles from ERP publish to release, and the
services' memory. A script that prints figures, never a test.

With `--rate 0` (the default) every payment is published at once: the throughput is the
stack's capacity and the latency mostly queueing. With `--rate R` payments are paced at R per
second: below capacity, the latency is what one settlement costs end to end."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from poolfin import scenario
from poolfin.clients import Observer, Publisher
from poolfin.stack import Stack
from shared.calendar import business_date
from shared.contracts import topics
from shared.runtime import ensure_topics


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU time (user + system) used so far by each part of the stack, PostgreSQL's backends
    included; the difference of two snapshots says where a phase spent its time."""

    def used(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
            return float(times.user + times.system)
        except psutil.NoSuchProcess:
            return 0.0

    parts = {name: used(psutil.Process(p.pid)) for name, p in stack.processes.items()}
    if stack.kafka is not None and stack.kafka.pid is not None:
        parts["kafka (tansu)"] = used(psutil.Process(stack.kafka.pid))
    if stack.postgres is not None:
        data_dir = str(stack.postgres.data_dir)
        for process in psutil.process_iter(["name", "cmdline"]):
            if process.info["name"] == "postgres" and data_dir in " ".join(
                process.info["cmdline"] or []
            ):
                parts["postgresql"] = used(process) + sum(
                    used(child) for child in process.children(recursive=True)
                )
                break
    return parts


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


FUNDER = "bench-bank"
SLIP = Decimal("100.00")


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: {what} not reached within {timeout:.0f}s")
        await asyncio.sleep(0.1)


async def _preload(db: asyncpg.Connection, pool_ids: list[str], count: int, run: str) -> None:
    """`count` open receivables of 1.00 spread over the pools, written straight into intake's
    registry and credit's levels (as if an ERP had pushed them long ago): the measured path
    then runs against pools that already hold that much."""
    per_pool = -(-count // len(pool_ids))
    for index, pool_id in enumerate(pool_ids):
        n = min(per_pool, count - index * per_pool)
        if n <= 0:
            break
        await db.execute(
            "INSERT INTO intake.receivables(core_enterprise_id, receivable_id, pool_id, amount,"
            " issued_on, state) SELECT $1, $2 || g, $3, 1.00, current_date, 'open'"
            " FROM generate_series(1, $4) AS g",
            CORE,
            f"PRE-{run}-{index}-",
            pool_id,
            n,
        )
        await db.execute(
            "UPDATE credit.pools SET water_level = water_level + $2 WHERE pool_id = $1",
            pool_id,
            Decimal(n),
        )


CORE = "CE-BENCH"


async def _setup(
    stack: Stack, db: asyncpg.Connection, payments: int, pools: int, preload: int, run: str
) -> list[tuple[str, str]]:
    """Pools with a facility, a slip per payment, and in every pool a loan as large as the
    base, disbursed 30 days ago: every payment then repays principal and interest."""
    today = business_date()
    pool_ids = [f"{CORE}/S-{run}-{i}" for i in range(pools)]
    async with (
        Publisher(stack.bootstrap, stack.keyring) as publisher,
        Observer(
            stack.bootstrap, [topics.funder_requests_topic(FUNDER), topics.FUNDING_CONTRACTS]
        ) as funder,
    ):
        for pool_id in pool_ids:
            await publisher.send(*scenario.onboarding(pool_id, CORE, pool_id.split("/")[1]))
            await publisher.send(
                *scenario.facility(pool_id, line="999999999999.99", rate="0.8", funder=FUNDER)
            )
        await publisher.flush()
        await _until(
            lambda: _is(
                db,
                "SELECT count(*) FROM credit.facilities WHERE pool_id LIKE $1",
                pools,
                f"%-{run}-%",
            ),
            "pools and facilities",
        )
        if preload:
            print(f"  preloading {preload} open receivables …", flush=True)
            await _preload(db, pool_ids, preload, run)
        print(f"  {pools} pools with a facility; pushing {payments} settlement slips …", flush=True)
        receivables = []
        for n in range(payments):
            pool_id = pool_ids[n % pools]
            receivables.append((pool_id, f"R-{run}-{n}"))
            await publisher.send(*scenario.slip(pool_id, f"R-{run}-{n}", str(SLIP), today))
        await publisher.flush()
        level = SLIP * payments + preload
        await _until(
            lambda: _is(
                db,
                "SELECT sum(water_level) FROM credit.pools WHERE pool_id LIKE $1",
                level,
                f"%-{run}-%",
            ),
            "slips in the pools",
        )
        print(
            f"  borrowing the whole base in every pool (disbursed {today}) …",
            flush=True,
        )
        for pool_id in pool_ids:
            pool_level = await db.fetchval(
                "SELECT water_level FROM credit.pools WHERE pool_id = $1", pool_id
            )
            base = (pool_level * Decimal("0.8")).quantize(Decimal("0.01"))
            application_id = f"A-{pool_id.split('/')[1]}"
            await publisher.send(*scenario.application(pool_id, application_id, str(base)))
        await publisher.flush()
        # The buyer confirms what credit has on record: the two travel different topics, and
        # a confirmation that overtook its application would be refused.
        await _until(
            lambda: _is(
                db,
                "SELECT count(*) FROM credit.applications"
                " WHERE pool_id LIKE $1 AND state = 'awaiting_buyer'",
                pools,
                f"%-{run}-%",
            ),
            "every application awaiting its buyer",
        )
        for pool_id in pool_ids:
            await publisher.send(*scenario.confirmation(pool_id, f"A-{pool_id.split('/')[1]}"))
        await publisher.flush()
        # Each supplier signs its loan contract; then the bank is asked.
        contracts = await funder.wait_for(
            topics.FUNDING_CONTRACTS,
            count=pools,
            timeout=600,
            where=lambda c: f"-{run}-" in c["pool_id"],
        )
        for issued in contracts:
            await publisher.send(*scenario.contract_signature(issued))
        await publisher.flush()
        requests = await funder.wait_for(
            topics.funder_requests_topic(FUNDER), count=pools, timeout=600
        )
        for request in requests:
            await publisher.send(*scenario.disbursal(request, today))
        await publisher.flush()
        await _until(
            lambda: _is(
                db, "SELECT count(*) FROM credit.loans WHERE pool_id LIKE $1", pools, f"%-{run}-%"
            ),
            "a loan in every pool",
        )
    return receivables


async def _is(db: asyncpg.Connection, sql: str, expected: object, *args: object) -> bool:
    return bool(await db.fetchval(sql, *args) == expected)


async def _measure(
    stack: Stack, receivables: list[tuple[str, str]], rate: float, run: str
) -> dict[str, float]:
    today = business_date()
    payments = len(receivables)
    async with (
        Publisher(stack.bootstrap, stack.keyring) as publisher,
        Observer(stack.bootstrap, [topics.SETTLEMENT_RESULTS]) as observer,
    ):
        sent_at: dict[str, float] = {}
        cpu_before = cpu_seconds(stack)
        started = time.monotonic()
        for n, (pool_id, receivable_id) in enumerate(receivables):
            if rate > 0 and (wait := started + n / rate - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            payment_id = f"P-{run}-{n}"
            sent_at[payment_id] = await publisher.send(
                *scenario.payment(pool_id, payment_id, str(SLIP), [receivable_id], today)
            )
        await publisher.flush()
        released: dict[str, tuple[float, dict[str, Any]]] = {}
        deadline = time.monotonic() + 600
        while len(released) < payments:
            for topic, body, seen in observer.messages[len(released) :]:
                if topic == topics.SETTLEMENT_RESULTS and body["payment_id"] in sent_at:
                    released.setdefault(body["payment_id"], (seen, body))
            if len(released) < payments:
                if time.monotonic() > deadline:
                    raise TimeoutError("not all payments settled within 600s")
                await asyncio.sleep(0.05)
        cpu_after = cpu_seconds(stack)
    finished = max(seen for seen, _ in released.values())
    latencies = [(released[p][0] - sent_at[p]) * 1000 for p in sent_at]
    bodies = [body for _, body in released.values()]
    return {
        "payments": payments,
        "settlements_per_s": payments / (finished - started),
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
        "max_ms": max(latencies),
        "mean_ms": statistics.fmean(latencies),
        "repaid_principal": float(sum(Decimal(b["repaid_principal"]) for b in bodies)),
        "repaid_interest": float(sum(Decimal(b["repaid_interest"]) for b in bodies)),
        "released": float(sum(Decimal(b["released"]) for b in bodies)),
        **{
            f"cpu_ms_per_settlement:{part}": (cpu_after[part] - cpu_before.get(part, 0.0))
            * 1000
            / payments
            for part in cpu_after
        },
    }


async def _ceiling(stack: Stack, events: int, pools: int) -> float:
    """The stack's own ceiling, in the same run: a bare batched consume → one PostgreSQL
    statement per batch → produce loop on the same broker and database (events/s per hop)."""
    run = uuid.uuid4().hex[:6]
    source, sink = f"bench.ceiling.{run}.in", f"bench.ceiling.{run}.out"
    await ensure_topics(stack.bootstrap, [source, sink], 3)
    db = await asyncpg.connect(stack.database_url)
    await db.execute(
        "CREATE TABLE IF NOT EXISTS public.bench_ceiling (pool_id text PRIMARY KEY, n bigint)"
    )
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=2)
    await producer.start()
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=stack.bootstrap,
        group_id=f"bench-ceiling-{run}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    try:
        body = json.dumps({"type": "Ceiling", "amount": "100.00", "pad": "x" * 200}).encode()
        for n in range(events):
            await producer.send(source, body, key=f"pool-{n % pools}".encode())
        await producer.flush()
        await consumer.start()
        done = 0
        started = time.monotonic()
        while done < events:
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            records = [r for batch in batches.values() for r in batch]
            if not records:
                continue
            keys = [r.key.decode() for r in records if r.key is not None]
            async with db.transaction():
                await db.execute(
                    "INSERT INTO public.bench_ceiling(pool_id, n) SELECT k, count(*)"
                    " FROM unnest($1::text[]) AS k GROUP BY k"
                    " ON CONFLICT (pool_id) DO UPDATE SET n = bench_ceiling.n + EXCLUDED.n",
                    keys,
                )
            for record in records:  # every hop decodes what it reads
                json.loads(record.value or b"{}")
            pending = [await producer.send(sink, r.value, key=r.key) for r in records]
            await asyncio.gather(*pending)
            await consumer.commit()
            done += len(records)
        return events / (time.monotonic() - started)
    finally:
        await consumer.stop()
        await producer.stop()
        await db.close()


def run_bench(
    payments: int,
    pools: int,
    rate: float = 0,
    *,
    open_receivables: int = 0,
    ceiling: bool = False,
    as_json: bool = False,
) -> dict[str, Any]:
    say = (lambda *_: None) if as_json else print
    say(
        f"poolfin bench: {payments} payments over {pools} pools on the real path (facility, a "
        "loan in every pool, each payment repays principal and interest), embedded Kafka "
        "(Tansu) + PostgreSQL, four service processes"
    )
    run = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="poolfin-bench-") as tmp, Stack(Path(tmp)) as stack:

        async def drive() -> dict[str, Any]:
            db = await asyncpg.connect(stack.database_url)
            try:
                receivables = await _setup(stack, db, payments, pools, open_receivables, run)
            finally:
                await db.close()
            pace = f"at {rate:g}/s" if rate > 0 else "all at once"
            say(f"  pushing {payments} payments {pace} …")
            figures: dict[str, Any] = await _measure(stack, receivables, rate, run)
            if ceiling:
                say(f"  measuring the stack's ceiling with {payments} events …")
                figures["ceiling_events_per_s"] = await _ceiling(stack, payments, pools)
                figures["fraction_of_ceiling"] = (
                    figures["settlements_per_s"] / figures["ceiling_events_per_s"]
                )
            return figures

        with contextlib.redirect_stdout(io.StringIO()) if as_json else contextlib.nullcontext():
            figures = asyncio.run(drive())
        figures["rss_mib"] = {
            name: round(psutil.Process(p.pid).memory_info().rss / 2**20, 1)
            for name, p in stack.processes.items()
        }
    cpu = {
        key.split(":", 1)[1]: value
        for key, value in figures.items()
        if key.startswith("cpu_ms_per_settlement:")
    }
    summary = {
        "payments": payments,
        "pools": pools,
        "rate": rate,
        "open_receivables": open_receivables,
        "settlements_per_s": round(figures["settlements_per_s"], 1),
        "p50_ms": round(figures["p50_ms"], 1),
        "p99_ms": round(figures["p99_ms"], 1),
        "max_ms": round(figures["max_ms"], 1),
        "cpu_ms_per_settlement": round(sum(cpu.values()), 3),
        "cpu_ms_per_settlement_by_component": {k: round(v, 3) for k, v in cpu.items()},
        "repaid_principal": f"{figures['repaid_principal']:.2f}",
        "repaid_interest": f"{figures['repaid_interest']:.2f}",
        "released": f"{figures['released']:.2f}",
        "rss_mib": figures["rss_mib"],
    }
    if ceiling:
        summary["ceiling_events_per_s"] = round(figures["ceiling_events_per_s"], 1)
        summary["fraction_of_ceiling"] = round(figures["fraction_of_ceiling"], 4)
    if as_json:
        print(json.dumps(summary))
        return summary
    print(
        f"  settlements         : {summary['settlements_per_s']:8.0f} /s "
        "(ERP publish → release, end to end)"
    )
    print(
        f"  latency p50 / p99   : {summary['p50_ms']:8.0f} ms / {summary['p99_ms']:.0f} ms "
        f"(max {summary['max_ms']:.0f} ms)"
        + ("" if rate > 0 else "; all sent at once, so this is queueing (try --rate)")
    )
    print(
        f"  repaid / released   : principal {summary['repaid_principal']}, interest "
        f"{summary['repaid_interest']}, released {summary['released']}"
    )
    print(
        "  service memory (RSS): "
        + ", ".join(f"{n} {v:.0f} MiB" for n, v in summary["rss_mib"].items())
    )
    print(
        f"  CPU per settlement  : {sum(cpu.values()):.2f} ms in all — "
        + ", ".join(
            f"{part} {value:.2f}" for part, value in sorted(cpu.items(), key=lambda kv: -kv[1])
        )
    )
    if ceiling:
        print(
            f"  ceiling             : {summary['ceiling_events_per_s']:8.0f} events/s per hop "
            f"(bare consume → PostgreSQL → produce); settlements are "
            f"{summary['fraction_of_ceiling']:.1%} of it"
        )
    return summary
