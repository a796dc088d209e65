"""funding-gateway: loan requests out to each funder's own topic, their answers back in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from services.funding_gateway import repository as repo
from services.funding_gateway.domain import (
    accept_response,
    check_contract_hash,
    contract_hash,
    disbursal_value_date,
    render_contract,
    render_investor_contract,
)
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected
from shared.inbox import Handler, UnitOfWork, dispatch
from shared.trust import not_the_party

SOURCE = "funding-gateway"


Uow = UnitOfWork[repo.GatewayBatch]


async def on_loan_requested(uow: Uow, request: m.LoanRequested) -> Rejected | None:
    """Render the loan's contract and send it to the supplier to sign; the funder is asked
    only once the supplier has signed (on_contract_signed)."""
    if await uow.state.request(uow.conn, request.request_id) is not None:
        return Rejected(m.Reason.INVALID_MESSAGE, f"request {request.request_id} was already sent")
    # Rendered from the terms as they are stored (the request's JSON), which is what `poolfin
    # contract verify` renders again: the same bytes whatever text its rate arrived in (a
    # rate is written canonically, "0.0435", and may have arrived as "0.04350000").
    contract = render_contract(m.LoanRequested.model_validate_json(request.model_dump_json()))
    digest = contract_hash(contract)
    uow.state.open(request, contract, digest)
    uow.emit(
        topics.FUNDING_CONTRACTS,
        m.new_event(
            m.ContractIssued,
            source=SOURCE,
            pool_id=request.pool_id,
            cause=request,
            request_id=request.request_id,
            supplier_id=request.supplier_id,
            funder_id=request.funder_id,
            contract_hash=digest,
            contract=contract,
        ),
    )
    return None


async def on_contract_signed(
    uow: Uow, signed: m.ContractSigned, raise_window: timedelta = timedelta(days=3)
) -> Rejected | None:
    request = await uow.state.request(uow.conn, signed.request_id)
    if request is None or request.pool_id != signed.pool_id:
        return Rejected(
            m.Reason.UNKNOWN_REQUEST,
            f"no loan request {signed.request_id} in pool {signed.pool_id}",
        )
    if refusal := not_the_party(
        uow.principal, request.supplier_id, "the supplier the contract names", signed
    ):
        return refusal
    if request.state != "awaiting_supplier":
        return Rejected(
            m.Reason.APPLICATION_NOT_PENDING,
            f"the contract of {signed.request_id} is signed already (request {request.state})",
        )
    if refusal := check_contract_hash(
        request.contract_hash, signed.contract_hash, request.supplier_id
    ):
        return refusal
    assert request.terms is not None  # a request awaiting a signature has its terms
    terms = m.LoanRequested.model_validate(request.terms)
    deadline = (
        datetime.now(UTC).replace(microsecond=0) + raise_window
        if terms.funder_kind == "platform"
        else None
    )
    uow.state.supplier_signed(request, uow.document, deadline)
    uow.emit(
        topics.funder_requests_topic(request.funder_id),
        m.new_event(
            m.FundingRequest,
            source=SOURCE,
            pool_id=request.pool_id,
            cause=signed,
            request_id=request.request_id,
            funder_id=request.funder_id,
            funder_kind=terms.funder_kind,
            raise_deadline=deadline,
            supplier_id=request.supplier_id,
            amount=request.amount,
            annual_interest_rate=terms.annual_interest_rate,
            tenor_days=terms.tenor_days,
            day_count=terms.day_count,
            requested_on=request.requested_on,
            contract=request.contract,
            contract_hash=request.contract_hash,
            supplier_signature=json.dumps(uow.document, sort_keys=True) if uow.document else None,
        ),
    )
    return None


async def on_funder_response(uow: Uow, response: m.FunderResponse) -> Rejected | None:
    request = await uow.state.request(uow.conn, response.request_id)
    if request is None:
        return Rejected(m.Reason.UNKNOWN_REQUEST, f"request {response.request_id} unknown")
    if request.funder_id != response.funder_id or request.pool_id != response.pool_id:
        return Rejected(
            m.Reason.UNKNOWN_REQUEST,
            f"request {response.request_id} was not sent to {response.funder_id} "
            f"for pool {response.pool_id}",
        )
    if refusal := not_the_party(
        uow.principal, request.funder_id, "the funder the request went to", response
    ):
        return refusal
    if request.state == "awaiting_supplier":
        return Rejected(
            m.Reason.CONTRACT_NOT_SIGNED,
            f"request {response.request_id} waits for the supplier to sign its contract; "
            "it was not sent to a funder yet",
        )
    amount = accept_response(request.state, response.decision, request.lent, response.amount)
    if isinstance(amount, Rejected):
        return amount
    if response.decision == m.FunderDecision.DISBURSED and request.platform:
        unsigned = sorted(i for i, c in request.contracts.items() if not c.signed)
        if unsigned or not request.contracts:
            return Rejected(
                m.Reason.CONTRACT_NOT_SIGNED,
                f"the contracts of {', '.join(unsigned) or 'its investors'} are not signed by "
                "both the investor and the supplier yet",
            )
    if response.decision != m.FunderDecision.REJECTED:
        # Approving or disbursing is signing the contract: the funder's signed answer carries
        # its hash.
        if refusal := check_contract_hash(
            request.contract_hash, response.contract_hash, response.funder_id
        ):
            return refusal
    value_date = response.value_date
    if response.decision == m.FunderDecision.DISBURSED:
        # Refused before anything is written: the request stays as it was, so the funder
        # can answer again with a date that may be booked.
        dated = disbursal_value_date(
            response.value_date, request.requested_day, uow.state.business_day()
        )
        if isinstance(dated, Rejected):
            return dated
        value_date = dated
    if response.decision != m.FunderDecision.REJECTED and uow.document is not None:
        uow.state.keep_signature(request, "funder_signature", uow.document)
    uow.state.answer(request, response, value_date)
    uow.emit(
        topics.FUNDING_RESULTS,
        m.new_event(
            m.FundingResult,
            source=SOURCE,
            pool_id=response.pool_id,
            cause=response,
            request_id=response.request_id,
            funder_id=response.funder_id,
            decision=response.decision,
            amount=amount,
            value_date=value_date,
            reason=response.reason,
            contract_hash=request.contract_hash
            if response.decision != m.FunderDecision.REJECTED
            else None,
            investors=_investors(request)
            if response.decision == m.FunderDecision.DISBURSED
            else [],
            partial=request.raised_amount is not None,
        ),
    )
    return None


def _issue_investor_contracts(uow: Uow, request: repo.Request, cause: m.Message) -> None:
    """The raise closed: each investor's share gets its own contract, for the investor and
    the supplier to sign."""
    for contract, issued in investor_contracts(request, cause):
        uow.state.issue_contract(request, contract)
        uow.emit(topics.FUNDING_CONTRACTS, issued)


def investor_contracts(
    request: repo.Request, cause: m.Message | None = None
) -> list[tuple[repo.InvestorContract, m.InvestorContractIssued]]:
    """Each investor's contract of a closed raise, and the message that issues it."""
    assert request.terms is not None and request.contract_hash is not None
    terms = m.LoanRequested.model_validate(request.terms)
    found = []
    for investor_id, amount in request.commitments.items():
        document = render_investor_contract(terms, investor_id, amount, request.contract_hash)
        contract = repo.InvestorContract(investor_id, amount, document, contract_hash(document))
        found.append(
            (
                contract,
                m.new_event(
                    m.InvestorContractIssued,
                    source=SOURCE,
                    pool_id=request.pool_id,
                    cause=cause,
                    request_id=request.request_id,
                    funder_id=request.funder_id,
                    supplier_id=request.supplier_id,
                    investor_id=investor_id,
                    amount=amount,
                    contract_hash=contract.contract_hash,
                    contract=document,
                ),
            )
        )
    return found


