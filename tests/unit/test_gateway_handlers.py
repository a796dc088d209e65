"""funding-gateway's handlers on the in-memory fake store."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from services.funding_gateway.domain import disbursal_value_date
from services.funding_gateway.handlers import handle
from services.funding_gateway.repository import GatewayBatch, InMemoryGatewayStore, Request
from shared.calendar import business_date
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected
from tests.unit.batches import Emitted, run_batch

POOL = "CE-1/S-1"
MON, TUE, WED = date(2026, 8, 3), date(2026, 8, 4), date(2026, 8, 5)


def requested(
    request_id: str = "A-1", amount: str = "800.00", requested_on: date | None = None
) -> m.Message:
    return m.new_event(
        m.LoanRequested,
        source="credit",
        pool_id=POOL,
        request_id=request_id,
        funder_id="bank-a",
        supplier_id="S-1",
        amount=Decimal(amount),
        annual_interest_rate=Decimal("0.0435"),
        tenor_days=180,
        day_count=m.DayCount.ACT_365,
        requested_on=requested_on,
    )


def answered(decision: str, amount: str | None = None, **fields: Any) -> m.Message:
    """A funder's answer; approving or disbursing carries the contract's hash."""
    request_id = fields.get("request_id", "A-1")
    if decision != "rejected" and "contract_hash" not in fields:
        fields["contract_hash"] = HASHES.get(request_id)
    return m.new_event(
        m.FunderResponse,
        source="bank-a",
        pool_id=fields.pop("pool_id", POOL),
        request_id=fields.pop("request_id", "A-1"),
        funder_id=fields.pop("funder_id", "bank-a"),
        decision=m.FunderDecision(decision),
        amount=Decimal(amount) if amount else None,
        **fields,
    )


HASHES: dict[str, str | None] = {}  # request id -> its contract's hash (the last stored)


async def batch(
    store: InMemoryGatewayStore, *events: m.Message, today: date | None = None
) -> tuple[Emitted, list[str | None]]:
    return await run_batch(GatewayBatch(store=store, today=today), handle, *events)


def signature(store: InMemoryGatewayStore, request_id: str, **fields: Any) -> m.Message:
    """The supplier's ContractSigned for a request's contract (its hash, unless given)."""
    return m.new_event(
        m.ContractSigned,
        source="S-1",
        pool_id=fields.pop("pool_id", POOL),
        request_id=request_id,
        contract_hash=fields.pop("contract_hash", store.request_rows[request_id].contract_hash),
    )


async def sent(
    store: InMemoryGatewayStore, *requests: m.Message, today: date | None = None
) -> Emitted:
    """Requests in, their contracts signed by the supplier: what reached the funders."""
    await batch(store, *requests, today=today)
    ids = [r.request_id for r in requests if isinstance(r, m.LoanRequested)]
    HASHES.update({i: store.request_rows[i].contract_hash for i in ids})
    emitted, reasons = await batch(store, *(signature(store, i) for i in ids), today=today)
    assert reasons == [None] * len(ids)
    return emitted


async def test_a_request_goes_to_its_funders_own_topic_once() -> None:
    store = InMemoryGatewayStore()
    emitted, reasons = await batch(store, requested(), requested())
    assert reasons == [None, "invalid_message"]
    assert [topic for topic, _ in emitted] == [topics.FUNDING_CONTRACTS]
    assert store.request_rows["A-1"].state == "awaiting_supplier"
    emitted, reasons = await batch(store, signature(store, "A-1"))
    assert reasons == [None]
    assert [topic for topic, _ in emitted] == [topics.funder_requests_topic("bank-a")]
    assert store.request_rows["A-1"].state == "sent"


async def test_the_funder_is_asked_only_once_the_supplier_signed_its_contract() -> None:
    store = InMemoryGatewayStore()
    [(_, issued)] = (await batch(store, requested()))[0]
    HASHES["A-1"] = issued["contract_hash"]
    assert issued["contract_hash"] == hashlib.sha256(issued["contract"].encode()).hexdigest()
    assert "principal: CNY 800.00" in issued["contract"]
    # Nobody may answer before the supplier signed: the funder was not asked yet.
    _, reasons = await batch(store, answered("disbursed", "800.00"))
    assert reasons == ["contract_not_signed"]
    _, reasons = await batch(
        store,
        signature(store, "A-1", contract_hash="0" * 64),
        signature(store, "A-1", pool_id="CE-1/S-2"),
    )
    assert reasons == ["contract_mismatch", "unknown_request"]
    [(_, request)] = (await batch(store, signature(store, "A-1")))[0]
    assert (request["contract_hash"], request["contract"]) == (
        issued["contract_hash"],
        issued["contract"],
    )
    # The funder's answer must carry the same hash: its signature of the contract.
    _, reasons = await batch(
        store,
        answered("disbursed", "800.00", contract_hash=None),
        answered("disbursed", "800.00", contract_hash="1" * 64),
    )
    assert reasons == ["contract_not_signed", "contract_mismatch"]
    [(_, result)] = (await batch(store, answered("disbursed", "800.00")))[0]
    assert result["contract_hash"] == issued["contract_hash"]


async def test_a_platform_approves_then_disburses_and_nothing_after() -> None:
    store = InMemoryGatewayStore()
    await sent(store, requested())
    emitted, reasons = await batch(
        store,
        answered("approved"),
        answered("disbursed", "800.00"),
        answered("rejected"),
    )
    assert reasons == [None, None, "application_not_pending"]
    assert [body["decision"] for _, body in emitted] == ["approved", "disbursed"]
    assert store.request_rows["A-1"].state == "disbursed"
    assert [a.decision for a in store.answers] == ["approved", "disbursed"]


async def test_only_the_funder_it_went_to_for_its_pool_may_answer() -> None:
    store = InMemoryGatewayStore()
    await sent(store, requested())
    _, reasons = await batch(
        store,
        answered("disbursed", "800.00", funder_id="bank-b"),
        answered("disbursed", "800.00", pool_id="CE-1/S-2"),
        answered("disbursed", "799.99"),
    )
    assert reasons == ["unknown_request", "unknown_request", "amount_mismatch"]
    assert store.request_rows["A-1"].state == "sent"


# ---------------------------------------------------------------- value dates (issue 8)


async def test_the_request_tells_the_funder_its_day_count_and_business_day() -> None:
    store = InMemoryGatewayStore()
    emitted = await sent(store, requested(requested_on=TUE), requested("A-2"))
    first, second = (body for _, body in emitted)
    assert (first["day_count"], first["requested_on"]) == ("ACT/365", "2026-08-04")
    assert (second["day_count"], second["requested_on"]) == ("ACT/365", None)
    assert store.request_rows["A-1"].requested_on == TUE


async def test_a_disbursal_dated_outside_request_to_today_may_be_answered_again() -> None:
    store = InMemoryGatewayStore()
    await sent(store, requested(requested_on=TUE), today=TUE)
    emitted, reasons = await batch(
        store,
        answered("disbursed", "800.00", value_date=MON),
        answered("disbursed", "800.00", value_date=WED),
        today=TUE,
    )
    assert reasons == ["invalid_date", "invalid_date"]  # the day before, and tomorrow
    assert (emitted, store.request_rows["A-1"].state, store.answers) == ([], "sent", [])
    emitted, reasons = await batch(
        store, answered("disbursed", "800.00", value_date=TUE), today=WED
    )
    assert reasons == [None]
    [(_, result)] = emitted
    assert (result["decision"], result["value_date"]) == ("disbursed", "2026-08-04")
    assert store.request_rows["A-1"].state == "disbursed"
    assert store.answers[-1].value_date == TUE


async def test_a_disbursal_without_a_value_date_takes_todays_business_day() -> None:
    store = InMemoryGatewayStore()
    await sent(store, requested(requested_on=MON), requested("A-2", requested_on=MON), today=MON)
    emitted, reasons = await batch(store, answered("disbursed", "800.00"), today=WED)
    assert reasons == [None]
    assert [body["value_date"] for _, body in emitted] == ["2026-08-05"]
    # With no day given, the calendar's: Asia/Shanghai unless POOLFIN_TIMEZONE says otherwise.
    emitted, _ = await batch(store, answered("disbursed", "800.00", request_id="A-2"))
    assert [body["value_date"] for _, body in emitted] == [business_date().isoformat()]


async def test_an_old_request_counts_from_the_business_day_it_was_sent() -> None:
    # Sent at 17:30 UTC on Tuesday: already Wednesday 01:30 in Beijing.
    store = InMemoryGatewayStore()
    store.request_rows["A-1"] = Request(
        "A-1",
        POOL,
        "bank-a",
        "S-1",
        Decimal("800.00"),
        "sent",
        sent_at=datetime(2026, 8, 4, 17, 30, tzinfo=UTC),
    )
    _, reasons = await batch(store, answered("disbursed", "800.00", value_date=TUE), today=WED)
    assert reasons == ["invalid_date"]
    emitted, reasons = await batch(
        store, answered("disbursed", "800.00", value_date=WED), today=WED
    )
    assert reasons == [None]
    assert [body["value_date"] for _, body in emitted] == ["2026-08-05"]


async def test_approvals_and_rejections_are_not_value_dated() -> None:
    store = InMemoryGatewayStore()
    await sent(store, requested(requested_on=WED), today=WED)
    emitted, reasons = await batch(store, answered("approved"), today=MON)
    assert reasons == [None]
    assert [body["value_date"] for _, body in emitted] == [None]


def test_a_value_date_lies_between_the_request_and_today() -> None:
    assert disbursal_value_date(TUE, TUE, TUE) == TUE
    assert disbursal_value_date(None, MON, WED) == WED
    assert disbursal_value_date(MON, None, WED) == MON
    for refused in (disbursal_value_date(MON, TUE, WED), disbursal_value_date(WED, MON, TUE)):
        assert isinstance(refused, Rejected)
        assert refused.reason is m.Reason.INVALID_DATE


# ---------------------------------------------------------------- investor platforms (issue 11)


def raised_by(investor: str, amount: str, request_id: str = "A-1") -> m.Message:
    return m.new_event(
        m.InvestorCommitted,
        source="bank-a",
        pool_id=POOL,
        request_id=request_id,
        funder_id="bank-a",
        investor_id=investor,
        amount=Decimal(amount),
        committed_at=datetime.now(UTC),
    )


async def test_a_platforms_raise_closes_when_fully_committed_and_issues_each_contract() -> None:
    store = InMemoryGatewayStore()
    platform = requested().model_copy(update={"funder_kind": "platform"})
    [(_, request)] = await sent(store, platform)
    assert request["funder_kind"] == "platform" and request["raise_deadline"] is not None
    assert store.request_rows["A-1"].state == "raising"
    emitted, reasons = await batch(
        store,
        raised_by("inv-1", "500.00"),
        raised_by("inv-1", "1.00"),  # once per raise
        raised_by("inv-2", "300.01"),  # more than is left
        raised_by("inv-2", "300.00"),
        raised_by("inv-3", "1.00"),  # closed
        answered("disbursed", "800.00"),  # contracts not signed yet
    )
    assert reasons == [
        None,
        "invalid_message",
        "exceeds_raise",
        None,
        "raise_not_open",
        "contract_not_signed",
    ]
    assert store.request_rows["A-1"].state == "raised"
    contracts = [body for topic, body in emitted if body["type"] == "InvestorContractIssued"]
    assert [(c["investor_id"], c["amount"]) for c in contracts] == [
        ("inv-1", "500.00"),
        ("inv-2", "300.00"),
    ]
    [closed] = [body for _, body in emitted if body["type"] == "FundingResult"]
    assert (closed["decision"], len(closed["investors"])) == ("approved", 2)
    # Each contract signed by the supplier and by the investor, then the platform disburses.
    signatures = [
        m.new_event(
            m.InvestorContractSigned,
            source=signer,
            pool_id=POOL,
            request_id="A-1",
            investor_id=c["investor_id"],
            contract_hash=c["contract_hash"],
        )
        for c in contracts
        for signer in ("S-1", c["investor_id"])
    ]
    emitted, reasons = await batch(store, *signatures, answered("disbursed", "800.00"))
    assert reasons == [None] * 5
    [result] = [body for _, body in emitted if body["type"] == "FundingResult"]
    assert [(i["investor_id"], i["amount"]) for i in result["investors"]] == [
        ("inv-1", "500.00"),
        ("inv-2", "300.00"),
    ]


async def test_a_raise_refuses_another_platforms_commitment_and_a_wrong_contract_hash() -> None:
    store = InMemoryGatewayStore()
    await sent(store, requested().model_copy(update={"funder_kind": "platform"}))
    stranger = raised_by("inv-1", "800.00").model_copy(update={"funder_id": "bank-z"})
    emitted, reasons = await batch(store, stranger, raised_by("inv-1", "800.00"))
    assert reasons == ["unknown_request", None]
    [contract] = [body for _, body in emitted if body["type"] == "InvestorContractIssued"]
    forged = m.new_event(
        m.InvestorContractSigned,
        source="S-1",
        pool_id=POOL,
        request_id="A-1",
        investor_id="inv-1",
        contract_hash="0" * 64,  # not the hash of the contract issued
    )
    _, reasons = await batch(store, forged)
    assert reasons == ["contract_mismatch"]
    assert store.request_rows["A-1"].contracts["inv-1"].supplier_signature is None
    assert contract["contract_hash"] == store.request_rows["A-1"].contracts["inv-1"].contract_hash
