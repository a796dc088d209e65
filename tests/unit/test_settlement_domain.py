"""The settlement split with holds, hold settlements and prepayments (invariant 1,
conservation) and the hash chain (invariant 7)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.settlement_splitter.domain import (
    GENESIS,
    PLATFORM_FEES,
    FunderPart,
    PostedTransaction,
    Split,
    canonical_bytes,
    free_account,
    freeze_prepayment,
    frozen_account,
    funder_account,
    held_account,
    insufficient,
    settle_hold,
    split_payment,
    transaction_hash,
    verify_chain,
)
from shared.contracts.codec import Rejected
from shared.money import FEN, ZERO

POOL = "ce-1:sup-1"

fen_amounts = st.integers(min_value=0, max_value=10**11).map(lambda c: Decimal(c) * FEN)


def fen_up_to(draw: st.DrawFn, most: Decimal) -> Decimal:
    return Decimal(draw(st.integers(0, int(most / FEN)))) * FEN


@st.composite
def payments(draw: st.DrawFn) -> tuple[Decimal, list[FunderPart], int]:
    """A payment, the repayments credit instructed out of it (never more than it), a fee."""
    amount = Decimal(draw(st.integers(1, 10**11))) * FEN
    repayments = []
    left = amount
    for _ in range(draw(st.integers(0, 4))):
        principal = fen_up_to(draw, left)
        interest = fen_up_to(draw, left - principal)
        repayments.append(
            FunderPart(draw(st.sampled_from(["bank-a", "bank-b", "p2p-c"])), principal, interest)
        )
        left -= principal + interest
    return amount, repayments, draw(st.integers(0, 10_000))


@dataclasses.dataclass(frozen=True)
class Instructed:
    """A payment with everything issue 8 adds: money taken from hold, a part put on hold, and
    repayments with penalty and loan fees; never more than the cash."""

    amount: Decimal
    repayments: list[FunderPart]
    fee_bps: int
    held: Decimal
    from_held: Decimal

    def split(self) -> Split:
        return split_of(
            self.amount,
            self.repayments,
            self.fee_bps,
            held=self.held,
            from_held=self.from_held,
        )


@st.composite
def instructions(draw: st.DrawFn) -> Instructed:
    amount = Decimal(draw(st.integers(1, 10**11))) * FEN
    from_held = draw(st.one_of(st.just(ZERO), fen_amounts))
    left = amount + from_held
    repayments = []
    for _ in range(draw(st.integers(0, 4))):
        parts = []
        for _ in range(4):  # principal, interest, penalty, fees
            parts.append(fen_up_to(draw, left) if draw(st.booleans()) else ZERO)
            left -= parts[-1]
        funder = draw(st.sampled_from(["bank-a", "bank-b", "p2p-c"]))
        repayments.append(FunderPart(funder, *parts))
    # Nothing, all that is left, or some of it stays on hold.
    held = draw(
        st.one_of(
            st.just(ZERO),
            st.just(left),
            st.integers(0, int(left / FEN)).map(lambda c: Decimal(c) * FEN),
        )
    )
    return Instructed(amount, repayments, draw(st.integers(0, 10_000)), held, from_held)


def split_of(*args: Any, **kwargs: Any) -> Split:
    split = split_payment(*args, **kwargs)
    assert isinstance(split, Split), split
    return split


def refusal(outcome: object) -> tuple[str, str]:
    assert isinstance(outcome, Rejected), outcome
    return outcome.reason.value, outcome.detail


# ---------------------------------------------------------------- the split


@settings(max_examples=300, deadline=None)
@given(payments())
def test_parts_of_a_settlement_sum_exactly_to_the_payment(
    payment: tuple[Decimal, list[FunderPart], int],
) -> None:
    amount, repayments, fee_bps = payment
    split = split_of(amount, repayments, fee_bps)
    assert split.principal + split.interest + split.fees + split.released == amount
    assert split.principal == sum((r.principal for r in repayments), ZERO)
    assert split.interest == sum((r.interest for r in repayments), ZERO)
    assert sum(split.to_funders.values(), ZERO) == split.principal + split.interest
    for part in (split.fees, split.released):
        assert part >= 0
        assert part == part.quantize(FEN)


@settings(max_examples=500, deadline=None)
@given(instructions())
def test_with_holds_the_parts_sum_exactly_to_the_payment_and_what_it_takes_from_hold(
    given_: Instructed,
) -> None:
    split = given_.split()
    funders = sum(split.to_funders.values(), ZERO)
    assert funders + split.held + split.fees + split.released == given_.amount + given_.from_held
    assert funders == sum((r.total for r in given_.repayments), ZERO) == split.repaid
    assert split.penalty == sum((r.penalty for r in given_.repayments), ZERO)
    assert split.loan_fees == sum((r.fees for r in given_.repayments), ZERO)
    assert (split.held, split.from_held, split.cash) == (
        given_.held,
        given_.from_held,
        given_.amount + given_.from_held,
    )
    assert min([split.fees, split.released, split.held, *split.to_funders.values()]) >= 0
    for part in (split.fees, split.released):
        assert part == part.quantize(FEN)
    remainder = split.cash - funders - split.held
    assert abs(split.fees - remainder * given_.fee_bps / 10_000) < FEN


@settings(max_examples=500, deadline=None)
@given(instructions())
def test_with_holds_the_ledger_lines_balance_and_only_the_sources_are_debited(
    given_: Instructed,
) -> None:
    entries = given_.split().entries(POOL)
    assert sum((value for _, value in entries), ZERO) == 0
    assert entries[0] == (frozen_account(POOL), -given_.amount)
    held_lines = [value for account, value in entries if account == held_account(POOL)]
    assert held_lines == (
        [given_.held - given_.from_held] if given_.held != given_.from_held else []
    )
    others = [(a, v) for a, v in entries[1:] if a != held_account(POOL)]
    assert all(value > 0 for _, value in others)  # zero parts are not written
    assert len({account for account, _ in entries}) == len(entries)


@settings(max_examples=300, deadline=None)
@given(payments())
def test_ledger_entries_of_a_split_balance_to_zero(
    payment: tuple[Decimal, list[FunderPart], int],
) -> None:
    amount, repayments, fee_bps = payment
    entries = split_of(amount, repayments, fee_bps).entries(POOL)
    assert sum((value for _, value in entries), ZERO) == 0
    assert entries[0] == (frozen_account(POOL), -amount)  # the frozen money moves out, all of it
    assert all(value > 0 for _, value in entries[1:])  # zero parts are not written
    assert len({account for account, _ in entries}) == len(entries)


@settings(max_examples=300, deadline=None)
@given(payments())
def test_fee_is_its_basis_points_of_the_remainder_to_within_a_fen(
    payment: tuple[Decimal, list[FunderPart], int],
) -> None:
    amount, repayments, fee_bps = payment
    split = split_of(amount, repayments, fee_bps)
    remainder = amount - split.principal - split.interest
    assert abs(split.fees - remainder * fee_bps / 10_000) < FEN
    assert split.rule_version.endswith(f"fee-bps={fee_bps}")


def test_seed_split_of_10_wan_with_8_wan_to_the_funder_releases_2_wan() -> None:
    split = split_of(Decimal("100000.00"), [FunderPart("bank-a", Decimal("80000.00"), ZERO)])
    assert split.to_funders == {"bank-a": Decimal("80000.00")}
    assert split.fees == ZERO
    assert split.released == Decimal("20000.00")
    assert split.entries(POOL) == [
        (frozen_account(POOL), Decimal("-100000.00")),
        (funder_account("bank-a"), Decimal("80000.00")),
        (free_account(POOL), Decimal("20000.00")),
    ]


def test_nothing_to_repay_releases_everything() -> None:
    split = split_of(Decimal("10.00"), [])
    assert (split.principal, split.interest, split.released) == (ZERO, ZERO, Decimal("10.00"))
    assert split.entries(POOL) == [
        (frozen_account(POOL), Decimal("-10.00")),
        (free_account(POOL), Decimal("10.00")),
    ]


def test_whole_payment_to_the_funder_releases_nothing_and_writes_no_zero_line() -> None:
    split = split_of(Decimal("10.00"), [FunderPart("bank-a", Decimal("9.50"), Decimal("0.50"))], 30)
    assert split.released == ZERO and split.fees == ZERO
    assert [account for account, _ in split.entries(POOL)] == [
        frozen_account(POOL),
        funder_account("bank-a"),
    ]


def test_repayments_of_one_funder_are_added_together() -> None:
    split = split_of(
        Decimal("100.00"),
        [
            FunderPart("bank-a", Decimal("10.00"), Decimal("1.00")),
            FunderPart("bank-b", Decimal("20.00"), ZERO),
            FunderPart("bank-a", Decimal("5.00"), Decimal("0.10")),
        ],
    )
    assert split.to_funders == {"bank-a": Decimal("16.10"), "bank-b": Decimal("20.00")}
    assert split.released == Decimal("63.90")


def test_fee_in_basis_points_is_taken_from_what_is_left_after_repayment() -> None:
    # 30 bps of the 100.00 left after repaying 900.00 is 0.30.
    split = split_of(Decimal("1000.00"), [FunderPart("bank-a", Decimal("900.00"), ZERO)], 30)
    assert split.fees == Decimal("0.30")
    assert split.released == Decimal("99.70")
    assert (PLATFORM_FEES, Decimal("0.30")) in split.entries(POOL)


def test_full_fee_leaves_nothing_released() -> None:
    split = split_of(Decimal("10.00"), [], 10_000)
    assert (split.fees, split.released) == (Decimal("10.00"), ZERO)


def test_penalty_and_loan_fees_go_to_the_funder_with_principal_and_interest() -> None:
    split = split_of(
        Decimal("100.00"),
        [FunderPart("bank-a", Decimal("50.00"), Decimal("1.00"), Decimal("0.40"), Decimal("2.00"))],
    )
    assert split.to_funders == {"bank-a": Decimal("53.40")}
    assert (split.penalty, split.loan_fees, split.fees) == (Decimal("0.40"), Decimal("2.00"), ZERO)
    assert split.released == Decimal("46.60")


def test_a_payment_of_10_with_3_held_repays_5_and_releases_2_less_the_fee() -> None:
    # 10.00 paid: 5.00 to the bank, 3.00 stays on hold, 30 bps of the 2.00 left to the platform.
    split = split_of(
        Decimal("10.00"), [FunderPart("bank-a", Decimal("5.00"), ZERO)], 30, held=Decimal("3.00")
    )
    assert (split.held, split.fees, split.released) == (
        Decimal("3.00"),
        Decimal("0.01"),
        Decimal("1.99"),
    )
    assert split.entries(POOL) == [
        (frozen_account(POOL), Decimal("-10.00")),
        (held_account(POOL), Decimal("3.00")),
        (funder_account("bank-a"), Decimal("5.00")),
        (PLATFORM_FEES, Decimal("0.01")),
        (free_account(POOL), Decimal("1.99")),
    ]


def test_money_from_hold_adds_to_the_payment_and_its_line_is_net() -> None:
    # 10.00 paid and 4.00 taken from hold: 12.00 to the bank, 1.00 back on hold, 1.00 released.
    split = split_of(
        Decimal("10.00"),
        [FunderPart("bank-a", Decimal("12.00"), ZERO)],
        held=Decimal("1.00"),
        from_held=Decimal("4.00"),
    )
    assert split.released == Decimal("1.00")
    assert split.entries(POOL) == [
        (frozen_account(POOL), Decimal("-10.00")),
        (held_account(POOL), Decimal("-3.00")),  # net: 1.00 held less 4.00 taken
        (funder_account("bank-a"), Decimal("12.00")),
        (free_account(POOL), Decimal("1.00")),
    ]


def test_a_hold_that_is_taken_and_put_back_alike_writes_no_held_line() -> None:
    split = split_of(Decimal("10.00"), [], held=Decimal("2.00"), from_held=Decimal("2.00"))
    assert [account for account, _ in split.entries(POOL)] == [
        frozen_account(POOL),
        free_account(POOL),
    ]


def test_repayment_exceeding_the_payment_is_refused() -> None:
    reason, detail = refusal(
        split_payment(Decimal("10.00"), [FunderPart("bank-a", Decimal("10.00"), Decimal("0.01"))])
    )
    assert reason == "amount_mismatch" and "exceed" in detail


def test_repayment_and_hold_exceeding_the_cash_are_refused() -> None:
    # 10.00 + 1.00 from hold cannot repay 8.00 and hold 3.01.
    reason, _ = refusal(
        split_payment(
            Decimal("10.00"),
            [FunderPart("bank-a", Decimal("8.00"), ZERO)],
            held=Decimal("3.01"),
            from_held=Decimal("1.00"),
        )
    )
    assert reason == "amount_mismatch"


@pytest.mark.parametrize(
    ("repayment", "held", "from_held"),
    [
        (FunderPart("bank-a", Decimal("-1.00"), ZERO), ZERO, ZERO),
        (FunderPart("bank-a", ZERO, ZERO, Decimal("-0.01")), ZERO, ZERO),
        (FunderPart("bank-a", ZERO, ZERO, ZERO, Decimal("-0.01")), ZERO, ZERO),
        (FunderPart("bank-a", ZERO, ZERO), Decimal("-1.00"), ZERO),
        (FunderPart("bank-a", ZERO, ZERO), ZERO, Decimal("-1.00")),
    ],
)
def test_a_negative_part_is_refused(
    repayment: FunderPart, held: Decimal, from_held: Decimal
) -> None:
    reason, _ = refusal(
        split_payment(Decimal("10.00"), [repayment], held=held, from_held=from_held)
    )
    assert reason == "invalid_amount"


@pytest.mark.parametrize("fee_bps", [-1, 10_001])
def test_fee_outside_0_to_10000_bps_is_refused(fee_bps: int) -> None:
    with pytest.raises(ValueError):
        split_payment(Decimal("10.00"), [], fee_bps)


# ---------------------------------------------------------------- money on hold, prepayments


def test_a_hold_settled_pays_the_funders_and_releases_the_rest_without_a_fee() -> None:
    split = settle_hold(
        Decimal("10.00"),
        [FunderPart("bank-a", Decimal("6.00"), Decimal("0.50"), ZERO, Decimal("0.50"))],
        Decimal("3.00"),
    )
    assert isinstance(split, Split)
    assert (split.amount, split.from_held, split.fees, split.repaid) == (
        ZERO,
        Decimal("10.00"),
        ZERO,
        Decimal("7.00"),
    )
    assert split.entries(POOL) == [
        (held_account(POOL), Decimal("-10.00")),
        (funder_account("bank-a"), Decimal("7.00")),
        (free_account(POOL), Decimal("3.00")),
    ]


@pytest.mark.parametrize(
    ("amount", "principal", "released", "reason"),
    [
        ("10.00", "6.00", "3.99", "amount_mismatch"),
        ("10.00", "6.00", "4.01", "amount_mismatch"),
        ("10.00", "11.00", "-1.00", "invalid_amount"),
        ("10.00", "-1.00", "11.00", "invalid_amount"),
    ],
)
def test_a_hold_settled_must_add_up_to_its_amount_with_no_negative_part(
    amount: str, principal: str, released: str, reason: str
) -> None:
    outcome = settle_hold(
        Decimal(amount), [FunderPart("bank-a", Decimal(principal), ZERO)], Decimal(released)
    )
    assert refusal(outcome)[0] == reason


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(fen_amounts, fen_amounts), max_size=4), fen_amounts)
def test_a_hold_settled_moves_exactly_its_amount_out_of_hold(
    parts: list[tuple[Decimal, Decimal]], released: Decimal
) -> None:
    repayments = [FunderPart("bank-a", p, i) for p, i in parts]
    amount = sum((r.total for r in repayments), released)
    if amount == 0:
        return
    split = settle_hold(amount, repayments, released)
    assert isinstance(split, Split)
    entries = split.entries(POOL)
    assert entries[0] == (held_account(POOL), -amount)
    assert sum((v for _, v in entries), ZERO) == 0
    assert all(v > 0 for _, v in entries[1:])


def test_a_prepayment_is_frozen_out_of_the_free_balance_up_to_all_of_it() -> None:
    assert freeze_prepayment(POOL, Decimal("5.00"), Decimal("5.00")) == [
        (free_account(POOL), Decimal("-5.00")),
        (frozen_account(POOL), Decimal("5.00")),
    ]
    reason, detail = refusal(freeze_prepayment(POOL, Decimal("5.01"), Decimal("5.00")))
    assert reason == "insufficient_funds"
    assert "free balance 5.00" in detail


def test_taking_more_than_an_account_holds_is_refused() -> None:
    assert insufficient(held_account(POOL), Decimal("3.00"), Decimal("3.00")) is None
    reason, detail = refusal(insufficient(held_account(POOL), Decimal("3.01"), Decimal("3.00")))
    assert reason == "insufficient_funds"
    assert held_account(POOL) in detail and "3.00" in detail


# ---------------------------------------------------------------- the hash chain


def post_chain(splits: list[tuple[str, Split]], pool_id: str = POOL) -> list[PostedTransaction]:
    chain: list[PostedTransaction] = []
    prev = GENESIS
    for seq, (payment_id, split) in enumerate(splits, start=1):
        entries = tuple(split.entries(pool_id))
        inputs: dict[str, Any] = {
            "water_level_after": Decimal("900000.00"),
            "loan_balance": Decimal("800000.00"),
            "discount_rate": Decimal("0.8"),
            "rule_version": split.rule_version,
        }
        tx_hash = transaction_hash(
            prev,
            pool_id=pool_id,
            seq=seq,
            payment_id=payment_id,
            kind="settlement",
            entries=entries,
            inputs=inputs,
        )
        chain.append(
            PostedTransaction(
                pool_id, seq, payment_id, "settlement", entries, inputs, prev, tx_hash
            )
        )
        prev = tx_hash
    return chain


def seal(tx: PostedTransaction) -> PostedTransaction:
    """What a forger would do: recompute the edited transaction's own hash."""
    return dataclasses.replace(tx, hash=tx.recomputed_hash())


