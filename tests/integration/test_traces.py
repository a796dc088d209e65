"""Traces (issue 12) on the real broker and PostgreSQL with the four services as processes:
a payment is one trace through intake, credit and the splitter, and a financing one trace
through intake, credit and the funding gateway; each service's span is the child of the
span that published what it handled (the `traceparent` header of the record)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher
from poolfin.stack import Stack
from shared.contracts import topics
from shared.tracing import derived_trace_id
from tests.conftest import TEST_FUNDER, WATCHED
from tests.integration.scenario import (
    apply,
    confirmation,
    facility,
    open_pool,
    payment,
    sign_contract,
    today,
)

pytestmark = pytest.mark.integration


def spans(stack: Stack) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in (stack.work_dir / "traces").glob("*.jsonl")
        for line in path.read_text().splitlines()
        if line
    ]


async def trace_of(stack: Stack, root_event: str, services: set[str]) -> list[dict[str, Any]]:
    """The spans of the trace a message without a traceparent starts, once every one of
    `services` has one in it."""
    trace_id = derived_trace_id(root_event)
    for _ in range(150):
        found = [s for s in spans(stack) if s["trace_id"] == trace_id]
        if services <= {s["service"] for s in found}:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"trace {trace_id}: {sorted({s['service'] for s in found})}")


def assert_a_tree(trace: list[dict[str, Any]]) -> None:
    """One root (the producer's, outside poolfin), every other span a child of a span here."""
    ids = {s["span_id"] for s in trace}
    outside = {s["parent_id"] for s in trace if s["parent_id"] not in ids}
    assert len(outside) == 1, outside


async def test_a_financing_and_its_payment_each_make_one_trace_across_the_services(
    stack: Stack, publisher: Publisher
) -> None:
    watched = [*WATCHED, topics.funder_requests_topic(TEST_FUNDER)]
    async with Observer(stack.bootstrap, watched) as observer:
        pool = await open_pool(publisher, observer, ["1000000.00"], facility())
        application = await apply(publisher, observer, pool, "800000.00")
        confirmed = confirmation(pool, application)
        await publisher.send(topics.ERP_FINANCING_CONFIRMATIONS, confirmed)
        await sign_contract(publisher, observer, application)
        [request] = await observer.wait_for(
            topics.funder_requests_topic(TEST_FUNDER), request_id=application
        )
        await publisher.send(*erp.disbursal(request, today()))
        await observer.wait_for(topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=application)

        financing = await trace_of(
            stack, confirmed["event_id"], {"intake", "credit", "funding-gateway"}
        )
        names = {s["name"] for s in financing}
        assert {
            "intake handle FinancingConfirmation",
            "credit handle BuyerConfirmedFinancing",
            "funding-gateway handle LoanRequested",
        } <= names, names
        assert_a_tree(financing)

        paid = payment(pool, "100000.00", list(pool.slips))
        await publisher.send(topics.ERP_PAYMENTS, paid)
        await observer.wait_for(
            topics.SETTLEMENT_RESULTS, type="SettlementReleased", payment_id=paid["payment_id"]
        )
    trace = await trace_of(stack, paid["event_id"], {"intake", "credit", "settlement-splitter"})
    by_name = {s["name"]: s for s in trace}
    assert {
        "intake handle PaymentReceived",
        "credit handle ReceivablesSettled",
        "settlement-splitter handle ReceivablesSettled",
        "settlement-splitter handle RepaymentInstruction",
    } <= set(by_name), sorted(by_name)
    assert_a_tree(trace)
    # The instruction's span is the child of credit's span, which published it.
    assert (
        by_name["settlement-splitter handle RepaymentInstruction"]["parent_id"]
        == by_name["credit handle ReceivablesSettled"]["span_id"]
    )
    assert {s["attributes"]["poolfin.pool_id"] for s in trace} == {pool.pool_id}
