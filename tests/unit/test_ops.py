"""A service's health verdicts and metrics (shared/ops.py), on their own: when the consumer
or the relay counts as stalled, what live and ready mean, and what a batch adds to /metrics.
The same endpoints are scraped and probed on the real stack in
tests/integration/test_operators.py."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client.parser import text_string_to_metric_families

from shared.contracts import messages as m
from shared.ops import Health, ServiceMetrics


def health() -> Health:
    return Health("credit", interval_s=2, stall_s=30, relay_stall_s=30)


def test_the_consumer_is_stalled_only_when_records_wait_and_nothing_moves_for_long() -> None:
    h = health()
    assert h.consumer_check(committed=10, lag=0, now=0) is None
    assert h.consumer_check(committed=10, lag=5, now=20) is None  # waiting, not for long
    assert h.consumer_check(committed=12, lag=3, now=45) is None  # it moved on
    stalled = h.consumer_check(committed=12, lag=3, now=80)
    assert stalled is not None and stalled.startswith("consumer stalled: 3 records wait")
    assert h.consumer_check(committed=15, lag=0, now=81) is None  # caught up: well again
    assert h.consumer_check(committed=15, lag=0, now=500) is None  # idle is not stalled


def test_the_relay_is_stalled_when_its_oldest_row_is_too_old() -> None:
    h = health()
    assert h.relay_check(29.0) is None
    why = h.relay_check(31.0)
    assert why is not None and "oldest unsent outbox row is 31 s old" in why


def test_live_fails_on_a_stall_and_ready_on_anything_with_every_reason_told() -> None:
    h = health()
    assert h.verdict(now=0)["ready"] is False  # before the first round: not ready
    h.checks, h.checked_at = {"database": None, "broker": None, "consumer": None}, 100.0
    assert h.verdict(now=101) | {"lag": []} == {
        "service": "credit",
        "status": "up",
        "live": True,
        "ready": True,
        "reasons": [],
        "checks": {"database": "ok", "broker": "ok", "consumer": "ok"},
        "lag": [],
    }
    h.checks = {"database": "no answer from PostgreSQL within 2 s", "consumer": None}
    unreachable = h.verdict(now=101)
    assert (unreachable["live"], unreachable["ready"], unreachable["status"]) == (
        True,
        False,
        "down",
    )
    assert unreachable["reasons"] == ["database: no answer from PostgreSQL within 2 s"]
    h.checks = {"consumer": "consumer stalled: …", "database": None}
    assert h.verdict(now=101)["live"] is False
    h.checks = {"database": None}
    stale = h.verdict(now=200)  # the checks themselves stopped: a blocked loop
    assert stale["live"] is False and stale["reasons"][0].startswith("checks: health checks last")


def _samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }


def test_outcomes_dead_letters_and_settlements_are_counted() -> None:
    metrics = ServiceMetrics("settlement-splitter")
    metrics.outcome("pool.events.v1", "effect")
    metrics.outcome("pool.events.v1", "dead_letter", "not_json")
    metrics.batch(0.004)
    metrics.handled("ReceivablesSettled", 0.001)
    released = m.new_event(
        m.SettlementReleased,
        source="settlement-splitter",
        pool_id="CE-1/S-1",
        payment_id="P-1",
        amount=Decimal("100.00"),
        repaid_principal=Decimal("60.00"),
        repaid_interest=Decimal("1.50"),
        fees=Decimal("0.50"),
        released=Decimal("38.00"),
        ledger_hash="0" * 64,
    )
    metrics.emitted(
        [
            released,
            m.new_event(
                m.PoolOpened, source="x", pool_id="p", core_enterprise_id="c", supplier_id="s"
            ),
        ]
    )
    got = _samples(metrics)
    service = ("service", "settlement-splitter")
    assert (
        got[
            (
                "poolfin_messages_total",
                (("outcome", "effect"), service, ("topic", "pool.events.v1")),
            )
        ]
        == 1
    )
    assert (
        got[
            (
                "poolfin_dead_letters_total",
                (("reason", "not_json"), service, ("topic", "pool.events.v1")),
            )
        ]
        == 1
    )
    assert got[("poolfin_batches_total", (service,))] == 1
    assert got[("poolfin_settlements_total", (service,))] == 1
    assert got[("poolfin_money_cny_total", (("movement", "repaid"), service))] == 61.5
    assert got[("poolfin_money_cny_total", (("movement", "released"), service))] == 38.0
    assert got[("poolfin_handler_seconds_count", (service, ("type", "ReceivablesSettled")))] == 1
