"""credit's HTTP front: a supplier checks its pool and applies online, over the real stack."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from poolfin.clients import Observer, Publisher
from poolfin.stack import Stack
from shared.contracts import topics
from tests.integration.scenario import facility, open_pool

pytestmark = pytest.mark.integration


async def call(
    stack: Stack, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    def send() -> tuple[int, dict[str, Any], dict[str, str]]:
        request = urllib.request.Request(
            stack.http_url + path,
            data=body,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), dict(error.headers)

    return await asyncio.to_thread(send)


async def test_health(stack: Stack) -> None:
    status, body, _ = await call(stack, "GET", "/health")
    assert (status, body) == (
        200,
        {"service": "credit", "status": "ok", "database": "ok", "kafka": "ok"},
    )


async def test_a_supplier_sees_its_pool_and_applies_online(
    stack: Stack, publisher: Publisher, observer: Observer
) -> None:
    pool = await open_pool(publisher, observer, ["60000.00", "40000.00"], facility())
    status, position, _ = await call(stack, "GET", f"/pools/{pool.pool_id}")
    assert status == 200
    assert {
        k: position[k]
        for k in ("water_level", "borrowing_base", "loan_balance", "in_flight", "available")
    } == {
        "water_level": "100000.00",
        "borrowing_base": "80000.00",
        "loan_balance": "0.00",
        "in_flight": "0.00",
        "available": "80000.00",
    }
    assert position["facility"]["discount_rate"] == "0.80000000"
    assert position["supplier_id"] == pool.supplier_id and position["loans"] == []

    status, accepted, headers = await call(
        stack, "POST", f"/pools/{pool.pool_id}/applications", b'{"amount": "50000.00"}'
    )
    assert status == 202 and accepted["status"] == "submitted"
    assert headers["location"] == accepted["status_url"]
    # It went the way every application goes: the topic, then credit's decision.
    [decision] = await observer.wait_for(
        topics.CREDIT_DECISIONS, application_id=accepted["application_id"]
    )
    assert decision["state"] == "awaiting_buyer"
    status, application, _ = await call(stack, "GET", accepted["status_url"])
    assert (status, application["state"], application["amount"]) == (
        200,
        "awaiting_buyer",
        "50000.00",
    )
    _, position, _ = await call(stack, "GET", f"/pools/{pool.pool_id}")
    assert (position["in_flight"], position["available"]) == ("50000.00", "30000.00")


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b'{"amount": "10.005"}', 422, "invalid_amount"),
        (b'{"amount": 100}', 422, "invalid_amount"),
        (b'{"amount": "-1.00"}', 422, "invalid_amount"),
        (b"{}", 422, "invalid_amount"),
        (b'{"amount": "1.00", "application_id": "has spaces"}', 422, "invalid_message"),
        (b"amount=100", 400, "not_json"),
        (b'["100.00"]', 400, "invalid_message"),
    ],
)
async def test_a_bad_application_is_refused_with_its_reason_and_not_published(
    stack: Stack, publisher: Publisher, observer: Observer, body: bytes, status: int, reason: str
) -> None:
    pool = await open_pool(publisher, observer, ["100.00"], facility())
    got, error, _ = await call(stack, "POST", f"/pools/{pool.pool_id}/applications", body)
    assert (got, error["error"]) == (status, reason)
    assert error["detail"]
    # Nothing was published: a good application sent after it, on the same partition (the
    # pool's key), is the first decision the pool gets.
    got, accepted, _ = await call(
        stack, "POST", f"/pools/{pool.pool_id}/applications", b'{"amount": "1.00"}'
    )
    assert got == 202, accepted
    await observer.wait_for(topics.CREDIT_DECISIONS, application_id=accepted["application_id"])
    assert [
        d["application_id"] for d in observer.find(topics.CREDIT_DECISIONS, pool_id=pool.pool_id)
    ] == [accepted["application_id"]]


async def test_unknown_pools_and_applications_are_404_with_the_reason(stack: Stack) -> None:
    for method, path, body in (
        ("GET", "/pools/CE-X/nobody", None),
        ("POST", "/pools/CE-X/nobody/applications", b'{"amount": "1.00"}'),
        ("GET", "/pools/CE-X/nobody/applications/A-1", None),
    ):
        status, error, _ = await call(stack, method, path, body)
        assert status == 404, path
        assert error["error"] in {"unknown_pool", "unknown_application"}
