"""credit's HTTP front: a supplier checks its pool and applies online, over the real stack."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from poolfin.clients import Observer, Publisher
from poolfin.stack import Stack
from poolfin.tokens import mint, token_for
from shared.contracts import topics
from shared.contracts.messages import PartyRole
from shared.signatures import new_ed25519_key
from tests.integration.scenario import facility, open_pool, token

pytestmark = pytest.mark.integration


async def call(
    stack: Stack,
    method: str,
    path: str,
    body: bytes | None = None,
    as_party: str | None = "supplier",
    bearer: str | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One call, by default with the token of the pool's supplier the path names; `as_party`
    "core_enterprise" or "operator" for theirs, None for none; `bearer` for a given one."""
    headers = {"Content-Type": "application/json"}
    if bearer is None and as_party is not None and path != "/health":
        bearer = token(stack, path, PartyRole(as_party))
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"

    def send() -> tuple[int, dict[str, Any], dict[str, str]]:
        request = urllib.request.Request(
            stack.http_url + path,
            data=body,
            method=method,
            headers=headers,
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
    assert position["facility"]["discount_rate"] == "0.8"  # canonical, as on the topics
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


async def test_unknown_pools_are_404_to_an_operator_and_403_to_a_party(
    stack: Stack, publisher: Publisher, observer: Observer
) -> None:
    status, error, _ = await call(stack, "GET", "/pools/CE-X/nobody", as_party="operator")
    assert (status, error["error"]) == (404, "unknown_pool")
    # A party learns nothing about pools that are not its own, existing or not.
    for method, path, body in (
        ("GET", "/pools/CE-X/nobody", None),
        ("POST", "/pools/CE-X/nobody/applications", b'{"amount": "1.00"}'),
    ):
        status, error, _ = await call(stack, method, path, body)
        assert (status, error["error"]) == (403, "forbidden"), path
    pool = await open_pool(publisher, observer, ["100.00"], facility())
    status, error, _ = await call(stack, "GET", f"/pools/{pool.pool_id}/applications/A-none")
    assert (status, error["error"]) == (404, "unknown_application")


def _expired(stack: Stack, party: str) -> str:
    key_id, private = stack.keyring.key(party, PartyRole.SUPPLIER)
    then = int(time.time()) - 7200
    return jwt.encode(
        {"sub": party, "aud": "poolfin", "iat": then, "exp": then + 600},
        Ed25519PrivateKey.from_private_bytes(private),
        algorithm="EdDSA",
        headers={"kid": key_id},
    )


async def test_without_a_valid_token_every_route_but_health_is_401(
    stack: Stack, publisher: Publisher, observer: Observer
) -> None:
    pool = await open_pool(publisher, observer, ["100.00"], facility())
    path = f"/pools/{pool.pool_id}"
    key_id, _ = stack.keyring.key(pool.supplier_id, PartyRole.SUPPLIER)
    stranger = new_ed25519_key()[0]  # a key nobody registered, claiming the supplier's id
    forged = mint(key_id, stranger, pool.supplier_id)
    unknown = mint("S-nobody.k", stranger, "S-nobody")
    other_key, other_private = stack.keyring.key("S-someone-else", PartyRole.SUPPLIER)
    impostor = mint(other_key, other_private, pool.supplier_id)  # sub is not the key's party
    for bearer, expected in (
        (None, "send Authorization"),
        ("not-a-jwt", "not a JWT"),
        (_expired(stack, pool.supplier_id), "expired"),
        (forged, "not valid"),
        (unknown, "not registered"),
        (impostor, "speaks for"),
    ):
        status, error, headers = await call(stack, "GET", path, as_party=None, bearer=bearer)
        assert (status, error["error"]) == (401, "unauthenticated"), (bearer, error)
        assert expected in error["detail"], error
        assert headers["www-authenticate"].startswith("Bearer")
    status, _, _ = await call(stack, "GET", "/health", as_party=None)
    assert status == 200


async def test_a_supplier_sees_and_applies_only_for_its_own_pool(
    stack: Stack, publisher: Publisher, observer: Observer
) -> None:
    mine = await open_pool(publisher, observer, ["100.00"], facility())
    theirs = await open_pool(publisher, observer, ["100.00"], facility())
    my_token = token(stack, f"/pools/{mine.pool_id}")
    for method, path, body in (
        ("GET", f"/pools/{theirs.pool_id}", None),
        ("GET", f"/pools/{theirs.pool_id}/position", None),
        ("POST", f"/pools/{theirs.pool_id}/applications", b'{"amount": "1.00"}'),
        ("POST", f"/pools/{theirs.pool_id}/prepayments", b'{"amount": "1.00"}'),
    ):
        status, error, _ = await call(stack, method, path, body, bearer=my_token)
        assert (status, error["error"]) == (403, "forbidden"), path
        assert mine.supplier_id in error["detail"]
    status, _, _ = await call(stack, "GET", f"/pools/{mine.pool_id}", bearer=my_token)
    assert status == 200
    # An operator reads any pool; the buyer reads its own suppliers' pools.
    for as_party in ("operator", "core_enterprise"):
        status, _, _ = await call(stack, "GET", f"/pools/{theirs.pool_id}", as_party=as_party)
        assert status == 200, as_party
    status, error, _ = await call(
        stack,
        "POST",
        f"/pools/{theirs.pool_id}/applications",
        b'{"amount": "1.00"}',
        as_party="operator",
    )
    assert (status, error["error"]) == (403, "forbidden")  # applying is the supplier's act
    # Every decision is in credit's log, with the party and the reason.
    await asyncio.sleep(0.5)
    logged = (stack.work_dir / "credit.log").read_text()
    assert "access denied" in logged and "access granted" in logged
    assert f'"party": "{mine.supplier_id}"' in logged


async def test_the_buyer_confirms_its_suppliers_application_over_http(
    stack: Stack, publisher: Publisher, observer: Observer
) -> None:
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    status, accepted, _ = await call(
        stack, "POST", f"/pools/{pool.pool_id}/applications", b'{"amount": "50000.00"}'
    )
    assert status == 202
    application_id = accepted["application_id"]
    await observer.wait_for(
        topics.CREDIT_DECISIONS, application_id=application_id, state="awaiting_buyer"
    )
    path = f"/pools/{pool.pool_id}/applications/{application_id}/confirmation"
    # Not the supplier, not another buyer: the pool's own core enterprise.
    other_buyer = token_for(stack.keyring, "CE-OTHER", PartyRole.CORE_ENTERPRISE)
    for kwargs in ({"as_party": "supplier"}, {"bearer": other_buyer}):
        status, error, _ = await call(stack, "POST", path, b'{"confirmed": true}', **kwargs)
        assert (status, error["error"]) == (403, "forbidden"), kwargs
    status, error, _ = await call(
        stack, "POST", path, b'{"confirmed": "yes"}', as_party="core_enterprise"
    )
    assert status == 422
    status, answer, _ = await call(
        stack, "POST", path, b'{"confirmed": true}', as_party="core_enterprise"
    )
    assert status == 202, answer
    await observer.wait_for(
        topics.CREDIT_DECISIONS, application_id=application_id, state="requested"
    )
