"""intake's rules: is an ERP event acceptable for the pool it names? Pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from shared.contracts.codec import Rejected
from shared.contracts.messages import Reason


@dataclass(frozen=True, slots=True)
class Receivable:
    receivable_id: str
    pool_id: str
    amount: Decimal
    state: str  # 'open' | 'paid'


def check_payment(
    pool_id: str, amount: Decimal, receivable_ids: Sequence[str], known: Mapping[str, Receivable]
) -> Decimal | Rejected:
    """The amount written off by a payment, or its refusal (a value) for the first problem found.

    The payment must name receivables that exist, belong to this pool and are open, each once,
    and may not exceed what it writes off (money the pool never owed has no place to go).
    """
    if len(set(receivable_ids)) != len(receivable_ids):
        return Rejected(Reason.INVALID_MESSAGE, "a receivable is named twice in the payment")
    written_off = Decimal("0.00")
    for receivable_id in receivable_ids:
        receivable = known.get(receivable_id)
        if receivable is None:
            return Rejected(Reason.UNKNOWN_RECEIVABLE, f"receivable {receivable_id} is not known")
        if receivable.pool_id != pool_id:
            return Rejected(
                Reason.RECEIVABLE_NOT_IN_POOL,
                f"receivable {receivable_id} belongs to pool {receivable.pool_id}, not {pool_id}",
            )
        if receivable.state != "open":
            return Rejected(
                Reason.RECEIVABLE_ALREADY_PAID, f"receivable {receivable_id} is already paid"
            )
        written_off += receivable.amount
    if amount > written_off:
        return Rejected(
            Reason.PAYMENT_EXCEEDS_RECEIVABLES,
            f"payment {amount} exceeds the {written_off} it writes off",
        )
    return written_off
