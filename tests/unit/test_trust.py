"""The trust gate's decisions (shared/trust.py), without a broker: who proved a message, and
the reason when nothing did."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.contracts import messages as m
from shared.contracts import permissions
from shared.contracts import topics as t
from shared.contracts.codec import TOPIC_MODELS, Rejected, decode_document
from shared.signatures import PublicKey, new_ed25519_key, signed
from shared.trust import (
    MAC_HEADER,
    Principal,
    RegisteredKey,
    ServiceKeys,
    Trust,
    TrustFile,
    b64url,
    not_the_party,
    parse_trust_file,
)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
SECRETS = ServiceKeys(mac={s: s.encode() * 4 for s in ("intake", "credit", "settlement-splitter")})


def trust(tmp_path: Any) -> Trust:
    path = tmp_path / "trust.json"
    path.write_text(json.dumps({"format": 1, "parties": []}))
    return Trust("credit", TrustFile(path), SECRETS, max_age=timedelta(hours=1))


def registered(party: str, role: m.PartyRole, **window: datetime) -> tuple[str, bytes, Any]:
    private, public = new_ed25519_key()
    key_id = f"{party}.k"
    key = PublicKey(
        key_id,
        party,
        "ed25519",
        public,
        window.get("valid_from", NOW - timedelta(days=1)),
        window.get("valid_to"),
    )
    return key_id, private, RegisteredKey(key, role.value)


def facility_doc(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "type": "FacilitySet",
        "occurred_at": NOW.isoformat(),
        "source": "op-1",
        "pool_id": "CE-1/S-1",
        "credit_line": "100.00",
        "discount_rate": "0.8",
        "annual_interest_rate": "0.04",
        "funder_id": "bank-a",
        **overrides,
    }


def admit(
    gate: Trust,
    topic: str,
    document: dict[str, Any],
    keys: dict[str, Any],
    headers: list[Any] | None = None,
    now: datetime = NOW,
) -> Principal | Rejected:
    raw = json.dumps(document).encode()
    parsed, message = decode_document(topic, raw, today=now.date())
    return gate.admit(topic, headers or [], b"CE-1/S-1", raw, message, parsed, keys, now=now)


def reason(verdict: Principal | Rejected) -> str:
    assert isinstance(verdict, Rejected), verdict
    return verdict.reason.value


def test_an_operator_signed_facility_is_admitted_and_names_its_signer(tmp_path: Any) -> None:
    key_id, private, key = registered("op-1", m.PartyRole.OPERATOR)
    verdict = admit(
        trust(tmp_path), t.ADMIN_FACILITIES, signed(facility_doc(), key_id, private), {key_id: key}
    )
    assert verdict == Principal("op-1", "operator", key_id)


def test_each_way_a_signature_fails_has_its_own_reason(tmp_path: Any) -> None:
    gate = trust(tmp_path)
    key_id, private, key = registered("op-1", m.PartyRole.OPERATOR)
    keys = {key_id: key}
    tampered = {**signed(facility_doc(), key_id, private), "credit_line": "900.00"}
    other_key = signed(facility_doc(), key_id, new_ed25519_key()[0])
    assert reason(admit(gate, t.ADMIN_FACILITIES, facility_doc(), keys)) == "unsigned"
    assert reason(admit(gate, t.ADMIN_FACILITIES, tampered, keys)) == "bad_signature"
    assert reason(admit(gate, t.ADMIN_FACILITIES, other_key, keys)) == "bad_signature"
    assert (
        reason(admit(gate, t.ADMIN_FACILITIES, signed(facility_doc(), "nobody", private), keys))
        == "unknown_key"
    )
    assert (
        reason(admit(gate, t.ADMIN_FACILITIES, {**facility_doc(), "signature": "junk"}, keys))
        == "malformed_signature"
    )


def test_a_signer_of_the_wrong_role_is_not_permitted(tmp_path: Any) -> None:
    key_id, private, key = registered("S-1", m.PartyRole.SUPPLIER)
    verdict = admit(
        trust(tmp_path), t.ADMIN_FACILITIES, signed(facility_doc(), key_id, private), {key_id: key}
    )
    assert reason(verdict) == "not_permitted"
    assert "any operator" in verdict.detail  # type: ignore[union-attr]


def test_keys_outside_their_window_or_revoked_sign_nothing(tmp_path: Any) -> None:
    gate = trust(tmp_path)
    key_id, private, expired = registered(
        "op-1", m.PartyRole.OPERATOR, valid_to=NOW - timedelta(minutes=1)
    )
    assert (
        reason(
            admit(
                gate, t.ADMIN_FACILITIES, signed(facility_doc(), key_id, private), {key_id: expired}
            )
        )
        == "key_not_valid"
    )
    key_id, private, key = registered("op-1", m.PartyRole.OPERATOR)
    revoked = RegisteredKey(key.key, key.role, revoked_at=NOW - timedelta(seconds=1))
    # Signed "before" the revocation, but arriving after it: refused all the same.
    document = signed(
        facility_doc(occurred_at=(NOW - timedelta(minutes=5)).isoformat()), key_id, private
    )
    assert reason(admit(gate, t.ADMIN_FACILITIES, document, {key_id: revoked})) == "key_not_valid"


@pytest.mark.parametrize(
    ("shift", "verdict"),
    [
        (timedelta(hours=2), "stale"),
        (timedelta(minutes=-10), "stale"),
        (timedelta(minutes=30), None),
    ],
)
def test_occurred_at_must_lie_within_the_window(
    tmp_path: Any, shift: timedelta, verdict: str | None
) -> None:
    key_id, private, key = registered("op-1", m.PartyRole.OPERATOR)
    document = signed(facility_doc(occurred_at=(NOW - shift).isoformat()), key_id, private)
    result = admit(trust(tmp_path), t.ADMIN_FACILITIES, document, {key_id: key})
    assert (reason(result) if verdict else result) == (
        verdict or Principal("op-1", "operator", key_id)
    )


def _sealed(service: str, topic: str, document: dict[str, Any]) -> list[tuple[str, bytes]]:
    return [(MAC_HEADER, SECRETS.seal(service, topic, b"CE-1/S-1", json.dumps(document).encode()))]


def test_internal_messages_need_the_mac_of_the_service_that_owns_them(tmp_path: Any) -> None:
    gate = trust(tmp_path)
    added = {
        "event_id": "e-2",
        "type": "ReceivableAdded",
        "occurred_at": NOW.isoformat(),
        "source": "intake",
        "pool_id": "CE-1/S-1",
        "receivable_id": "R-1",
        "amount": "90000000.00",
    }
    assert admit(
        gate, t.POOL_EVENTS, added, {}, _sealed("intake", t.POOL_EVENTS, added)
    ) == Principal("intake", "service")
    assert reason(admit(gate, t.POOL_EVENTS, added, {})) == "unauthenticated"
    assert (
        reason(admit(gate, t.POOL_EVENTS, added, {}, _sealed("credit", t.POOL_EVENTS, added)))
        == "wrong_producer"
    )
    # A MAC over other bytes (the amount changed after sealing)...
    seal = _sealed("intake", t.POOL_EVENTS, added)
    assert reason(admit(gate, t.POOL_EVENTS, {**added, "amount": "1.00"}, {}, seal)) == (
        "unauthenticated"
    )
    # ...or a record moved to another topic it may also appear on.
    opened = {
        "event_id": "e-4",
        "type": "LoanOpened",
        "occurred_at": NOW.isoformat(),
        "source": "credit",
        "pool_id": "CE-1/S-1",
        "loan_id": "L-1",
        "funder_id": "bank-a",
        "principal": "10.00",
        "disbursed_on": "2026-11-24",
        "maturity_on": "2027-05-23",
    }
    moved = _sealed("credit", t.CREDIT_DECISIONS, opened)
    assert reason(admit(gate, t.CREDIT_REPAYMENT_INSTRUCTIONS, opened, {}, moved)) == (
        "unauthenticated"
    )


def test_credits_front_may_speak_for_a_party_it_authenticated(tmp_path: Any) -> None:
    gate = trust(tmp_path)
    applied = {
        "event_id": "e-3",
        "type": "FinancingApplied",
        "occurred_at": NOW.isoformat(),
        "source": "S-1",
        "pool_id": "CE-1/S-1",
        "application_id": "A-1",
        "amount": "10.00",
    }
    topic = t.SUPPLIER_FINANCING_APPLICATIONS
    assert admit(gate, topic, applied, {}, _sealed("credit", topic, applied)) == Principal(
        "S-1", "supplier", via="credit"
    )
    assert (
        reason(admit(gate, topic, applied, {}, _sealed("intake", topic, applied)))
        == "wrong_producer"
    )


def test_the_relationship_check_names_who_should_have_signed() -> None:
    message = m.new_event(
        m.FinancingApplied, source="S-2", pool_id="CE-1/S-1", application_id="A-1", amount="10.00"
    )
    refusal = not_the_party(Principal("S-2", "supplier"), "S-1", "the pool's supplier", message)
    assert refusal is not None and refusal.reason is m.Reason.NOT_PERMITTED
    assert "S-1" in refusal.detail and "S-2" in refusal.detail
    assert (
        not_the_party(Principal("S-1", "supplier"), "S-1", "the pool's supplier", message) is None
    )
    assert not_the_party(None, "S-1", "the pool's supplier", message) is None  # no gate: unit level


def test_the_publisher_table_covers_every_message_of_the_contract() -> None:
    every = {model.__name__ for models in TOPIC_MODELS.values() for model in models} | {
        "FundingRequest"
    }
    external = {
        model.__name__
        for topic, models in TOPIC_MODELS.items()
        if t.is_external(topic)
        for model in models
    }
    assert external == set(permissions.EXTERNAL)
    assert every - external == set(permissions.INTERNAL)
    assert permissions.FRONT_MAY_SEND <= external


def test_a_trust_file_is_read_with_its_windows() -> None:
    _, public = new_ed25519_key()
    keys = parse_trust_file(
        {
            "format": 1,
            "parties": [
                {
                    "party_id": "op-1",
                    "role": "operator",
                    "keys": [
                        {
                            "key_id": "op-1.a",
                            "public_key": b64url(public),
                            "valid_to": "2027-01-01T00:00:00+00:00",
                        }
                    ],
                }
            ],
        }
    )
    assert keys["op-1.a"].role == "operator" and keys["op-1.a"].key.public_key == public
    assert keys["op-1.a"].key.valid_at(NOW) and not keys["op-1.a"].key.valid_at(
        datetime(2027, 2, 1, tzinfo=UTC)
    )
    with pytest.raises(ValueError, match="format"):
        parse_trust_file({"format": 2})


def test_a_message_without_a_canonical_form_is_malformed_not_a_crash(tmp_path: Any) -> None:
    key_id, private, key = registered("op-1", m.PartyRole.OPERATOR)
    document = {**signed(facility_doc(), key_id, private), "extra": float("nan")}
    assert reason(admit(trust(tmp_path), t.ADMIN_FACILITIES, document, {key_id: key})) == (
        "malformed_signature"
    )