def seed_chain() -> list[PostedTransaction]:
    return post_chain(
        [
            (
                "pay-1",
                split_of(Decimal("100000.00"), [FunderPart("bank-a", Decimal("80000.00"), ZERO)]),
            ),
            ("pay-2", split_of(Decimal("10.00"), [], 30)),
            (
                "pay-3",
                split_of(
                    Decimal("5000.00"),
                    [FunderPart("bank-a", Decimal("4000.00"), Decimal("12.34"))],
                    15,
                ),
            ),
        ]
    )


chains = st.lists(payments(), min_size=1, max_size=6).map(
    lambda ps: post_chain([(f"pay-{i}", split_of(*p)) for i, p in enumerate(ps)])
)


@settings(max_examples=100, deadline=None)
@given(chains)
def test_an_intact_chain_verifies(chain: list[PostedTransaction]) -> None:
    assert verify_chain(chain) == []
    assert chain[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))


def test_the_empty_chain_verifies() -> None:
    assert verify_chain([]) == []


def test_the_hash_is_deterministic_and_depends_on_the_previous_hash() -> None:
    entries = ((frozen_account(POOL), Decimal("-1.00")), (free_account(POOL), Decimal("1.00")))
    args: dict[str, Any] = {
        "pool_id": POOL,
        "seq": 1,
        "payment_id": "p",
        "kind": "settlement",
        "entries": entries,
        "inputs": {"rate": Decimal("0.8")},
    }
    assert transaction_hash(GENESIS, **args) == transaction_hash(GENESIS, **args)
    assert len(transaction_hash(GENESIS, **args)) == 64
    assert transaction_hash(GENESIS, **args) != transaction_hash("1" * 64, **args)


