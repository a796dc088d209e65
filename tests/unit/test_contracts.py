"""The message contract at the edge: decode() refuses with a reason code, never a crash."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolfin.contracts import contract_files
from shared.calendar import business_date
from shared.contracts import messages as m
from shared.contracts import topics as t
from shared.contracts.codec import Rejected, decode, encode, payload_digest
from shared.contracts.messages import Reason
from shared.inbox import Inbound, dead_letter_for

TODAY = business_date()
CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "docs" / "contracts"


def payment_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": "erp-1:pay-0001",
        "type": "PaymentReceived",
        "occurred_at": "2026-08-31T10:00:00+08:00",
        "source": "erp-1",
        "pool_id": "ce-1:sup-1",
        "payment_id": "pay-0001",
        "amount": "100000.00",
        "currency": "CNY",
        "receivable_ids": ["slip-2026-07-01"],
        "paid_on": TODAY.isoformat(),  # within the window of the day it arrives
    }
    doc.update(changes)
    return doc


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def reason_of(payload: bytes, topic: str = t.ERP_PAYMENTS) -> Reason:
    with pytest.raises(Rejected) as info:
        decode(topic, payload)
    assert info.value.detail  # every refusal says why
    return info.value.reason


# ---------------------------------------------------------------- valid messages


def test_valid_payment_decodes_with_decimal_amount_and_dates() -> None:
    message = decode(t.ERP_PAYMENTS, raw(payment_doc()))
    assert isinstance(message, m.PaymentReceived)
    assert message.amount == Decimal("100000.00")
    assert message.receivable_ids == ["slip-2026-07-01"]
    assert message.paid_on == TODAY
    assert message.pool_id == "ce-1:sup-1"
    assert message.schema_version == 1


def test_decoded_payment_encodes_back_with_the_amount_as_text() -> None:
    message = decode(t.ERP_PAYMENTS, raw(payment_doc(amount="10")))
    encoded = json.loads(encode(message))
    assert encoded["amount"] == "10.00"
    assert decode(t.ERP_PAYMENTS, encode(message)) == message


def test_unknown_extra_fields_are_ignored_for_forward_compatibility() -> None:
    newer = payment_doc(priority=3, remittance={"bank": "ICBC", "ref": [1, 2]}, note=None)
    assert decode(t.ERP_PAYMENTS, raw(newer)) == decode(t.ERP_PAYMENTS, raw(payment_doc()))


def test_pool_events_topic_decodes_each_of_its_types() -> None:
    doc = payment_doc(type="ReceivablesSettled", written_off="120000.00", core_enterprise_id="ce-1")
    message = decode(t.POOL_EVENTS, raw(doc))
    assert isinstance(message, m.ReceivablesSettled)
    assert message.written_off == Decimal("120000.00")


def test_a_funders_own_request_topic_carries_funding_requests() -> None:
    doc = {
        "event_id": "e1",
        "type": "FundingRequest",
        "occurred_at": "2026-08-01T00:00:00Z",
        "source": "funding-gateway",
        "pool_id": "ce-1:sup-1",
        "request_id": "app-1",
        "funder_id": "bank-a",
        "supplier_id": "sup-1",
        "amount": "800000.00",
        "annual_interest_rate": "0.0435",
        "tenor_days": 180,
    }
    message = decode(t.funder_requests_topic("bank-a"), raw(doc))
    assert isinstance(message, m.FundingRequest)
    assert message.annual_interest_rate == Decimal("0.0435")
    assert (
        reason_of(raw({**doc, "type": "PaymentReceived"}), t.funder_requests_topic("bank-a"))
        == Reason.UNKNOWN_TYPE
    )


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "payload", [b"", b"not json", b"{", b"{'amount': '1'}", b"\xff\xfe\xfa", b'{"a": 1} trailing']
)
def test_bytes_that_are_not_json_are_refused_as_not_json(payload: bytes) -> None:
    assert reason_of(payload) == Reason.NOT_JSON


@pytest.mark.parametrize("payload", [b"[]", b'"PaymentReceived"', b"42", b"null"])
def test_json_that_is_not_an_object_is_an_invalid_message(payload: bytes) -> None:
    assert reason_of(payload) == Reason.INVALID_MESSAGE


@pytest.mark.parametrize(
    "missing",
    ["event_id", "occurred_at", "source", "pool_id", "payment_id", "receivable_ids", "paid_on"],
)
def test_missing_field_is_an_invalid_message(missing: str) -> None:
    doc = payment_doc()
    del doc[missing]
    with pytest.raises(Rejected) as info:
        decode(t.ERP_PAYMENTS, raw(doc))
    assert info.value.reason == Reason.INVALID_MESSAGE
    assert missing in info.value.detail  # the field is named


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("receivable_ids", []),
        ("receivable_ids", "slip-1"),
        ("receivable_ids", ["has space"]),
        ("paid_on", "yesterday"),
        ("occurred_at", "not a time"),
        ("currency", "USD"),
        ("pool_id", ""),
        ("event_id", "x" * 129),
        ("schema_version", 2),
    ],
)
def test_wrong_field_is_an_invalid_message(field: str, value: Any) -> None:
    with pytest.raises(Rejected) as info:
        decode(t.ERP_PAYMENTS, raw(payment_doc(**{field: value})))
    assert info.value.reason == Reason.INVALID_MESSAGE
    assert field in info.value.detail


@pytest.mark.parametrize(
    "amount",
    [100000, 100000.0, 0.1, "0", "0.00", "-5", "1.234", "abc", "NaN", "Infinity", None, True],
)
def test_bad_amount_is_refused_as_invalid_amount(amount: Any) -> None:
    with pytest.raises(Rejected) as info:
        decode(t.ERP_PAYMENTS, raw(payment_doc(amount=amount)))
    assert info.value.reason == Reason.INVALID_AMOUNT
    assert "amount" in info.value.detail


def test_bad_amount_on_another_external_topic_is_also_invalid_amount() -> None:
    doc = {
        "event_id": "e1",
        "type": "FacilitySet",
        "occurred_at": "2026-08-01T00:00:00Z",
        "source": "ops",
        "pool_id": "ce-1:sup-1",
        "credit_line": 5000000,
        "discount_rate": "0.8",
        "annual_interest_rate": "0.0435",
        "funder_id": "bank-a",
    }
    assert reason_of(raw(doc), t.ADMIN_FACILITIES) == Reason.INVALID_AMOUNT


@pytest.mark.parametrize("kind", ["SettlementSlipIssued", "PaymentRecieved", "", None, 7])
def test_type_not_carried_by_the_topic_is_refused_as_unknown_type(kind: Any) -> None:
    assert reason_of(raw(payment_doc(type=kind))) == Reason.UNKNOWN_TYPE


def test_missing_type_is_refused_as_unknown_type() -> None:
    doc = payment_doc()
    del doc["type"]
    assert reason_of(raw(doc)) == Reason.UNKNOWN_TYPE


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
hashable_json = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.sampled_from(["PaymentReceived", "SupplierOnboarded"])
)
payment_field_names = st.sampled_from(sorted(payment_doc()))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(payment_field_names, json_values),
    hashable_json,
    st.sampled_from([t.ERP_PAYMENTS, t.POOL_EVENTS, t.ADMIN_FACILITIES]),
)
def test_decode_never_raises_anything_but_rejected(
    fields: dict[str, Any], kind: Any, topic: str
) -> None:
    doc = {**payment_doc(), **fields, "type": kind}
    try:
        decode(topic, raw(doc))
    except Rejected as refusal:
        assert refusal.reason in set(Reason)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_decode_of_arbitrary_bytes_is_a_message_or_a_refusal(payload: bytes) -> None:
    try:
        decode(t.ERP_PAYMENTS, payload)
    except Rejected as refusal:
        assert refusal.reason in {Reason.NOT_JSON, Reason.INVALID_MESSAGE, Reason.UNKNOWN_TYPE}


@pytest.mark.parametrize(
    "payload",
    [
        b'{"type": []}',  # TypeError: unhashable type: 'list'
        b'{"type": {"a": 1}}',  # TypeError: unhashable type: 'dict'
        b"[" * 100_000 + b"]" * 100_000,  # RecursionError from json.loads
        b'{"type": "PaymentReceived", "n": ' + b"1" * 5000 + b"}",  # ValueError: int > 4300 digits
    ],
    ids=["type-list", "type-object", "deep-nesting", "huge-integer"],
)
def test_poison_json_is_refused_not_raised(payload: bytes) -> None:
    with pytest.raises(Rejected):
        decode(t.ERP_PAYMENTS, payload)


# ---------------------------------------------------------------- payload digest


def test_digest_is_equal_for_the_same_json_in_another_key_order_and_spacing() -> None:
    doc = payment_doc()
    reordered = json.dumps(dict(reversed(list(doc.items()))), indent=4).encode()
    assert reordered != raw(doc)
    assert payload_digest(reordered) == payload_digest(raw(doc))


@settings(max_examples=100, deadline=None)
@given(st.permutations(sorted(payment_doc())))
def test_digest_ignores_key_order_whatever_it_is(order: list[str]) -> None:
    doc = payment_doc()
    assert payload_digest(raw({k: doc[k] for k in order})) == payload_digest(raw(doc))


@pytest.mark.parametrize("amount", ["100000.01", "100000.0", "100000", "99999.99"])
def test_digest_differs_when_the_amount_changes_even_only_in_its_text(amount: str) -> None:
    assert payload_digest(raw(payment_doc(amount=amount))) != payload_digest(raw(payment_doc()))


def test_digest_keeps_json_numbers_exact() -> None:
    # 0.1 + 0.2 style float noise must not merge different numbers, nor split equal texts.
    assert payload_digest(b'{"x": 1.10}') != payload_digest(b'{"x": 1.1}')
    assert payload_digest(b'{"x": 0.30000000000000004}') != payload_digest(b'{"x": 0.3}')


def test_digest_of_bytes_that_are_not_json_is_still_a_stable_digest() -> None:
    assert payload_digest(b"not json") == payload_digest(b"not json")
    assert payload_digest(b"not json") != payload_digest(b"not json!")
    assert len(payload_digest(b"\xff")) == 64


# ---------------------------------------------------------------- the published contract files


def test_committed_contract_files_match_the_code() -> None:
    expected = contract_files()
    stale = sorted(
        name
        for name, text in expected.items()
        if not (CONTRACTS_DIR / name).is_file()
        or (CONTRACTS_DIR / name).read_text(encoding="utf-8") != text
    )
    extra = sorted(
        str(path.relative_to(CONTRACTS_DIR))
        for path in CONTRACTS_DIR.rglob("*")
        if path.is_file() and str(path.relative_to(CONTRACTS_DIR)) not in expected
    )
    assert not stale, (
        f"docs/contracts is out of date for {stale}: "
        "run `poolfin contracts export` and commit the result"
    )
    assert not extra, (
        f"docs/contracts has files the code no longer publishes: {extra}; "
        "delete them and run `poolfin contracts export`"
    )


def test_contract_files_cover_every_message_and_the_asyncapi_document() -> None:
    files = contract_files()
    spec = json.loads(files["asyncapi.json"])
    assert "erp.payments.v1" in json.dumps(spec["channels"])
    for name in ("PaymentReceived", "SettlementSlipIssued", "FundingRequest", "DeadLetter"):
        schema = json.loads(files[f"schemas/{name}.schema.json"])
        assert schema["title"] == name
        assert "event_id" in schema["properties"] or name == "DeadLetter"


# What ERP systems, operators, suppliers and funders send: the amounts and rates decode() refuses
# as JSON numbers.
EXTERNAL_DECIMAL_FIELDS = [
    ("SettlementSlipIssued", "amount"),
    ("PaymentReceived", "amount"),
    ("FacilitySet", "credit_line"),
    ("FacilitySet", "discount_rate"),
    ("FacilitySet", "annual_interest_rate"),
    ("FinancingApplied", "amount"),
    ("FunderResponse", "amount"),
]


@pytest.mark.parametrize(("model", "field"), EXTERNAL_DECIMAL_FIELDS)
def test_published_schema_describes_amounts_as_strings_only(model: str, field: str) -> None:
    schema = json.loads(contract_files()[f"schemas/{model}.schema.json"])
    described = json.dumps(schema["properties"][field])
    assert '"number"' not in described and '"integer"' not in described
    with pytest.raises(Rejected) as info:  # what the schema must agree with
        decode(t.ERP_PAYMENTS, raw(payment_doc(amount=100000)))
    assert info.value.reason == Reason.INVALID_AMOUNT


# ---------------------------------------------------------------- the dead letter itself


def inbound(value: bytes) -> Inbound:
    return Inbound(topic=t.ERP_PAYMENTS, partition=2, offset=41, key=b"ce-1:sup-1", value=value)


def test_dead_letter_carries_the_exact_bytes_the_reason_and_where_they_came_from() -> None:
    payload = b'{"type": "PaymentReceived", "amount": 1.5}'
    letter = dead_letter_for(
        "intake", inbound(payload), Rejected(Reason.INVALID_AMOUNT, "amount: not a string")
    )
    assert base64.b64decode(letter.raw_payload_b64) == payload
    assert letter.raw_text == payload.decode()
    assert (letter.raw_size, letter.raw_truncated) == (len(payload), False)
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        t.ERP_PAYMENTS,
        2,
        41,
    )
    assert (letter.reason, letter.key) == (Reason.INVALID_AMOUNT, "ce-1:sup-1")


def test_dead_letter_of_bytes_that_are_not_utf8_has_no_text_but_every_byte() -> None:
    payload = b"\xff\xfe not utf-8"
    letter = dead_letter_for("intake", inbound(payload), Rejected(Reason.NOT_JSON, "bad"))
    assert letter.raw_text is None
    assert base64.b64decode(letter.raw_payload_b64) == payload


def test_dead_letter_of_a_huge_payload_still_fits_in_one_kafka_record() -> None:
    """A 900 KiB poison message (under Kafka's 1 MiB default) must not make a dead letter the
    broker refuses, or the outbox relay would retry it forever."""
    payload = b"[" * (900 * 1024)
    letter = dead_letter_for("intake", inbound(payload), Rejected(Reason.NOT_JSON, "deep"))
    assert len(encode(letter)) < 1024 * 1024 - 4096
    assert letter.raw_truncated and letter.raw_size == len(payload)
    assert letter.raw_text is None
    assert payload.startswith(base64.b64decode(letter.raw_payload_b64))


def test_new_event_refuses_a_misspelled_field_instead_of_dropping_it() -> None:
    with pytest.raises(TypeError, match=r"no field\(s\) \['amuont'\]"):
        m.new_event(
            m.SupplierFundsReleased,
            source="test",
            pool_id="CE-1/S-1",
            payment_id="P-1",
            amuont="1.00",
        )


def test_the_asyncapi_document_says_who_sends_and_who_receives_each_topic() -> None:
    """Generated from the services' declared publishers and subscribers: every internal topic
    has exactly one sender, and the ERP topics are received by intake only."""
    spec = json.loads(contract_files()["asyncapi.json"])
    senders: dict[str, set[str]] = {}
    receivers: dict[str, set[str]] = {}
    for name, operation in spec["operations"].items():
        channel = spec["channels"][unquote(operation["channel"]["$ref"].rsplit("/", 1)[1])]
        service = name.split(" ")[0]
        side = senders if operation["action"] == "send" else receivers
        side.setdefault(channel["address"], set()).add(service)
    assert senders[t.POOL_EVENTS] == {"intake"}
    assert receivers[t.POOL_EVENTS] == {"credit", "settlement-splitter"}
    assert senders[t.CREDIT_REPAYMENT_INSTRUCTIONS] == {"credit"}
    assert senders[t.funder_requests_topic("{funder_id}")] == {"funding-gateway"}
    assert all(len(services) == 1 for services in senders.values()), senders
    assert {receivers[topic] == {"intake"} for topic in t.ERP_TOPICS} == {True}
    assert not set(t.ERP_TOPICS) & set(senders)
