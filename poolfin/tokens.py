"""Bearer tokens for credit's HTTP front: a JWT the party signs with its own registered
Ed25519 key (EdDSA), `kid` = the key id (services/credit/auth.py verifies it)."""

from __future__ import annotations

import time

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from poolfin.keys import Keyring
from shared.contracts.messages import PartyRole

AUDIENCE = "poolfin"


def mint(key_id: str, private_key: bytes, party_id: str, ttl_s: int = 900) -> str:
    now = int(time.time())
    return jwt.encode(
        {"sub": party_id, "aud": AUDIENCE, "iat": now, "exp": now + ttl_s},
        Ed25519PrivateKey.from_private_bytes(private_key),
        algorithm="EdDSA",
        headers={"kid": key_id},
    )


def token_for(keyring: Keyring, party_id: str, role: PartyRole, ttl_s: int = 900) -> str:
    """A token for a party this machine holds (or makes and trusts) a key for."""
    key_id, private = keyring.key(party_id, role)
    return mint(key_id, private, party_id, ttl_s)
