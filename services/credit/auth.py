"""Who calls credit's HTTP front, and what they may do there (issue 9).

A caller presents `Authorization: Bearer <JWT>`: signed with EdDSA (PyJWT) by one of the
caller's own registered Ed25519 keys, header `kid` = that key's id; claims `sub` (the party
id), `iat`, `exp` and `aud` = "poolfin". The front verifies it against the registry (trust file
+ keys operators registered, revocations honoured) and takes the party's role from the
registry, never from the token. No shared secret to provision or leak, and a revoked key's
tokens die with it. `poolfin token PARTY` mints one with the local keys.

Authorization is by relationship: a supplier acts on its own pools, a core enterprise reads
its suppliers' pools and confirms or declines their applications, an operator reads any pool.
Unknown pool and another party's pool answer the same 403 to a party (no probing which pools
exist); an operator gets the 404. Every decision is logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import jwt
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from starlette.requests import Request
from starlette.responses import JSONResponse

from shared.contracts.messages import PartyRole
from shared.db import Connection
from shared.trust import Trust

log = structlog.get_logger(__name__)

AUDIENCE = "poolfin"


class Action(StrEnum):
    READ = "read"
    APPLY = "apply"  # apply, prepay: the supplier's own acts
    CONFIRM = "confirm"  # the buyer's verification of an application


# Who may do what on a pool, by the caller's relation to it.
ALLOWED: dict[Action, dict[str, str]] = {
    Action.READ: {
        PartyRole.SUPPLIER.value: "supplier_id",
        PartyRole.CORE_ENTERPRISE.value: "core_enterprise_id",
        PartyRole.OPERATOR.value: "*",
    },
    Action.APPLY: {PartyRole.SUPPLIER.value: "supplier_id"},
    Action.CONFIRM: {PartyRole.CORE_ENTERPRISE.value: "core_enterprise_id"},
}


@dataclass(frozen=True, slots=True)
class Caller:
    party_id: str
    role: str
    key_id: str


def _denied(status: int, error: str, detail: str, request: Request, **fields: Any) -> JSONResponse:
    log.warning(
        "access denied",
        method=request.method,
        path=request.url.path,
        status=status,
        reason=detail,
        **fields,
    )
    headers = (
        {"WWW-Authenticate": f'Bearer realm="poolfin", error="{error}"'} if status == 401 else {}
    )
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def authenticate(
    request: Request, conn: Connection, trust: Trust, max_ttl_s: int
) -> Caller | JSONResponse:
    """The caller the bearer token proves, or the 401 that says why not."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _denied(
            401,
            "unauthenticated",
            "send Authorization: Bearer <token> (`poolfin token PARTY` makes one)",
            request,
        )
    token = token.strip()
    try:
        head = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        return _denied(401, "unauthenticated", f"the token is not a JWT: {exc}", request)
    key_id = head.get("kid")
    if head.get("alg") != "EdDSA" or not isinstance(key_id, str):
        return _denied(
            401, "unauthenticated", "the token must be EdDSA-signed and name its key (kid)", request
        )
    registered = await trust.key(conn, key_id)
    if registered is None or registered.key.scheme != "ed25519":
        return _denied(401, "unauthenticated", f"key {key_id!r} is not registered", request)
    now = datetime.now(UTC)
    if registered.revoked_at is not None and registered.revoked_at <= now:
        return _denied(401, "unauthenticated", f"key {key_id!r} was revoked", request)
    if not registered.key.valid_at(now):
        return _denied(401, "unauthenticated", f"key {key_id!r} is not valid now", request)
    try:
        claims = jwt.decode(
            token,
            Ed25519PublicKey.from_public_bytes(registered.key.public_key),
            algorithms=["EdDSA"],
            audience=AUDIENCE,
            options={"require": ["exp", "iat", "sub", "aud"]},
            leeway=30,
        )
    except jwt.ExpiredSignatureError:
        return _denied(401, "unauthenticated", "the token has expired", request)
    except jwt.PyJWTError as exc:
        return _denied(401, "unauthenticated", f"the token is not valid: {exc}", request)
    if claims["sub"] != registered.party_id:
        return _denied(
            401,
            "unauthenticated",
            f"the token speaks for {claims['sub']!r} but is signed by {registered.party_id}'s key",
            request,
        )
    if int(claims["exp"]) - int(claims["iat"]) > max_ttl_s:
        return _denied(
            401, "unauthenticated", f"the token lives longer than {max_ttl_s} s", request
        )
    return Caller(registered.party_id, registered.role, key_id)


async def authorize(
    request: Request, conn: Connection, caller: Caller, pool_id: str, action: Action
) -> JSONResponse | None:
    """None when `caller` may do `action` on `pool_id`; else the 403 (or an operator's 404)."""
    row = await conn.fetchrow(
        "SELECT core_enterprise_id, supplier_id FROM pools WHERE pool_id = $1", pool_id
    )
    relation = ALLOWED[action].get(caller.role)
    fields = {"party": caller.party_id, "role": caller.role, "pool_id": pool_id}
    if relation is None:
        return _denied(
            403,
            "forbidden",
            f"a {caller.role} may not {action.value} here",
            request,
            **fields,
        )
    if row is None:
        if relation == "*":
            return _denied(404, "unknown_pool", f"pool {pool_id} is not known", request, **fields)
        return _denied(
            403,
            "forbidden",
            f"{caller.party_id} may not {action.value} pool {pool_id}",
            request,
            **fields,
        )
    if relation != "*" and row[relation] != caller.party_id:
        return _denied(
            403,
            "forbidden",
            f"{caller.party_id} may not {action.value} pool {pool_id}",
            request,
            **fields,
        )
    log.info(
        "access granted",
        method=request.method,
        path=request.url.path,
        action=action.value,
        **fields,
    )
    return None