def edit_entry(
    chain: list[PostedTransaction], index: int, line: int, change: Callable[[Decimal], Decimal]
) -> list[PostedTransaction]:
    tx = chain[index]
    entries = list(tx.entries)
    account, value = entries[line]
    entries[line] = (account, change(value))
    return [*chain[:index], dataclasses.replace(tx, entries=tuple(entries)), *chain[index + 1 :]]


@settings(max_examples=100, deadline=None)
@given(chains, st.data())
def test_editing_any_amount_by_one_fen_is_reported(
    chain: list[PostedTransaction], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(chain) - 1))
    line = data.draw(st.integers(0, len(chain[index].entries) - 1))
    delta = data.draw(st.sampled_from([FEN, -FEN]))
    problems = verify_chain(edit_entry(chain, index, line, lambda v: v + delta))
    assert any(f"seq {index + 1} " in p and "altered" in p for p in problems)
    assert any("not zero" in p for p in problems)


@settings(max_examples=100, deadline=None)
@given(chains, st.data())
def test_moving_a_fen_between_lines_keeps_the_balance_but_is_still_reported(
    chain: list[PostedTransaction], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(chain) - 1))
    line = data.draw(st.integers(1, len(chain[index].entries) - 1))
    # Take a fen from a receiving line and give it back to the frozen account: still balanced.
    edited = edit_entry(
        edit_entry(chain, index, line, lambda v: v - FEN), index, 0, lambda v: v + FEN
    )
    problems = verify_chain(edited)
    assert problems
    assert all("not zero" not in p for p in problems)
    assert any(f"seq {index + 1} " in p and "altered" in p for p in problems)


