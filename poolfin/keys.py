"""The keys a local poolfin provisions (`poolfin up`, the test stack, `poolfin keys provision`):
the services' secrets, a trust file, and the private keys of the parties the local tools act
as (operators, ERPs, suppliers, funders), so that the CLI, the demo, the bench and the tests
sign what they publish.

Three files in one directory (mode 0700):
- `trust.json`: the registry's genesis, public keys only, read by every service
  (POOLFIN_TRUST_FILE). In production it holds the operators' keys and is read-only; parties
  are then registered by operators on admin.parties.v1 (maker-checker, `poolfin keys`).
- `service-keys.json` (0600): each service's MAC key and the platform's signing keys
  (POOLFIN_SERVICE_KEYS_FILE).
- `parties.json` (0600): private keys of the parties this machine acts as. A development
  convenience: a party the local tools sign for the first time gets a key, added to the
  trust file at once (services re-read it before their next batch).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.contracts import topics
from shared.contracts.messages import PartyRole
from shared.signatures import new_ed25519_key, sign
from shared.trust import ServiceKeys, b64url, from_b64url

SERVICES = ("intake", "credit", "funding-gateway", "settlement-splitter")
SIGNING_SERVICES = ("settlement-splitter", "funding-gateway")  # anchors; contracts
OPERATORS = ("op-1", "op-2")  # two, so that maker-checker works on a local stack


def _write(path: Path, document: Mapping[str, Any], private: bool) -> None:
    """Atomic replace (a reader sees the old file or the new one, never half of one)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2, sort_keys=True)
        out.write("\n")
    os.replace(tmp, path)


@dataclass
class Keyring:
    directory: Path

    @property
    def trust_file(self) -> Path:
        return self.directory / "trust.json"

    @property
    def service_keys_file(self) -> Path:
        return self.directory / "service-keys.json"

    @property
    def parties_file(self) -> Path:
        return self.directory / "parties.json"

    def env(self) -> dict[str, str]:
        """What a service needs to find its trust file and secrets."""
        return {
            "POOLFIN_TRUST_FILE": str(self.trust_file),
            "POOLFIN_SERVICE_KEYS_FILE": str(self.service_keys_file),
        }

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @classmethod
    def provision(cls, directory: Path) -> Keyring:
        """Create the three files when they do not exist yet (idempotent)."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        ring = cls(directory)
        with ring._locked():
            if not ring.service_keys_file.exists():
                signing: dict[str, dict[str, str]] = {}
                for service in SIGNING_SERVICES:
                    private, _ = new_ed25519_key()
                    signing[service] = {
                        "key_id": f"{service}-{uuid.uuid4().hex[:8]}",
                        "private_key": b64url(private),
                    }
                _write(
                    ring.service_keys_file,
                    {
                        "format": 1,
                        "mac": {s: b64url(secrets.token_bytes(32)) for s in SERVICES},
                        "signing": signing,
                    },
                    private=True,
                )
            if not ring.parties_file.exists():
                _write(ring.parties_file, {"format": 1, "parties": {}}, private=True)
            if not ring.trust_file.exists():
                _write(ring.trust_file, {"format": 1, "parties": []}, private=False)
                service_keys = json.loads(ring.service_keys_file.read_text())
                for service, entry in service_keys["signing"].items():
                    public = _public_of(from_b64url(entry["private_key"]))
                    ring._add_to_trust(service, PartyRole.PLATFORM, entry["key_id"], public)
            for operator in OPERATORS:
                ring._ensure(operator, PartyRole.OPERATOR)
        return ring

    def _parties(self) -> dict[str, Any]:
        parties: dict[str, Any] = json.loads(self.parties_file.read_text())["parties"]
        return parties

    def _add_to_trust(self, party_id: str, role: PartyRole, key_id: str, public: bytes) -> None:
        trust = json.loads(self.trust_file.read_text())
        entry = {
            "key_id": key_id,
            "scheme": "ed25519",
            "public_key": b64url(public),
            "valid_from": "2000-01-01T00:00:00+00:00",
        }
        for party in trust["parties"]:
            if party["party_id"] == party_id:
                party["keys"].append(entry)
                break
        else:
            trust["parties"].append({"party_id": party_id, "role": role.value, "keys": [entry]})
        _write(self.trust_file, trust, private=False)

    def _ensure(self, party_id: str, role: PartyRole) -> tuple[str, bytes]:
        parties = self._parties()
        known = parties.get(party_id)
        if known is not None:
            if known["role"] != role.value:
                raise ValueError(f"{party_id} is a {known['role']} here, not a {role.value}")
            return known["key_id"], from_b64url(known["private_key"])
        private, public = new_ed25519_key()
        key_id = f"{party_id}.{uuid.uuid4().hex[:8]}"
        # The trust file first: a key is never used before the services can know it.
        self._add_to_trust(party_id, role, key_id, public)
        parties[party_id] = {"role": role.value, "key_id": key_id, "private_key": b64url(private)}
        self._save_parties(parties)
        return key_id, private

    def _save_parties(self, parties: dict[str, Any]) -> None:
        document = json.loads(self.parties_file.read_text())
        document["parties"] = parties
        _write(self.parties_file, document, private=True)

    def key(self, party_id: str, role: PartyRole) -> tuple[str, bytes]:
        """(key id, private key) of a party this machine acts as; made and trusted on first
        use."""
        cached = _CACHE.get((str(self.directory), party_id))
        if cached is not None and cached[0] == role:
            return cached[1], cached[2]
        with self._locked():
            key_id, private = self._ensure(party_id, role)
        _CACHE[(str(self.directory), party_id)] = (role, key_id, private)
        return key_id, private

    def sign(self, document: Mapping[str, Any], party_id: str, role: PartyRole) -> dict[str, Any]:
        key_id, private = self.key(party_id, role)
        unsigned = {k: v for k, v in document.items() if k != "signature"}
        return {**unsigned, "signature": sign(unsigned, key_id, private)}

    def new_key(self, party_id: str, role: PartyRole) -> tuple[str, bytes, bytes]:
        """A fresh key for `party_id`, kept here but NOT trusted: for registration on
        admin.parties.v1 (`poolfin keys propose`). Becomes the party's signing key with
        `use_key` once operators approved it."""
        private, public = new_ed25519_key()
        return f"{party_id}.{uuid.uuid4().hex[:8]}", private, public

    def use_key(self, party_id: str, role: PartyRole, key_id: str, private: bytes) -> None:
        with self._locked():
            parties = self._parties()
            parties[party_id] = {
                "role": role.value,
                "key_id": key_id,
                "private_key": b64url(private),
            }
            self._save_parties(parties)
        _CACHE.pop((str(self.directory), party_id), None)

    def keep_pending(
        self, change_id: str, key_id: str, party_id: str, role: PartyRole, private: bytes
    ) -> None:
        """A proposed key's private half, until its change is approved (`adopt_pending_for`)."""
        with self._locked():
            document = json.loads(self.parties_file.read_text())
            document.setdefault("pending", {})[change_id] = {
                "key_id": key_id,
                "party_id": party_id,
                "role": role.value,
                "private_key": b64url(private),
            }
            _write(self.parties_file, document, private=True)

    def adopt_pending_for(self, change_id: str) -> bool:
        """After approval: the proposed key signs for its party from now on."""
        with self._locked():
            document = json.loads(self.parties_file.read_text())
            entry = document.get("pending", {}).pop(change_id, None)
            if entry is None:
                return False
            document["parties"][entry["party_id"]] = {
                "role": entry["role"],
                "key_id": entry["key_id"],
                "private_key": entry["private_key"],
            }
            _write(self.parties_file, document, private=True)
        _CACHE.pop((str(self.directory), entry["party_id"]), None)
        return True

    def seal(self, service: str, topic: str, key: bytes | None, value: bytes) -> bytes:
        """The MAC header value `service` puts on a record (for tests acting as a service)."""
        return ServiceKeys.load(self.service_keys_file).seal(service, topic, key, value)

    def service_signing_key(self, service: str) -> tuple[str, bytes]:
        entry = json.loads(self.service_keys_file.read_text())["signing"][service]
        return entry["key_id"], from_b64url(entry["private_key"])


