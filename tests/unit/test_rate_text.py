"""Rates are written canonically: a rate read back from a numeric(10,8) column (0.04350000)
travels as "0.0435", never with trailing zeros or an exponent; amounts keep two decimals."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.funding_gateway.domain import render_contract
from services.funding_gateway.handlers import handle
from services.funding_gateway.repository import GatewayBatch, InMemoryGatewayStore
from shared.contracts import messages as m
from shared.contracts import topics as t
from shared.contracts.codec import decode, encode
from shared.money import rate_text
from tests.unit.batches import run_batch

RATE_PATTERN = re.compile(r"[0-9]{1,4}(\.[0-9]{1,8})?")  # the JSON Schema's


def facility(**rates: Decimal) -> m.FacilitySet:
    fields: dict[str, Any] = {
        "discount_rate": Decimal("0.80000000"),
        "annual_interest_rate": Decimal("0.04350000"),
        **rates,
    }
    return m.new_event(
        m.FacilitySet,
        source="operator",
        pool_id="CE-1/S-1",
        credit_line=Decimal("1000000.00"),
        funder_id="bank-a",
        **fields,
    )


def test_a_rate_from_a_numeric_column_is_written_canonically() -> None:
    written = json.loads(encode(facility()))
    assert written["annual_interest_rate"] == "0.0435"
    assert written["discount_rate"] == "0.8"
    assert written["credit_line"] == "1000000.00"  # amounts stay two-decimal


def test_canonical_rate_texts() -> None:
    assert rate_text(Decimal("0.05000000")) == "0.05"
    assert rate_text(Decimal("1.00000000")) == "1"
    assert rate_text(Decimal("0E-8")) == "0"
    assert rate_text(Decimal("0.00000001")) == "0.00000001"  # never "1E-8"
    assert rate_text(Decimal("1E+1")) == "10"


def test_the_model_still_holds_the_value_as_given() -> None:
    """Only the JSON changes: the Decimal a model holds is the one it was given."""
    assert str(facility().annual_interest_rate) == "0.04350000"


rates = st.decimals(
    min_value=Decimal(0), max_value=Decimal("9999.99999999"), places=8, allow_nan=False
)


@given(rate=rates, zeros=st.integers(min_value=0, max_value=4))
def test_canonical_text_round_trips_to_an_equal_decimal(rate: Decimal, zeros: int) -> None:
    text = rate_text(rate)
    assert Decimal(text) == rate
    assert RATE_PATTERN.fullmatch(text), text
    assert "E" not in text.upper()
    assert not ("." in text and text.endswith("0")), text
    # every way of writing the value writes the same text
    padded = Decimal(format(rate, "f") + ("" if "." in format(rate, "f") else ".") + "0" * zeros)
    assert rate_text(padded) == text
    # and through the contract: encoded, decoded, the same rate
    message = facility(annual_interest_rate=rate)
    assert json.loads(encode(message))["annual_interest_rate"] == text
    assert decode(t.ADMIN_FACILITIES, encode(message)).annual_interest_rate == rate  # type: ignore[attr-defined]


async def test_a_loan_contract_renders_again_from_its_stored_terms() -> None:
    """`poolfin contract verify` renders the contract again from the stored terms (the
    request's JSON): the same bytes even when the request's rate arrived as 0.04350000."""
    request = m.new_event(
        m.LoanRequested,
        source="credit",
        pool_id="CE-1/S-1",
        request_id="A-1",
        funder_id="bank-a",
        supplier_id="S-1",
        amount=Decimal("800.00"),
        annual_interest_rate=Decimal("0.04350000"),
        tenor_days=180,
    )
    store = InMemoryGatewayStore()
    await run_batch(GatewayBatch(store=store), handle, request)
    stored = store.request_rows["A-1"]
    assert stored.terms is not None and stored.contract is not None
    assert stored.terms["annual_interest_rate"] == "0.0435"
    assert render_contract(m.LoanRequested.model_validate(stored.terms)) == stored.contract
    assert "annual interest rate: 0.0435 " in stored.contract