def test_the_same_amount_in_another_notation_hashes_alike_and_a_fen_more_does_not() -> None:
    """Hash format 2: entries enter as integer fen, so 10.0 and 10.00 are one value (was: two
    hashes for one amount); a one-fen edit is still reported."""
    chain = seed_chain()
    assert chain[1].entries[-1][1] == Decimal("9.97")  # pay-2: 10.00 less a 30 bps fee
    same = edit_entry(chain, 1, 0, lambda v: Decimal("-10.0"))
    assert verify_chain(same) == []
    edited = edit_entry(chain, 1, 0, lambda v: Decimal("-10.01"))
    problems = verify_chain(edited)
    assert (
        f"pool {POOL} seq 2 (settlement of pay-2): hash mismatch, the transaction was altered"
        in (problems)
    )


def test_the_hashed_bytes_are_canonical_fixed_point_and_tagged_with_their_format() -> None:
    entries = ((frozen_account(POOL), Decimal("-10.0")), (free_account(POOL), Decimal("10.00")))
    hashed = canonical_bytes(
        GENESIS,
        pool_id=POOL,
        seq=1,
        payment_id="p",
        kind="split",
        entries=entries,
        inputs={"discount_rate": Decimal("1E-8"), "line": Decimal("800000.0")},
    )
    text = hashed.decode()
    assert '"format":"poolfin-ledger/2"' in text
    assert '"discount_rate":"0.00000001"' in text and "E-8" not in text
    assert f'[["frozen:{POOL}",-1000],["free:{POOL}",1000]]' in text
    with pytest.raises(TypeError, match="float"):
        canonical_bytes(
            GENESIS,
            pool_id=POOL,
            seq=1,
            payment_id="p",
            kind="split",
            entries=entries,
            inputs={"rate": 0.8},
        )


