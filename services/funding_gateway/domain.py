"""funding-gateway's rules: which funder answers may move a request where, and on which
value date a disbursal may be booked. Pure."""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal

from shared.contracts.codec import Rejected
from shared.contracts.messages import FunderDecision, LoanRequested, Reason

# From a state, the answers a funder may still give. A bank may disburse at once; an investor
# platform first approves (lists the asset), raises the money, then disburses.
ALLOWED: dict[str, frozenset[FunderDecision]] = {
    "awaiting_supplier": frozenset(),  # the funder has not been asked yet
    "sent": frozenset(FunderDecision),
    "approved": frozenset({FunderDecision.DISBURSED, FunderDecision.REJECTED}),
    # A platform's raise: it may give up while raising, and disburses once fully committed.
    "raising": frozenset({FunderDecision.REJECTED}),
    "raised": frozenset({FunderDecision.DISBURSED, FunderDecision.REJECTED}),
    "expired": frozenset(),
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


CONTRACT_FORMAT = "poolfin loan contract, format 1"


def render_contract(request: LoanRequested) -> str:
    """The loan contract as a plain UTF-8 document: the same request always renders the same
    bytes, so anyone holding the request can re-render it and check the signed hash."""
    lines = [
        CONTRACT_FORMAT,
        f"request: {request.request_id}",
        f"pool: {request.pool_id}",
        f"borrower (supplier): {request.supplier_id}",
        f"lender (funder): {request.funder_id}",
        f"principal: CNY {request.amount}",
        f"annual interest rate: {request.annual_interest_rate} ({request.day_count.value})",
        f"tenor: {request.tenor_days} days from the disbursal's value date",
        f"requested on: {request.requested_on or 'the day the request was sent'}",
        "security: the borrower's receivables pool "
        f"{request.pool_id}, every receivable its core enterprise owes it now and later"
        + (
            f" (its level at the request: CNY {request.water_level})"
            if request.water_level is not None
            else ""
        )
        + ". The loans against it stay within the pool's level times its discount rate and "
        "its credit line; the core enterprise's payments into the controlled account repay "
        "them first.",
        "signatures: the borrower signs this document's SHA-256 (ContractSigned, by its "
        "registered key); the lender's approval or disbursal carries the same hash under "
        "its key. The loan opens only with both.",
    ]
    return "\n".join(lines) + "\n"


def contract_hash(contract: str) -> str:
    return hashlib.sha256(contract.encode()).hexdigest()


def check_contract_hash(expected: str | None, given: str | None, who: str) -> Rejected | None:
    """A signer's hash must be the contract's: None, or the refusal naming both."""
    if expected is None:  # a request sent before contracts existed
        return None
    if given is None:
        return Rejected(
            Reason.CONTRACT_NOT_SIGNED,
            f"{who} must sign the loan contract: carry contract_hash {expected}",
        )
    if given != expected:
        return Rejected(
            Reason.CONTRACT_MISMATCH,
            f"{who} signed contract_hash {given}, but the contract's is {expected}",
        )
    return None


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


def render_investor_contract(
    request: LoanRequested, investor_id: str, amount: Decimal, platform_contract_hash: str
) -> str:
    """One investor's contract for its share of a platform's loan: the same request and
    investor always render the same bytes."""
    lines = [
        "poolfin investor loan contract, format 1",
        f"request: {request.request_id}",
        f"pool: {request.pool_id}",
        f"borrower (supplier): {request.supplier_id}",
        f"platform: {request.funder_id}",
        f"lender (investor): {investor_id}",
        f"principal lent by this investor: CNY {amount} of CNY {request.amount}",
        f"annual interest rate: {request.annual_interest_rate} ({request.day_count.value})",
        f"tenor: {request.tenor_days} days from the disbursal's value date",
        f"the loan's contract: sha256 {platform_contract_hash}",
        "repayment: every repayment of the loan is divided among its investors in proportion "
        "to what each lent, to the fen, and paid to each.",
        "signatures: the investor and the borrower each sign this document's SHA-256 "
        "(InvestorContractSigned, by their registered keys). The loan is disbursed only once "
        "every investor's contract carries both.",
    ]
    return "\n".join(lines) + "\n"
