"""`poolfin bench`: push N payments through a fresh embedded stack (four service processes)
and print settlements per second, latency percentiles from ERP publish to release, and the
services' memory. A script that prints figures, never a test.

With `--rate 0` (the default) every payment is published at once: the throughput is the
stack's capacity and the latency mostly queueing. With `--rate R` payments are paced at R per
second: below capacity, the latency is what one settlement costs end to end."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from poolfin.clients import Observer, Publisher, erp_event
from poolfin.stack import Stack
from shared.contracts import topics


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


async def _drive(stack: Stack, payments: int, pools: int, rate: float) -> dict[str, float]:
    run = uuid.uuid4().hex[:6]
    async with (
        Publisher(stack.bootstrap) as publisher,
        Observer(stack.bootstrap, [topics.CREDIT_POSITIONS, topics.SETTLEMENT_RESULTS]) as observer,
    ):
        pool_ids = [f"CE-BENCH/S-{run}-{i}" for i in range(pools)]
        for pool_id in pool_ids:
            await publisher.send(
                topics.ERP_SUPPLIERS,
                erp_event(
                    "SupplierOnboarded",
                    pool_id,
                    core_enterprise_id="CE-BENCH",
                    supplier_id=pool_id.split("/")[1],
                    supplier_name="bench",
                ),
            )
        await observer.wait_for(topics.CREDIT_POSITIONS, count=pools, timeout=60)
        print(f"  {pools} pools onboarded; pushing {payments} settlement slips …", flush=True)
        slips_started = time.monotonic()
        receivables = []
        for n in range(payments):
            pool_id = pool_ids[n % pools]
            receivable_id = f"R-{run}-{n}"
            receivables.append((pool_id, receivable_id))
            await publisher.send(
                topics.ERP_SETTLEMENT_SLIPS,
                erp_event(
                    "SettlementSlipIssued",
                    pool_id,
                    receivable_id=receivable_id,
                    amount="100.00",
                    issued_on="2026-07-01",
                ),
            )
        await publisher.flush()
        await observer.wait_for(topics.CREDIT_POSITIONS, count=pools + payments, timeout=600)
        slips_seconds = time.monotonic() - slips_started
        pace = f"at {rate:g}/s" if rate > 0 else "all at once"
        print(
            f"  slips in the pools after {slips_seconds:.1f}s; pushing {payments} payments "
            f"{pace} …",
            flush=True,
        )
        sent_at: dict[str, float] = {}
        cpu_before = cpu_seconds(stack)
        started = time.monotonic()
        for n, (pool_id, receivable_id) in enumerate(receivables):
            if rate > 0 and (wait := started + n / rate - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            payment_id = f"P-{run}-{n}"
            sent_at[payment_id] = await publisher.send(
                topics.ERP_PAYMENTS,
                erp_event(
                    "PaymentReceived",
                    pool_id,
                    payment_id=payment_id,
                    amount="100.00",
                    receivable_ids=[receivable_id],
                    paid_on="2026-08-03",
                ),
            )
        await publisher.flush()
        deadline = time.monotonic() + 600
        while (
            len(
                {b["payment_id"] for t, b, _ in observer.messages if t == topics.SETTLEMENT_RESULTS}
            )
            < payments
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("not all payments settled within 600s")
            await asyncio.sleep(0.05)
        cpu_after = cpu_seconds(stack)
        released_at = {}
        for topic, body, seen in observer.messages:
            if topic == topics.SETTLEMENT_RESULTS:
                released_at.setdefault(body["payment_id"], seen)
        finished = max(released_at.values())
        latencies = [(released_at[p] - sent_at[p]) * 1000 for p in sent_at]
        return {
            "slips_per_s": payments / slips_seconds,
            "settlements_per_s": payments / (finished - started),
            "p50_ms": _percentile(latencies, 0.50),
            "p99_ms": _percentile(latencies, 0.99),
            "max_ms": max(latencies),
            "mean_ms": statistics.fmean(latencies),
            **{
                f"cpu_ms_per_settlement:{part}": (cpu_after[part] - cpu_before.get(part, 0.0))
                * 1000
                / payments
                for part in cpu_after
            },
        }


def run_bench(payments: int, pools: int, rate: float = 0) -> dict[str, float]:
    print(
        f"poolfin bench: {payments} payments over {pools} pools, embedded Kafka (Tansu) + "
        "PostgreSQL, four service processes",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="poolfin-bench-") as tmp, Stack(Path(tmp)) as stack:
        figures = asyncio.run(_drive(stack, payments, pools, rate))
        rss = {
            name: psutil.Process(p.pid).memory_info().rss / 2**20
            for name, p in stack.processes.items()
        }
    print(f"  slips ingested      : {figures['slips_per_s']:8.0f} /s (intake → credit)")
    print(
        f"  settlements         : {figures['settlements_per_s']:8.0f} /s "
        "(ERP publish → release, end to end)"
    )
    print(
        f"  latency p50 / p99   : {figures['p50_ms']:8.0f} ms / {figures['p99_ms']:.0f} ms "
        f"(max {figures['max_ms']:.0f} ms)"
        + ("" if rate > 0 else "; all sent at once, so this is queueing (try --rate)")
    )
    print("  service memory (RSS): " + ", ".join(f"{n} {v:.0f} MiB" for n, v in rss.items()))
    cpu = {
        key.split(":", 1)[1]: value
        for key, value in figures.items()
        if key.startswith("cpu_ms_per_settlement:")
    }
    print(
        f"  CPU per settlement  : {sum(cpu.values()):.1f} ms in all — "
        + ", ".join(
            f"{part} {value:.1f}" for part, value in sorted(cpu.items(), key=lambda kv: -kv[1])
        )
    )
    return figures