async def on_investor_contract_signed(
    uow: Uow, signed: m.InvestorContractSigned
) -> Rejected | None:
    """The investor or the supplier signs one investor's contract (its signed message is its
    signature over the hash). Each signs once."""
    request = await uow.state.request(uow.conn, signed.request_id)
    contract = request.contracts.get(signed.investor_id) if request is not None else None
    if request is None or request.pool_id != signed.pool_id or contract is None:
        return Rejected(
            m.Reason.UNKNOWN_REQUEST,
            f"no contract of investor {signed.investor_id} in raise {signed.request_id} of "
            f"pool {signed.pool_id}",
        )
    # Who signs: the proven signer's role (on a trusted path without one, the source it names).
    by_supplier = (
        uow.principal.role == m.PartyRole.SUPPLIER.value
        if uow.principal is not None
        else signed.source == request.supplier_id
    )
    signer = request.supplier_id if by_supplier else signed.investor_id
    what = "the supplier the contract names" if by_supplier else "the investor it names"
    if refusal := not_the_party(uow.principal, signer, what, signed):
        return refusal
    if refusal := check_contract_hash(contract.contract_hash, signed.contract_hash, signer):
        return refusal
    column = "supplier_signature" if by_supplier else "investor_signature"
    if getattr(contract, column) is not None:
        return Rejected(
            m.Reason.APPLICATION_NOT_PENDING,
            f"{signer} has signed the contract of {signed.investor_id} already",
        )
    uow.state.sign_investor_contract(
        request, signed.investor_id, column, uow.document or signed.model_dump(mode="json")
    )
    if all(c.signed for c in request.contracts.values()):
        uow.emit(
            topics.FUNDING_CONTRACTS,
            m.new_event(
                m.RaiseContracted,
                source=SOURCE,
                pool_id=request.pool_id,
                cause=signed,
                request_id=request.request_id,
                funder_id=request.funder_id,
                investors=_investors(request),
            ),
        )
    return None


