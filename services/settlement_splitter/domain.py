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


# The ledger hash format (invariant 7). Version 2: one serializer makes the hashed bytes, and
# those exact bytes are stored beside the transaction. Entry amounts enter as integer fen (so
# 10.0 and 10.00 hash alike), every other Decimal as normalised fixed-point text (a rate of
# 1E-8 enters as "0.00000001"), keys sorted, no floats. Version 1 (exact decimal text, inputs
# hashed by one serializer and stored by another) is still verified for old rows.
HASH_FORMAT = "poolfin-ledger/2"
LEGACY_FORMAT = "poolfin-ledger/1"


def fixed_point(value: Decimal) -> str:
    """A Decimal as plain fixed-point text, the same for every way of writing one value."""
    if not value.is_finite():
        raise TypeError(f"{value} cannot enter a ledger hash")
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def in_fen(amount: Decimal) -> int | str:
    """An entry's amount as integer fen; an amount that is not whole fen (an edit) stays
    text, so it can never hash like a real entry."""
    cents = amount * 100
    return int(cents) if cents == cents.to_integral_value() else fixed_point(amount)


def canonical_value(value: Any) -> Any:
    """The JSON-native form of a hash input: Decimals as fixed-point text, dates as ISO text."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, Decimal):
        return fixed_point(value)
    if isinstance(value, float):
        raise TypeError("a float cannot enter a ledger hash; use a Decimal")
    if isinstance(value, Mapping):
        return {str(k): canonical_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical_value(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot enter a ledger hash")


def canonical_bytes(
    prev_hash: str,
    *,
    pool_id: str,
    seq: int,
    payment_id: str,
    kind: str,
    entries: Sequence[tuple[str, Decimal]],
    inputs: Mapping[str, Any],
) -> bytes:
    """The exact bytes a transaction's hash is taken over (and stored as)."""
    return encode_canonical(
        canonical_body(
            prev_hash,
            pool_id=pool_id,
            seq=seq,
            payment_id=payment_id,
            kind=kind,
            entries=entries,
            inputs=inputs,
        )
    )


def canonical_body(
    prev_hash: str,
    *,
    pool_id: str,
    seq: int,
    payment_id: str,
    kind: str,
    entries: Sequence[tuple[str, Decimal]],
    inputs: Mapping[str, Any],
) -> dict[str, Any]:
    """What a transaction's hash is taken over, JSON-native (`encode_canonical` makes the
    bytes); its "inputs" are what the ledger row stores."""
    return {
        "format": HASH_FORMAT,
        "pool_id": pool_id,
        "seq": seq,
        "payment_id": payment_id,
        "kind": kind,
        "entries": [[account, in_fen(amount)] for account, amount in entries],
        "inputs": canonical_value(inputs),
        "prev": prev_hash,
    }


def encode_canonical(body: Mapping[str, Any]) -> bytes:
    """The one serializer of hashed bytes: sorted keys, no spaces, UTF-8."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


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
    return hashlib.sha256(
        canonical_bytes(
            prev_hash,
            pool_id=pool_id,
            seq=seq,
            payment_id=payment_id,
            kind=kind,
            entries=entries,
            inputs=inputs,
        )
    ).hexdigest()


def _legacy_hash(tx: PostedTransaction) -> str:
    """Format 1, for rows written before format 2: exact decimal text, sorted keys."""

    def default(obj: object) -> str:
        if isinstance(obj, Decimal):
            return money_text(obj)
        raise TypeError(f"{type(obj).__name__} cannot enter a ledger hash")

    body = json.dumps(
        {
            "pool_id": tx.pool_id,
            "seq": tx.seq,
            "payment_id": tx.payment_id,
            "kind": tx.kind,
            "entries": [[account, money_text(amount)] for account, amount in tx.entries],
            "inputs": tx.inputs,
            "prev": tx.prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=default,
        ensure_ascii=False,
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
    format: str = HASH_FORMAT
    # The bytes that were hashed, as stored (format 2).
    hashed: bytes | None = None

    def recomputed_bytes(self) -> bytes:
        return canonical_bytes(
            self.prev_hash,
            pool_id=self.pool_id,
            seq=self.seq,
            payment_id=self.payment_id,
            kind=self.kind,
            entries=self.entries,
            inputs=self.inputs,
        )

    def recomputed_hash(self) -> str:
        """The hash its content and link call for; differs from `hash` once anything is edited."""
        if self.format == LEGACY_FORMAT:
            return _legacy_hash(self)
        return hashlib.sha256(self.recomputed_bytes()).hexdigest()


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
        if tx.format not in (HASH_FORMAT, LEGACY_FORMAT):
            problems.append(f"{where}: unknown hash format {tx.format!r}")
        elif tx.recomputed_hash() != tx.hash:
            problems.append(f"{where}: hash mismatch, the transaction was altered")
        elif tx.hashed is not None and tx.format == HASH_FORMAT:
            if tx.hashed != tx.recomputed_bytes():
                problems.append(f"{where}: the stored hashed bytes differ from its rows")
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
