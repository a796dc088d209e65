"""funding-gateway: wiring only."""

from __future__ import annotations

from pathlib import Path

from services.funding_gateway.handlers import make_handler
from services.funding_gateway.repository import GatewayBatch
from services.funding_gateway.watches import background
from shared.contracts import messages as m
from shared.contracts import topics
from shared.runtime import ServiceSpec
from shared.settings import Settings


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="funding-gateway",
        schema="funding_gateway",
        topics=(
            topics.CREDIT_LOAN_REQUESTS,
            topics.FUNDING_RESPONSES,
            topics.SUPPLIER_CONTRACT_SIGNATURES,
        ),
        dead_letter_topic=topics.FUNDING_GATEWAY_REJECTED,
        migrations=Path(__file__).parent / "migrations",
        handle=make_handler(settings.raise_window_s),
        new_state=GatewayBatch,
        background=background,
        description="Sends loan requests to each funder's topic and relays their answers.",
        publishes={
            topics.funder_requests_topic("{funder_id}"): (m.FundingRequest,),
            topics.FUNDING_RESULTS: (m.FundingResult,),
            topics.FUNDING_CONTRACTS: (
                m.ContractIssued,
                m.InvestorContractIssued,
                m.RaiseContracted,
            ),
            topics.FUNDING_GATEWAY_REJECTED: (m.DeadLetter,),
        },
    )
