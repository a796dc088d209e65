"""Credit that holds in every ordering (issue 8), on the in-memory store: the disbursal race,
a facility cut, dilution, eligibility, servicing, prepayment, short payments — and a
hypothesis property over random interleavings of all of them."""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.credit.repository import PoolState
from shared.contracts import messages as m
from shared.money import ZERO
from tests.unit.credit_book import TODAY, Book, D, released_by

WAN = Decimal(10_000)
K = m.AdjustmentKind


async def test_a_payment_before_the_disbursal_holds_what_the_request_will_need() -> None:
    """Pool 100万 at 0.8; 80万 applied and confirmed (in flight, no loan). The buyer pays 10万:
    the level drops to 90万, the base to 72万, so 8万 is held and 2万 released. The funder then
    disburses 80万: the held 8万 repays it at once, leaving 72万 = the base."""
    book = Book()
    await book.open()
    await book.run(book.slip("1000000.00"))
    await book.run(book.applied("A-1", "800000.00"), book.confirmed("A-1"))
    await book.run(book.payment("100000.00"))
    instruction = book.last("RepaymentInstruction")
    assert (instruction["repayments"], instruction["held"]) == ([], "80000.00")
    assert released_by(instruction) == 2 * WAN
    assert book.last("PoolPosition")["held"] == "80000.00"
    await book.post()  # the splitter posts the split: the 8万 is now on hold in the account
    await book.run(book.funded("A-1", "800000.00"))
    settled = book.last("HoldSettled")
    assert (settled["amount"], settled["released"]) == ("80000.00", "0.00")
    assert [(r["loan_id"], r["principal"]) for r in settled["repayments"]] == [("A-1", "80000.00")]
    position = book.last("PoolPosition")
    assert (position["loan_balance"], position["borrowing_base"]) == ("720000.00", "720000.00")
    assert position["standing"] == "good"


async def test_a_disbursal_that_overtakes_the_splitter_is_repaid_when_the_hold_is_posted() -> None:
    book = Book()
    await book.open()
    await book.run(book.slip("1000000.00"))
    await book.run(book.applied("A-1", "800000.00"), book.confirmed("A-1"))
    await book.run(book.payment("100000.00"))
    await book.run(book.funded("A-1", "800000.00"))  # before the split is posted
    assert book.all("HoldSettled") == []
    assert book.last("PoolPosition")["standing"] == "good"  # 80万 − 8万 held = 72万
    await book.post()
    assert book.last("HoldSettled")["repayments"][0]["principal"] == "80000.00"
    assert (await book.pool()).loan_balance == 72 * WAN


async def test_a_request_refused_by_the_funder_gives_its_hold_back() -> None:
    book = Book()
    await book.open()
    await book.run(book.slip("1000000.00"))
    await book.run(book.applied("A-1", "800000.00"), book.confirmed("A-1"))
    await book.run(book.payment("100000.00"))
    await book.post()
    await book.run(book.funded("A-1", "800000.00", m.FunderDecision.REJECTED))
    settled = book.last("HoldSettled")
    assert (settled["repayments"], settled["released"]) == ([], "80000.00")


async def test_a_facility_cut_puts_the_pool_in_margin_call_and_sweeps_the_next_payment() -> None:
    book = Book()
    await book.open()
    await book.run(book.slip("1000000.00"))
    await book.borrow("A-1", "800000.00")
    await book.run(book.facility("10000000.00", "0.6"))  # base 60万 < loans 80万
    assert book.last("PoolPosition")["standing"] == "margin_call"
    assert await book.refused(book.applied("A-2", "1.00")) == [None]
    assert book.last("FinancingDecision")["reason"] == "margin_call"
    await book.run(book.payment("100000.00"))  # base 54万: all 10万 to the funder
    instruction = book.last("RepaymentInstruction")
    assert instruction["repayments"][0]["principal"] == "100000.00"
    assert released_by(instruction) == ZERO
    assert book.last("PoolPosition")["standing"] == "margin_call"


async def test_a_partial_payment_lowers_the_level_by_what_was_paid() -> None:
    book = Book()
    await book.open()
    await book.run(book.slip("1000000.00"))
    await book.run(book.payment("0.01"))
    assert book.last("PoolPosition")["water_level"] == "999999.99"


async def test_a_credit_note_dilutes_the_pool_and_the_next_payment_is_swept() -> None:
    book = Book()
    await book.open()
    await book.run(book.slip("500000.00"), book.slip("500000.00"))
    await book.borrow("A-1", "800000.00")
    await book.run(book.adjusted("R-1", K.CREDIT_NOTE, "-200000.00"))
    position = book.last("PoolPosition")
    assert (position["water_level"], position["borrowing_base"]) == ("800000.00", "640000.00")
    assert position["standing"] == "margin_call"
    await book.run(book.payment("100000.00", "R-2"))  # base 56万: 24万 above, all 10万 swept
    assert released_by(book.last("RepaymentInstruction")) == ZERO


