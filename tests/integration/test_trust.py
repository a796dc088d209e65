"""Issue 9 on the real broker and PostgreSQL: every forged, unsigned, wrongly-signed,
expired-key, replayed or stale message, published as raw bytes, is dead-lettered with its own
reason and nothing moves; keys change only with a second operator's approval."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher, erp_event
from poolfin.stack import Stack
from shared.contracts import messages as m
from shared.contracts import topics
from shared.signatures import new_ed25519_key, signed
from shared.trust import b64url
from tests.integration.scenario import CORE, Pool, facility, open_pool, payment

pytestmark = pytest.mark.integration


def raw(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


async def _letter(observer: Observer, topic: str, event: dict[str, Any]) -> dict[str, Any]:
    [letter] = await observer.wait_for(topic, event_id=event["event_id"])
    return letter


async def _level(db: asyncpg.Connection, pool: Pool) -> Decimal:
    level: Decimal = await db.fetchval(
        "SELECT water_level FROM credit.pools WHERE pool_id = $1", pool.pool_id
    )
    return level


async def _open_receivables(db: asyncpg.Connection, pool: Pool) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM intake.receivables WHERE pool_id = $1 AND state = 'open'",
        pool.pool_id,
    )
    return count


async def test_unsigned_forged_and_tampered_erp_messages_move_nothing(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    before = (await _level(db, pool), await _open_receivables(db, pool))
    slip = list(pool.slips)[0]
    unsigned = payment(pool, "10000.00", [slip])
    # Forged: names the ERP's real key id, signed by a key that is not it.
    erp_key_id, _ = publisher.keyring.key(CORE, m.PartyRole.CORE_ENTERPRISE)  # type: ignore[union-attr]
    forged = signed(payment(pool, "10000.00", [slip]), erp_key_id, new_ed25519_key()[0])
    # Tampered: signed by the ERP, then the amount changed on the way.
    tampered = {**publisher.signed(topics.ERP_PAYMENTS, payment(pool, "10.00", [slip]))}
    tampered["amount"] = "10000.00"
    # Unknown key: a key nobody registered.
    unknown = signed(payment(pool, "10000.00", [slip]), "CE-TEST.nobody", new_ed25519_key()[0])
    cases = [
        (unsigned, "unsigned"),
        (forged, "bad_signature"),
        (tampered, "bad_signature"),
        (unknown, "unknown_key"),
        ({**unsigned, "event_id": str(uuid.uuid4()), "signature": "x"}, "malformed_signature"),
    ]
    for document, _ in cases:
        await publisher.send(topics.ERP_PAYMENTS, raw(document), key=pool.pool_id)
    for document, reason in cases:
        letter = await _letter(observer, topics.INTAKE_REJECTED, document)
        assert letter["reason"] == reason, letter
        assert letter["detail"]
    # The real payment, signed by the pool's ERP, still takes its event id: a forger cannot
    # burn it (refused messages are not marked processed).
    await publisher.send(topics.ERP_PAYMENTS, unsigned)
    await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=unsigned["payment_id"])
    assert (await _level(db, pool), await _open_receivables(db, pool)) == (
        before[0] - Decimal("10000.00"),
        before[1],  # a partial payment leaves the slip open for the rest
    )


async def test_stale_and_replayed_signed_messages_are_dead_lettered(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100.00", "50.00"])
    first, second = list(pool.slips)
    pay = payment(pool, "100.00", [first])
    await publisher.send(topics.ERP_PAYMENTS, pay)
    await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=pay["payment_id"])
    # The very same signed bytes, published again by whoever captured them.
    replay = raw(publisher.signed(topics.ERP_PAYMENTS, pay))
    await publisher.send(topics.ERP_PAYMENTS, replay, key=pool.pool_id)
    letter = await _letter(observer, topics.INTAKE_REJECTED, pay)
    assert letter["reason"] == "replayed"
    # Signed properly, but said to have happened two days ago: outside the window.
    old = payment(pool, "50.00", [second])
    old["occurred_at"] = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    await publisher.send(topics.ERP_PAYMENTS, old)
    assert (await _letter(observer, topics.INTAKE_REJECTED, old))["reason"] == "stale"
    assert (
        await db.fetchval(
            "SELECT count(*) FROM settlement.settlements WHERE pool_id = $1", pool.pool_id
        )
        == 1
    )


async def test_operator_funder_and_supplier_messages_need_their_signers(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    # An unsigned FacilitySet, and one signed by a supplier: no credit line changes.
    _, raise_line = erp.facility(pool.pool_id, line="90000000.00", funder="bank-test")
    await publisher.send(topics.ADMIN_FACILITIES, raise_line, sign=False)
    _, by_supplier = erp.facility(pool.pool_id, line="90000000.00", funder="bank-test")
    await publisher.send(
        topics.ADMIN_FACILITIES, by_supplier, signer=(pool.supplier_id, m.PartyRole.SUPPLIER)
    )
    assert (await _letter(observer, topics.CREDIT_REJECTED, raise_line))["reason"] == "unsigned"
    assert (await _letter(observer, topics.CREDIT_REJECTED, by_supplier))["reason"] == (
        "not_permitted"
    )
    # An unsigned "disbursed" answer from anyone: no loan opens.
    disbursed = erp_event(
        "FunderResponse",
        pool.pool_id,
        request_id="A-never",
        funder_id="bank-test",
        decision="disbursed",
        amount="300000.00",
        value_date=datetime.now(UTC).date().isoformat(),
    )
    await publisher.send(topics.FUNDING_RESPONSES, disbursed, sign=False)
    assert (await _letter(observer, topics.FUNDING_GATEWAY_REJECTED, disbursed))["reason"] == (
        "unsigned"
    )
    # Another supplier applying in this pool's name.
    _, intruder = erp.application(pool.pool_id, f"A-{uuid.uuid4().hex[:8]}", "1000.00")
    await publisher.send(
        topics.SUPPLIER_FINANCING_APPLICATIONS,
        intruder,
        signer=("S-intruder", m.PartyRole.SUPPLIER),
    )
    assert (await _letter(observer, topics.CREDIT_REJECTED, intruder))["reason"] == (
        "not_permitted"
    )
    assert await db.fetchval(
        "SELECT credit_line FROM credit.facilities WHERE pool_id = $1", pool.pool_id
    ) == Decimal("1000000.00")
    assert not await db.fetchval(
        "SELECT count(*) FROM credit.loans WHERE pool_id = $1", pool.pool_id
    )
    assert not await db.fetchval(
        "SELECT count(*) FROM credit.applications WHERE pool_id = $1", pool.pool_id
    )


async def test_forged_internal_events_are_refused_by_every_consumer(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool = await open_pool(publisher, observer, ["500000.00"], facility())
    before = await _level(db, pool)
    inflate = erp_event(
        "ReceivableAdded",
        pool.pool_id,
        source="intake",
        receivable_id=f"R-forged-{uuid.uuid4().hex[:8]}",
        amount="90000000.00",
    )
    await publisher.send(topics.POOL_EVENTS, inflate)
    loan = erp_event(
        "FundingResult",
        pool.pool_id,
        source="funding-gateway",
        request_id="A-forged",
        funder_id="bank-test",
        decision="disbursed",
        amount="300000.00",
        value_date=datetime.now(UTC).date().isoformat(),
    )
    await publisher.send(topics.FUNDING_RESULTS, loan)
    # Sealed, but by a service that does not own the type.
    by_credit = {**inflate, "event_id": str(uuid.uuid4())}
    await publisher.send(topics.POOL_EVENTS, by_credit, as_service="credit")
    assert (await _letter(observer, topics.CREDIT_REJECTED, inflate))["reason"] == (
        "unauthenticated"
    )
    assert (await _letter(observer, topics.CREDIT_REJECTED, loan))["reason"] == "unauthenticated"
    assert (await _letter(observer, topics.CREDIT_REJECTED, by_credit))["reason"] == (
        "wrong_producer"
    )
    assert await _level(db, pool) == before
    assert not await db.fetchval(
        "SELECT count(*) FROM credit.loans WHERE pool_id = $1", pool.pool_id
    )


def _key_change(operator: str, **fields: Any) -> dict[str, Any]:
    return erp_event("KeyChangeProposed", m.REGISTRY_KEY, source=operator, **fields)


async def test_keys_change_only_with_a_second_operator_and_revocation_ends_a_key(
    stack: Stack, publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    run = uuid.uuid4().hex[:8]
    core = f"CE-REG-{run}"
    pool_id = f"{core}/S-{run}"
    private, public = new_ed25519_key()
    key_id = f"{core}.k1"
    change = f"KC-{run}"
    proposal = _key_change(
        "op-1",
        change_id=change,
        action="register",
        party_id=core,
        role="core_enterprise",
        key_id=key_id,
        public_key=b64url(public),
    )
    op1 = ("op-1", m.PartyRole.OPERATOR)
    op2 = ("op-2", m.PartyRole.OPERATOR)
    await publisher.send(topics.ADMIN_PARTIES, proposal, signer=op1)
    self_approval = erp_event("KeyChangeApproved", m.REGISTRY_KEY, source="op-1", change_id=change)
    await publisher.send(topics.ADMIN_PARTIES, self_approval, signer=op1)
    for rejected in (
        topics.INTAKE_REJECTED,
        topics.CREDIT_REJECTED,
        topics.FUNDING_GATEWAY_REJECTED,
        topics.SETTLEMENT_REJECTED,
    ):
        assert (await _letter(observer, rejected, self_approval))["reason"] == "same_operator"
    # Not approved yet: the new key signs nothing.
    _, onboarding = erp.onboarding(pool_id, core, f"S-{run}", "Registry Test")
    early = signed(onboarding, key_id, private)
    await publisher.send(topics.ERP_SUPPLIERS, raw(early), key=pool_id)
    assert (await _letter(observer, topics.INTAKE_REJECTED, early))["reason"] == "unknown_key"
    approval = erp_event("KeyChangeApproved", m.REGISTRY_KEY, source="op-2", change_id=change)
    await publisher.send(topics.ADMIN_PARTIES, approval, signer=op2)
    for schema in ("intake", "credit", "funding_gateway", "settlement"):
        await _until_row(db, f"SELECT 1 FROM {schema}.party_keys WHERE key_id = $1", key_id)
    row = await db.fetchrow(
        "SELECT proposed_by, decided_by, state FROM intake.key_changes WHERE change_id = $1",
        change,
    )
    assert row is not None
    assert dict(row) == {"proposed_by": "op-1", "decided_by": "op-2", "state": "approved"}
    # Approved: the key signs; the pool opens.
    fresh = {"event_id": str(uuid.uuid4()), "occurred_at": datetime.now(UTC).isoformat()}
    accepted = signed({**onboarding, **fresh}, key_id, private)
    await publisher.send(topics.ERP_SUPPLIERS, raw(accepted), key=pool_id)
    await observer.wait_for(topics.POOL_EVENTS, type="PoolOpened", pool_id=pool_id)
    # Revoked (maker-checker again): what it signs afterwards is refused.
    revoke = _key_change(
        "op-2",
        change_id=f"{change}-r",
        action="revoke",
        party_id=core,
        role="core_enterprise",
        key_id=key_id,
    )
    await publisher.send(topics.ADMIN_PARTIES, revoke, signer=op2)
    confirm = erp_event("KeyChangeApproved", m.REGISTRY_KEY, source="op-1", change_id=f"{change}-r")
    await publisher.send(topics.ADMIN_PARTIES, confirm, signer=op1)
    await _until_row(db, "SELECT 1 FROM intake.key_revocations WHERE key_id = $1", key_id)
    _, slip = erp.slip(pool_id, f"R-{run}", "100.00", datetime.now(UTC).date())
    after = signed(slip, key_id, private)
    await publisher.send(topics.ERP_SETTLEMENT_SLIPS, raw(after), key=pool_id)
    assert (await _letter(observer, topics.INTAKE_REJECTED, after))["reason"] == "key_not_valid"


async def test_a_key_outside_its_validity_window_signs_nothing(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    run = uuid.uuid4().hex[:8]
    core = f"CE-EXP-{run}"
    private, public = new_ed25519_key()
    key_id = f"{core}.old"
    now = datetime.now(UTC)
    await publisher.send(
        topics.ADMIN_PARTIES,
        _key_change(
            "op-1",
            change_id=f"KC-{run}",
            action="register",
            party_id=core,
            role="core_enterprise",
            key_id=key_id,
            public_key=b64url(public),
            valid_from=(now - timedelta(days=400)).isoformat(),
            valid_to=(now - timedelta(days=30)).isoformat(),
        ),
        signer=("op-1", m.PartyRole.OPERATOR),
    )
    await publisher.send(
        topics.ADMIN_PARTIES,
        erp_event("KeyChangeApproved", m.REGISTRY_KEY, source="op-2", change_id=f"KC-{run}"),
        signer=("op-2", m.PartyRole.OPERATOR),
    )
    await _until_row(db, "SELECT 1 FROM intake.party_keys WHERE key_id = $1", key_id)
    _, onboarding = erp.onboarding(f"{core}/S-{run}", core, f"S-{run}", "Expired Key")
    expired = signed(onboarding, key_id, private)
    await publisher.send(topics.ERP_SUPPLIERS, raw(expired), key=f"{core}/S-{run}")
    letter = await _letter(observer, topics.INTAKE_REJECTED, expired)
    assert letter["reason"] == "key_not_valid"
    assert "valid from" in letter["detail"]


async def _until_row(db: asyncpg.Connection, sql: str, *args: Any, timeout: float = 30) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not await db.fetchval(sql, *args):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no row for {sql} {args}")
        await asyncio.sleep(0.1)


async def test_only_the_pools_own_parties_speak_for_it(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    """Wrongly signed: a valid key of a party of the right role, but not this pool's."""
    pool = await open_pool(publisher, observer, ["100000.00"], facility())
    other_buyer = ("CE-INTRUDER", m.PartyRole.CORE_ENTERPRISE)
    slip_by_other = payment(pool, "10.00", list(pool.slips))
    await publisher.send(topics.ERP_PAYMENTS, slip_by_other, signer=other_buyer)
    _, onboard_other = erp.onboarding(f"{CORE}/S-stolen", CORE, "S-stolen", "Stolen")
    await publisher.send(topics.ERP_SUPPLIERS, onboard_other, signer=other_buyer)
    _, prepay = erp_event_prepayment(pool)
    await publisher.send(
        topics.SUPPLIER_PREPAYMENTS, prepay, signer=("S-intruder", m.PartyRole.SUPPLIER)
    )
    for topic, event in (
        (topics.INTAKE_REJECTED, slip_by_other),
        (topics.INTAKE_REJECTED, onboard_other),
        (topics.SETTLEMENT_REJECTED, prepay),
    ):
        letter = await _letter(observer, topic, event)
        assert letter["reason"] == "not_permitted", letter
    assert await _open_receivables(db, pool) == 1
    assert not await db.fetchval(
        "SELECT count(*) FROM intake.pools WHERE pool_id = $1", f"{CORE}/S-stolen"
    )


