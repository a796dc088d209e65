"""One contract for funding-gateway's store, run against the in-memory fake and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from services.funding_gateway.repository import (
    Answer,
    GatewayChanges,
    GatewayStore,
    InMemoryGatewayStore,
    PostgresGatewayStore,
    Request,
)
from tests.integration.scenario import contract_store

pytestmark = pytest.mark.integration

store = contract_store(InMemoryGatewayStore, PostgresGatewayStore, "funding_gateway")


def request(request_id: str) -> Request:
    return Request(request_id, "P-1", "bank-a", "S-1", Decimal("100.00"), "sent")


async def test_requests_read_back_and_move_with_their_answers(store: GatewayStore) -> None:
    await store.write(GatewayChanges(new_requests=[request("A-1"), request("A-2")]))
    await store.write(
        GatewayChanges(
            answers=[Answer("e-1", "A-1", "disbursed", Decimal("100.00"))],
            states={"A-1": "disbursed"},
        )
    )
    found = await store.requests(["A-2", "A-1", "A-9"])
    assert [(r.request_id, r.state) for r in found] == [("A-1", "disbursed"), ("A-2", "sent")]
    assert found[0] == Request("A-1", "P-1", "bank-a", "S-1", Decimal("100.00"), "disbursed")


async def test_a_request_sent_twice_is_refused_by_the_store(store: GatewayStore) -> None:
    await store.write(GatewayChanges(new_requests=[request("A-1")]))
    with pytest.raises((ValueError, asyncpg.UniqueViolationError)):
        await store.write(GatewayChanges(new_requests=[request("A-1")]))
