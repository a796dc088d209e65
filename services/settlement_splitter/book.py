"""settlement-splitter: the ledger of record's own movements (issue 10) — payouts of the
supplier's free balance and the bank's answers, operators' voids and releases of frozen
payments (with the watch that alerts on payments frozen too long), and reversals of split
payments, pro rata across everyone the split paid."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

import asyncpg

from services.settlement_splitter import repository as repo
from services.settlement_splitter.domain import (
    account_kind,
    bank_account,
    buyer_account,
    free_account,
    frozen_account,
    funder_account,
    insufficient,
    investor_account,
    payout_account,
    principal_entries,
    reverse,
)
from services.settlement_splitter.handlers import (
    SOURCE,
    Uow,
    _repayment_inputs,
    _settlement_of,
    ledger_of,
    log,
)
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected
from shared.db import Connection
from shared.money import ZERO, largest_remainder_split
from shared.outbox import Outbox
from shared.periodic import every, in_transaction
from shared.settings import Settings
from shared.trust import not_the_party

# ---------------------------------------------------------------- payouts (issue 10)


async def on_payout_requested(uow: Uow, event: m.PayoutRequested) -> Rejected | None:
    """The supplier's free balance paid out: moved to `payout:{pool}` and instructed to the
    controlled account's bank; the bank's answer (PayoutResult) completes or returns it."""
    ledger = ledger_of(uow)
    supplier = await ledger.supplier(uow.conn, event.pool_id)
    if supplier is None:
        return Rejected(m.Reason.UNKNOWN_POOL, f"pool {event.pool_id} was never opened")
    if refusal := not_the_party(uow.principal, supplier, "the pool's supplier", event):
        return refusal
    if await ledger.payout(uow.conn, event.payout_id) is not None:
        return Rejected(m.Reason.DUPLICATE_PAYMENT, f"payout {event.payout_id} exists already")
    account = await ledger.account(uow.conn, event.pool_id)
    if short := insufficient(free_account(event.pool_id), event.amount, account.free):
        return short
    ledger.post(
        account,
        payment_id=event.payout_id,
        kind="payout",
        entries=[
            (free_account(event.pool_id), -event.amount),
            (payout_account(event.pool_id), event.amount),
        ],
        inputs={"event_id": event.event_id, "bank_account": event.bank_account},
    )
    payout = repo.Payout(event.payout_id, event.pool_id, supplier, event.bank_account, event.amount)
    ledger.save_payout(payout)
    uow.emit(
        topics.SETTLEMENT_PAYOUTS,
        m.new_event(
            m.PayoutInstructed,
            source=SOURCE,
            pool_id=event.pool_id,
            cause=event,
            payout_id=event.payout_id,
            supplier_id=supplier,
            bank_account=event.bank_account,
            amount=event.amount,
            reference=f"poolfin payout {event.payout_id} pool {event.pool_id}"[:140],
        ),
    )
    return None


async def on_payout_result(uow: Uow, event: m.PayoutResult) -> Rejected | None:
    ledger = ledger_of(uow)
    payout = await ledger.payout(uow.conn, event.payout_id)
    if payout is None:
        return Rejected(m.Reason.UNKNOWN_PAYOUT, f"no payout {event.payout_id} was instructed")
    if payout.pool_id != event.pool_id:
        return Rejected(
            m.Reason.PAYMENT_NOT_IN_POOL,
            f"payout {event.payout_id} belongs to another pool, not {event.pool_id}",
        )
    if payout.state != "instructed":
        return Rejected(
            m.Reason.SETTLEMENT_CLOSED, f"payout {event.payout_id} is already {payout.state}"
        )
    account = await ledger.account(uow.conn, event.pool_id)
    executed = event.status is m.PayoutStatus.EXECUTED
    ledger.post(
        account,
        payment_id=event.payout_id,
        kind="payout_executed" if executed else "payout_rejected",
        entries=[
            (payout_account(event.pool_id), -payout.amount),
            (
                bank_account(payout.supplier_id) if executed else free_account(event.pool_id),
                payout.amount,
            ),
        ],
        inputs={
            "event_id": event.event_id,
            "bank_reference": event.bank_reference,
            "reason": event.reason,
        },
    )
    payout.state = "executed" if executed else "rejected"
    payout.bank_reference = event.bank_reference
    ledger.save_payout(payout)
    log.info("payout answered", payout_id=event.payout_id, state=payout.state)
    return None


# ---------------------------------------------------------------- holds (issue 10)


async def on_hold_resolved(uow: Uow, event: m.HoldResolved) -> Rejected | None:
    """An operator voids (back to the buyer, or a prepayment back to the free balance) or
    releases (to the free balance) a payment still frozen. An instruction for it arriving
    later is refused, and credit undoes what it reserved."""
    ledger = ledger_of(uow)
    account = await ledger.account(uow.conn, event.pool_id)
    existing = await _settlement_of(uow, event.pool_id, event.payment_id)
    if isinstance(existing, Rejected):
        return existing
    if existing is None or existing.state != "frozen":
        return Rejected(
            m.Reason.SETTLEMENT_CLOSED,
            f"{event.payment_id} is not frozen in pool {event.pool_id}"
            + (f" (it is {existing.state})" if existing else ""),
        )
    back_to_buyer = event.action is m.HoldAction.VOID and existing.kind == "payment"
    if back_to_buyer:
        assert existing.payment is not None
        to = buyer_account(m.ReceivablesSettled.model_validate(existing.payment).core_enterprise_id)
    else:
        to = free_account(event.pool_id)
    ledger.post(
        account,
        payment_id=event.payment_id,
        kind=event.action.value,
        entries=[(frozen_account(event.pool_id), -existing.amount), (to, existing.amount)],
        inputs={
            "event_id": event.event_id,
            "operator": uow.principal.party_id if uow.principal else None,
            "note": event.note,
        },
    )
    ledger.save_settlement(
        event.payment_id,
        event.pool_id,
        existing.amount,
        "voided" if event.action is m.HoldAction.VOID else "released",
        kind=existing.kind,
        released=ZERO if back_to_buyer else existing.amount,
    )
    log.warning(
        "frozen payment resolved by an operator",
        payment_id=event.payment_id,
        action=event.action.value,
        amount=str(existing.amount),
    )
    return None


async def overdue_holds(pool: asyncpg.Pool, settings: Settings, wake: Callable[[], None]) -> None:
    """The splitter's background watch: each payment frozen longer than
    `hold_alert_after_s` with no instruction raises one FrozenPaymentOverdue (through the
    outbox, so it is published once even if the splitter dies right after)."""

    async def alert(conn: Connection, outbox: Outbox) -> None:
        rows = await conn.fetch(
            "UPDATE settlements SET alerted_at = now() WHERE payment_id IN ("
            " SELECT payment_id FROM settlements WHERE state = 'frozen'"
            " AND alerted_at IS NULL"
            " AND frozen_at < now() - make_interval(secs => $1)"
            " ORDER BY frozen_at LIMIT 500 FOR UPDATE SKIP LOCKED)"
            " RETURNING payment_id, pool_id, amount, frozen_at",
            settings.hold_alert_after_s,
        )
        for r in rows:
            outbox.emit(
                topics.SETTLEMENT_ALERTS,
                m.new_event(
                    m.FrozenPaymentOverdue,
                    source=SOURCE,
                    pool_id=r["pool_id"],
                    payment_id=r["payment_id"],
                    amount=r["amount"],
                    frozen_since=r["frozen_at"],
                ),
            )
            log.warning(
                "payment frozen with no instruction",
                payment_id=r["payment_id"],
                pool_id=r["pool_id"],
                frozen_since=r["frozen_at"].isoformat(),
            )

    await every(
        settings.hold_alert_every_s,
        "looking for overdue frozen payments",
        lambda: in_transaction(pool, "settlement", wake, alert),
    )


# ---------------------------------------------------------------- reversals (issue 10)

# What a split pays that a reversal takes back: not the pool's hold, and not the memo lines
# of the loans (principal restored is booked from the funders' part).
_NOT_A_RECEIVER = ("frozen:", "held:", "owed:", "loan:")


async def on_payment_reversed(uow: Uow, event: m.PaymentReversed) -> Rejected | None:
    """A split payment returned, charged back or credited: each party the split paid gives
    back its pro-rata part (never more than it got); the funders' part restores their loans."""
    ledger = ledger_of(uow)
    core = await ledger.core_enterprise(uow.conn, event.pool_id)
    if core is None:
        return Rejected(m.Reason.UNKNOWN_POOL, f"pool {event.pool_id} was never opened")
    if refusal := not_the_party(uow.principal, core, "the pool's core enterprise", event):
        return refusal
    account = await ledger.account(uow.conn, event.pool_id)
    existing = await _settlement_of(uow, event.pool_id, event.payment_id)
    if isinstance(existing, Rejected):
        return existing
    if existing is None or existing.kind != "payment" or existing.state != "released":
        return Rejected(
            m.Reason.NOTHING_TO_REVERSE,
            f"{event.payment_id} is no payment split in pool {event.pool_id}",
        )
    if await ledger.posted(uow.conn, event.reversal_id, "reversal"):
        return Rejected(m.Reason.DUPLICATE_PAYMENT, f"reversal {event.reversal_id} exists already")
    lines, rule_version = await ledger.split_of(uow.conn, event.payment_id)
    received = {a: v for a, v in lines if v > 0 and not a.startswith(_NOT_A_RECEIVER)}
    # Parties outside the book (funders, investors) give back in full; the platform's own
    # accounts give back what they hold, and owe the rest.
    bounded = [a for a in received if account_kind(a).min_balance is not None]
    available = await ledger.balances(uow.conn, bounded)
    available[free_account(event.pool_id)] = account.free
    before = {a: Decimal(v) for a, v in existing.reversed_parts.items() if not a.startswith("#")}
    plan = reverse(event.amount, received, before, available)
    if isinstance(plan, Rejected):
        return plan
    assert existing.instruction is not None
    instruction = m.RepaymentInstruction.model_validate(existing.instruction)
    investors_of = {}
    for r in instruction.repayments:
        held_loan = await ledger.loan(uow.conn, r.loan_id)
        if held_loan is not None and held_loan.investors:
            investors_of[r.loan_id] = [investor for investor, _ in held_loan.investors]
    loans = _restored_loans(
        plan.share, instruction.repayments, existing.reversed_parts, investors_of
    )
    restored: dict[str, Decimal] = {}
    for r in loans:
        held = await ledger.loan(uow.conn, r.loan_id)
        if held is not None and held.booked and r.principal:
            restored[r.loan_id] = r.principal
        if held is not None and r.principal:
            ledger.repay(r.loan_id, -r.principal)  # the loan comes back as it was
    digest = ledger.post(
        account,
        payment_id=event.reversal_id,
        kind="reversal",
        entries=plan.entries(buyer_account(core))
        + principal_entries(event.pool_id, restored, sign=-1),
        inputs={
            "event_id": event.event_id,
            "payment_id": event.payment_id,
            "reason": event.reason.value,
            "rule_version": rule_version,
            "loans": _repayment_inputs(loans),
        },
    )
    given_back: dict[str, Decimal] = {a: plan.share(a) for a in received if plan.share(a)}
    ledger.save_reversal(
        existing,
        given_back,
        {
            f"#{r.loan_id}/{part}": getattr(r, part)
            for r in loans
            for part in _PARTS
            if getattr(r, part)
        },
    )
    uow.emit(
        topics.SETTLEMENT_RESULTS,
        m.new_event(
            m.SettlementReversed,
            source=SOURCE,
            pool_id=event.pool_id,
            cause=event,
            reversal_id=event.reversal_id,
            payment_id=event.payment_id,
            amount=event.amount,
            returned=plan.returned,
            owed=plan.owed,
            loans=loans,
            rule_version=rule_version,
            ledger_hash=digest,
        ),
    )
    return None


