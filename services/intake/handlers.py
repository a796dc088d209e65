"""intake: authenticate, validate, dedupe, check against the registry, publish canonical pool
events. Anything wrong ends on intake.rejected.v1 with its reason (DESIGN step 2).

A payment naming a slip not seen yet waits for it a bounded time (parked,
POOLFIN_UNSEEN_SLIP_WAIT_S): booking the slip takes it in the same transaction, as had the slip
come first; past the wait, the parking watch (parking.py) dead-letters it.

Handlers decide in memory on the batch's `IntakeBatch` (prepared set-based, flushed once)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import structlog

from services.intake import documents
from services.intake import repository as repo
from services.intake.domain import adjust, allocate_payment, unseen_slips
from shared.calendar import business_date
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected, decode_document, not_the_pools_buyer
from shared.inbox import Inbound, UnitOfWork, dispatch
from shared.money import MAX_TOTAL
from shared.trust import not_the_party

SOURCE = "intake"
log = structlog.get_logger(__name__)

Uow = UnitOfWork[repo.IntakeBatch]


async def archive_batch(uow: Uow, records: Sequence[Inbound]) -> None:
    """Every raw ERP record is archived, whatever becomes of it (invariant 6). The batch keeps
    them too: a payment that waits for its slip is parked with its own record."""
    uow.state.inbound = records
    if again := await repo.archive(uow.conn, records):
        log.warning("records read again were archived before; kept once", records=again)


async def _known_pool(uow: Uow, message: m.Message) -> repo.Pool | Rejected:
    """The message's pool, which only its own core enterprise speaks for: the gate proved
    who signed (or which buyer credit's front authenticated); this is the relationship."""
    pool = await uow.state.pool(uow.conn, message.pool_id)
    if pool is None:
        return Rejected(
            m.Reason.UNKNOWN_POOL,
            f"pool {message.pool_id} is not known: onboard the supplier first",
        )
    if refusal := not_the_party(
        uow.principal, pool.core_enterprise_id, "the pool's core enterprise", message
    ):
        return refusal
    return pool


async def on_supplier_onboarded(uow: Uow, event: m.SupplierOnboarded) -> Rejected | None:
    # Onboarding is the core enterprise's confirmation of its supplier: signed by it.
    if refusal := not_the_party(
        uow.principal, event.core_enterprise_id, "the core enterprise it names", event
    ):
        return refusal
    existing = await uow.state.pool_of(uow.conn, event.core_enterprise_id, event.supplier_id)
    if existing is not None and existing != event.pool_id:
        return Rejected(
            m.Reason.POOL_EXISTS,
            f"supplier {event.supplier_id} of {event.core_enterprise_id} already "
            f"has pool {existing}",
        )
    pool = await uow.state.pool(uow.conn, event.pool_id)
    if pool is not None:
        if (pool.core_enterprise_id, pool.supplier_id) != (
            event.core_enterprise_id,
            event.supplier_id,
        ):
            return Rejected(
                m.Reason.POOL_EXISTS, f"pool {event.pool_id} belongs to another supplier"
            )
        return None  # the same onboarding again: nothing changes
    uow.state.open_pool(event)
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
    return None


async def on_settlement_slip(uow: Uow, slip: m.SettlementSlipIssued) -> Rejected | None:
    pool = await _known_pool(uow, slip)
    if isinstance(pool, Rejected):
        return pool
    if await uow.state.receivables_of(uow.conn, pool.core_enterprise_id, [slip.receivable_id]):
        return Rejected(
            m.Reason.DUPLICATE_RECEIVABLE, f"receivable {slip.receivable_id} is already registered"
        )
    # A pool's open receivables stay within what every table and sum downstream can hold:
    # credit's level, its borrowing base, the ledger (issue 6, defect 3).
    if pool.open_total + slip.amount > MAX_TOTAL:
        return Rejected(
            m.Reason.POOL_LIMIT_EXCEEDED,
            f"pool {slip.pool_id} would hold {pool.open_total + slip.amount} of open "
            f"receivables; at most {MAX_TOTAL}",
        )
    named = documents.named(slip)
    trade: list[m.TradeDocument] = []
    if named:  # its trade background: of its pool, and an invoice backing no other open slip
        if refusal := await documents.check_slip(uow.conn, pool.core_enterprise_id, slip):
            return refusal
        trade = await documents.documents_of(uow.conn, pool.core_enterprise_id, named)
        await documents.link_slip(uow.conn, pool.core_enterprise_id, slip)
    uow.state.add_receivable(pool, slip)
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
            issued_on=slip.issued_on,
            documents=trade,
        ),
    )
    await _take_parked(uow, pool, slip.receivable_id)
    return None


