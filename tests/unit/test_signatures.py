"""Detached Ed25519 signatures over a message's canonical bytes: what is signed is what the
message means, any change to it is found, and each way a signature can fail says why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.signatures import (
    PublicKey,
    Unproven,
    new_ed25519_key,
    sign,
    signed,
    signing_bytes,
    unproven,
)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
PRIVATE, PUBLIC = new_ed25519_key()
KEYS = {
    "erp-ce1-2026": PublicKey("erp-ce1-2026", "CE-1", "ed25519", PUBLIC, NOW - timedelta(days=1))
}


def payment(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "event_id": "erp-1:pay-1",
        "type": "PaymentReceived",
        "occurred_at": "2026-11-24T09:30:00+08:00",
        "source": "erp-ce1",
        "pool_id": "CE-1/SUP-1",
        "schema_version": 1,
        "payment_id": "PAY-1",
        "amount": "100000.00",
        "receivable_ids": ["SS-1"],
        "paid_on": "2026-11-24",
    }
    document.update(changes)
    return document


def test_a_signed_message_is_proven_whatever_its_json_layout() -> None:
    document = signed(payment(), "erp-ce1-2026", PRIVATE)
    assert unproven(document, KEYS, NOW) is None
    relaid = json.loads(json.dumps(dict(reversed(list(document.items()))), indent=4))
    assert unproven(relaid, KEYS, NOW) is None  # key order and whitespace are not signed


def test_each_way_a_signature_fails_has_its_own_reason() -> None:
    good = signed(payment(), "erp-ce1-2026", PRIVATE)
    other_private, _ = new_ed25519_key()
    cases = {
        Unproven.UNSIGNED: payment(),
        Unproven.MALFORMED_SIGNATURE: {**good, "signature": "not a signature"},
        Unproven.UNKNOWN_KEY: signed(payment(), "erp-unknown", PRIVATE),
        Unproven.BAD_SIGNATURE: {**good, "amount": "100000.01"},
    }
    for reason, document in cases.items():
        found = unproven(document, KEYS, NOW)
        assert found is not None and found[0] is reason and found[1], (reason, found)
    forged = {**payment(), "signature": sign(payment(), "erp-ce1-2026", other_private)}
    assert unproven(forged, KEYS, NOW) == (
        Unproven.BAD_SIGNATURE,
        "signature does not match key 'erp-ce1-2026' of CE-1",
    )


def test_a_key_outside_its_validity_window_proves_nothing() -> None:
    rotated = {
        "erp-ce1-2026": PublicKey(
            "erp-ce1-2026", "CE-1", "ed25519", PUBLIC, NOW - timedelta(days=30), NOW
        )
    }
    document = signed(payment(), "erp-ce1-2026", PRIVATE)
    assert unproven(document, rotated, NOW - timedelta(seconds=1)) is None
    found = unproven(document, rotated, NOW)
    assert found is not None and found[0] is Unproven.KEY_NOT_VALID
    early = unproven(document, rotated, NOW - timedelta(days=31))
    assert early is not None and early[0] is Unproven.KEY_NOT_VALID


def test_the_signature_field_itself_is_not_signed() -> None:
    document = payment(signature="anything")
    assert signing_bytes(document) == signing_bytes(payment())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(min_size=1, max_size=12), json_values, min_size=1, max_size=8),
    st.data(),
)
def test_any_change_to_any_field_is_found(document: dict[str, Any], data: st.DataObject) -> None:
    document.pop("signature", None)
    sealed = signed(document, "erp-ce1-2026", PRIVATE)
    assert unproven(sealed, KEYS, NOW) is None
    key = data.draw(st.sampled_from(sorted(document)))
    changed = data.draw(
        json_values.filter(lambda v: v != document[key] or type(v) is not type(document[key]))
    )
    tampered = {**sealed, key: changed}
    assert signing_bytes(tampered) != signing_bytes(sealed)
    found = unproven(tampered, KEYS, NOW)
    assert found is not None and found[0] is Unproven.BAD_SIGNATURE
