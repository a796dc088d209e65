"""intake's parking watch (ServiceSpec.background): a payment that waited for its slips past
its deadline (POOLFIN_UNSEEN_SLIP_WAIT_S), or that was refused once they came, is dead-lettered
as any refused record is: its row in `dead_letters` with the raw bytes, and a DeadLetter on
intake.rejected.v1, in the transaction that removes it from the parking.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import asyncpg
import structlog

from services.intake import repository as repo
from services.intake.domain import Receivable, unseen_slips
from services.intake.handlers import SOURCE, handle
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected
from shared.db import Connection
from shared.inbox import BatchConsumer
from shared.outbox import Outbox
from shared.periodic import every, in_transaction
from shared.settings import Settings

log = structlog.get_logger(__name__)

SCHEMA = "intake"


def given_up(parked: repo.ParkedPayment, known: Mapping[str, Receivable] | None = None) -> Rejected:
    """Why a parked payment is dead-lettered: its refusal once its slips came; else the one it
    has now, as had they come first: a slip booked meanwhile in another pool is
    `receivable_not_in_pool`, one still not seen `unknown_receivable`, saying how long it
    waited. `known`: those of its missing slips that exist now."""
    if parked.reason is not None:
        return Rejected(m.Reason(parked.reason), parked.detail or "")
    unseen = unseen_slips(parked.pool_id, parked.missing, known or {})
    if isinstance(unseen, Rejected):
        return unseen
    missing = unseen or parked.missing
    waited = (parked.deadline - parked.parked_at).total_seconds()
    slips = ", ".join(missing)
    plural = "s" if len(missing) > 1 else ""
    return Rejected(
        m.Reason.UNKNOWN_RECEIVABLE,
        f"slip{plural} {slips} not seen within {waited:g} s: payment {parked.payment_id} "
        f"waited from {parked.parked_at.isoformat()} to {parked.deadline.isoformat()}",
    )


async def dead_letter_parked(
    pool: asyncpg.Pool, settings: Settings, wake: Callable[[], None]
) -> None:
    """Every `unseen_slip_check_every_s`, the parked payments that are due are dead-lettered,
    through the consumer's own dead-lettering (shared/inbox.py) and intake's outbox."""
    consumer = BatchConsumer(
        service=SOURCE,
        schema=SCHEMA,
        pool=pool,
        handle=handle,
        dead_letter_topic=topics.INTAKE_REJECTED,
    )

    async def expire(conn: Connection, outbox: Outbox) -> None:
        store = repo.PostgresIntakeStore(conn)
        for parked in await repo.expire_parked(conn):
            core = parked.core_enterprise_id
            known = await store.receivables([(core, r) for r in parked.missing])
            refusal = given_up(parked, {r.receivable_id: r for _, r in known})
            await consumer.dead_letter(conn, outbox, parked.record, refusal)
            log.warning(
                "parked payment dead-lettered",
                payment_id=parked.payment_id,
                event_id=parked.event_id,
                pool_id=parked.pool_id,
                reason=refusal.reason.value,
                detail=refusal.detail,
            )

    await every(
        settings.unseen_slip_check_every_s,
        "dead-lettering parked payments past their wait",
        lambda: in_transaction(pool, SCHEMA, wake, expire),
    )
