"""intake's payment check: a payment may only write off open receivables of its own pool."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.domain import Receivable, check_payment
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


def refusal(amount: str, ids: list[str]) -> Rejected:
    refused = check_payment(POOL, Decimal(amount), ids, KNOWN)
    assert isinstance(refused, Rejected), refused  # a refusal is a value, not an exception
    return refused


def test_payment_writing_off_one_receivable_in_full_returns_its_amount() -> None:
    assert check_payment(POOL, Decimal("100000.00"), ["r2"], KNOWN) == Decimal("100000.00")


def test_partial_payment_returns_the_whole_written_off_sum() -> None:
    # The buyer pays 350,000 and writes off r1 + r2 = 400,000: the pool drops by 400,000.
    assert check_payment(POOL, Decimal("350000.00"), ["r1", "r2"], KNOWN) == Decimal("400000.00")


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
    assert check_payment(POOL, amount, named, known) == total
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
