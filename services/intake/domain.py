"""intake's rules: is an ERP event acceptable for the pool it names? Pure, no I/O.

A slip is open until it is paid in full, credited in full or cancelled with a reason (issue
8). A payment is applied to the slips it names in their order, each up to its open amount.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from shared.contracts import messages as m
from shared.contracts.codec import Rejected
from shared.contracts.messages import AdjustmentKind, Reason

ZERO = Decimal("0.00")
# How a slip was closed: paid in full, credited in full, or cancelled.
CLOSED = {"paid": Reason.RECEIVABLE_ALREADY_PAID, "credited": Reason.RECEIVABLE_CLOSED}


@dataclass(frozen=True, slots=True)
class Receivable:
    receivable_id: str
    pool_id: str
    amount: Decimal  # face value
    state: str  # 'open' | 'paid' | 'credited' | 'cancelled'
    open_amount: Decimal | None = None  # None: the whole face value (an open slip as loaded)
    due_on: date | None = None
    disputed: bool = False
    dispute_id: str | None = None
    payment_id: str | None = None

    @property
    def open(self) -> Decimal:
        if self.state != "open":
            return ZERO
        return self.amount if self.open_amount is None else self.open_amount


@dataclass(frozen=True, slots=True)
class Allocation:
    receivable_id: str
    amount: Decimal
    open_after: Decimal
    due_on: date | None


def _closed(receivable: Receivable) -> Rejected:
    reason = CLOSED.get(receivable.state, Reason.RECEIVABLE_CLOSED)
    return Rejected(reason, f"receivable {receivable.receivable_id} is {receivable.state}")


def _of_pool(
    pool_id: str, receivable_id: str, known: Mapping[str, Receivable]
) -> Receivable | Rejected:
    receivable = known.get(receivable_id)
    if receivable is None:
        return Rejected(Reason.UNKNOWN_RECEIVABLE, f"receivable {receivable_id} is not known")
    if receivable.pool_id != pool_id:
        return Rejected(
            Reason.RECEIVABLE_NOT_IN_POOL,
            f"receivable {receivable_id} belongs to pool {receivable.pool_id}, not {pool_id}",
        )
    if receivable.state != "open":
        return _closed(receivable)
    return receivable


def allocate_payment(
    pool_id: str, amount: Decimal, receivable_ids: Sequence[str], known: Mapping[str, Receivable]
) -> list[Allocation] | Rejected:
    """What a payment pays on each slip it names, or its refusal (a value) for the first
    problem found.

    The slips must exist, belong to this pool and be open, each named once. The payment is
    applied to them in the order named, each up to its open amount; a slip paid in part stays
    open for the rest. A payment larger than what the slips have open is refused (money the
    pool is not owed has no place to go).
    """
    if len(set(receivable_ids)) != len(receivable_ids):
        return Rejected(Reason.INVALID_MESSAGE, "a receivable is named twice in the payment")
    slips = []
    for receivable_id in receivable_ids:
        receivable = _of_pool(pool_id, receivable_id, known)
        if isinstance(receivable, Rejected):
            return receivable
        slips.append(receivable)
    open_total = sum((s.open for s in slips), ZERO)
    if amount > open_total:
        return Rejected(
            Reason.PAYMENT_EXCEEDS_RECEIVABLES,
            f"payment {amount} exceeds the {open_total} open on the receivables it names",
        )
    left = amount
    allocations = []
    for slip in slips:
        paid = min(left, slip.open)
        if paid > 0:
            allocations.append(Allocation(slip.receivable_id, paid, slip.open - paid, slip.due_on))
        left -= paid
    return allocations


def unseen_slips(
    pool_id: str, receivable_ids: Sequence[str], known: Mapping[str, Receivable]
) -> list[str] | Rejected:
    """The slips a payment names that are not known yet (it may wait for them), or its refusal
    for a problem no slip still to come can cure: a slip named twice, a known one of another
    pool or closed. Amounts are checked once every slip is known (`allocate_payment`)."""
    if len(set(receivable_ids)) != len(receivable_ids):
        return Rejected(Reason.INVALID_MESSAGE, "a receivable is named twice in the payment")
    unseen = []
    for receivable_id in receivable_ids:
        if receivable_id not in known:
            unseen.append(receivable_id)
        elif isinstance(refusal := _of_pool(pool_id, receivable_id, known), Rejected):
            return refusal
    return unseen


def after_payment(receivable: Receivable, allocation: Allocation, payment_id: str) -> Receivable:
    if allocation.open_after > 0:
        return dataclasses.replace(receivable, open_amount=allocation.open_after)
    return dataclasses.replace(receivable, open_amount=ZERO, state="paid", payment_id=payment_id)


@dataclass(frozen=True, slots=True)
class Adjusted:
    receivable: Receivable  # after
    kind: AdjustmentKind
    change: Decimal  # of the pool's level
    reason: str
    reference: str | None


def adjust(pool_id: str, event: m.Message, known: Mapping[str, Receivable]) -> Adjusted | Rejected:
    """A credit note, cancellation, amendment or dispute on an open slip of the pool."""
    receivable_id: str = getattr(event, "receivable_id")  # noqa: B009 - every adjustment has one
    slip = _of_pool(pool_id, receivable_id, known)
    if isinstance(slip, Rejected):
        return slip
    if isinstance(event, m.CreditNoteIssued):
        if event.amount > slip.open:
            return Rejected(
                Reason.EXCEEDS_OPEN_AMOUNT,
                f"credit note {event.amount} exceeds the {slip.open} open on {receivable_id}",
            )
        left = slip.open - event.amount
        after = dataclasses.replace(
            slip, open_amount=left, state="open" if left > 0 else "credited"
        )
        return Adjusted(
            after, AdjustmentKind.CREDIT_NOTE, -event.amount, event.reason, event.credit_note_id
        )
    if isinstance(event, m.SlipCancelled):
        after = dataclasses.replace(slip, open_amount=ZERO, state="cancelled")
        return Adjusted(after, AdjustmentKind.CANCELLATION, -slip.open, event.reason, None)
    if isinstance(event, m.SlipAmended):
        settled = slip.amount - slip.open  # paid and credited so far
        if event.amount == slip.amount:
            return Rejected(
                Reason.INVALID_MESSAGE, f"{receivable_id} already has the amount {event.amount}"
            )
        if event.amount <= settled:
            return Rejected(
                Reason.EXCEEDS_OPEN_AMOUNT,
                f"{receivable_id} cannot be amended to {event.amount}: {settled} of it is "
                "already paid or credited (cancel it or credit it instead)",
            )
        change = event.amount - slip.amount
        after = dataclasses.replace(slip, amount=event.amount, open_amount=slip.open + change)
        return Adjusted(after, AdjustmentKind.AMENDMENT, change, event.reason, None)
    if isinstance(event, m.DisputeOpened):
        if slip.disputed:
            return Rejected(
                Reason.DISPUTE_STATE,
                f"{receivable_id} is already disputed ({slip.dispute_id})",
            )
        after = dataclasses.replace(slip, disputed=True, dispute_id=event.dispute_id)
        return Adjusted(after, AdjustmentKind.DISPUTE_OPENED, ZERO, event.reason, event.dispute_id)
    if isinstance(event, m.DisputeClosed):
        if not slip.disputed or slip.dispute_id != event.dispute_id:
            return Rejected(
                Reason.DISPUTE_STATE,
                f"{receivable_id} has no open dispute {event.dispute_id}",
            )
        after = dataclasses.replace(slip, disputed=False, dispute_id=None)
        return Adjusted(after, AdjustmentKind.DISPUTE_CLOSED, ZERO, event.reason, event.dispute_id)
    return Rejected(Reason.UNKNOWN_TYPE, f"{event.type} is not a slip adjustment")