async def test_a_cancelled_slip_leaves_the_pool() -> None:
    book = Book()
    await book.open()
    await book.run(book.slip("300000.00"), book.slip("700000.00"))
    await book.run(book.adjusted("R-1", K.CANCELLATION, "-300000.00"))
    position = book.last("PoolPosition")
    assert (position["water_level"], position["borrowing_base"]) == ("700000.00", "560000.00")


async def test_a_disputed_slip_stays_in_the_level_but_not_in_the_base_until_closed() -> None:
    book = Book()
    await book.open()
    await book.run(book.slip("300000.00"), book.slip("700000.00"))
    await book.run(book.adjusted("R-1", K.DISPUTE_OPENED, "0", disputed=True))
    position = book.last("PoolPosition")
    assert position["water_level"] == "1000000.00"
    assert position["ineligible"] == {"disputed": "300000.00"}
    assert (position["eligible_level"], position["borrowing_base"]) == ("700000.00", "560000.00")
    await book.run(book.adjusted("R-1", K.DISPUTE_CLOSED, "0", disputed=False))
    assert book.last("PoolPosition")["borrowing_base"] == "800000.00"


async def test_eligibility_past_due_tenor_cross_aging_and_concentration() -> None:
    book = Book()
    await book.open(max_days_past_due=30, max_tenor_days=120)
    await book.run(
        book.slip("100000.00", due_in=10, issued_ago=60),  # 50 days past due
        book.slip("200000.00", due_in=200),  # tenor 200 > 120
        book.slip("700000.00", due_in=60),
    )
    position = book.last("PoolPosition")
    assert position["ineligible"] == {"past_due": "100000.00", "tenor": "200000.00"}
    assert position["eligible_level"] == "700000.00"
    await book.run(
        book.facility(
            "10000000.00",
            "0.8",
            max_days_past_due=30,
            max_tenor_days=120,
            concentration_limit=D("500000.00"),
        )
    )
    assert book.last("PoolPosition")["ineligible"]["concentration"] == "200000.00"
    await book.run(
        book.facility(
            "10000000.00",
            "0.8",
            max_days_past_due=30,
            max_tenor_days=120,
            cross_age_percent=D("0.05"),
        )
    )
    position = book.last("PoolPosition")
    assert position["ineligible"]["cross_aged"] == "700000.00"
    assert position["borrowing_base"] == "0.00"


async def test_maturity_overdue_penalty_and_the_waterfall() -> None:
    """A 10-day loan of 100万 at 3.6% ACT/360 (100/day), penalty 7.2% (200/day). Closing the
    maturity day unpaid makes it overdue with its 1,000 of interest (10 days, accrued daily)
    charged; each closed day after
    adds 200 of penalty. A payment pays penalty, then interest, then principal."""
    book = Book()
    await book.open(annual_interest_rate=D("0.036"), penalty_rate=D("0.072"), tenor_days=10)
    await book.run(book.slip("2000000.00"))
    await book.borrow("A-1", "1000000.00")
    for day in range(10):
        await book.run(book.day_closed(TODAY + timedelta(days=day)))
    assert sum(D(e["interest"]) for e in book.all("InterestAccrued")) == D("1000.00")
    await book.run(book.day_closed(TODAY + timedelta(days=10)))  # the maturity day
    overdue = book.last("LoanOverdue")
    assert overdue["overdue_principal"] == "1000000.00"
    assert book.last("PoolPosition")["standing"] == "overdue"
    assert book.last("PoolPosition")["interest_due"] == "1000.00"
    await book.run(book.day_closed(TODAY + timedelta(days=12)))  # two more days
    assert book.last("PoolPosition")["penalty_due"] == "400.00"
    assert await book.refused(book.applied("A-2", "1.00")) == [None]
    assert book.last("FinancingDecision")["reason"] == "pool_overdue"
    book.today = TODAY + timedelta(days=13)
    await book.run(book.payment("101400.00"))
    [part] = book.last("RepaymentInstruction")["repayments"]
    assert (part["penalty"], part["interest"], part["principal"]) == (
        "400.00",
        "1000.00",
        "100000.00",
    )
    assert book.last("LoanRepaid")["outstanding_after"] == "900000.00"


