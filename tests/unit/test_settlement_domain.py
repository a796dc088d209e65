"""The settlement split (invariant 1, conservation) and the hash chain (invariant 7)."""

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
    PostedTransaction,
    Split,
    canonical_bytes,
    free_account,
    frozen_account,
    funder_account,
    split_payment,
    transaction_hash,
    verify_chain,
)
from shared.money import FEN, ZERO

POOL = "ce-1:sup-1"

fen_amounts = st.integers(min_value=0, max_value=10**11).map(lambda c: Decimal(c) * FEN)


@st.composite
def payments(draw: st.DrawFn) -> tuple[Decimal, list[tuple[str, Decimal, Decimal]], int]:
    """A payment, the repayments credit instructed out of it (never more than it), a fee."""
    amount = Decimal(draw(st.integers(1, 10**11))) * FEN
    repayments = []
    left = amount
    for _ in range(draw(st.integers(0, 4))):
        principal = Decimal(draw(st.integers(0, int(left / FEN)))) * FEN
        interest = Decimal(draw(st.integers(0, int((left - principal) / FEN)))) * FEN
        repayments.append(
            (draw(st.sampled_from(["bank-a", "bank-b", "p2p-c"])), principal, interest)
        )
        left -= principal + interest
    return amount, repayments, draw(st.integers(0, 10_000))


# ---------------------------------------------------------------- the split


@settings(max_examples=300, deadline=None)
@given(payments())
def test_parts_of_a_settlement_sum_exactly_to_the_payment(
    payment: tuple[Decimal, list[tuple[str, Decimal, Decimal]], int],
) -> None:
    amount, repayments, fee_bps = payment
    split = split_payment(amount, repayments, fee_bps)
    assert split.principal + split.interest + split.fees + split.released == amount
    assert split.principal == sum((p for _, p, _ in repayments), ZERO)
    assert split.interest == sum((i for _, _, i in repayments), ZERO)
    assert sum(split.to_funders.values(), ZERO) == split.principal + split.interest
    for part in (split.fees, split.released):
        assert part >= 0
        assert part == part.quantize(FEN)


@settings(max_examples=300, deadline=None)
@given(payments())
def test_ledger_entries_of_a_split_balance_to_zero(
    payment: tuple[Decimal, list[tuple[str, Decimal, Decimal]], int],
) -> None:
    amount, repayments, fee_bps = payment
    entries = split_payment(amount, repayments, fee_bps).entries(POOL)
    assert sum((value for _, value in entries), ZERO) == 0
    assert entries[0] == (frozen_account(POOL), -amount)  # the frozen money moves out, all of it
    assert all(value > 0 for _, value in entries[1:])  # zero parts are not written
    assert len({account for account, _ in entries}) == len(entries)


@settings(max_examples=300, deadline=None)
@given(payments())
def test_fee_is_its_basis_points_of_the_remainder_to_within_a_fen(
    payment: tuple[Decimal, list[tuple[str, Decimal, Decimal]], int],
) -> None:
    amount, repayments, fee_bps = payment
    split = split_payment(amount, repayments, fee_bps)
    remainder = amount - split.principal - split.interest
    assert abs(split.fees - remainder * fee_bps / 10_000) < FEN
    assert split.rule_version.endswith(f"fee-bps={fee_bps}")


def test_seed_split_of_10_wan_with_8_wan_to_the_funder_releases_2_wan() -> None:
    split = split_payment(Decimal("100000.00"), [("bank-a", Decimal("80000.00"), ZERO)])
    assert split.to_funders == {"bank-a": Decimal("80000.00")}
    assert split.fees == ZERO
    assert split.released == Decimal("20000.00")
    assert split.entries(POOL) == [
        (frozen_account(POOL), Decimal("-100000.00")),
        (funder_account("bank-a"), Decimal("80000.00")),
        (free_account(POOL), Decimal("20000.00")),
    ]


def test_nothing_to_repay_releases_everything() -> None:
    split = split_payment(Decimal("10.00"), [])
    assert (split.principal, split.interest, split.released) == (ZERO, ZERO, Decimal("10.00"))
    assert split.entries(POOL) == [
        (frozen_account(POOL), Decimal("-10.00")),
        (free_account(POOL), Decimal("10.00")),
    ]


def test_whole_payment_to_the_funder_releases_nothing_and_writes_no_zero_line() -> None:
    split = split_payment(Decimal("10.00"), [("bank-a", Decimal("9.50"), Decimal("0.50"))], 30)
    assert split.released == ZERO and split.fees == ZERO
    assert [account for account, _ in split.entries(POOL)] == [
        frozen_account(POOL),
        funder_account("bank-a"),
    ]


def test_repayments_of_one_funder_are_added_together() -> None:
    split = split_payment(
        Decimal("100.00"),
        [
            ("bank-a", Decimal("10.00"), Decimal("1.00")),
            ("bank-b", Decimal("20.00"), ZERO),
            ("bank-a", Decimal("5.00"), Decimal("0.10")),
        ],
    )
    assert split.to_funders == {"bank-a": Decimal("16.10"), "bank-b": Decimal("20.00")}
    assert split.released == Decimal("63.90")


def test_fee_in_basis_points_is_taken_from_what_is_left_after_repayment() -> None:
    # 30 bps of the 100.00 left after repaying 900.00 is 0.30.
    split = split_payment(Decimal("1000.00"), [("bank-a", Decimal("900.00"), ZERO)], 30)
    assert split.fees == Decimal("0.30")
    assert split.released == Decimal("99.70")
    assert (PLATFORM_FEES, Decimal("0.30")) in split.entries(POOL)


def test_full_fee_leaves_nothing_released() -> None:
    split = split_payment(Decimal("10.00"), [], 10_000)
    assert (split.fees, split.released) == (Decimal("10.00"), ZERO)


def test_repayment_exceeding_the_payment_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        split_payment(Decimal("10.00"), [("bank-a", Decimal("10.00"), Decimal("0.01"))])


@pytest.mark.parametrize("fee_bps", [-1, 10_001])
def test_fee_outside_0_to_10000_bps_is_refused(fee_bps: int) -> None:
    with pytest.raises(ValueError):
        split_payment(Decimal("10.00"), [], fee_bps)


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
            ("pay-1", split_payment(Decimal("100000.00"), [("bank-a", Decimal("80000.00"), ZERO)])),
            ("pay-2", split_payment(Decimal("10.00"), [], 30)),
            (
                "pay-3",
                split_payment(
                    Decimal("5000.00"), [("bank-a", Decimal("4000.00"), Decimal("12.34"))], 15
                ),
            ),
        ]
    )


chains = st.lists(payments(), min_size=1, max_size=6).map(
    lambda ps: post_chain([(f"pay-{i}", split_payment(*p)) for i, p in enumerate(ps)])
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