def test_stored_hashed_bytes_that_differ_from_the_rows_are_reported() -> None:
    chain = seed_chain()
    tx = chain[0]
    stored = dataclasses.replace(tx, hashed=tx.recomputed_bytes())
    assert verify_chain([stored, *chain[1:]]) == []
    forged = dataclasses.replace(tx, hashed=tx.recomputed_bytes().replace(b"pay-1", b"pay-9"))
    assert any("stored hashed bytes" in p for p in verify_chain([forged, *chain[1:]]))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("water_level_after", Decimal("900000.01")),
        ("loan_balance", Decimal("800000.01")),
        ("discount_rate", Decimal("0.6")),
        ("rule_version", "split-v0"),
    ],
)
def test_editing_an_input_that_decided_the_split_is_reported(field: str, value: object) -> None:
    chain = seed_chain()
    tx = chain[2]
    edited = [*chain[:2], dataclasses.replace(tx, inputs={**tx.inputs, field: value})]
    assert any("seq 3 " in p and "altered" in p for p in verify_chain(edited))


@pytest.mark.parametrize("field", ["payment_id", "kind", "pool_id"])
def test_editing_what_a_transaction_is_about_is_reported(field: str) -> None:
    chain = seed_chain()
    forged: dict[str, Any] = {field: "forged"}
    edited = [chain[0], dataclasses.replace(chain[1], **forged), chain[2]]
    assert any("seq 2 " in p and "altered" in p for p in verify_chain(edited))


