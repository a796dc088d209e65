"""Issue 9, signed contracts, on the real broker and PostgreSQL: every loan's contract is
rendered by the gateway, signed by the supplier before the funder is asked, signed by the
funder in its answer; the loan opens only with both, and `poolfin contract verify` checks
them from the records."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import asyncpg
import pytest

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher
from poolfin.stack import Stack
from shared.contracts import messages as m
from shared.contracts import topics
from tests.conftest import TEST_FUNDER
from tests.environment import user_env
from tests.integration.scenario import apply, borrow, confirmation, facility, open_pool, today

pytestmark = pytest.mark.integration


async def contract_verify(stack: Stack, loan_id: str) -> tuple[int, dict[str, Any]]:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "poolfin.cli", "contract", "verify", loan_id],
        capture_output=True,
        text=True,
        timeout=120,
        env=user_env(
            POOLFIN_DATABASE_URL=stack.database_url,
            POOLFIN_KEYS_DIR=str(stack.keyring.directory),
        ),
    )
    assert done.stdout, done.stderr[-2000:]
    return done.returncode, json.loads(done.stdout)


async def test_a_loan_opens_with_both_signatures_and_its_contract_verifies(
    stack: Stack, publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    loan_id = await borrow(publisher, observer, pool, "50000.00", TEST_FUNDER)
    [issued] = observer.find(topics.FUNDING_CONTRACTS, request_id=loan_id)
    assert "principal: CNY 50000.00" in issued["contract"]
    assert f"borrower (supplier): {pool.supplier_id}" in issued["contract"]
    [opened] = observer.find(topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=loan_id)
    assert opened["contract_hash"] == issued["contract_hash"]
    code, report = await contract_verify(stack, loan_id)
    assert (code, report["ok"], report["problems"]) == (0, True, [])
    # Anyone who rewrites the contract in the database is found out.
    await db.execute(
        "UPDATE funding_gateway.funding_requests"
        " SET contract = replace(contract, '50000.00', '5000000.00') WHERE request_id = $1",
        loan_id,
    )
    code, report = await contract_verify(stack, loan_id)
    assert code == 1 and not report["ok"]
    assert any("SHA-256" in problem for problem in report["problems"]), report


async def test_without_the_suppliers_signature_no_funder_is_asked_and_no_loan_opens(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    application_id = await apply(publisher, observer, pool, "40000.00")
    await publisher.send(topics.ERP_FINANCING_CONFIRMATIONS, confirmation(pool, application_id))
    [issued] = await observer.wait_for(topics.FUNDING_CONTRACTS, request_id=application_id)
    # Signed by another supplier, or over another hash: refused.
    _, by_other = erp.contract_signature(issued)
    await publisher.send(
        topics.SUPPLIER_CONTRACT_SIGNATURES, by_other, signer=("S-other", m.PartyRole.SUPPLIER)
    )
    _, wrong_hash = erp.contract_signature({**issued, "contract_hash": "0" * 64})
    await publisher.send(topics.SUPPLIER_CONTRACT_SIGNATURES, wrong_hash)
    # A funder answering a request it was never sent (the supplier has not signed).
    _, early = erp.disbursal({**issued, "amount": "40000.00", "funder_id": TEST_FUNDER}, today())
    await publisher.send(topics.FUNDING_RESPONSES, early)
    for topic, event, reason in (
        (topics.FUNDING_GATEWAY_REJECTED, by_other, "not_permitted"),
        (topics.FUNDING_GATEWAY_REJECTED, wrong_hash, "contract_mismatch"),
        (topics.FUNDING_GATEWAY_REJECTED, early, "contract_not_signed"),
    ):
        [letter] = await observer.wait_for(topic, event_id=event["event_id"])
        assert letter["reason"] == reason, letter
    assert (
        await db.fetchval(
            "SELECT state FROM funding_gateway.funding_requests WHERE request_id = $1",
            application_id,
        )
        == "awaiting_supplier"
    )
    assert not observer.find(topics.funder_requests_topic(TEST_FUNDER), request_id=application_id)
    # The supplier signs: the bank is asked; its answer must carry the contract's hash.
    await publisher.send(*erp.contract_signature(issued))
    [request] = await observer.wait_for(
        topics.funder_requests_topic(TEST_FUNDER), request_id=application_id
    )
    assert request["contract_hash"] == issued["contract_hash"]
    assert json.loads(request["supplier_signature"])["type"] == "ContractSigned"
    _, unsigned_answer = erp.disbursal({**request, "contract_hash": None}, today())
    await publisher.send(topics.FUNDING_RESPONSES, unsigned_answer)
    [letter] = await observer.wait_for(
        topics.FUNDING_GATEWAY_REJECTED, event_id=unsigned_answer["event_id"]
    )
    assert letter["reason"] == "contract_not_signed"
    assert not await db.fetchval(
        "SELECT count(*) FROM credit.loans WHERE pool_id = $1", pool.pool_id
    )
    await publisher.send(*erp.disbursal(request, today()))
    await observer.wait_for(topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=application_id)


async def test_only_the_funder_the_request_went_to_may_answer_it(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    application_id = await apply(publisher, observer, pool, "10000.00")
    await publisher.send(topics.ERP_FINANCING_CONFIRMATIONS, confirmation(pool, application_id))
    [issued] = await observer.wait_for(topics.FUNDING_CONTRACTS, request_id=application_id)
    await publisher.send(*erp.contract_signature(issued))
    [request] = await observer.wait_for(
        topics.funder_requests_topic(TEST_FUNDER), request_id=application_id
    )
    # Names the right funder, but signed by another bank's valid key.
    _, answer = erp.disbursal(request, today())
    await publisher.send(
        topics.FUNDING_RESPONSES, answer, signer=("bank-other", m.PartyRole.FUNDER)
    )
    [letter] = await observer.wait_for(topics.FUNDING_GATEWAY_REJECTED, event_id=answer["event_id"])
    assert letter["reason"] == "not_permitted"
    assert (
        await db.fetchval(
            "SELECT state FROM funding_gateway.funding_requests WHERE request_id = $1",
            application_id,
        )
        == "sent"
    )