async def test_monthly_interest_is_charged_at_month_end_and_collected_from_payments() -> None:
    book = Book()
    await book.open(annual_interest_rate=D("0.036"), interest_period=m.InterestPeriod.MONTHLY)
    await book.run(book.slip("2000000.00"))
    await book.borrow("A-1", "1000000.00")
    month_end = (TODAY.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    await book.run(book.day_closed(month_end))
    charged = book.last("InterestCharged")
    days = (month_end - TODAY).days + 1
    assert D(charged["amount"]) == D(100 * days)
    book.today = month_end + timedelta(days=1)
    await book.run(book.payment("10000.00"))  # under the base: only the charged interest
    [part] = book.last("RepaymentInstruction")["repayments"]
    assert (part["interest"], part["principal"]) == (charged["amount"], "0.00")


async def test_a_prepayment_pays_the_loan_off_with_interest_to_the_day() -> None:
    book = Book()
    await book.open(annual_interest_rate=D("0.036"))
    await book.run(book.slip("2000000.00"))
    await book.borrow("A-1", "1000000.00")
    book.today = TODAY + timedelta(days=5)
    await book.run(book.event(m.PrepaymentFrozen, prepayment_id="PRE-1", amount=D("1000600.00")))
    instruction = book.last("RepaymentInstruction")
    [part] = instruction["repayments"]
    assert (part["principal"], part["interest"], instruction["kind"]) == (
        "1000000.00",
        "500.00",
        "prepayment",
    )
    assert released_by(instruction) == D("100.00")  # more than owed: back to the supplier
    assert book.last("PoolPosition")["loan_balance"] == "0.00"


async def test_a_disbursal_dated_before_its_request_is_refused() -> None:
    book = Book()
    await book.open()
    await book.run(book.slip("1000000.00"))
    await book.run(book.applied("A-1", "100.00"), book.confirmed("A-1"))
    early = book.event(
        m.FundingResult,
        request_id="A-1",
        funder_id="bank-a",
        decision=m.FunderDecision.DISBURSED,
        amount=D("100.00"),
        value_date=TODAY - timedelta(days=1),
    )
    assert await book.refused(early) == ["invalid_date"]


async def test_the_loan_takes_the_terms_of_the_request_not_the_facility_at_disbursal() -> None:
    book = Book()
    await book.open()
    await book.run(book.slip("1000000.00"))
    await book.run(book.applied("A-1", "100.00"), book.confirmed("A-1"))
    await book.run(
        book.facility(
            "10000000.00", "0.8", annual_interest_rate=D("0.2"), funder_id="bank-b", tenor_days=30
        )
    )
    await book.run(book.funded("A-1", "100.00"))
    opened = book.last("LoanOpened")
    assert (opened["funder_id"], opened["annual_interest_rate"]) == ("bank-a", "0.0435")
    assert opened["maturity_on"] == (TODAY + timedelta(days=180)).isoformat()


# ---------------------------------------------------------------- the interleaving property


OPS = st.sampled_from(
    [
        "slip",
        "apply",
        "confirm",
        "decline",
        "disburse",
        "reject",
        "pay",
        "post",
        "cut",
        "raise",
        "note",
        "dispute",
        "close_day",
    ]
)


@settings(
    max_examples=int(os.environ.get("POOLFIN_PROPERTY_EXAMPLES", "3000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(st.tuples(OPS, st.integers(1, 100)), min_size=1, max_size=30))
async def test_exposure_never_stays_above_the_base_with_money_released(
    ops: list[tuple[str, int]],
) -> None:
    """Random interleavings of slips, applications, confirmations, disbursals, payments,
    splitter postings, facility changes, credit notes, disputes and day closes: whenever money
    is released (by a payment or a hold), loans + confirmed requests − money on hold ≤ base
    afterwards; every instruction's parts add up to its cash; nothing ever goes negative."""
    book = Book()
    await book.open()
    await book.run(book.slip("1000000.00"))
    applications: list[str] = []
    day = TODAY
    for op, n in ops:
        pool = await book.pool()
        amount = D(n) * 1000
        if op == "slip":
            await book.run(book.slip(str(amount * 10)))
        elif op == "apply":
            application_id = book.next_id("A")
            applications.append(application_id)
            await book.refused(book.applied(application_id, str(amount * 5)))
        elif op in ("confirm", "decline") and applications:
            await book.refused(book.confirmed(applications[n % len(applications)], op == "confirm"))
        elif op in ("disburse", "reject") and applications:
            chosen = applications[n % len(applications)]
            application = book.store.application_rows.get(chosen)
            if application is not None and application.state == "requested":
                decision = (
                    m.FunderDecision.DISBURSED if op == "disburse" else m.FunderDecision.REJECTED
                )
                await book.run(book.funded(chosen, str(application.amount), decision))
        elif op == "pay":
            open_slips = [r for r, left in book.slips.items() if left > 0]
            if open_slips:
                rid = open_slips[n % len(open_slips)]
                await book.run(book.payment(str(min(amount, book.slips[rid])), rid))
        elif op == "post":
            await book.post(1 + n % 3)
        elif op in ("cut", "raise"):
            rate = "0.5" if op == "cut" else "0.8"
            await book.run(book.facility(str(amount * 1000), rate))
        elif op == "note":
            open_slips = [r for r, left in book.slips.items() if left > 0]
            if open_slips:
                rid = open_slips[n % len(open_slips)]
                cut = min(amount, book.slips[rid])
                await book.run(book.adjusted(rid, K.CREDIT_NOTE, str(-cut)))
        elif op == "dispute":
            rid = list(book.slips)[n % len(book.slips)]
            was = book.store.receivable_rows.get((book.pool_id, rid))
            disputed = was.disputed if was else False
            kind = K.DISPUTE_CLOSED if disputed else K.DISPUTE_OPENED
            if book.slips[rid] > 0:
                await book.run(book.adjusted(rid, kind, "0", disputed=not disputed))
        elif op == "close_day":
            day += timedelta(days=n % 40)
            if pool.closed_through is None or day > pool.closed_through:
                await book.run(book.day_closed(day))
                book.today = day + timedelta(days=1)
        _check(book, await book.pool())
    await book.post()
    _check(book, await book.pool())


def _check(book: Book, pool: PoolState) -> None:
    assert pool.held >= 0 and pool.held_pending >= 0
    assert pool.water_level >= 0
    for loan in pool.loans:
        assert loan.outstanding >= 0 and loan.dues >= 0
    step = book.emitted[book.checked :]
    book.checked = len(book.emitted)
    for body in step:
        if body["type"] in ("RepaymentInstruction", "HoldSettled"):
            released = released_by(body)
            assert released >= 0, body
            if body["type"] == "RepaymentInstruction":
                assert D(body["held"]) >= 0 and D(body["from_held"]) >= 0
    # After every step: if a payment or a hold released money in this step, the pool is within
    # its base once the money on hold is counted.
    if any(
        b["type"] in ("RepaymentInstruction", "HoldSettled") and released_by(b) > 0 for b in step
    ):
        assert pool.exposure <= pool.base, (pool.exposure, pool.base)


async def test_a_day_close_suggests_credit_from_the_trade_history_and_approval_applies_it() -> None:
    book = Book()
    await book.open(line="100000.00")
    for months_ago in (1, 2, 3, 4):
        await book.run(book.slip("1000000.00", due_in=None, issued_ago=31 * months_ago))
    await book.run(book.day_closed(TODAY))
    suggested = book.last("CreditSuggested")
    assert suggested["state"] == "pending"
    assert D(suggested["credit_line"]) > D("100000.00")
    assert suggested["factors"] and all(isinstance(v, str) for v in suggested["factors"].values())
    assert suggested["explanation"]
    before = (await book.pool()).facility
    assert before is not None and before.credit_line == D("100000.00")  # not yet applied
    approve = book.event(m.CreditSuggestionApproved, suggestion_id=suggested["suggestion_id"])
    await book.run(approve)
    assert book.last("CreditSuggested")["state"] == "applied"
    pool = await book.pool()
    assert pool.facility is not None
    assert (pool.facility.credit_line, pool.facility.discount_rate) == (
        D(suggested["credit_line"]),
        D(suggested["discount_rate"]),
    )
    assert await book.refused(approve) == ["unknown_suggestion"]  # decided already
    # The grade the model gave goes with the pool's next instruction, for rates by grade.
    assert pool.grade == suggested["grade"]
    await book.run(book.payment("1000.00"))
    assert book.last("RepaymentInstruction")["grade"] == suggested["grade"]


async def test_a_suggestion_within_the_facilitys_bounds_is_applied_at_once() -> None:
    book = Book()
    bounds = m.CreditBounds(
        line_min=D("1.00"), line_max=D("999999999.00"), rate_min=D("0.5"), rate_max=D("0.8")
    )
    await book.open(line="100000.00", auto_apply=bounds)
    for months_ago in (1, 2, 3, 4):
        await book.run(book.slip("1000000.00", due_in=None, issued_ago=31 * months_ago))
    await book.run(book.day_closed(TODAY))
    suggested = book.last("CreditSuggested")
    assert suggested["state"] == "applied"
    pool = await book.pool()
    assert pool.facility is not None and pool.facility.credit_line == D(suggested["credit_line"])


async def test_a_day_is_closed_once_and_not_before_it_begins() -> None:
    book = Book(lead_days=0)
    await book.open()
    assert await book.refused(book.day_closed(TODAY + timedelta(days=1))) == ["day_not_begun"]
    await book.run(book.day_closed(TODAY))
    assert await book.refused(book.day_closed(TODAY)) == ["day_already_closed"]
