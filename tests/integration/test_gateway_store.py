"""One contract for funding-gateway's store, run against the in-memory fake and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
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
from shared.calendar import business_date
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
    assert found[0] == Request(
        "A-1", "P-1", "bank-a", "S-1", Decimal("100.00"), "disbursed", sent_at=found[0].sent_at
    )


async def test_a_request_keeps_its_business_day_and_when_it_was_sent(store: GatewayStore) -> None:
    sent_at = datetime(2026, 8, 4, 17, 30, tzinfo=UTC)
    await store.write(
        GatewayChanges(
            new_requests=[
                dataclasses.replace(request("A-1"), requested_on=date(2026, 8, 3), sent_at=sent_at),
                request("A-2"),  # sent without a business day, as before issue 8
            ]
        )
    )
    await store.write(
        GatewayChanges(
            answers=[Answer("e-1", "A-1", "disbursed", Decimal("100.00"), date(2026, 8, 4))],
            states={"A-1": "disbursed"},
        )
    )
    first, second = await store.requests(["A-1", "A-2"])
    assert (first.requested_on, first.sent_at, first.requested_day) == (
        date(2026, 8, 3),
        sent_at,
        date(2026, 8, 3),
    )
    assert second.requested_on is None and second.sent_at is not None  # stamped when written
    assert second.requested_day == business_date(second.sent_at)


async def test_a_request_sent_twice_is_refused_by_the_store(store: GatewayStore) -> None:
    await store.write(GatewayChanges(new_requests=[request("A-1")]))
    with pytest.raises((ValueError, asyncpg.UniqueViolationError)):
        await store.write(GatewayChanges(new_requests=[request("A-1")]))
