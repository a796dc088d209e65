"""Issue 11, ISO 20022: a bank that speaks tsin.001/tsin.002 lends through the bank-side
bridge. The bank reads the request as tsin.001, answers FNCD in tsin.002, and the loan opens;
a second request answered NTFD is refused with the bank's reason code."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher
from poolfin.iso20022 import bridge, iso_requests_topic, iso_responses_topic, parse_tsin001, tsin002
from poolfin.stack import Stack
from shared.contracts import topics
from shared.contracts.messages import PartyRole
from tests.conftest import WATCHED
from tests.integration.scenario import Pool, apply, confirmation, sign_contract, today

pytestmark = pytest.mark.integration


async def test_a_tsin001_request_answered_by_tsin002_opens_the_loan_or_refuses_it(
    stack: Stack, publisher: Publisher
) -> None:
    funder = f"bank-iso-{uuid.uuid4().hex[:6]}"
    stop = asyncio.Event()

    def sign(document: dict[str, Any]) -> dict[str, Any]:
        return stack.keyring.sign(document, funder, PartyRole.FUNDER)

    adapter = asyncio.create_task(bridge(stack.bootstrap, funder, sign, stop))
    bank_in = AIOKafkaConsumer(
        iso_requests_topic(funder), bootstrap_servers=stack.bootstrap, auto_offset_reset="earliest"
    )
    bank_out = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    try:
        async with Observer(
            stack.bootstrap, [*WATCHED, topics.funder_requests_topic(funder)]
        ) as observer:
            run = uuid.uuid4().hex[:8]
            pool = Pool(f"CE-ISO/S-{run}", f"S-{run}")
            for t, event in (
                erp.onboarding(pool.pool_id, "CE-ISO", pool.supplier_id, "ISO Supplier"),
                erp.facility(pool.pool_id, line="1000000.00", funder=funder),
                erp.slip(pool.pool_id, f"R-{run}", "1000000.00", today()),
            ):
                await publisher.send(t, event)
                await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=event["event_id"])
            await asyncio.sleep(1)  # the bridge's topics exist once it runs
            await bank_in.start()
            await bank_out.start()

            async def lend(amount: str) -> str:
                application = await apply(publisher, observer, pool, amount)
                await publisher.send(
                    topics.ERP_FINANCING_CONFIRMATIONS, confirmation(pool, application)
                )
                await sign_contract(publisher, observer, application)
                return application

            async def bank_reads() -> Any:
                record = await asyncio.wait_for(bank_in.getone(), timeout=60)
                return parse_tsin001(record.value or b"").invc_fincg_req

            first = await lend("300000.00")
            request = await bank_reads()
            [invoice] = request.invc_req_inf
            assert (request.req_grp_inf.grp_id, invoice.reqd_amt.amt.value) == (
                first,
                Decimal("300000.00"),
            )
            due = invoice.invc_ttls_inf.pmt_due_dt.to_date()
            financed = tsin002(
                first,
                "FNCD",
                amount=Decimal("300000.00"),
                credit_date=date.fromisoformat(today()),
                invoice_amount=Decimal("300000.00"),
                issued_on=date.fromisoformat(today()),
                due_on=due,
            )
            await bank_out.send_and_wait(iso_responses_topic(funder), financed, key=first.encode())
            [opened] = await observer.wait_for(
                topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=first, timeout=60
            )
            assert (opened["funder_id"], opened["principal"]) == (funder, "300000.00")

            second = await lend("200000.00")
            assert (await bank_reads()).req_grp_inf.grp_id == second
            refused = tsin002(
                second,
                "NTFD",
                reason_code="CA01",
                reason="credit limit for this buyer reached",
                invoice_amount=Decimal("200000.00"),
                issued_on=date.fromisoformat(today()),
                due_on=due,
            )
            await bank_out.send_and_wait(iso_responses_topic(funder), refused, key=second.encode())
            [result] = await observer.wait_for(
                topics.FUNDING_RESULTS, request_id=second, decision="rejected", timeout=60
            )
            assert result["reason"] == "CA01: credit limit for this buyer reached"
            await observer.wait_for(
                topics.CREDIT_DECISIONS,
                application_id=second,
                state="refused",
                reason="rejected_by_funder",
            )
    finally:
        stop.set()
        await asyncio.wait_for(adapter, timeout=30)
        await bank_in.stop()
        await bank_out.stop()
