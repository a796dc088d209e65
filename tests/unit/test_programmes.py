"""Programmes (issue 11) on credit's handlers and pure rules: routing an application to the
cheapest funder with room (or the one it names), funders' limits counting requests in flight,
and repayments shared across funders by the intercreditor rule, to the fen."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.credit.domain import Loan, waterfall
from services.credit.programmes import Programme, route
from shared.contracts import messages as m
from shared.money import ZERO
from tests.unit.credit_book import TODAY, Book

D = Decimal


def programme(intercreditor: str = "pro_rata", **extra: Any) -> m.ProgrammeSet:
    funders = extra.pop(
        "funders",
        [
            {"funder_id": "bank-a", "limit": "1000000.00", "annual_interest_rate": "0.04"},
            {"funder_id": "bank-b", "limit": "5000000.00", "annual_interest_rate": "0.05"},
        ],
    )
    return m.ProgrammeSet.model_validate(
        {
            "event_id": f"prog-{intercreditor}",
            "occurred_at": "2026-12-01T10:00:00+08:00",
            "source": "op-1",
            "pool_id": "CE-1",
            "core_enterprise_id": "CE-1",
            "funders": funders,
            "intercreditor": intercreditor,
            **extra,
        }
    )


def test_the_cheapest_funder_with_room_is_chosen_and_every_candidate_says_why() -> None:
    p = Programme.of(
        programme(
            funders=[
                {"funder_id": "bank-a", "limit": "1000000.00", "annual_interest_rate": "0.04"},
                {"funder_id": "bank-b", "limit": "900000.00", "annual_interest_rate": "0.05"},
                {
                    "funder_id": "bank-c",
                    "limit": "9000000.00",
                    "annual_interest_rate": "0.03",
                    "suppliers": ["S-9"],
                },
                {
                    "funder_id": "bank-d",
                    "limit": "9000000.00",
                    "annual_interest_rate": "0.035",
                    "discount_rate_cap": "0.7",
                },
            ]
        )
    )
    kwargs: dict[str, Any] = {"supplier_id": "S-1", "discount_rate": D("0.8"), "named": None}
    found = route(
        p, D("600000.00"), exposure={"bank-a": D("500000.00")}, supplier_exposure={}, **kwargs
    )
    assert found.chosen is not None and found.chosen.funder_id == "bank-b"
    why = {c.funder_id: (c.eligible, c.reason, c.room) for c in found.candidates}
    assert why["bank-c"][1] == "does not fund supplier S-1"
    assert "above its cap 0.7" in str(why["bank-d"][1])
    assert why["bank-a"] == (
        False,
        "room 500000.00 under its limits is less than 600000.00",
        D("500000.00"),
    )
    assert why["bank-b"] == (True, None, D("900000.00"))
    none = route(
        p, D("950000.00"), exposure={"bank-a": D("500000.00")}, supplier_exposure={}, **kwargs
    )
    assert (none.chosen, none.reason) == (None, m.Reason.FUNDER_LIMIT_EXCEEDED)
    named = route(
        p, D("100000.00"), exposure={}, supplier_exposure={}, **{**kwargs, "named": "bank-b"}
    )
    assert named.chosen is not None and named.chosen.funder_id == "bank-b"
    assert {c.funder_id: c.reason for c in named.candidates}[
        "bank-a"
    ] == "the application names bank-b"
    stranger = route(p, D("1.00"), exposure={}, supplier_exposure={}, **{**kwargs, "named": "x"})
    assert stranger.reason is m.Reason.NOT_IN_PROGRAMME


def test_split_fills_the_cheapest_funders_first_each_up_to_its_room() -> None:
    p = Programme.of(
        programme(
            routing="split",
            funders=[
                {"funder_id": "bank-a", "limit": "1000000.00", "annual_interest_rate": "0.04"},
                {"funder_id": "bank-b", "limit": "5000000.00", "annual_interest_rate": "0.05"},
                {"funder_id": "bank-c", "limit": "5000000.00", "annual_interest_rate": "0.06"},
            ],
        )
    )
    kwargs: dict[str, Any] = {"supplier_id": "S-1", "discount_rate": D("0.8"), "named": None}
    used = {"bank-a": D("400000.00")}
    found = route(p, D("2000000.00"), exposure=used, supplier_exposure={}, **kwargs)
    assert [(f.funder_id, share) for f, share in found.parts] == [
        ("bank-a", D("600000.00")),
        ("bank-b", D("1400000.00")),
    ]
    assert found.chosen is None and found.reason is None
    why = {c.funder_id: c.reason for c in found.candidates}
    assert why == {"bank-a": None, "bank-b": None, "bank-c": "cheaper funders cover the amount"}
    whole = route(p, D("600000.00"), exposure=used, supplier_exposure={}, **kwargs)
    assert whole.chosen is not None and whole.chosen.funder_id == "bank-a"  # as `cheapest`
    short = route(p, D("10600000.01"), exposure=used, supplier_exposure={}, **kwargs)
    assert (short.parts, short.reason) == ([], m.Reason.FUNDER_LIMIT_EXCEEDED)
    named = route(
        p, D("2000000.00"), exposure=used, supplier_exposure={}, **{**kwargs, "named": "bank-c"}
    )
    assert [(f.funder_id, share) for f, share in named.parts] == [("bank-c", D("2000000.00"))]


@settings(max_examples=300, deadline=None)
@given(
    funders=st.lists(
        st.tuples(
            st.integers(0, 10**9), st.integers(1, 10**9), st.sampled_from(["0.03", "0.04", "0.05"])
        ),
        min_size=1,
        max_size=6,
    ),
    amount=st.integers(1, 3 * 10**9),
)
def test_split_parts_sum_to_the_amount_each_within_its_room_cheapest_first(
    funders: list[tuple[int, int, str]], amount: int
) -> None:
    """Each funder has `room` left of its limit (`room + used`, fen); whatever the rooms,
    the parts sum to the amount exactly, none exceeds its funder's room, and the cheaper
    funders are filled first (or the application is refused when the rooms fall short)."""
    agreements = [
        {"funder_id": f"bank-{i}", "limit": str(D(room + used) / 100), "annual_interest_rate": rate}
        for i, (room, used, rate) in enumerate(funders)
    ]
    p = Programme.of(programme(routing="split", funders=agreements))
    rooms = {f"bank-{i}": D(room) / 100 for i, (room, _, _) in enumerate(funders)}
    exposure = {f"bank-{i}": D(used) / 100 for i, (_, used, _) in enumerate(funders)}
    asked = D(amount) / 100
    found = route(
        p,
        asked,
        supplier_id="S-1",
        discount_rate=D("0.8"),
        named=None,
        exposure=exposure,
        supplier_exposure={},
    )
    if sum(rooms.values(), ZERO) < asked:
        assert found.parts == [] and found.reason is m.Reason.FUNDER_LIMIT_EXCEEDED
        return
    assert sum((share for _, share in found.parts), ZERO) == asked
    assert all(ZERO < share <= rooms[f.funder_id] for f, share in found.parts)
    for f, share in found.parts[:-1]:  # all but the last part are filled to the room
        assert share == rooms[f.funder_id]
    rates = [f.annual_interest_rate for f, _ in found.parts]
    assert rates == sorted(rates)
    left_out = set(rooms) - {f.funder_id for f, _ in found.parts}
    cheaper_left = [
        i for i in left_out if rooms[i] > ZERO and D(funders[int(i[5:])][2]) < rates[-1]
    ]
    assert cheaper_left == []


async def test_a_split_application_becomes_one_request_and_loan_per_funder() -> None:
    book = Book()
    await book.open(line="10000000.00", rate="0.8")
    await book.run(programme("pro_rata", routing="split"))
    await book.run(book.slip("3000000.00", due_in=None))
    await book.run(book.applied("A-1", "1500000.00"), book.confirmed("A-1"))
    routed = book.last("ApplicationRouted")
    assert (routed["rule"], routed["funder_id"]) == ("split", None)
    assert [(p["request_id"], p["funder_id"], p["amount"]) for p in routed["parts"]] == [
        ("A-1/1", "bank-a", "1000000.00"),
        ("A-1/2", "bank-b", "500000.00"),
    ]
    decisions = {d["application_id"]: d["state"] for d in book.all("FinancingDecision")}
    assert decisions == {"A-1": "split", "A-1/1": "requested", "A-1/2": "requested"}
    requests = {r["request_id"]: r for r in book.all("LoanRequested")}
    assert {i: (r["funder_id"], r["amount"]) for i, r in requests.items()} == {
        "A-1/1": ("bank-a", "1000000.00"),
        "A-1/2": ("bank-b", "500000.00"),
    }
    assert D(requests["A-1/2"]["annual_interest_rate"]) == D("0.05")  # each funder's own terms
    # Nothing is reserved twice: 2,400,000.00 of base, 1,500,000.00 in flight.
    assert D(book.last("PoolPosition")["available"]) == D("900000.00")
    await book.run(book.funded("A-1/1", "1000000.00"))
    await book.run(book.funded("A-1/2", "500000.00").model_copy(update={"funder_id": "bank-b"}))
    opened = {o["loan_id"]: o["funder_id"] for o in book.all("LoanOpened")}
    assert opened == {"A-1/1": "bank-a", "A-1/2": "bank-b"}
    assert D(book.last("PoolPosition")["available"]) == D("900000.00")
    # The parts' ids are taken: a new application may not reuse one.
    assert await book.refused(book.applied("A-1/2", "1.00")) == ["duplicate_application"]


async def test_two_banks_in_one_pool_are_repaid_pro_rata_by_outstanding() -> None:
    book = Book()
    await book.open(line="10000000.00", rate="0.8")
    await book.run(programme("pro_rata"))
    await book.run(book.slip("3000000.00", due_in=None))
    await book.run(book.applied("A-1", "1000000.00"), book.confirmed("A-1"))
    assert book.last("ApplicationRouted")["funder_id"] == "bank-a"  # cheapest, with room
    await book.run(book.funded("A-1", "1000000.00"))
    await book.run(book.applied("A-2", "500000.00"), book.confirmed("A-2"))
    routed = book.last("ApplicationRouted")
    assert routed["funder_id"] == "bank-b"  # bank-a's 1,000,000.00 limit is used up
    assert [c["reason"] for c in routed["candidates"]][0].startswith("room 0.00")
    request = book.last("LoanRequested")
    assert (request["funder_id"], D(request["annual_interest_rate"])) == ("bank-b", D("0.05"))
    await book.run(book.funded("A-2", "500000.00").model_copy(update={"funder_id": "bank-b"}))
    # The level falls to 1,200,000.00: the base to 960,000.00; 540,000.00 of principal is due,
    # shared 2:1 as the loans are outstanding (1,000,000.00 and 500,000.00).
    await book.run(book.payment("1800000.00"))
    instruction = book.last("RepaymentInstruction")
    principal = {r["funder_id"]: D(r["principal"]) for r in instruction["repayments"]}
    assert principal == {"bank-a": D("360000.00"), "bank-b": D("180000.00")}


async def test_by_maturity_then_age_the_oldest_loan_is_repaid_first() -> None:
    book = Book()
    await book.open(line="10000000.00", rate="0.8")
    await book.run(programme("maturity_then_age"))
    await book.run(book.slip("3000000.00", due_in=None))
    await book.borrow("A-1", "1000000.00")
    await book.run(book.applied("A-2", "500000.00"), book.confirmed("A-2"))
    await book.run(book.funded("A-2", "500000.00").model_copy(update={"funder_id": "bank-b"}))
    await book.run(book.payment("1800000.00"))
    principal = {
        r["funder_id"]: D(r["principal"]) for r in book.last("RepaymentInstruction")["repayments"]
    }
    assert principal == {"bank-a": D("540000.00")}


async def test_an_application_naming_a_funder_outside_the_programme_is_refused() -> None:
    book = Book()
    await book.open()
    await book.run(programme())
    await book.run(book.slip("1000000.00", due_in=None))
    named = book.event(
        m.FinancingApplied, application_id="A-9", amount=D("1000.00"), funder_id="bank-x"
    )
    await book.run(named)
    assert book.last("FinancingDecision")["reason"] == "not_in_programme"


def loans_strategy() -> Any:
    return st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=10**9),
            st.sampled_from(["0.03", "0.0435", "0.05", "0.12"]),
            st.integers(min_value=0, max_value=200),
        ),
        min_size=1,
        max_size=5,
    )


@settings(max_examples=200, deadline=None)
@given(
    loans=loans_strategy(),
    cash=st.integers(min_value=0, max_value=10**10),
    due=st.integers(0, 10**10),
)
def test_pro_rata_never_pays_more_than_the_cash_or_the_principal_due(
    loans: list[tuple[int, str, int]], cash: int, due: int
) -> None:
    book = [
        Loan(
            loan_id=f"L-{i}",
            funder_id=f"f-{i}",
            outstanding=D(fen) / 100,
            annual_interest_rate=D(rate),
            disbursed_on=TODAY - timedelta(days=age),
            maturity_on=TODAY + timedelta(days=90),
        )
        for i, (fen, rate, age) in enumerate(loans)
    ]
    plan = waterfall(D(cash) / 100, book, TODAY, D(due) / 100, pro_rata=True)
    paid = sum((r.total for r in plan), ZERO)
    principal = sum((r.principal for r in plan), ZERO)
    assert paid <= D(cash) / 100
    assert principal <= min(D(due) / 100, sum((ln.outstanding for ln in book), ZERO))
    outstanding = sum((ln.outstanding for ln in book), ZERO)
    for r in plan:  # each loan's share is its part of the principal, to within a fen
        loan = next(ln for ln in book if ln.loan_id == r.loan_id)
        assert r.principal <= loan.outstanding
        assert abs(r.principal - principal * loan.outstanding / outstanding) < D("0.01")


async def test_a_programme_off_its_core_enterprise_or_naming_a_funder_twice_is_refused() -> None:
    from shared.contracts import topics
    from shared.contracts.codec import Rejected, decode

    book = Book()
    await book.open()
    stray = programme().model_copy(update={"pool_id": "CE-1/S-1", "event_id": "stray"})
    assert await book.refused(stray) == ["invalid_programme"]
    assert book.store.programme_rows == {}  # nothing kept
    twice = programme().model_dump(mode="json")
    twice["funders"] = [twice["funders"][0], twice["funders"][0]]
    try:
        decode(topics.ADMIN_PROGRAMMES, json.dumps(twice).encode())
    except Rejected as refusal:
        assert refusal.reason is m.Reason.INVALID_MESSAGE
        assert "each funder appears once" in refusal.detail
    else:
        raise AssertionError("a programme naming a funder twice was accepted")


async def test_a_refusal_credit_holds_no_reservation_for_changes_nothing() -> None:
    book = Book()
    await book.open()
    await book.run(book.slip("1000000.00", due_in=None))
    before = (await book.pool()).loans, (await book.pool()).held
    stray = book.event(
        m.InstructionRefused,
        payment_id="P-never",
        instruction_event_id="e-never",
        reason=m.Reason.LOAN_NOT_HELD,
        detail="no such loan",
    )
    assert await book.refused(stray) == [None]
    assert ((await book.pool()).loans, (await book.pool()).held) == before
