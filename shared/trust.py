"""Trust (issue 9): who proved each message, and whether it may send it.

- **External topics** (ERP, operators, suppliers, funders): every message carries a detached
  signature (shared/signatures.py) by a key in the registry of parties and keys, valid when
  the message says it happened, not revoked; its signer's role must be one the contract's
  publisher table allows for the type (shared/contracts/permissions.py); `occurred_at` must
  lie within a window of now. The consuming service then checks the relationship (the pool's
  own core enterprise, the request's own funder) with `acting_party`.
- **Internal topics**: every record carries its producing service's HMAC-SHA256 over topic,
  key and value in the `poolfin-mac` header, and each type is accepted only from the service
  that owns it. A MAC and not a signature: ~2 µs a message instead of ~60 µs, on every hop.
- **The registry** is the genesis trust file (deployment configuration: the operators' keys,
  re-read when it changes) plus the keys operators register on `admin.parties.v1`, each
  change proposed by one operator and approved by another (maker-checker), kept in every
  service's own schema.

A refusal is a value with its own reason code; the consumer dead-letters it and nothing moves.
A message refused here is not marked processed: its event id stays free for the real sender.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from shared.contracts import messages as m
from shared.contracts import permissions
from shared.contracts.codec import Rejected
from shared.contracts.topics import is_external
from shared.db import Connection
from shared.signatures import (
    SCHEMES,
    SIGNATURE_FIELD,
    PublicKey,
    Unproven,
    sign,
    signing_bytes,
    unproven,
)

log = structlog.get_logger(__name__)

MAC_HEADER = "poolfin-mac"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # a trust file key without valid_from: always valid
REGISTRY_TYPES = frozenset({"KeyChangeProposed", "KeyChangeApproved"})

_UNPROVEN_REASON = {
    Unproven.UNSIGNED: m.Reason.UNSIGNED,
    Unproven.MALFORMED_SIGNATURE: m.Reason.MALFORMED_SIGNATURE,
    Unproven.UNKNOWN_KEY: m.Reason.UNKNOWN_KEY,
    Unproven.KEY_NOT_VALID: m.Reason.KEY_NOT_VALID,
    Unproven.BAD_SIGNATURE: m.Reason.BAD_SIGNATURE,
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who proved a message: a party (by its key) or a service (by its MAC). `via` names the
    service whose HTTP front authenticated the party and vouches for it."""

    party_id: str
    role: str  # a PartyRole value, or "service"
    key_id: str | None = None
    via: str | None = None


@dataclass(frozen=True, slots=True)
class RegisteredKey:
    key: PublicKey
    role: str
    revoked_at: datetime | None = None

    @property
    def party_id(self) -> str:
        return self.key.party_id


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _instant(value: Any) -> datetime | None:
    if value is None:
        return None
    instant = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


# ---------------------------------------------------------------- files the deployment provides


def parse_trust_file(document: Mapping[str, Any]) -> dict[str, RegisteredKey]:
    """{"format": 1, "parties": [{"party_id", "role", "name", "keys": [{"key_id", "scheme",
    "public_key" (base64url), "valid_from", "valid_to"}]}]} → keys by id."""
    if document.get("format") != 1:
        raise ValueError("trust file: format must be 1")
    keys: dict[str, RegisteredKey] = {}
    for party in document.get("parties", []):
        role = m.PartyRole(party["role"]).value
        for entry in party.get("keys", []):
            key_id = str(entry["key_id"])
            if key_id in keys:
                raise ValueError(f"trust file: key {key_id!r} appears twice")
            keys[key_id] = RegisteredKey(
                PublicKey(
                    key_id=key_id,
                    party_id=str(party["party_id"]),
                    scheme=str(entry.get("scheme", "ed25519")),
                    public_key=from_b64url(str(entry["public_key"])),
                    valid_from=_instant(entry.get("valid_from"))
                    or datetime(2000, 1, 1, tzinfo=UTC),
                    valid_to=_instant(entry.get("valid_to")),
                ),
                role=role,
            )
    return keys


