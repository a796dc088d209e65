"""The ISO 20022 adapter (issue 11): poolfin's loan request as tsin.001 and a bank's tsin.002
status back, each checked against the constraints of the published schemas."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from poolfin.iso20022 import (
    NotValid,
    funder_response,
    parse_tsin001,
    parse_tsin002,
    tsin001,
    tsin002,
)

REQUEST = {
    "event_id": "e-1",
    "request_id": "A-123",
    "pool_id": "CE-1/S-1",
    "funder_id": "bank-iso",
    "supplier_id": "S-1",
    "amount": "300000.00",
    "annual_interest_rate": "0.0435",
    "tenor_days": 180,
    "requested_on": "2026-12-03",
    "contract_hash": "ab" * 32,
}


def test_a_request_as_tsin001_reads_back_with_its_figures() -> None:
    raw = tsin001(REQUEST)
    assert raw.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="urn:iso:')
    request = parse_tsin001(raw).invc_fincg_req
    assert request.req_grp_inf.grp_id == "A-123"
    [invoice] = request.invc_req_inf
    assert invoice.reqd_amt.amt.value == Decimal("300000.00")
    assert invoice.invc_ttls_inf.pmt_due_dt.to_date() == date(2027, 6, 1)  # + 180 days
    assert (invoice.spplr.pty_id.nm, invoice.buyr.pty_id.nm) == ("S-1", "CE-1")
    assert "ab" * 32 in request.req_grp_inf.fincg_agrmt


def test_each_status_maps_to_a_funder_decision() -> None:
    figures: dict[str, Any] = {
        "invoice_amount": Decimal("300000.00"),
        "issued_on": date(2026, 12, 3),
        "due_on": date(2027, 6, 1),
    }
    financed = parse_tsin002(
        tsin002(
            "A-123", "FNCD", amount=Decimal("300000.00"), credit_date=date(2026, 12, 3), **figures
        )
    )
    assert (financed.decision, financed.amount, financed.value_date) == (
        "disbursed",
        Decimal("300000.00"),
        date(2026, 12, 3),
    )
    response = funder_response(REQUEST, financed, "bank-iso")
    assert (response["decision"], response["amount"], response["contract_hash"]) == (
        "disbursed",
        "300000.00",
        "ab" * 32,
    )
    assert parse_tsin002(tsin002("A-123", "PDNG", **figures)).decision == "approved"
    refused = parse_tsin002(tsin002("A-123", "NTFD", reason_code="CA01", reason="limit", **figures))
    assert (refused.decision, refused.reason) == ("rejected", "CA01: limit")
    assert funder_response(REQUEST, refused, "bank-iso")["reason"] == "CA01: limit"


def test_what_breaks_the_schema_is_refused_both_ways() -> None:
    with pytest.raises(NotValid, match="GrpId"):
        tsin001({**REQUEST, "request_id": "A-" + "9" * 40})  # Max35Text
    for raw in (
        b"<Document/>",
        b"<not xml",
        tsin001(REQUEST),  # a tsin.001 is not a tsin.002
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:tsin.002.001.01"><Evil/></Document>',
    ):
        with pytest.raises(NotValid):
            parse_tsin002(raw)