@settings(max_examples=100, deadline=None)
@given(chains.filter(lambda c: len(c) >= 2), st.data())
def test_resealing_an_edited_transaction_breaks_the_link_to_the_next(
    chain: list[PostedTransaction], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(chain) - 2))
    edited = list(chain)
    edited[index] = seal(dataclasses.replace(edited[index], payment_id="forged"))
    problems = verify_chain(edited)
    assert any(f"seq {index + 2} " in p and "prev_hash" in p for p in problems)


@settings(max_examples=100, deadline=None)
@given(chains.filter(lambda c: len(c) >= 2), st.data())
def test_reordering_transactions_is_reported(
    chain: list[PostedTransaction], data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(chain) - 2))
    j = data.draw(st.integers(i + 1, len(chain) - 1))
    reordered = list(chain)
    reordered[i], reordered[j] = reordered[j], reordered[i]
    problems = verify_chain(reordered)
    assert any("sequence gap" in p for p in problems)
    assert any("prev_hash" in p for p in problems)


@settings(max_examples=100, deadline=None)
@given(chains.filter(lambda c: len(c) >= 2), st.data())
def test_dropping_a_transaction_is_reported(
    chain: list[PostedTransaction], data: st.DataObject
) -> None:
    # Dropping the newest one is not visible from the chain alone (its head is not anchored);
    # any other is.
    index = data.draw(st.integers(0, len(chain) - 2))
    problems = verify_chain([*chain[:index], *chain[index + 1 :]])
    assert any(f"seq {index + 2} " in p and "sequence gap" in p for p in problems)
    assert any(f"seq {index + 2} " in p and "prev_hash" in p for p in problems)


