"""Issue 11, investor platforms, on the real broker and PostgreSQL: a request to a platform
opens a raise; three investors commit; the raise closes and the platform disburses; a
repayment is divided among the investors to the fen and booked per investor, each with a
statement; a raise not fully committed by its deadline is refused with its reason."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher
from poolfin.stack import Stack
from poolfin.tokens import token_for
from shared.contracts import topics
from shared.contracts.messages import PartyRole
from tests.conftest import WATCHED
from tests.integration.scenario import (
    Pool,
    apply,
    confirmation,
    http_json,
    payment,
    sign_contract,
    today,
)
from tests.integration.test_split_rules import poolfin

pytestmark = pytest.mark.integration


async def platform_pool(publisher: Publisher, observer: Observer, platform: str) -> Pool:
    run = uuid.uuid4().hex[:8]
    pool = Pool(f"CE-P2P/S-{run}", f"S-{run}")
    for t, event in (
        erp.onboarding(pool.pool_id, "CE-P2P", pool.supplier_id, "Platform Supplier"),
        erp.facility(pool.pool_id, line="1000000.00", funder=platform, funder_kind="platform"),
        erp.slip(pool.pool_id, f"R-{run}", "1000000.00", today()),
    ):
        await publisher.send(t, event)
        await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=event["event_id"])
    pool.slips[f"R-{run}"] = "1000000.00"
    return pool


async def raise_for(
    publisher: Publisher, observer: Observer, pool: Pool, platform: str, amount: str
) -> dict[str, Any]:
    """Apply, confirm, sign: the request reaches the platform as a raise."""
    application = await apply(publisher, observer, pool, amount)
    await publisher.send(topics.ERP_FINANCING_CONFIRMATIONS, confirmation(pool, application))
    await sign_contract(publisher, observer, application)
    [request] = await observer.wait_for(
        topics.funder_requests_topic(platform), request_id=application
    )
    return request


async def test_three_investors_fund_a_loan_and_are_repaid_to_the_fen(
    stack: Stack, publisher: Publisher
) -> None:
    platform = f"p2p-{uuid.uuid4().hex[:6]}"
    async with Observer(stack.bootstrap, [*WATCHED, topics.funder_requests_topic(platform)]) as obs:
        pool = await platform_pool(publisher, obs, platform)
        request = await raise_for(publisher, obs, pool, platform, "300000.00")
        assert (request["funder_kind"], request["raise_deadline"] is not None) == ("platform", True)
        loan = request["request_id"]
        # A disbursal before the raise closed is refused: the money is not raised yet.
        early = erp.disbursal(request, today())
        await publisher.send(*early)
        [letter] = await obs.wait_for(
            topics.FUNDING_GATEWAY_REJECTED, event_id=early[1]["event_id"]
        )
        assert letter["reason"] == "application_not_pending" and "raising" in letter["detail"]
        for investor, amount in (
            ("inv-a", "100000.00"),
            ("inv-b", "150000.00"),
            ("inv-c", "50000.00"),
        ):
            await publisher.send(*erp.investor_commitment(request, investor, amount))
        too_much = erp.investor_commitment(request, "inv-d", "0.01")[1]
        await publisher.send(topics.FUNDING_RESPONSES, too_much)
        [closed] = await obs.wait_for(topics.FUNDING_RESULTS, request_id=loan, decision="approved")
        assert [i["investor_id"] for i in closed["investors"]] == ["inv-a", "inv-b", "inv-c"]
        [letter] = await obs.wait_for(
            topics.FUNDING_GATEWAY_REJECTED, event_id=too_much["event_id"]
        )
        assert letter["reason"] == "raise_not_open"  # raised: closed to new investors

        # Each investor's share has its own contract: no disbursal before both sign each one.
        contracts = await obs.wait_for(
            topics.FUNDING_CONTRACTS, request_id=loan, type="InvestorContractIssued", count=3
        )
        assert sorted((c["investor_id"], c["amount"]) for c in contracts) == [
            ("inv-a", "100000.00"),
            ("inv-b", "150000.00"),
            ("inv-c", "50000.00"),
        ]
        assert all("lender (investor): " + c["investor_id"] in c["contract"] for c in contracts)
        unsigned = erp.disbursal(request, today())
        await publisher.send(*unsigned)
        [letter] = await obs.wait_for(
            topics.FUNDING_GATEWAY_REJECTED, event_id=unsigned[1]["event_id"]
        )
        assert letter["reason"] == "contract_not_signed"
        for issued in contracts:
            for signature in erp.investor_contract_signatures(issued):
                await publisher.send(*signature)
        forged = erp.investor_contract_signatures(contracts[0])[1]  # inv-a's, signed by inv-b
        await publisher.send(*forged, signer=("inv-b", PartyRole.INVESTOR))
        [letter] = await obs.wait_for(
            topics.FUNDING_GATEWAY_REJECTED, event_id=forged[1]["event_id"]
        )
        assert letter["reason"] == "not_permitted"

        # The signatures reach the gateway on two topics; once all six are in, it says so.
        [ready] = await obs.wait_for(
            topics.FUNDING_CONTRACTS, type="RaiseContracted", request_id=loan
        )
        assert len(ready["investors"]) == 3
        await publisher.send(*erp.disbursal(request, today()))
        [opened] = await obs.wait_for(topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=loan)
        assert {i["investor_id"]: i["amount"] for i in opened["investors"]} == {
            "inv-a": "100000.00",
            "inv-b": "150000.00",
            "inv-c": "50000.00",
        }

        # 700,000.00 paid: the base falls to 240,000.00, so 60,000.00 of principal is due,
        # divided 2:3:1 among the investors.
        paid = payment(pool, "700000.00", list(pool.slips))
        await publisher.send(topics.ERP_PAYMENTS, paid)
        [notice] = await obs.wait_for(
            topics.SETTLEMENT_FUNDER_REPAYMENTS, payment_id=paid["payment_id"]
        )
        assert notice["investors"] == {
            "inv-a": "20000.00",
            "inv-b": "30000.00",
            "inv-c": "10000.00",
        }
        assert sum(Decimal(v) for v in notice["investors"].values()) == Decimal(notice["total"])

    shown = await poolfin(stack, "loan", "investors", loan)
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)
    assert [(i["investor_id"], i["committed"], i["repaid"]) for i in listed["investors"]] == [
        ("inv-a", "100000.00", "20000.00"),
        ("inv-b", "150000.00", "30000.00"),
        ("inv-c", "50000.00", "10000.00"),
    ]
    status, over_http = await asyncio.to_thread(
        http_json,
        stack.http_url,
        "GET",
        f"/loans/{loan}/investors",
        None,
        token_for(stack.keyring, pool.supplier_id, PartyRole.SUPPLIER),
    )
    assert (status, over_http["investors"]) == (200, listed["investors"])
    statement = json.loads((await poolfin(stack, "statement", "inv-b")).stdout)
    assert statement["role"] == "investor"
    [account] = [a for a in statement["accounts"] if a["account"] == f"investor:{loan}/inv-b"]
    assert (account["balanced"], account["closing_balance"]) == (True, "-120000.00")


async def test_a_raise_not_fully_committed_by_its_deadline_is_refused_with_its_reason(
    stack: Stack, publisher: Publisher
) -> None:
    platform = f"p2p-{uuid.uuid4().hex[:6]}"
    async with Observer(stack.bootstrap, [*WATCHED, topics.funder_requests_topic(platform)]) as obs:
        pool = await platform_pool(publisher, obs, platform)
        request = await raise_for(publisher, obs, pool, platform, "300000.00")
        await publisher.send(*erp.investor_commitment(request, "inv-a", "120000.00"))
        [result] = await obs.wait_for(
            topics.FUNDING_RESULTS,
            request_id=request["request_id"],
            decision="rejected",
            timeout=60,
        )
        assert result["reason_code"] == "raise_expired"
        assert "with 120000.00 of 300000.00 committed" in result["reason"]
        [refused] = await obs.wait_for(
            topics.CREDIT_DECISIONS, application_id=request["request_id"], state="refused"
        )
        assert refused["reason"] == "raise_expired"


async def test_a_short_raise_funds_what_was_committed_when_the_programme_allows(
    stack: Stack, publisher: Publisher, tmp_path: Path
) -> None:
    from tests.integration.test_programmes import open_pool, set_programme

    core = f"CE-P2P-{uuid.uuid4().hex[:6]}"
    platform = f"p2p-{uuid.uuid4().hex[:6]}"
    await set_programme(
        stack,
        tmp_path,
        core,
        [
            {
                "funder_id": platform,
                "kind": "platform",
                "limit": "5000000.00",
                "annual_interest_rate": "0.06",
                "partial_raise": True,
            }
        ],
    )
    async with Observer(stack.bootstrap, [*WATCHED, topics.funder_requests_topic(platform)]) as obs:
        pool = await open_pool(publisher, obs, core, "1000000.00")
        request = await raise_for(publisher, obs, pool, platform, "300000.00")
        loan = request["request_id"]
        await publisher.send(*erp.investor_commitment(request, "inv-a", "120000.00"))
        [short] = await obs.wait_for(
            topics.FUNDING_RESULTS, request_id=loan, decision="approved", timeout=60
        )
        assert (short["partial"], short["amount"]) == (True, "120000.00")
        [issued] = await obs.wait_for(
            topics.FUNDING_CONTRACTS, request_id=loan, type="InvestorContractIssued"
        )
        for signature in erp.investor_contract_signatures(issued):
            await publisher.send(*signature)
        await obs.wait_for(topics.FUNDING_CONTRACTS, request_id=loan, type="RaiseContracted")
        topic, disbursal = erp.disbursal(request, today())
        await publisher.send(topic, {**disbursal, "amount": "120000.00"})
        [opened] = await obs.wait_for(topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=loan)
        assert opened["principal"] == "120000.00"
        assert [(i["investor_id"], i["amount"]) for i in opened["investors"]] == [
            ("inv-a", "120000.00")
        ]
