"""Building blocks for integration scenarios: an ERP that onboards, ships and pays."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher
from poolfin.stack import Stack
from poolfin.tokens import token_for
from shared.calendar import business_date
from shared.contracts import topics
from shared.contracts.messages import PartyRole
from shared.db import Connection, create_pool, migrate
from tests.environment import user_env

CORE = "CE-TEST"


def today() -> str:
    """The platform's business day: dates of payments and disbursals are checked against it."""
    return business_date().isoformat()


@dataclass
class Pool:
    pool_id: str
    supplier_id: str
    slips: dict[str, str] = field(default_factory=dict)  # receivable_id -> amount
    paid: list[str] = field(default_factory=list)  # receivable ids a test has paid


async def open_pool(
    publisher: Publisher,
    observer: Observer,
    slips: list[str],
    facility: dict[str, Any] | None = None,
) -> Pool:
    """Onboard a new supplier, optionally set its facility, push its slips; wait for each."""
    run = uuid.uuid4().hex[:10]
    pool = Pool(pool_id=f"{CORE}/S-{run}", supplier_id=f"S-{run}")
    events = [erp.onboarding(pool.pool_id, CORE, pool.supplier_id, "Test Supplier")]
    if facility is not None:
        events.append(
            erp.facility(
                pool.pool_id,
                line=facility["credit_line"],
                rate=facility["discount_rate"],
                interest=facility["annual_interest_rate"],
                funder=facility["funder_id"],
            )
        )
    for index, amount in enumerate(slips, start=1):
        receivable_id = f"R-{run}-{index}"
        pool.slips[receivable_id] = amount
        events.append(erp.slip(pool.pool_id, receivable_id, amount, today()))
    # Onboarding first: the other topics are not ordered against it.
    await publisher.send(*events[0])
    await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=events[0][1]["event_id"])
    for topic, event in events[1:]:
        await publisher.send(topic, event)
    for _, event in events[1:]:
        await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=event["event_id"])
    return pool


def payment(
    pool: Pool, amount: str, receivable_ids: list[str], paid_on: str | None = None, **extra: Any
) -> dict[str, Any]:
    payment_id = extra.pop("payment_id", f"P-{uuid.uuid4().hex[:10]}")
    _, event = erp.payment(pool.pool_id, payment_id, amount, receivable_ids, paid_on or today())
    return {**event, **extra}


async def apply(publisher: Publisher, observer: Observer, pool: Pool, amount: str) -> str:
    """Apply to borrow; returns the application id once credit has it awaiting the buyer."""
    application_id = f"A-{uuid.uuid4().hex[:10]}"
    await publisher.send(*erp.application(pool.pool_id, application_id, amount))
    await observer.wait_for(
        topics.CREDIT_DECISIONS, application_id=application_id, state="awaiting_buyer"
    )
    return application_id


def confirmation(pool: Pool, application_id: str, **extra: Any) -> dict[str, Any]:
    """The buyer's confirmation of an application, as its ERP publishes it."""
    return erp.confirmation(pool.pool_id, application_id, **extra)[1]


def http_json(
    base_url: str, method: str, path: str, body: bytes | None = None, token: str | None = None
) -> tuple[int, Any]:
    """One HTTP call as any client makes it: (status, JSON answer), errors included."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(base_url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def token(stack: Stack, path: str, role: PartyRole = PartyRole.SUPPLIER) -> str:
    """A bearer token of the party a test acts as on `path` (/pools/CORE/SUPPLIER/…): the
    pool's supplier, its core enterprise, or operator op-1."""
    parts = [urllib.parse.unquote(p) for p in path.split("?")[0].split("/")]
    if role is PartyRole.OPERATOR or len(parts) < 4:
        return token_for(stack.keyring, "op-1", PartyRole.OPERATOR)
    party = parts[3] if role is PartyRole.SUPPLIER else parts[2]
    return token_for(stack.keyring, party, role)


def as_supplier(stack: Stack, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    """`http_json` with the token of the pool's supplier the path names."""
    return http_json(stack.http_url, method, path, body, token(stack, path))


@contextlib.asynccontextmanager
async def fresh_schema(database_url: str, migrations: Path, name: str) -> AsyncIterator[Connection]:
    """A connection, inside a transaction, to a new schema migrated like a service's own."""
    schema = f"{name}_contract_{uuid.uuid4().hex[:8]}"
    await migrate(database_url, schema, migrations)
    pool = await create_pool(database_url, schema, 1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            yield conn
    finally:
        await pool.close()


def contract_store(fake: Callable[[], Any], real: Callable[[Connection], Any], service: str) -> Any:
    """The `store` fixture of a repository contract suite: every test runs once on the
    in-memory fake and once on PostgreSQL (a fresh schema migrated as the service's own)."""
    migrations = Path(__file__).parents[2] / "services" / service / "migrations"

    @pytest.fixture(params=["memory", "postgres"])
    async def store(request: pytest.FixtureRequest, stack: Stack) -> AsyncIterator[Any]:
        if request.param == "memory":
            yield fake()
            return
        async with fresh_schema(stack.database_url, migrations, service) as conn:
            yield real(conn)

    return store


async def ledger_verify(database_url: str) -> tuple[int, dict[str, Any]]:
    """`poolfin ledger verify` as an operator runs it: (exit code, its JSON report)."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "poolfin.cli", "ledger", "verify"],
        capture_output=True,
        text=True,
        timeout=120,
        env=user_env(POOLFIN_DATABASE_URL=database_url),
    )
    return done.returncode, json.loads(done.stdout)


async def borrow(
    publisher: Publisher,
    observer: Observer,
    pool: Pool,
    amount: str,
    funder: str,
    value_date: str | None = None,
) -> str:
    """Apply, have the buyer confirm and the funder disburse; returns the loan id."""
    application_id = await apply(publisher, observer, pool, amount)
    await publisher.send(topics.ERP_FINANCING_CONFIRMATIONS, confirmation(pool, application_id))
    await sign_contract(publisher, observer, application_id)
    # Answer what reached the funder's own topic, as a funder does.
    [request] = await observer.wait_for(
        topics.funder_requests_topic(funder), request_id=application_id
    )
    await publisher.send(*erp.disbursal(request, value_date or today()))
    await observer.wait_for(topics.CREDIT_DECISIONS, type="LoanOpened", loan_id=application_id)
    return application_id


async def sign_contract(publisher: Publisher, observer: Observer, request_id: str) -> None:
    """The supplier signs the loan contract the gateway issued for `request_id`; only then
    does the request reach the funder."""
    [issued] = await observer.wait_for(topics.FUNDING_CONTRACTS, request_id=request_id)
    await publisher.send(*erp.contract_signature(issued))


def facility(
    line: str = "1000000.00", rate: str = "0.8", funder: str = "bank-test", interest: str = "0.0435"
) -> dict[str, Any]:
    return {
        "credit_line": line,
        "discount_rate": rate,
        "annual_interest_rate": interest,
        "funder_id": funder,
    }


def until_groups_are_shared(stack: Stack, timeout: float = 60) -> None:
    """Each instance's latest assignment (its log) is non-empty: the groups have rebalanced."""
    deadline = time.monotonic() + timeout
    while True:
        owners = {}
        for key in stack.processes:
            lines = (stack.work_dir / f"{key}.log").read_text().splitlines()
            assigned = [
                json.loads(line)["partitions"]
                for line in lines
                if line.startswith("{") and '"partitions assigned"' in line
            ]
            owners[key] = assigned[-1] if assigned else []
        if all(owners.values()):
            return
        assert time.monotonic() < deadline, owners
        time.sleep(0.2)
