"""intake: authenticate, validate, dedupe, check against the registry, publish canonical pool
events. Anything wrong ends on intake.rejected.v1 with its reason (DESIGN step 2)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import structlog

from services.intake import repository as repo
from services.intake.domain import check_payment
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected
from shared.inbox import Inbound, UnitOfWork
from shared.money import MAX_TOTAL

SOURCE = "intake"
log = structlog.get_logger(__name__)


async def archive_batch(uow: UnitOfWork, records: Sequence[Inbound]) -> None:
    """Every raw ERP record is archived, whatever becomes of it (invariant 6)."""
    if again := await repo.archive(uow.conn, records):
        log.warning("records read again were archived before; kept once", records=again)


async def handle(uow: UnitOfWork, event: m.Message) -> None:
    if isinstance(event, m.SupplierOnboarded):
        await on_supplier_onboarded(uow, event)
    elif isinstance(event, m.SettlementSlipIssued):
        await on_settlement_slip(uow, event)
    elif isinstance(event, m.PaymentReceived):
        await on_payment(uow, event)
    elif isinstance(event, m.FinancingConfirmation):
        await on_financing_confirmation(uow, event)
    else:  # pragma: no cover - decode() admits only the types above on intake's topics
        raise Rejected(m.Reason.UNKNOWN_TYPE, f"intake does not handle {event.type}")


async def _known_pool(uow: UnitOfWork, pool_id: str) -> str:
    """Lock the pool (once per batch transaction) and return its core enterprise."""
    key = ("pool", pool_id)
    if key not in uow.scratch:
        pool = await repo.lock_pool(uow.conn, pool_id)
        if pool is None:
            raise Rejected(
                m.Reason.UNKNOWN_POOL, f"pool {pool_id} is not known: onboard the supplier first"
            )
        uow.scratch[key] = str(pool["core_enterprise_id"])
    core: str = uow.scratch[key]
    return core


async def on_supplier_onboarded(uow: UnitOfWork, event: m.SupplierOnboarded) -> None:
    existing = await repo.find_pool_of(uow.conn, event.core_enterprise_id, event.supplier_id)
    if existing is not None and existing != event.pool_id:
        raise Rejected(
            m.Reason.POOL_EXISTS,
            f"supplier {event.supplier_id} of {event.core_enterprise_id} already "
            f"has pool {existing}",
        )
    if not await repo.open_pool(uow.conn, event):
        pool = await repo.lock_pool(uow.conn, event.pool_id)
        assert pool is not None
        if (pool["core_enterprise_id"], pool["supplier_id"]) != (
            event.core_enterprise_id,
            event.supplier_id,
        ):
            raise Rejected(
                m.Reason.POOL_EXISTS, f"pool {event.pool_id} belongs to another supplier"
            )
        return  # the same onboarding again: nothing changes
    uow.emit(
        topics.POOL_EVENTS,
        m.new_event(
            m.PoolOpened,
            source=SOURCE,
            pool_id=event.pool_id,
            cause=event,
            core_enterprise_id=event.core_enterprise_id,
            supplier_id=event.supplier_id,
        ),
    )


async def on_settlement_slip(uow: UnitOfWork, slip: m.SettlementSlipIssued) -> None:
    core = await _known_pool(uow, slip.pool_id)
    if await repo.receivable_exists(uow.conn, core, slip.receivable_id):
        raise Rejected(
            m.Reason.DUPLICATE_RECEIVABLE, f"receivable {slip.receivable_id} is already registered"
        )
    # A pool's open receivables stay within what every table and sum downstream can hold:
    # credit's level, its borrowing base, the ledger (issue 6, defect 3).
    key = ("open_total", slip.pool_id)
    if key not in uow.scratch:
        uow.scratch[key] = await repo.open_total(uow.conn, slip.pool_id)
    total: Decimal = uow.scratch[key] + slip.amount
    if total > MAX_TOTAL:
        raise Rejected(
            m.Reason.POOL_LIMIT_EXCEEDED,
            f"pool {slip.pool_id} would hold {total} of open receivables; at most {MAX_TOTAL}",
        )
    await repo.add_receivable(uow.conn, core, slip)
    uow.scratch[key] = total
    uow.emit(
        topics.POOL_EVENTS,
        m.new_event(
            m.ReceivableAdded,
            source=SOURCE,
            pool_id=slip.pool_id,
            cause=slip,
            receivable_id=slip.receivable_id,
            amount=slip.amount,
            due_on=slip.due_on,
        ),
    )


async def on_payment(uow: UnitOfWork, payment: m.PaymentReceived) -> None:
    core = await _known_pool(uow, payment.pool_id)
    if await repo.payment_exists(uow.conn, payment.payment_id):
        raise Rejected(
            m.Reason.DUPLICATE_PAYMENT, f"payment {payment.payment_id} was already received"
        )
    known = await repo.lock_receivables(uow.conn, core, payment.receivable_ids)
    written_off = check_payment(payment.pool_id, payment.amount, payment.receivable_ids, known)
    await repo.record_payment(uow.conn, core, payment, written_off)
    uow.emit(
        topics.POOL_EVENTS,
        m.new_event(
            m.ReceivablesSettled,
            source=SOURCE,
            pool_id=payment.pool_id,
            cause=payment,
            payment_id=payment.payment_id,
            amount=payment.amount,
            written_off=written_off,
            receivable_ids=payment.receivable_ids,
            paid_on=payment.paid_on,
            core_enterprise_id=core,
        ),
    )


async def on_financing_confirmation(uow: UnitOfWork, event: m.FinancingConfirmation) -> None:
    core = await _known_pool(uow, event.pool_id)
    if event.core_enterprise_id is not None and event.core_enterprise_id != core:
        raise Rejected(
            m.Reason.NOT_THE_POOLS_BUYER,
            f"{event.core_enterprise_id} is not the core enterprise of pool {event.pool_id}",
        )
    uow.emit(
        topics.POOL_EVENTS,
        m.new_event(
            m.BuyerConfirmedFinancing,
            source=SOURCE,
            pool_id=event.pool_id,
            cause=event,
            application_id=event.application_id,
            confirmed=event.confirmed,
            core_enterprise_id=core,
        ),
    )