async def on_trade_document(uow: Uow, document: documents.Document) -> Rejected | None:
    """A purchase order, goods receipt or invoice of the pool's buyer: booked once; an
    invoice encumbered elsewhere is refused; every open slip naming it hears of it."""
    pool = await _known_pool(uow, document)
    if isinstance(pool, Rejected):
        return pool
    core = pool.core_enterprise_id
    content = hashlib.sha256(document.model_dump_json(exclude=ENVELOPE).encode()).hexdigest()
    verdict = await documents.check_document(uow.conn, core, document, content)
    if isinstance(verdict, Rejected):
        return verdict
    if verdict is True:
        return None  # the same document again: nothing new
    await documents.record_document(uow.conn, core, document, content)
    kind = documents.KIND[document.type]
    for receivable_id, face, refs in await documents.open_slips_naming(
        uow.conn, core, kind, document.document_id
    ):
        uow.emit(
            topics.POOL_EVENTS,
            m.new_event(
                m.ReceivableDocumented,
                source=SOURCE,
                pool_id=document.pool_id,
                cause=document,
                receivable_id=receivable_id,
                documents=await documents.documents_of(uow.conn, core, refs),
                amount=face,
            ),
        )
    return None


# The envelope's fields: a document's content is the rest.
ENVELOPE = {"event_id", "occurred_at", "source", "correlation_id", "causation_id", "signature"}


async def on_payment(uow: Uow, payment: m.PaymentReceived) -> Rejected | None:
    pool = await _known_pool(uow, payment)
    if isinstance(pool, Rejected):
        return pool
    if refusal := await _already_received(uow, payment):
        return refusal
    if waiting := await uow.state.parked_payment(uow.conn, payment.payment_id):
        return Rejected(
            m.Reason.DUPLICATE_PAYMENT,
            f"payment {payment.payment_id} was already received; it waits for "
            f"{_slips(waiting.missing)}",
        )
    if uow.state.unseen_slip_wait_s > 0:
        known = await uow.state.receivables_of(
            uow.conn, pool.core_enterprise_id, payment.receivable_ids
        )
        unseen = unseen_slips(payment.pool_id, payment.receivable_ids, known)
        if isinstance(unseen, Rejected):
            return unseen
        if unseen:  # the ERP may publish a payment a moment before its slip: it waits for it
            _park(uow, pool, payment, unseen)
            return None
    return await _take_payment(uow, pool, payment)


async def _already_received(uow: Uow, payment: m.PaymentReceived) -> Rejected | None:
    if await uow.state.payment_known(uow.conn, payment.payment_id):
        return Rejected(
            m.Reason.DUPLICATE_PAYMENT, f"payment {payment.payment_id} was already received"
        )
    return None


async def _take_payment(
    uow: Uow, pool: repo.Pool, payment: m.PaymentReceived, arrived: datetime | None = None
) -> Rejected | None:
    """The payment takes effect on the slips it names, or its refusal. `arrived`: when the
    money came, for a payment that waited for its slips (else now)."""
    if refusal := await _already_received(uow, payment):
        return refusal
    known = await uow.state.receivables_of(
        uow.conn, pool.core_enterprise_id, payment.receivable_ids
    )
    allocations = allocate_payment(payment.pool_id, payment.amount, payment.receivable_ids, known)
    if isinstance(allocations, Rejected):
        return allocations
    uow.state.record_payment(pool, payment, allocations)
    uow.emit(
        topics.POOL_EVENTS,
        m.new_event(
            m.ReceivablesSettled,
            source=SOURCE,
            pool_id=payment.pool_id,
            cause=payment,
            payment_id=payment.payment_id,
            amount=payment.amount,
            written_off=payment.amount,  # a payment lowers the pool by what it pays
            receivable_ids=payment.receivable_ids,
            paid_on=payment.paid_on,
            core_enterprise_id=pool.core_enterprise_id,
            allocations=[
                m.ReceivableAllocation(
                    receivable_id=a.receivable_id,
                    amount=a.amount,
                    open_after=a.open_after,
                    due_on=a.due_on,
                )
                for a in allocations
            ],
            # The money's value date: the business day it arrived, never the sender's date.
            value_date=business_date(arrived),
        ),
    )
    return None


def _slips(receivable_ids: Sequence[str]) -> str:
    return f"slip{'s' if len(receivable_ids) > 1 else ''} {', '.join(receivable_ids)}"


def _park(uow: Uow, pool: repo.Pool, payment: m.PaymentReceived, unseen: Sequence[str]) -> None:
    """The payment waits for the slips it names that are not known yet, with its record as read
    (a dead letter keeps its raw bytes); nothing is published for it yet."""
    now = datetime.now(UTC)
    deadline = now + timedelta(seconds=uow.state.unseen_slip_wait_s)
    record = uow.state.record_of(payment, uow.document)
    uow.state.park(pool, payment, record, unseen, now, deadline)
    log.warning(
        f"payment parked: waits for {_slips(unseen)} until {deadline.isoformat()}",
        payment_id=payment.payment_id,
        receivable_ids=list(unseen),
        deadline=deadline.isoformat(),
    )


