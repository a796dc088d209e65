"""intake's rules: a payment pays open slips of its own pool, in the order named, each up to
its open amount; credit notes, cancellations, amendments and disputes change one open slip."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.domain import Allocation, Receivable, adjust, allocate_payment
from shared.contracts import messages as m
from shared.contracts.codec import Rejected
from shared.contracts.messages import Reason
from shared.money import FEN

POOL = "ce-1:sup-1"
OTHER_POOL = "ce-1:sup-2"

KNOWN = {
    "r1": Receivable("r1", POOL, Decimal("300000.00"), "open"),
    "r2": Receivable("r2", POOL, Decimal("100000.00"), "open"),
    "r3": Receivable("r3", POOL, Decimal("50000.00"), "paid"),
    "x1": Receivable("x1", OTHER_POOL, Decimal("70000.00"), "open"),
}


def check_payment(
    pool: str, amount: Decimal, ids: list[str], known: dict[str, Receivable]
) -> Decimal | Rejected:
    """What the payment takes off the pool (the sum of its allocations), or its refusal."""
    allocations = allocate_payment(pool, amount, ids, known)
    if isinstance(allocations, Rejected):
        return allocations
    return sum((a.amount for a in allocations), Decimal("0.00"))


def refusal(amount: str, ids: list[str]) -> Rejected:
    refused = check_payment(POOL, Decimal(amount), ids, KNOWN)
    assert isinstance(refused, Rejected), refused  # a refusal is a value, not an exception
    return refused


def test_payment_writing_off_one_receivable_in_full_returns_its_amount() -> None:
    assert check_payment(POOL, Decimal("100000.00"), ["r2"], KNOWN) == Decimal("100000.00")


def test_a_partial_payment_pays_the_slips_in_order_and_leaves_the_rest_open() -> None:
    # The buyer pays 350,000 on r1 + r2 = 400,000: r1 is paid, r2 keeps 50,000 open, and
    # the pool drops by 350,000 (what was paid), not 400,000.
    assert allocate_payment(POOL, Decimal("350000.00"), ["r1", "r2"], KNOWN) == [
        Allocation("r1", Decimal("300000.00"), Decimal("0.00"), None),
        Allocation("r2", Decimal("50000.00"), Decimal("50000.00"), None),
    ]


def test_a_fen_does_not_extinguish_a_slip() -> None:
    [allocation] = allocate_payment(POOL, Decimal("0.01"), ["r1"], KNOWN)  # type: ignore[misc]
    assert allocation.open_after == Decimal("299999.99")


def test_unknown_receivable_is_refused() -> None:
    rejected = refusal("10.00", ["r1", "nope"])
    assert rejected.reason == Reason.UNKNOWN_RECEIVABLE
    assert "nope" in rejected.detail


def test_receivable_of_another_pool_is_refused() -> None:
    rejected = refusal("10.00", ["x1"])
    assert rejected.reason == Reason.RECEIVABLE_NOT_IN_POOL
    assert OTHER_POOL in rejected.detail


def test_receivable_already_paid_is_refused() -> None:
    rejected = refusal("10.00", ["r2", "r3"])
    assert rejected.reason == Reason.RECEIVABLE_ALREADY_PAID
    assert "r3" in rejected.detail


def test_payment_larger_than_the_receivables_it_writes_off_is_refused() -> None:
    rejected = refusal("100000.01", ["r2"])
    assert rejected.reason == Reason.PAYMENT_EXCEEDS_RECEIVABLES
    assert "100000.01" in rejected.detail


def test_same_receivable_named_twice_is_refused() -> None:
    # Named twice it would be written off twice and could "cover" a payment twice its size.
    rejected = refusal("200000.00", ["r2", "r2"])
    assert rejected.reason == Reason.INVALID_MESSAGE
    assert "twice" in rejected.detail


def test_rejected_carries_the_reason_code_in_its_message() -> None:
    rejected = refusal("10.00", ["nope"])
    assert str(rejected).startswith("unknown_receivable: ")


open_receivables = st.lists(st.integers(min_value=1, max_value=10**10), min_size=1, max_size=10)


@settings(max_examples=200, deadline=None)
@given(open_receivables, st.data())
def test_any_payment_up_to_the_open_receivables_it_names_is_accepted(
    cents: list[int], data: st.DataObject
) -> None:
    known = {
        f"r{i}": Receivable(f"r{i}", POOL, Decimal(c) * FEN, "open") for i, c in enumerate(cents)
    }
    named = data.draw(st.lists(st.sampled_from(sorted(known)), min_size=1, unique=True))
    total = sum((known[r].amount for r in named), Decimal("0.00"))
    amount = Decimal(data.draw(st.integers(1, int(total / FEN)))) * FEN
    allocations = allocate_payment(POOL, amount, named, known)
    assert not isinstance(allocations, Rejected)
    assert sum((a.amount for a in allocations), Decimal("0.00")) == amount
    for a in allocations:
        assert 0 < a.amount <= known[a.receivable_id].amount
        assert a.open_after == known[a.receivable_id].amount - a.amount
    # Every slip but the last one paid is paid in full: the order named is the order paid.
    assert all(a.open_after == 0 for a in allocations[:-1])
    refused = check_payment(POOL, total + FEN, named, known)
    assert isinstance(refused, Rejected) and refused.reason == Reason.PAYMENT_EXCEEDS_RECEIVABLES


@settings(max_examples=200, deadline=None)
@given(open_receivables, st.data())
def test_one_bad_receivable_among_good_ones_refuses_the_whole_payment(
    cents: list[int], data: st.DataObject
) -> None:
    known = {
        f"r{i}": Receivable(f"r{i}", POOL, Decimal(c) * FEN, "open") for i, c in enumerate(cents)
    }
    bad, reason = data.draw(
        st.sampled_from(
            [
                (Receivable("bad", POOL, Decimal("1.00"), "paid"), Reason.RECEIVABLE_ALREADY_PAID),
                (
                    Receivable("bad", OTHER_POOL, Decimal("1.00"), "open"),
                    Reason.RECEIVABLE_NOT_IN_POOL,
                ),
                (None, Reason.UNKNOWN_RECEIVABLE),
            ]
        )
    )
    if bad is not None:
        known["bad"] = bad
    named = data.draw(st.permutations([*sorted(known.keys() - {"bad"}), "bad"]))
    refused = check_payment(POOL, Decimal("0.01"), named, known)
    assert isinstance(refused, Rejected) and refused.reason == reason


def slip(state: str = "open", open_amount: str = "1000.00", disputed: bool = False) -> Receivable:
    return Receivable(
        "s",
        POOL,
        Decimal("1000.00"),
        state,
        Decimal(open_amount),
        None,
        disputed,
        "D-1" if disputed else None,
    )


def event(model: type[m.Message], **fields: Any) -> m.Message:
    return m.new_event(model, source="erp", pool_id=POOL, receivable_id="s", reason="why", **fields)


def test_a_credit_note_lowers_the_open_amount_and_a_full_one_closes_the_slip() -> None:
    note = event(m.CreditNoteIssued, credit_note_id="CN-1", amount=Decimal("400.00"))
    adjusted = adjust(POOL, note, {"s": slip()})
    assert not isinstance(adjusted, Rejected)
    assert (adjusted.change, adjusted.receivable.open, adjusted.reference) == (
        Decimal("-400.00"),
        Decimal("600.00"),
        "CN-1",
    )
    full = event(m.CreditNoteIssued, credit_note_id="CN-2", amount=Decimal("600.00"))
    closed = adjust(POOL, full, {"s": adjusted.receivable})
    assert not isinstance(closed, Rejected) and closed.receivable.state == "credited"
    too_much = event(m.CreditNoteIssued, credit_note_id="CN-3", amount=Decimal("600.01"))
    refused = adjust(POOL, too_much, {"s": adjusted.receivable})
    assert isinstance(refused, Rejected) and refused.reason == Reason.EXCEEDS_OPEN_AMOUNT


def test_a_cancellation_takes_what_is_open_and_closes_the_slip() -> None:
    adjusted = adjust(POOL, event(m.SlipCancelled), {"s": slip(open_amount="250.00")})
    assert not isinstance(adjusted, Rejected)
    assert (adjusted.change, adjusted.receivable.state) == (Decimal("-250.00"), "cancelled")
    again = adjust(POOL, event(m.SlipCancelled), {"s": adjusted.receivable})
    assert isinstance(again, Rejected) and again.reason == Reason.RECEIVABLE_CLOSED


def test_an_amendment_moves_the_open_amount_but_never_below_what_was_settled() -> None:
    partly_paid = slip(open_amount="700.00")  # 300.00 paid
    down = adjust(POOL, event(m.SlipAmended, amount=Decimal("800.00")), {"s": partly_paid})
    assert not isinstance(down, Rejected)
    assert (down.change, down.receivable.open, down.receivable.amount) == (
        Decimal("-200.00"),
        Decimal("500.00"),
        Decimal("800.00"),
    )
    up = adjust(POOL, event(m.SlipAmended, amount=Decimal("1200.00")), {"s": partly_paid})
    assert not isinstance(up, Rejected) and up.change == Decimal("200.00")
    below = adjust(POOL, event(m.SlipAmended, amount=Decimal("300.00")), {"s": partly_paid})
    assert isinstance(below, Rejected) and below.reason == Reason.EXCEEDS_OPEN_AMOUNT
    same = adjust(POOL, event(m.SlipAmended, amount=Decimal("1000.00")), {"s": partly_paid})
    assert isinstance(same, Rejected) and same.reason == Reason.INVALID_MESSAGE


def test_a_dispute_opens_once_and_closes_only_by_its_own_id() -> None:
    opened = adjust(POOL, event(m.DisputeOpened, dispute_id="D-1"), {"s": slip()})
    assert not isinstance(opened, Rejected)
    assert (opened.change, opened.receivable.disputed) == (Decimal("0.00"), True)
    twice = adjust(POOL, event(m.DisputeOpened, dispute_id="D-2"), {"s": opened.receivable})
    assert isinstance(twice, Rejected) and twice.reason == Reason.DISPUTE_STATE
    wrong = adjust(POOL, event(m.DisputeClosed, dispute_id="D-9"), {"s": opened.receivable})
    assert isinstance(wrong, Rejected) and wrong.reason == Reason.DISPUTE_STATE
    closed = adjust(POOL, event(m.DisputeClosed, dispute_id="D-1"), {"s": opened.receivable})
    assert not isinstance(closed, Rejected) and closed.receivable.disputed is False


def test_an_adjustment_of_another_pools_or_an_unknown_slip_is_refused() -> None:
    other = Receivable("s", OTHER_POOL, Decimal("1.00"), "open")
    refused = adjust(POOL, event(m.SlipCancelled), {"s": other})
    assert isinstance(refused, Rejected) and refused.reason == Reason.RECEIVABLE_NOT_IN_POOL
    unknown = adjust(POOL, event(m.SlipCancelled), {})
    assert isinstance(unknown, Rejected) and unknown.reason == Reason.UNKNOWN_RECEIVABLE
