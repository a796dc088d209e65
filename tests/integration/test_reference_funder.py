"""Issue 11, the funder protocol for integrators: a funder's request topic exists as soon as
its key is registered, and the reference funder of docs/funders (a plain confluent-kafka
client, librdkafka, importing nothing of poolfin) completes a loan against the stack."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher
from poolfin.stack import Stack
from shared.contracts import topics
from shared.contracts.messages import PartyRole
from tests.conftest import WATCHED
from tests.integration.scenario import Pool, apply, confirmation, sign_contract, today

pytestmark = pytest.mark.integration
REFERENCE = Path(__file__).parents[2] / "docs" / "funders" / "reference_funder.py"


async def topic_exists(bootstrap: str, topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return topic in await admin.list_topics()
    finally:
        await admin.close()


async def test_the_reference_funder_on_a_plain_client_completes_a_loan(
    stack: Stack, publisher: Publisher, tmp_path: Path
) -> None:
    funder = f"bank-ref-{uuid.uuid4().hex[:6]}"
    topic = topics.funder_requests_topic(funder)
    key_id, private = stack.keyring.key(funder, PartyRole.FUNDER)  # registered (trust file)
    for _ in range(150):  # the gateway makes its topic before any request names it
        if await topic_exists(stack.bootstrap, topic):
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"{topic} was not created for the registered funder {funder}")

    key_file = tmp_path / "funder.key"
    key_file.write_text(base64.urlsafe_b64encode(private).decode().rstrip("="))
    reference = await asyncio.to_thread(
        subprocess.Popen,
        [
            sys.executable,
            str(REFERENCE),
            "--bootstrap",
            stack.bootstrap,
            "--funder",
            funder,
            "--key-id",
            key_id,
            "--private-key",
            str(key_file),
            "--once",
            "--timeout",
            "90",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        async with Observer(stack.bootstrap, [*WATCHED, topic]) as observer:
            run = uuid.uuid4().hex[:8]
            pool = Pool(f"CE-REF/S-{run}", f"S-{run}")
            for t, event in (
                erp.onboarding(pool.pool_id, "CE-REF", pool.supplier_id, "Reference Supplier"),
                erp.facility(pool.pool_id, line="1000000.00", funder=funder),
                erp.slip(pool.pool_id, f"R-{run}", "1000000.00", today()),
            ):
                await publisher.send(t, event)
                await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=event["event_id"])
            application = await apply(publisher, observer, pool, "300000.00")
            await publisher.send(
                topics.ERP_FINANCING_CONFIRMATIONS, confirmation(pool, application)
            )
            await sign_contract(publisher, observer, application)
            [opened] = await observer.wait_for(
                topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=application, timeout=90
            )
            assert (opened["funder_id"], opened["principal"]) == (funder, "300000.00")
            assert opened["contract_hash"]  # the bank's signed answer carried the contract's hash
        out, err = await asyncio.to_thread(reference.communicate, timeout=60)
        assert reference.returncode == 0, err[-2000:]
        assert json.loads(out.splitlines()[-1]) == {
            "answered": application,
            "decision": "disbursed",
        }
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.wait()