async def _take_parked(uow: Uow, pool: repo.Pool, receivable_id: str) -> None:
    """The pool's payments parked for the slip just booked. One whose slips are all known now
    is decided in this transaction by the same logic as had they come first (and leaves the
    parking); one refused all the same is left, due, for the parking watch to dead-letter."""
    for parked in await uow.state.parked_for(uow.conn, pool.pool_id, receivable_id):
        known = await uow.state.receivables_of(uow.conn, pool.core_enterprise_id, parked.missing)
        unseen = [r for r in parked.missing if r not in known]
        context = {"payment_id": parked.payment_id, "parked_event_id": parked.event_id}
        if unseen:
            uow.state.keep_waiting(parked, unseen)
            log.info(
                f"parked payment still waits for {_slips(unseen)} until "
                f"{parked.deadline.isoformat()}",
                **context,
            )
            continue
        try:  # as it was decoded when it arrived
            _, payment = decode_document(
                parked.record.topic, parked.record.value, business_date(parked.parked_at)
            )
            if not isinstance(payment, m.PaymentReceived):
                raise Rejected(m.Reason.UNKNOWN_TYPE, f"{payment.type} is not a payment")
            refusal = await _take_payment(uow, pool, payment, arrived=parked.parked_at)
        except Rejected as raised:
            refusal = raised
        waited = round((datetime.now(UTC) - parked.parked_at).total_seconds(), 3)
        if refusal is None:
            uow.state.unpark(parked)
            log.info(
                f"parked payment taken: {_slips([receivable_id])} came after {waited} s",
                **context,
            )
        else:
            uow.state.refuse_parked(parked, refusal.reason.value, refusal.detail, datetime.now(UTC))
            log.warning(
                "parked payment refused now its slips came; the parking watch dead-letters it",
                reason=refusal.reason.value,
                detail=refusal.detail,
                **context,
            )


async def on_slip_adjustment(uow: Uow, event: m.Message) -> Rejected | None:
    """Dilution and disputes: a credit note, a cancellation, an amendment, a dispute opened or
    closed, on an open slip of the pool; recorded with its reason and published at once."""
    pool = await _known_pool(uow, event)
    if isinstance(pool, Rejected):
        return pool
    if isinstance(event, m.CreditNoteIssued) and await uow.state.credit_note_known(
        uow.conn, pool.core_enterprise_id, event.credit_note_id
    ):
        return Rejected(
            m.Reason.DUPLICATE_ADJUSTMENT,
            f"credit note {event.credit_note_id} of {pool.core_enterprise_id} was already issued",
        )
    receivable_id: str = getattr(event, "receivable_id")  # noqa: B009 - every adjustment has one
    known = await uow.state.receivables_of(uow.conn, pool.core_enterprise_id, [receivable_id])
    adjusted = adjust(event.pool_id, event, known)
    if isinstance(adjusted, Rejected):
        return adjusted
    if pool.open_total + adjusted.change > MAX_TOTAL:
        return Rejected(
            m.Reason.POOL_LIMIT_EXCEEDED,
            f"pool {event.pool_id} would hold {pool.open_total + adjusted.change} of open "
            f"receivables; at most {MAX_TOTAL}",
        )
    uow.state.record_adjustment(pool, adjusted, event.event_id)
    uow.emit(
        topics.POOL_EVENTS,
        m.new_event(
            m.ReceivableAdjusted,
            source=SOURCE,
            pool_id=event.pool_id,
            cause=event,
            receivable_id=receivable_id,
            kind=adjusted.kind,
            change=adjusted.change,
            open_after=adjusted.receivable.open,
            disputed=adjusted.receivable.disputed,
            reason=adjusted.reason,
            reference=adjusted.reference,
        ),
    )
    return None


async def on_financing_confirmation(uow: Uow, event: m.FinancingConfirmation) -> Rejected | None:
    pool = await _known_pool(uow, event)
    if isinstance(pool, Rejected):
        return pool
    if refusal := not_the_pools_buyer(
        event.pool_id, pool.core_enterprise_id, event.core_enterprise_id
    ):
        return refusal
    uow.emit(
        topics.POOL_EVENTS,
        m.new_event(
            m.BuyerConfirmedFinancing,
            source=SOURCE,
            pool_id=event.pool_id,
            cause=event,
            application_id=event.application_id,
            confirmed=event.confirmed,
            core_enterprise_id=pool.core_enterprise_id,
        ),
    )
    return None


handle = dispatch(
    {
        m.SupplierOnboarded: on_supplier_onboarded,
        m.SettlementSlipIssued: on_settlement_slip,
        m.PaymentReceived: on_payment,
        m.FinancingConfirmation: on_financing_confirmation,
        m.CreditNoteIssued: on_slip_adjustment,
        m.SlipCancelled: on_slip_adjustment,
        m.SlipAmended: on_slip_adjustment,
        m.DisputeOpened: on_slip_adjustment,
        m.DisputeClosed: on_slip_adjustment,
        m.PurchaseOrderIssued: on_trade_document,
        m.GoodsReceived: on_trade_document,
        m.InvoiceIssued: on_trade_document,
    }
)