_CACHE: dict[tuple[str, str], tuple[PartyRole, str, bytes]] = {}


def _public_of(private: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


class Signers:
    """Who signs a message a local tool publishes, by topic: the pool's core enterprise on
    ERP topics, its supplier on supplier topics, the answering funder, an operator. A pool's
    parties are learned from the onboardings sent through it, else read from the pool id's
    `CORE/SUPPLIER` convention."""

    def __init__(self, operator: str = OPERATORS[0]) -> None:
        self.operator = operator
        self.pools: dict[str, tuple[str, str]] = {}

    def _pool(self, pool_id: str) -> tuple[str, str]:
        if pool_id in self.pools:
            return self.pools[pool_id]
        core, slash, supplier = pool_id.partition("/")
        if not slash:
            raise ValueError(
                f"cannot tell who signs for pool {pool_id!r}: onboard it through this "
                "publisher, name it CORE/SUPPLIER, or pass signer="
            )
        return core, supplier

    def __call__(self, topic: str, event: Mapping[str, Any]) -> tuple[str, PartyRole]:
        kind = event.get("type")
        pool_id = str(event.get("pool_id", ""))
        if topic.startswith("admin.") or topic == topics.BANK_PAYOUT_RESULTS:
            return self.operator, PartyRole.OPERATOR  # (the bank's connector runs as one)
        if kind == "InvestorContractSigned" and topic == topics.FUNDING_RESPONSES:
            return str(event.get("investor_id")), PartyRole.INVESTOR  # relayed by its platform
        if topic == topics.FUNDING_RESPONSES:
            return str(event.get("funder_id")), PartyRole.FUNDER
        if topic.startswith("supplier."):
            return self._pool(pool_id)[1], PartyRole.SUPPLIER
        if kind == "SupplierOnboarded":
            core = str(event.get("core_enterprise_id"))
            self.pools[pool_id] = (core, str(event.get("supplier_id")))
            return core, PartyRole.CORE_ENTERPRISE
        return self._pool(pool_id)[0], PartyRole.CORE_ENTERPRISE


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
