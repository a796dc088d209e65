"""funding-gateway's rules: which funder answers may move a request where, and on which
value date a disbursal may be booked. Pure."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from shared.contracts.codec import Rejected
from shared.contracts.messages import FunderDecision, Reason

# From a state, the answers a funder may still give. A bank may disburse at once; an investor
# platform first approves (lists the asset), raises the money, then disburses.
ALLOWED: dict[str, frozenset[FunderDecision]] = {
    "sent": frozenset(FunderDecision),
    "approved": frozenset({FunderDecision.DISBURSED, FunderDecision.REJECTED}),
    "rejected": frozenset(),
    "disbursed": frozenset(),
}


def accept_response(
    state: str, decision: FunderDecision, requested: Decimal, answered: Decimal | None
) -> Decimal | Rejected:
    """Check a funder's answer against the request: the amount it stands for, or its refusal."""
    if decision not in ALLOWED[state]:
        return Rejected(
            Reason.APPLICATION_NOT_PENDING,
            f"request is {state}; a '{decision.value}' answer is not accepted now",
        )
    if decision == FunderDecision.DISBURSED and answered is not None and answered != requested:
        return Rejected(
            Reason.AMOUNT_MISMATCH, f"disbursed {answered} but {requested} was requested"
        )
    return requested


def disbursal_value_date(
    value_date: date | None, requested_day: date | None, today: date
) -> date | Rejected:
    """A disbursal's value date (issue 8): the funder's, or today's business day when it gives
    none. Interest runs from it, so it may not precede the business day of the request (money
    is not lent before it was asked for) nor lie after today (money not paid out yet)."""
    when = value_date or today
    if requested_day is not None and when < requested_day:
        return Rejected(
            Reason.INVALID_DATE,
            f"value date {when} is before {requested_day}, the business day of the request",
        )
    if when > today:
        return Rejected(
            Reason.INVALID_DATE, f"value date {when} is after today's business day {today}"
        )
    return when