@dataclass(frozen=True)
class ServiceKeys:
    """Secrets of the platform's services: one MAC key per service (a service verifies what
    it consumes, so it holds the keys of the services it reads), and the platform's signing
    keys (ledger anchors, loan contracts), by service."""

    mac: Mapping[str, bytes]
    signing: Mapping[str, tuple[str, bytes]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> ServiceKeys:
        document = json.loads(Path(path).read_text())
        if document.get("format") != 1:
            raise ValueError(f"{path}: format must be 1")
        return cls(
            mac={name: from_b64url(secret) for name, secret in document["mac"].items()},
            signing={
                name: (entry["key_id"], from_b64url(entry["private_key"]))
                for name, entry in document.get("signing", {}).items()
            },
        )

    def seal(self, service: str, topic: str, key: bytes | None, value: bytes) -> bytes:
        """The `poolfin-mac` header value of a record `service` produces."""
        return f"{service}:{_mac(self.mac[service], topic, key, value)}".encode()

    def unsealed(
        self,
        headers: Sequence[tuple[str, bytes | None]],
        topic: str,
        key: bytes | None,
        value: bytes,
    ) -> tuple[str | None, str | None]:
        """(the service that sealed the record, None) or (None, why it is not sealed)."""
        values = [v for name, v in headers if name == MAC_HEADER]
        if not values or values[-1] is None:
            return None, f"no {MAC_HEADER} header"
        try:
            service, _, tag = values[-1].decode("ascii").partition(":")
        except UnicodeDecodeError:
            return None, f"{MAC_HEADER} header is not ASCII"
        secret = self.mac.get(service)
        if secret is None:
            return None, f"{MAC_HEADER} names unknown service {service!r}"
        if not hmac.compare_digest(tag, _mac(secret, topic, key, value)):
            return None, f"{MAC_HEADER} does not match the record as {service} would seal it"
        return service, None


def _mac(secret: bytes, topic: str, key: bytes | None, value: bytes) -> str:
    mac = hmac.new(secret, topic.encode() + b"\0", hashlib.sha256)
    mac.update((key or b"") + b"\0")
    mac.update(value)
    return mac.hexdigest()


class TrustFile:
    """The genesis registry, re-read when the file changes (one stat per batch)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._keys: dict[str, RegisteredKey] = {}

    def keys(self) -> dict[str, RegisteredKey]:
        stat = os.stat(self.path)
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._keys = parse_trust_file(json.loads(self.path.read_text()))
            self._stamp = stamp
            log.info("trust file loaded", path=str(self.path), keys=len(self._keys))
        return self._keys


# ---------------------------------------------------------------- the gate


def key_id_of(document: Mapping[str, Any] | None) -> str | None:
    value = document.get(SIGNATURE_FIELD) if document else None
    if not isinstance(value, str) or value.count(":") < 2:
        return None
    return value.split(":", 1)[1].rsplit(":", 1)[0]


class Trust:
    """One service's gate: verifies what it consumes, seals what it produces."""

    def __init__(
        self,
        service: str,
        trust_file: TrustFile,
        service_keys: ServiceKeys,
        *,
        max_age: timedelta = timedelta(days=1),
        max_skew: timedelta = timedelta(minutes=5),
    ) -> None:
        self.service = service
        self.trust_file = trust_file
        self.service_keys = service_keys
        self.max_age = max_age
        self.max_skew = max_skew

    def seal(self, topic: str, key: bytes | None, value: bytes) -> list[tuple[str, bytes]]:
        return [(MAC_HEADER, self.service_keys.seal(self.service, topic, key, value))]

    async def keys(
        self, conn: Connection, documents: Iterable[Mapping[str, Any] | None]
    ) -> dict[str, RegisteredKey]:
        """The registered keys the batch's signatures name: registered on the topic (this
        schema), else in the trust file; revocations apply to both."""
        wanted = sorted({k for k in map(key_id_of, documents) if k})
        if not wanted:
            return {}
        genesis = self.trust_file.keys()
        found = {k: genesis[k] for k in wanted if k in genesis}
        rows = await conn.fetch(
            "SELECT k.key_id, k.party_id, k.role, k.scheme, k.public_key, k.valid_from,"
            " k.valid_to, NULL::timestamptz AS revoked_at FROM party_keys k"
            " WHERE k.key_id = ANY($1::text[])"
            " UNION ALL SELECT r.key_id, NULL, NULL, NULL, NULL, NULL, NULL, r.revoked_at"
            " FROM key_revocations r WHERE r.key_id = ANY($1::text[])",
            wanted,
        )
        revoked = {r["key_id"]: r["revoked_at"] for r in rows if r["revoked_at"] is not None}
        for row in rows:
            if row["party_id"] is not None:
                found[row["key_id"]] = RegisteredKey(
                    PublicKey(
                        row["key_id"],
                        row["party_id"],
                        row["scheme"],
                        bytes(row["public_key"]),
                        row["valid_from"],
                        row["valid_to"],
                    ),
                    row["role"],
                )
        for key_id, at in revoked.items():
            if key_id in found:
                registered = found[key_id]
                found[key_id] = RegisteredKey(registered.key, registered.role, at)
        return found

    async def key(self, conn: Connection, key_id: str) -> RegisteredKey | None:
        """One registered key by id (e.g. the `kid` of a bearer token)."""
        return (await self.keys(conn, [{SIGNATURE_FIELD: f"ed25519:{key_id}:x"}])).get(key_id)

    def sign(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """The document signed with this service's platform key (ledger anchors, contracts)."""
        key_id, private = self.service_keys.signing[self.service]
        unsigned = {k: v for k, v in document.items() if k != SIGNATURE_FIELD}
        return {**unsigned, SIGNATURE_FIELD: sign(unsigned, key_id, private)}

    def admit(
        self,
        topic: str,
        headers: Sequence[tuple[str, bytes | None]],
        key: bytes | None,
        value: bytes,
        message: m.Message,
        document: Mapping[str, Any],
        keys: Mapping[str, RegisteredKey],
        now: datetime | None = None,
    ) -> Principal | Rejected:
        now = now or datetime.now(UTC)
        if not is_external(topic):
            return self._internal(topic, headers, key, value, message)
        if message.type in permissions.FRONT_MAY_SEND and any(
            name == MAC_HEADER for name, _ in headers
        ):
            return self._front(topic, headers, key, value, message, now)
        return self._signed(message, document, keys, now)

    def _internal(
        self,
        topic: str,
        headers: Sequence[tuple[str, bytes | None]],
        key: bytes | None,
        value: bytes,
        message: m.Message,
    ) -> Principal | Rejected:
        service, why = self.service_keys.unsealed(headers, topic, key, value)
        if service is None:
            return Rejected(m.Reason.UNAUTHENTICATED, f"{topic} is internal: {why}")
        owner = permissions.INTERNAL.get(message.type)
        if owner != service:
            return Rejected(
                m.Reason.WRONG_PRODUCER,
                f"{message.type} is produced by {owner or 'no service'}, not {service}",
            )
        return Principal(service, "service")

    def _front(
        self,
        topic: str,
        headers: Sequence[tuple[str, bytes | None]],
        key: bytes | None,
        value: bytes,
        message: m.Message,
        now: datetime,
    ) -> Principal | Rejected:
        service, why = self.service_keys.unsealed(headers, topic, key, value)
        if service is None:
            return Rejected(m.Reason.UNAUTHENTICATED, f"{message.type} from a front: {why}")
        if service != permissions.FRONT:
            return Rejected(
                m.Reason.WRONG_PRODUCER,
                f"only {permissions.FRONT}'s HTTP front may send {message.type} for a party",
            )
        if (stale := self._stale(message, now)) is not None:
            return stale
        roles, _ = permissions.EXTERNAL[message.type]
        return Principal(message.source, sorted(roles)[0].value, via=service)

    def _signed(
        self,
        message: m.Message,
        document: Mapping[str, Any],
        keys: Mapping[str, RegisteredKey],
        now: datetime,
    ) -> Principal | Rejected:
        at = _instant(message.occurred_at) or now
        public = {key_id: registered.key for key_id, registered in keys.items()}
        failure = unproven(document, public, at)
        if failure is not None:
            reason, detail = failure
            return Rejected(_UNPROVEN_REASON[reason], detail)
        key_id = key_id_of(document)
        assert key_id is not None
        registered = keys[key_id]
        if registered.revoked_at is not None and registered.revoked_at <= now:
            return Rejected(
                m.Reason.KEY_NOT_VALID,
                f"key {key_id!r} of {registered.party_id} was revoked at "
                f"{registered.revoked_at.isoformat()}",
            )
        roles, relation = permissions.EXTERNAL.get(message.type, (frozenset(), "nobody"))
        if registered.role not in {role.value for role in roles}:
            return Rejected(
                m.Reason.NOT_PERMITTED,
                f"{message.type} may be signed by {relation}; {registered.party_id} is "
                f"a {registered.role}",
            )
        if (stale := self._stale(message, now)) is not None:
            return stale
        return Principal(registered.party_id, registered.role, key_id)

    def _stale(self, message: m.Message, now: datetime) -> Rejected | None:
        at = _instant(message.occurred_at) or now
        if now - self.max_age <= at <= now + self.max_skew:
            return None
        return Rejected(
            m.Reason.STALE,
            f"occurred_at {at.isoformat()} lies outside {int(self.max_age.total_seconds())}s "
            f"before to {int(self.max_skew.total_seconds())}s after {now.isoformat()}",
        )


def acting_party(principal: Principal | None) -> str | None:
    """The party a message speaks for, once proven (None: not checked at this layer, as in
    a handler's unit test)."""
    return principal.party_id if principal is not None else None


def not_the_party(
    principal: Principal | None, expected: str | None, what: str, message: m.Message
) -> Rejected | None:
    """The relationship check every consumer does: the message's proven party must be
    `expected` (the pool's core enterprise, the request's funder...)."""
    party = acting_party(principal)
    if party is None or party == expected:
        return None
    return Rejected(
        m.Reason.NOT_PERMITTED,
        f"{message.type} for {message.pool_id} must come from {what} ({expected or 'unknown'}),"
        f" not {party}",
    )


# ---------------------------------------------------------------- the registry (maker-checker)


async def apply_key_change(
    conn: Connection, message: m.Message, principal: Principal | None, trust: Trust | None
) -> Rejected | None:
    """Apply a KeyChangeProposed / KeyChangeApproved to this service's registry tables."""
    maker_or_checker = principal.party_id if principal is not None else message.source
    genesis = trust.trust_file.keys() if trust is not None else {}
    if isinstance(message, m.KeyChangeProposed):
        return await _propose(conn, message, maker_or_checker, genesis)
    assert isinstance(message, m.KeyChangeApproved)
    return await _decide(conn, message, maker_or_checker)


async def _propose(
    conn: Connection,
    proposal: m.KeyChangeProposed,
    maker: str,
    genesis: Mapping[str, RegisteredKey],
) -> Rejected | None:
    if await conn.fetchval("SELECT 1 FROM key_changes WHERE change_id = $1", proposal.change_id):
        return Rejected(
            m.Reason.KEY_CHANGE_DECIDED, f"key change {proposal.change_id} exists already"
        )
    in_db = await conn.fetchrow(
        "SELECT party_id, role FROM party_keys WHERE key_id = $1", proposal.key_id
    )
    existing = (
        (in_db["party_id"], in_db["role"])
        if in_db
        else (
            (genesis[proposal.key_id].party_id, genesis[proposal.key_id].role)
            if proposal.key_id in genesis
            else None
        )
    )
    public: bytes | None = None
    if proposal.action == m.KeyAction.REGISTER:
        if existing is not None:
            return Rejected(m.Reason.KEY_EXISTS, f"key {proposal.key_id} is registered already")
        if proposal.scheme not in SCHEMES:
            return Rejected(
                m.Reason.INVALID_KEY,
                f"scheme {proposal.scheme!r} is not one of {sorted(SCHEMES)}",
            )
        try:
            public = from_b64url(proposal.public_key or "")
        except (binascii.Error, ValueError):
            public = b""
        if len(public) != 32:
            return Rejected(
                m.Reason.INVALID_KEY, "public_key must be a 32-byte Ed25519 key, base64url"
            )
        roles = {
            r["role"]
            for r in await conn.fetch(
                "SELECT DISTINCT role FROM party_keys WHERE party_id = $1", proposal.party_id
            )
        } | {k.role for k in genesis.values() if k.party_id == proposal.party_id}
        if roles - {proposal.role.value}:
            return Rejected(
                m.Reason.ROLE_CONFLICT,
                f"{proposal.party_id} is a {sorted(roles)[0]}, not a {proposal.role.value}",
            )
    elif existing is None or existing[0] != proposal.party_id:
        return Rejected(
            m.Reason.UNKNOWN_KEY, f"{proposal.party_id} has no key {proposal.key_id} to revoke"
        )
    await conn.execute(
        "INSERT INTO key_changes(change_id, action, party_id, role, key_id, scheme, public_key,"
        " valid_from, valid_to, proposed_by, state) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,"
        " 'proposed')",
        proposal.change_id,
        proposal.action.value,
        proposal.party_id,
        proposal.role.value,
        proposal.key_id,
        proposal.scheme,
        public,
        _instant(proposal.valid_from),
        _instant(proposal.valid_to),
        maker,
    )
    log.info(
        "key change proposed",
        change_id=proposal.change_id,
        action=proposal.action.value,
        party_id=proposal.party_id,
        key_id=proposal.key_id,
        maker=maker,
    )
    return None


async def _decide(conn: Connection, decision: m.KeyChangeApproved, checker: str) -> Rejected | None:
    change = await conn.fetchrow(
        "SELECT * FROM key_changes WHERE change_id = $1 FOR UPDATE", decision.change_id
    )
    if change is None:
        return Rejected(m.Reason.UNKNOWN_KEY_CHANGE, f"no key change {decision.change_id}")
    if change["state"] != "proposed":
        return Rejected(
            m.Reason.KEY_CHANGE_DECIDED,
            f"key change {decision.change_id} was {change['state']} already",
        )
    if change["proposed_by"] == checker:
        return Rejected(
            m.Reason.SAME_OPERATOR,
            f"{checker} proposed key change {decision.change_id}; a second operator approves it",
        )
    at = _instant(decision.occurred_at) or datetime.now(UTC)
    if decision.approved and change["action"] == m.KeyAction.REGISTER.value:
        if await conn.fetchval("SELECT 1 FROM party_keys WHERE key_id = $1", change["key_id"]):
            return Rejected(m.Reason.KEY_EXISTS, f"key {change['key_id']} is registered already")
        await conn.execute(
            "INSERT INTO party_keys(key_id, party_id, role, scheme, public_key, valid_from,"
            " valid_to, change_id, approved_by) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
            change["key_id"],
            change["party_id"],
            change["role"],
            change["scheme"],
            change["public_key"],
            change["valid_from"] or at,
            change["valid_to"],
            decision.change_id,
            checker,
        )
    elif decision.approved:
        await conn.execute(
            "INSERT INTO key_revocations(key_id, revoked_at, change_id) VALUES ($1, $2, $3)"
            " ON CONFLICT (key_id) DO NOTHING",
            change["key_id"],
            change["valid_to"] or at,
            decision.change_id,
        )
    await conn.execute(
        "UPDATE key_changes SET state = $2, decided_by = $3, decided_at = $4 WHERE change_id = $1",
        decision.change_id,
        "approved" if decision.approved else "rejected",
        checker,
        at,
    )
    log.info(
        "key change decided",
        change_id=decision.change_id,
        approved=decision.approved,
        checker=checker,
        maker=change["proposed_by"],
    )
    return None


def canonical_hash(document: Mapping[str, Any]) -> str:
    """SHA-256 of a document's canonical bytes (what a signature covers), hex."""
    return hashlib.sha256(signing_bytes(document)).hexdigest()
