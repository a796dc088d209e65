"""credit: wiring only."""

from __future__ import annotations

from pathlib import Path

from services.credit.handlers import handle
from services.credit.http import make_app
from services.credit.repository import CreditBatch
from shared.contracts import topics
from shared.runtime import ServiceSpec
from shared.settings import Settings


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="credit",
        schema="credit",
        topics=(
            topics.ADMIN_FACILITIES,
            topics.SUPPLIER_FINANCING_APPLICATIONS,
            topics.POOL_EVENTS,
            topics.FUNDING_RESULTS,
            topics.SETTLEMENT_RESULTS,
        ),
        dead_letter_topic=topics.CREDIT_REJECTED,
        migrations=Path(__file__).parent / "migrations",
        handle=handle,
        new_state=CreditBatch,
        http=make_app,
        description="Pool positions, financing decisions, loans and repayment instructions.",
    )
