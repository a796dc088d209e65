"""funding-gateway: loan requests out to each funder's own topic, their answers back in."""

from __future__ import annotations

from services.funding_gateway import repository as repo
from services.funding_gateway.domain import accept_response, disbursal_value_date
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected
from shared.inbox import UnitOfWork, dispatch

SOURCE = "funding-gateway"


Uow = UnitOfWork[repo.GatewayBatch]


async def on_loan_requested(uow: Uow, request: m.LoanRequested) -> Rejected | None:
    if await uow.state.request(uow.conn, request.request_id) is not None:
        return Rejected(m.Reason.INVALID_MESSAGE, f"request {request.request_id} was already sent")
    uow.state.send(request)
    uow.emit(
        topics.funder_requests_topic(request.funder_id),
        m.new_event(
            m.FundingRequest,
            source=SOURCE,
            pool_id=request.pool_id,
            cause=request,
            request_id=request.request_id,
            funder_id=request.funder_id,
            supplier_id=request.supplier_id,
            amount=request.amount,
            annual_interest_rate=request.annual_interest_rate,
            tenor_days=request.tenor_days,
            day_count=request.day_count,
            requested_on=request.requested_on,
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
    amount = accept_response(request.state, response.decision, request.amount, response.amount)
    if isinstance(amount, Rejected):
        return amount
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
        ),
    )
    return None


handle = dispatch({m.LoanRequested: on_loan_requested, m.FunderResponse: on_funder_response})