def erp_event_prepayment(pool: Pool) -> tuple[str, dict[str, Any]]:
    return topics.SUPPLIER_PREPAYMENTS, erp_event(
        "PrepaymentRequested",
        pool.pool_id,
        source=pool.supplier_id,
        prepayment_id=f"PP-{uuid.uuid4().hex[:8]}",
        amount="1.00",
    )


async def test_operators_change_keys_from_the_cli_with_a_second_operator(
    stack: Stack, db: asyncpg.Connection
) -> None:
    import asyncio
    import subprocess
    import sys

    from tests.environment import user_env

    env = user_env(
        POOLFIN_KAFKA_BOOTSTRAP=stack.bootstrap,
        POOLFIN_DATABASE_URL=stack.database_url,
        POOLFIN_KEYS_DIR=str(stack.keyring.directory),
    )

    async def poolfin(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "poolfin.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )

    party = f"bank-cli-{uuid.uuid4().hex[:6]}"
    proposed = await poolfin("keys", "propose", party, "--role", "funder", "--new")
    assert proposed.returncode == 0, proposed.stderr[-2000:]
    change = proposed.stdout.split()[1].rstrip(":")
    assert change.startswith("KC-"), proposed.stdout
    same = await poolfin("keys", "approve", change, "--as", "op-1")  # the maker itself
    assert same.returncode == 1, same.stdout  # a refused command says so, exit 1
    assert "(same_operator)" in same.stderr, same.stderr
    approved = await poolfin("keys", "approve", change, "--as", "op-2")
    assert approved.returncode == 0, approved.stderr[-2000:]
    assert f"{change} is approved" in approved.stdout, approved.stdout
    await _until_row(
        db, "SELECT 1 FROM credit.key_changes WHERE change_id = $1 AND state = 'approved'", change
    )
    listed = await poolfin("keys", "list", "--json")
    [row] = [r for r in json.loads(listed.stdout) if r.get("change_id") == change]
    assert (row["proposed_by"], row["decided_by"], row["party_id"]) == ("op-1", "op-2", party)
    # The approved key now signs for the party: its bearer token is minted with it.
    token = await poolfin("token", party)
    assert token.returncode == 0 and token.stdout.count(".") == 2, token.stderr
