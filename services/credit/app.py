"""credit: wiring only."""

from __future__ import annotations

from pathlib import Path

from services.credit.handlers import handle
from services.credit.http import make_app
from services.credit.repository import CreditBatch
from shared.contracts import messages as m
from shared.contracts import topics
from shared.runtime import ServiceSpec
from shared.settings import Settings


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="credit",
        schema="credit",
        topics=(
            topics.ADMIN_FACILITIES,
            topics.ADMIN_SERVICING,
            topics.ADMIN_PROGRAMMES,
            topics.SUPPLIER_FINANCING_APPLICATIONS,
            topics.POOL_EVENTS,
            topics.FUNDING_RESULTS,
            topics.SETTLEMENT_RESULTS,
        ),
        dead_letter_topic=topics.CREDIT_REJECTED,
        migrations=Path(__file__).parent / "migrations",
        handle=handle,
        new_state=lambda: CreditBatch(day_close_lead_days=settings.day_close_lead_days),
        http=make_app,
        description="Pool positions, financing decisions, loans and repayment instructions.",
        publishes={
            topics.CREDIT_DECISIONS: (m.FinancingDecision, m.LoanOpened, m.ApplicationRouted),
            topics.CREDIT_POSITIONS: (m.PoolPosition,),
            topics.CREDIT_LOAN_REQUESTS: (m.LoanRequested,),
            topics.CREDIT_REPAYMENT_INSTRUCTIONS: (
                m.RepaymentInstruction,
                m.HoldSettled,
                m.LoanOpened,
            ),
            topics.CREDIT_SERVICING: (
                m.InterestAccrued,
                m.InterestCharged,
                m.LoanOverdue,
                m.LoanRepaid,
            ),
            topics.CREDIT_SUGGESTIONS: (m.CreditSuggested,),
            topics.CREDIT_REJECTED: (m.DeadLetter,),
        },
    )
