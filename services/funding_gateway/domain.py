"""funding-gateway's rules: which funder answers may move a request where. Pure."""

from __future__ import annotations

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
