"""The settlement's money rules, pure: the split of a frozen payment and the hash chain.

Seed paper step 7–8: freeze first, decide, repay the funder, then unfreeze the rest. Split
article: each split recorded traceably and tamper-evidently.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shared.money import ZERO, largest_remainder_split, money_text

GENESIS = "0" * 64
FULL_BPS = 10_000


def buyer_account(core_enterprise_id: str) -> str:
    return f"buyer:{core_enterprise_id}"


def frozen_account(pool_id: str) -> str:
    return f"frozen:{pool_id}"


def free_account(pool_id: str) -> str:
    return f"free:{pool_id}"


def funder_account(funder_id: str) -> str:
    return f"funder:{funder_id}"


PLATFORM_FEES = "platform:fees"


@dataclass(frozen=True, slots=True)
class Split:
    """Where a payment of `amount` goes. `parts` sum exactly to `amount`."""

    amount: Decimal
    to_funders: dict[str, Decimal]
    principal: Decimal
    interest: Decimal
    fees: Decimal
    released: Decimal
    rule_version: str

    def entries(self, pool_id: str) -> list[tuple[str, Decimal]]:
        """The ledger lines that move the frozen money out (zero parts are not written)."""
        lines = [(frozen_account(pool_id), -self.amount)]
        lines += [(funder_account(f), v) for f, v in sorted(self.to_funders.items()) if v]
        if self.fees:
            lines.append((PLATFORM_FEES, self.fees))
        if self.released:
            lines.append((free_account(pool_id), self.released))
        return lines


def split_payment(
    amount: Decimal, repayments: Iterable[tuple[str, Decimal, Decimal]], fee_bps: int = 0
) -> Split:
    """Split a frozen payment: funders first (principal + interest, as instructed), then the
    remainder by the rule's shares (platform fee in basis points, the rest to the supplier),
    by largest remainder so that the parts sum to the cent."""
    to_funders: dict[str, Decimal] = {}
    principal = interest = ZERO
    for funder_id, part_principal, part_interest in repayments:
        to_funders[funder_id] = to_funders.get(funder_id, ZERO) + part_principal + part_interest
        principal += part_principal
        interest += part_interest
    remainder = amount - principal - interest
    if remainder < 0:
        raise ValueError(f"instructed repayment {principal + interest} exceeds payment {amount}")
    shares = largest_remainder_split(
        remainder, [("fees", fee_bps), ("released", FULL_BPS - fee_bps)]
    )
    return Split(
        amount,
        to_funders,
        principal,
        interest,
        shares["fees"],
        shares["released"],
        rule_version=f"split-v1/fee-bps={fee_bps}",
    )


def canonical(value: Any) -> str:
    """JSON with sorted keys and amounts as their exact decimal text (never a float)."""

    def default(obj: object) -> str:
        if isinstance(obj, Decimal):
            return money_text(obj)
        raise TypeError(f"{type(obj).__name__} cannot enter a ledger hash")

    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), default=default, ensure_ascii=False
    )


def transaction_hash(
    prev_hash: str,
    *,
    pool_id: str,
    seq: int,
    payment_id: str,
    kind: str,
    entries: Sequence[tuple[str, Decimal]],
    inputs: Mapping[str, Any],
) -> str:
    body = canonical(
        {
            "pool_id": pool_id,
            "seq": seq,
            "payment_id": payment_id,
            "kind": kind,
            "entries": [[account, money_text(amount)] for account, amount in entries],
            "inputs": inputs,
            "prev": prev_hash,
        }
    )
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PostedTransaction:
    pool_id: str
    seq: int
    payment_id: str
    kind: str
    entries: tuple[tuple[str, Decimal], ...]
    inputs: Mapping[str, Any]
    prev_hash: str
    hash: str

    def recomputed_hash(self) -> str:
        """The hash its content and link call for; differs from `hash` once anything is edited."""
        return transaction_hash(
            self.prev_hash,
            pool_id=self.pool_id,
            seq=self.seq,
            payment_id=self.payment_id,
            kind=self.kind,
            entries=self.entries,
            inputs=self.inputs,
        )


def verify_chain(
    transactions: Sequence[PostedTransaction], head: tuple[int, str] | None = None
) -> list[str]:
    """Problems found in one pool's chain (ordered by seq); empty when it is intact.

    `head` is the (seq, hash) the account recorded as its latest: without it, deleting the
    newest transactions would leave a shorter chain that still verifies.
    """
    problems: list[str] = []
    prev = GENESIS
    for expected_seq, tx in enumerate(transactions, start=1):
        where = f"pool {tx.pool_id} seq {tx.seq} ({tx.kind} of {tx.payment_id})"
        if tx.seq != expected_seq:
            problems.append(f"{where}: sequence gap, expected {expected_seq}")
        if tx.prev_hash != prev:
            problems.append(f"{where}: prev_hash does not match the previous transaction")
        total = sum((amount for _, amount in tx.entries), ZERO)
        if total != 0:
            problems.append(f"{where}: entries sum to {total}, not zero")
        if tx.recomputed_hash() != tx.hash:
            problems.append(f"{where}: hash mismatch, the transaction was altered")
        prev = tx.hash
    if head is not None:
        last_seq = transactions[-1].seq if transactions else 0
        if (last_seq, prev) != head:
            problems.append(
                f"pool {transactions[0].pool_id if transactions else '?'}: chain ends"
                f" at seq {last_seq} but the account's head is seq {head[0]};"
                " transactions were removed or the head was altered"
            )
    return problems