def _investors(request: repo.Request) -> list[m.InvestorShare]:
    return [
        m.InvestorShare(investor_id=investor, amount=amount)
        for investor, amount in request.commitments.items()
    ]


async def on_investor_committed(uow: Uow, event: m.InvestorCommitted) -> Rejected | None:
    """A platform reports an investor's commitment to its raise. The raise closes when the
    commitments reach the amount exactly (then the platform may disburse); a commitment after
    the deadline, above what is left, or for a raise that is not open is refused."""
    request = await uow.state.request(uow.conn, event.request_id)
    if request is None or request.pool_id != event.pool_id or request.funder_id != event.funder_id:
        return Rejected(
            m.Reason.UNKNOWN_REQUEST,
            f"no raise {event.request_id} of {event.funder_id} in pool {event.pool_id}",
        )
    if refusal := not_the_party(uow.principal, request.funder_id, "the raising platform", event):
        return refusal
    if request.state != "raising":
        return Rejected(
            m.Reason.RAISE_NOT_OPEN, f"raise {event.request_id} is {request.state}, not raising"
        )
    if request.raise_deadline is not None and datetime.now(UTC) >= request.raise_deadline:
        return Rejected(
            m.Reason.RAISE_NOT_OPEN,
            f"raise {event.request_id} closed at {request.raise_deadline.isoformat()}",
        )
    if event.investor_id in request.commitments:
        return Rejected(
            m.Reason.INVALID_MESSAGE,
            f"investor {event.investor_id} has committed to {event.request_id} already",
        )
    left = request.amount - request.committed
    if event.amount > left:
        return Rejected(
            m.Reason.EXCEEDS_RAISE,
            f"{event.investor_id} commits {event.amount}; {left} of {request.amount} is left",
        )
    uow.state.commit_investor(request, event)
    if request.state == "raised":
        _issue_investor_contracts(uow, request, event)
        uow.emit(
            topics.FUNDING_RESULTS,
            m.new_event(
                m.FundingResult,
                source=SOURCE,
                pool_id=request.pool_id,
                cause=event,
                request_id=request.request_id,
                funder_id=request.funder_id,
                decision=m.FunderDecision.APPROVED,
                amount=request.amount,
                contract_hash=request.contract_hash,
                investors=_investors(request),
            ),
        )
    return None


def make_handler(raise_window_s: float = 3 * 86400) -> Handler:
    window = timedelta(seconds=raise_window_s)

    async def on_contract_signed_(uow: Uow, signed: m.ContractSigned) -> Rejected | None:
        return await on_contract_signed(uow, signed, window)

    return dispatch(
        {
            m.LoanRequested: on_loan_requested,
            m.ContractSigned: on_contract_signed_,
            m.FunderResponse: on_funder_response,
            m.InvestorCommitted: on_investor_committed,
            m.InvestorContractSigned: on_investor_contract_signed,
        }
    )


handle = make_handler()