@settings(max_examples=50, deadline=None)
@given(chains, st.integers(1, 3))
def test_dropping_the_newest_transactions_is_reported_against_the_accounts_head(
    chain: list[PostedTransaction], dropped: int
) -> None:
    head = (chain[-1].seq, chain[-1].hash)
    assert verify_chain(chain, head=head) == []
    shortened = chain[:-dropped] if dropped < len(chain) else []
    problems = verify_chain(shortened, head=head)
    assert len(problems) == 1 and "transactions were removed" in problems[0]
    assert f"head is seq {head[0]}" in problems[0]


def test_an_empty_account_matches_the_genesis_head() -> None:
    assert verify_chain([], head=(0, GENESIS)) == []


def test_renumbering_after_a_drop_is_still_reported() -> None:
    chain = seed_chain()
    forged = [chain[0], seal(dataclasses.replace(chain[2], seq=2))]
    problems = verify_chain(forged)
    assert problems == [
        f"pool {POOL} seq 2 (settlement of pay-3): prev_hash does not match "
        "the previous transaction"
    ]


def test_a_chain_not_starting_at_genesis_is_reported() -> None:
    chain = seed_chain()
    problems = verify_chain(chain[1:])
    assert any("seq 2 " in p and "sequence gap, expected 1" in p for p in problems)
    assert any("prev_hash" in p for p in problems)