_PARTS = ("principal", "interest", "penalty", "fees")


def _restored_loans(
    share: Callable[[str], Decimal],
    repayments: Sequence[m.LoanRepayment],
    reversed_parts: dict[str, str],
    investors_of: Mapping[str, Sequence[str]] | None = None,
) -> list[m.LoanRepayment]:
    """Each funder's returned share, across its loans and each loan's parts (principal,
    interest, penalty, fees) by what is left of them, largest remainder to the fen: a full
    reversal restores every loan exactly as the split found it."""
    restored: list[m.LoanRepayment] = []
    investors_of = investors_of or {}
    for funder in sorted({r.funder_id for r in repayments}):
        total = share(funder_account(funder)) + sum(
            (
                share(investor_account(r.loan_id, investor))
                for r in repayments
                if r.funder_id == funder
                for investor in investors_of.get(r.loan_id, ())
            ),
            ZERO,
        )
        if not total:
            continue
        left = {
            (r.loan_id, part): getattr(r, part)
            - Decimal(reversed_parts.get(f"#{r.loan_id}/{part}", "0"))
            for r in repayments
            if r.funder_id == funder
            for part in _PARTS
        }
        weights = [(k, int(v * 100)) for k, v in left.items() if v > 0]
        if not weights:
            continue
        parts = largest_remainder_split(total, weights)
        for r in repayments:
            if r.funder_id != funder:
                continue
            got = {part: parts.get((r.loan_id, part), ZERO) for part in _PARTS}
            if any(got.values()):
                restored.append(m.LoanRepayment(loan_id=r.loan_id, funder_id=funder, days=0, **got))
    return restored
