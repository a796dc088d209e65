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
