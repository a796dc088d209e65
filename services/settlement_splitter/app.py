"""settlement-splitter: wiring only."""

from __future__ import annotations

from pathlib import Path

from services.settlement_splitter.book import overdue_holds
from services.settlement_splitter.handlers import make_handler
from services.settlement_splitter.repository import LedgerBatch
from shared.contracts import messages as m
from shared.contracts import topics
from shared.ops import settlement_pipeline
from shared.runtime import ServiceSpec
from shared.settings import Settings


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="settlement-splitter",
        schema="settlement",
        topics=(
            topics.POOL_EVENTS,
            topics.CREDIT_REPAYMENT_INSTRUCTIONS,
            topics.SUPPLIER_PREPAYMENTS,
            topics.ADMIN_SPLIT_RULES,
            topics.ADMIN_HOLDS,
            topics.SUPPLIER_PAYOUTS,
            topics.BANK_PAYOUT_RESULTS,
            topics.ERP_PAYMENT_REVERSALS,
        ),
        dead_letter_topic=topics.SETTLEMENT_REJECTED,
        migrations=Path(__file__).parent / "migrations",
        handle=make_handler(settings.settlement_fee_bps),
        new_state=LedgerBatch,
        background=overdue_holds,
        collect=settlement_pipeline,
        description="Freezes payments and prepayments, splits them by instruction and rules, "
        "keeps back what credit holds, releases the rest.",
        publishes={
            topics.SETTLEMENT_RESULTS: (
                m.SettlementReleased,
                m.PrepaymentFrozen,
                m.InstructionRefused,
                m.SettlementReversed,
            ),
            topics.SETTLEMENT_PAYOUTS: (m.PayoutInstructed,),
            topics.SETTLEMENT_ALERTS: (m.FrozenPaymentOverdue,),
            topics.SETTLEMENT_FUNDER_REPAYMENTS: (m.FunderRepaymentNotice,),
            topics.SETTLEMENT_RELEASES: (m.SupplierFundsReleased,),
            topics.SETTLEMENT_LEDGER_ANCHORS: (m.LedgerAnchored,),
            topics.SETTLEMENT_REJECTED: (m.DeadLetter,),
        },
    )
