"""intake: wiring only."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from services.intake.handlers import archive_batch, handle
from services.intake.parking import dead_letter_parked
from services.intake.repository import IntakeBatch
from shared.contracts import messages as m
from shared.contracts import topics
from shared.runtime import ServiceSpec
from shared.settings import Settings


def spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name="intake",
        schema="intake",
        topics=topics.ERP_TOPICS,
        dead_letter_topic=topics.INTAKE_REJECTED,
        migrations=Path(__file__).parent / "migrations",
        handle=handle,
        on_batch=archive_batch,
        new_state=partial(IntakeBatch, unseen_slip_wait_s=settings.unseen_slip_wait_s),
        background=dead_letter_parked,
        description="Validates ERP events and publishes canonical pool events.",
        publishes={
            topics.POOL_EVENTS: (
                m.PoolOpened,
                m.ReceivableAdded,
                m.ReceivablesSettled,
                m.ReceivableAdjusted,
                m.BuyerConfirmedFinancing,
                m.ReceivableDocumented,
            ),
            topics.INTAKE_REJECTED: (m.DeadLetter,),
        },
    )
