"""funding-gateway's handlers on the in-memory fake store."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.funding_gateway.handlers import handle
from services.funding_gateway.repository import GatewayBatch, InMemoryGatewayStore
from shared.contracts import messages as m
from shared.contracts import topics
from tests.unit.batches import Emitted, run_batch

POOL = "CE-1/S-1"


def requested(request_id: str = "A-1", amount: str = "800.00") -> m.Message:
    return m.new_event(
        m.LoanRequested,
        source="credit",
        pool_id=POOL,
        request_id=request_id,
        funder_id="bank-a",
        supplier_id="S-1",
        amount=Decimal(amount),
        annual_interest_rate=Decimal("0.0435"),
        tenor_days=180,
    )


def answered(decision: str, amount: str | None = None, **fields: Any) -> m.Message:
    return m.new_event(
        m.FunderResponse,
        source="bank-a",
        pool_id=fields.pop("pool_id", POOL),
        request_id="A-1",
        funder_id=fields.pop("funder_id", "bank-a"),
        decision=m.FunderDecision(decision),
        amount=Decimal(amount) if amount else None,
        **fields,
    )


async def batch(
    store: InMemoryGatewayStore, *events: m.Message
) -> tuple[Emitted, list[str | None]]:
    return await run_batch(GatewayBatch(store=store), handle, *events)


async def test_a_request_goes_to_its_funders_own_topic_once() -> None:
    store = InMemoryGatewayStore()
    emitted, reasons = await batch(store, requested(), requested())
    assert reasons == [None, "invalid_message"]
    assert [topic for topic, _ in emitted] == [topics.funder_requests_topic("bank-a")]
    assert store.request_rows["A-1"].state == "sent"


async def test_a_platform_approves_then_disburses_and_nothing_after() -> None:
    store = InMemoryGatewayStore()
    await batch(store, requested())
    emitted, reasons = await batch(
        store,
        answered("approved"),
        answered("disbursed", "800.00"),
        answered("rejected"),
    )
    assert reasons == [None, None, "application_not_pending"]
    assert [body["decision"] for _, body in emitted] == ["approved", "disbursed"]
    assert store.request_rows["A-1"].state == "disbursed"
    assert [a.decision for a in store.answers] == ["approved", "disbursed"]


async def test_only_the_funder_it_went_to_for_its_pool_may_answer() -> None:
    store = InMemoryGatewayStore()
    await batch(store, requested())
    _, reasons = await batch(
        store,
        answered("disbursed", "800.00", funder_id="bank-b"),
        answered("disbursed", "800.00", pool_id="CE-1/S-2"),
        answered("disbursed", "799.99"),
    )
    assert reasons == ["unknown_request", "unknown_request", "amount_mismatch"]
    assert store.request_rows["A-1"].state == "sent"
