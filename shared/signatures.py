"""Detached signatures over a message's canonical bytes (groundwork for issue 9's trust).

A signed message carries, in its envelope's `signature` field, `<scheme>:<key_id>:<base64url>`
over the canonical bytes of the whole message (envelope + payload) without that field: JSON
with keys sorted, no whitespace, UTF-8. The signature is detached from the bytes on the wire,
so a producer may lay out its JSON as it likes; what is signed is what it means.

Schemes are pluggable (`SCHEMES`): Ed25519 through `cryptography` by default; SM2 can be added
where a party requires it, without touching callers. Verification is a value: None, or the
reason the message is not proven (unsigned, unknown key, key not valid then, bad signature).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_FIELD = "signature"


class Unproven(StrEnum):
    """Why a message's signature does not prove who sent it."""

    UNSIGNED = "unsigned"
    MALFORMED_SIGNATURE = "malformed_signature"
    UNKNOWN_KEY = "unknown_key"
    KEY_NOT_VALID = "key_not_valid"
    BAD_SIGNATURE = "bad_signature"


class Scheme(Protocol):
    name: str

    def sign(self, private_key: bytes, message: bytes) -> bytes: ...

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool: ...


class Ed25519:
    """RFC 8032 Ed25519: 32-byte raw keys, 64-byte signatures."""

    name = "ed25519"

    def sign(self, private_key: bytes, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(private_key).sign(message)

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        try:
            _ed25519_public(public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@functools.lru_cache(maxsize=4096)
def _ed25519_public(raw: bytes) -> Ed25519PublicKey:
    """Loaded once per key: a party signs many messages."""
    return Ed25519PublicKey.from_public_bytes(raw)


SCHEMES: dict[str, Scheme] = {Ed25519.name: Ed25519()}


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A party's public key as a registry holds it: its scheme and validity window."""

    key_id: str
    party_id: str
    scheme: str
    public_key: bytes
    valid_from: datetime
    valid_to: datetime | None = None  # None: until revoked

    def valid_at(self, instant: datetime) -> bool:
        return self.valid_from <= instant and (self.valid_to is None or instant < self.valid_to)


def new_ed25519_key() -> tuple[bytes, bytes]:
    """A fresh (private, public) pair of raw 32-byte Ed25519 keys."""
    private = Ed25519PrivateKey.generate()
    return (
        private.private_bytes_raw(),
        private.public_key().public_bytes_raw(),
    )


def signing_bytes(document: Mapping[str, Any]) -> bytes:
    """The canonical bytes a signature covers: the message without its signature field, as
    JSON with keys sorted and no whitespace, UTF-8 (amounts are strings, so no float enters)."""
    unsigned = {key: value for key, value in document.items() if key != SIGNATURE_FIELD}
    return json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def sign(
    document: Mapping[str, Any], key_id: str, private_key: bytes, scheme: str = "ed25519"
) -> str:
    """The value of the `signature` field for this document."""
    raw = SCHEMES[scheme].sign(private_key, signing_bytes(document))
    return f"{scheme}:{key_id}:{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"


def signed(document: Mapping[str, Any], key_id: str, private_key: bytes) -> dict[str, Any]:
    """The document with its signature."""
    return {**document, SIGNATURE_FIELD: sign(document, key_id, private_key)}


def unproven(
    document: Mapping[str, Any], keys: Mapping[str, PublicKey], at: datetime
) -> tuple[Unproven, str] | None:
    """None when the document is signed by a key in `keys` valid at `at`; otherwise why not,
    with a detail (the signer is then `keys[key_id].party_id`)."""
    value = document.get(SIGNATURE_FIELD)
    if not value:
        return Unproven.UNSIGNED, "the message carries no signature"
    if not isinstance(value, str) or value.count(":") < 2:
        return Unproven.MALFORMED_SIGNATURE, "signature must read <scheme>:<key_id>:<base64url>"
    scheme_name, rest = value.split(":", 1)
    key_id, encoded = rest.rsplit(":", 1)
    scheme = SCHEMES.get(scheme_name)
    if scheme is None:
        return Unproven.MALFORMED_SIGNATURE, f"unknown signature scheme {scheme_name!r}"
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        return Unproven.MALFORMED_SIGNATURE, "signature is not base64url"
    key = keys.get(key_id)
    if key is None or key.scheme != scheme_name:
        return Unproven.UNKNOWN_KEY, f"key {key_id!r} is not registered for {scheme_name}"
    if not key.valid_at(at):
        return Unproven.KEY_NOT_VALID, (
            f"key {key_id!r} of {key.party_id} is valid from {key.valid_from.isoformat()}"
            + (f" to {key.valid_to.isoformat()}" if key.valid_to else "")
            + f", not at {at.isoformat()}"
        )
    try:
        canonical = signing_bytes(document)
    except (ValueError, TypeError, RecursionError):  # NaN, Infinity: no canonical form
        return Unproven.MALFORMED_SIGNATURE, "the message has no canonical form (NaN or Infinity)"
    if not scheme.verify(key.public_key, canonical, raw):
        return Unproven.BAD_SIGNATURE, f"signature does not match key {key_id!r} of {key.party_id}"
    return None
