"""settlement-splitter: freeze every payment, split it once the instruction for it is here
(either arrival order), keep back what credit holds, release the rest (DESIGN steps 3 and 5);
move money on hold when credit settles it; freeze a supplier's prepayment out of its free
balance for credit to decide (issue 8)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog

from services.settlement_splitter import repository as repo
from services.settlement_splitter.domain import (
    FunderPart,
    Split,
    buyer_account,
    disbursement_entries,
    freeze_prepayment,
    frozen_account,
    funder_account,
    held_account,
    in_fen,
    insufficient,
    investor_account,
    principal_entries,
    settle_hold,
    split_payment,
    to_investors,
)
from services.settlement_splitter.rules import Facts
from services.settlement_splitter.rules import refusal as rules_refusal
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected
from shared.inbox import Handler, UnitOfWork, dispatch
from shared.money import ZERO
from shared.trust import not_the_party

SOURCE = "settlement-splitter"
log = structlog.get_logger(__name__)


Uow = UnitOfWork[repo.LedgerBatch]


def make_handler(fee_bps: int) -> Handler:
    # The ledger of record's own handlers (issue 10); imported here, as they use this module.
    from services.settlement_splitter.book import (
        on_hold_resolved,
        on_payment_reversed,
        on_payout_requested,
        on_payout_result,
    )

    async def on_payment_(uow: Uow, event: m.ReceivablesSettled) -> Rejected | None:
        return await on_payment(uow, event, fee_bps)

    async def on_instruction_(uow: Uow, event: m.RepaymentInstruction) -> Rejected | None:
        return _told_when_refused(
            uow, event, event.payment_id, await on_instruction(uow, event, fee_bps)
        )

    async def on_hold_settled_(uow: Uow, event: m.HoldSettled) -> Rejected | None:
        return _told_when_refused(
            uow, event, event.settlement_id, await on_hold_settled(uow, event)
        )

    async def moves_no_money(uow: Uow, event: m.Message) -> Rejected | None:
        return None

    return dispatch(
        {
            m.ReceivablesSettled: on_payment_,
            m.RepaymentInstruction: on_instruction_,
            m.HoldSettled: on_hold_settled_,
            m.PrepaymentRequested: on_prepayment,
            m.PayoutRequested: on_payout_requested,
            m.PayoutResult: on_payout_result,
            m.HoldResolved: on_hold_resolved,
            m.PaymentReversed: on_payment_reversed,
            m.LoanOpened: on_loan_opened,
            m.SplitRulesSet: on_split_rules_set,
            m.PoolOpened: on_pool_opened,
            m.ReceivableAdded: moves_no_money,
            m.ReceivableAdjusted: moves_no_money,
            m.ReceivableDocumented: moves_no_money,
            m.BuyerConfirmedFinancing: moves_no_money,
        }
    )


def _told_when_refused(
    uow: Uow, instruction: m.Message, payment_id: str, refusal: Rejected | None
) -> Rejected | None:
    """credit reserved the repayments of an instruction when it sent it: when we refuse it
    (its dead letter keeps the bytes), no money moved, so credit is told to undo them."""
    if refusal is not None:
        settled = ledger_of(uow).settlements.get(payment_id)
        voided = (
            settled is not None
            and settled.pool_id == instruction.pool_id
            and settled.state == "voided"
            and settled.kind == "payment"
        )
        uow.emit(
            topics.SETTLEMENT_RESULTS,
            m.new_event(
                m.InstructionRefused,
                source=SOURCE,
                pool_id=instruction.pool_id,
                cause=instruction,
                payment_id=payment_id,
                instruction_event_id=instruction.event_id,
                reason=refusal.reason,
                detail=refusal.detail[:2048],
                returned_to_buyer=settled.amount if voided and settled else ZERO,
            ),
        )
    return refusal


def ledger_of(uow: Uow) -> repo.LedgerBatch:
    """This batch transaction's reads and pending writes (flushed by `flush` before commit)."""
    return uow.state


async def on_payment(uow: Uow, payment: m.ReceivablesSettled, fee_bps: int) -> Rejected | None:
    ledger = ledger_of(uow)
    account = await ledger.account(uow.conn, payment.pool_id)
    existing = await _settlement_of(uow, payment.pool_id, payment.payment_id)
    if isinstance(existing, Rejected):
        return existing
    if existing is not None and existing.state != "instructed":
        return Rejected(
            m.Reason.DUPLICATE_PAYMENT,
            f"{existing.kind} {payment.payment_id} is already {existing.state}",
        )
    instruction = (
        m.RepaymentInstruction.model_validate(existing.instruction)
        if existing is not None
        else None
    )
    split: Split | None = None
    if instruction is not None:
        # Decided before anything is posted: a refusal freezes nothing, the payment's dead
        # letter (with its reason) is there for an operator, and credit undoes its reservation.
        planned = await _planned(uow, account, instruction, payment, fee_bps)
        if isinstance(planned, Rejected):
            return _told_when_refused(uow, instruction, instruction.payment_id, planned)
        split = planned
    _freeze(ledger, account, payment)
    if instruction is None or split is None:
        ledger.save_settlement(
            payment.payment_id,
            payment.pool_id,
            payment.amount,
            "frozen",
            payment=payment.model_dump(mode="json"),
        )
        return None
    _post_split(uow, account, payment.payment_id, instruction, split, payment=payment)
    return None


async def _planned(
    uow: Uow,
    account: repo.ControlledAccount,
    instruction: m.RepaymentInstruction,
    payment: m.ReceivablesSettled,
    fee_bps: int,
) -> Split | Rejected:
    if refusal := await _unheld_loans(uow, instruction.pool_id, instruction.repayments):
        return refusal
    if instruction.amount != payment.amount:
        return Rejected(
            m.Reason.AMOUNT_MISMATCH,
            f"instruction is for {instruction.amount}, payment is {payment.amount}",
        )
    # The payment is not frozen yet (its freeze is posted with the split): its own amount
    # counts in the month's volume, as it does when the instruction comes second.
    pricing = await _pricing(uow, instruction, fee_bps, not_yet_frozen=payment.amount)
    return _plan(instruction, account, pricing)


async def on_instruction(
    uow: Uow, instruction: m.RepaymentInstruction, fee_bps: int
) -> Rejected | None:
    ledger = ledger_of(uow)
    account = await ledger.account(uow.conn, instruction.pool_id)
    existing = await _settlement_of(uow, instruction.pool_id, instruction.payment_id)
    if isinstance(existing, Rejected):
        return existing
    # Only loans credit opened, in this pool, to their funder, within what is outstanding.
    if refusal := await _unheld_loans(uow, instruction.pool_id, instruction.repayments):
        return refusal
    if existing is None:
        if instruction.kind == "prepayment":
            # credit decides a prepayment only once we froze it (PrepaymentFrozen): one that
            # is not here was never asked for, and must not wait to split money later.
            return Rejected(
                m.Reason.INVALID_MESSAGE,
                f"prepayment {instruction.payment_id} was never frozen in pool "
                f"{instruction.pool_id}",
            )
        # Checked now so that a split that cannot add up is refused as the instruction it is,
        # not later as the payment; what the pool holds is checked when the money is here.
        unsplittable = _split_of(instruction, await _pricing(uow, instruction, fee_bps))
        if isinstance(unsplittable, Rejected):
            return unsplittable
        # The instruction overtook the payment: keep it; no money moves (invariant 3).
        ledger.save_settlement(
            instruction.payment_id,
            instruction.pool_id,
            instruction.amount,
            "instructed",
            instruction=instruction.model_dump(mode="json"),
        )
        return None
    if existing.state != "frozen":
        return Rejected(
            m.Reason.DUPLICATE_PAYMENT,
            f"{existing.kind} {instruction.payment_id} is already {existing.state}",
        )
    if existing.kind != instruction.kind:
        return Rejected(
            m.Reason.INVALID_MESSAGE,
            f"a {instruction.kind} instruction for {instruction.payment_id}, "
            f"which is a {existing.kind}",
        )
    if existing.amount != instruction.amount:
        return Rejected(
            m.Reason.AMOUNT_MISMATCH,
            f"instruction is for {instruction.amount}, {existing.amount} is frozen",
        )
    split = _plan(instruction, account, await _pricing(uow, instruction, fee_bps))
    if isinstance(split, Rejected):
        return split
    _post_split(uow, account, instruction.payment_id, instruction, split)
    return None


async def on_hold_settled(uow: Uow, event: m.HoldSettled) -> Rejected | None:
    """credit moves money on hold: to the funders and back to the supplier's free balance.
    Answered like a payment's split, under its own settlement id, once."""
    ledger = ledger_of(uow)
    account = await ledger.account(uow.conn, event.pool_id)
    existing = await _settlement_of(uow, event.pool_id, event.settlement_id)
    if isinstance(existing, Rejected):
        return existing
    if existing is not None:
        return Rejected(
            m.Reason.DUPLICATE_PAYMENT,
            f"{existing.kind} {event.settlement_id} is already {existing.state}",
        )
    split = settle_hold(event.amount, _parts(event.repayments), event.released)
    if isinstance(split, Rejected):
        return split
    short = insufficient(held_account(event.pool_id), event.amount, account.held)
    if short is not None:
        return short
    if refusal := await _unheld_loans(uow, event.pool_id, event.repayments):
        return refusal
    digest = ledger.post(
        account,
        payment_id=event.settlement_id,
        kind="hold",
        entries=_with_investors(ledger, split.entries(event.pool_id), event.repayments)[0]
        + _principal_lines(ledger, event),
        inputs={
            "event_id": event.event_id,
            "reason": event.reason,
            "amount": in_fen(event.amount),
            "released": in_fen(event.released),
            "repayments": _repayment_inputs(event.repayments),
            "rule_version": split.rule_version,
        },
    )
    _repay(ledger, event.repayments)
    ledger.save_settlement(
        event.settlement_id,
        event.pool_id,
        event.amount,
        "released",
        kind="hold",
        instruction=event.model_dump(mode="json"),
        released=split.released,
    )
    _announce(uow, event, event.settlement_id, event.amount, split, event.repayments, digest)
    return None


async def on_prepayment(uow: Uow, event: m.PrepaymentRequested) -> Rejected | None:
    """随借随还: freeze the prepayment out of the supplier's free balance and let credit decide
    it (PrepaymentFrozen); its RepaymentInstruction is then split like a payment's."""
    ledger = ledger_of(uow)
    # Only the pool's own supplier prepays from its free balance.
    supplier = await ledger.supplier(uow.conn, event.pool_id)
    if refusal := not_the_party(uow.principal, supplier, "the pool's supplier", event):
        return refusal
    account = await ledger.account(uow.conn, event.pool_id)
    existing = await _settlement_of(uow, event.pool_id, event.prepayment_id)
    if isinstance(existing, Rejected):
        return existing
    if existing is not None:
        return Rejected(
            m.Reason.DUPLICATE_PAYMENT,
            f"{existing.kind} {event.prepayment_id} is already {existing.state}",
        )
    entries = freeze_prepayment(event.pool_id, event.amount, account.free)
    if isinstance(entries, Rejected):
        return entries
    ledger.post(
        account,
        payment_id=event.prepayment_id,
        kind="prepayment",
        entries=entries,
        inputs={"event_id": event.event_id, "loan_id": event.loan_id},
    )
    ledger.save_settlement(
        event.prepayment_id,
        event.pool_id,
        event.amount,
        "frozen",
        kind="prepayment",
        payment=event.model_dump(mode="json"),
    )
    uow.emit(
        topics.SETTLEMENT_RESULTS,
        m.new_event(
            m.PrepaymentFrozen,
            source=SOURCE,
            pool_id=event.pool_id,
            cause=event,
            prepayment_id=event.prepayment_id,
            amount=event.amount,
            loan_id=event.loan_id,
        ),
    )
    return None


async def on_split_rules_set(uow: Uow, event: m.SplitRulesSet) -> Rejected | None:
    """An operator's split rules for a programme or a pool: validated, then a new version
    that every later split of its pools uses (and records)."""
    if why := rules_refusal(event.rules):
        return Rejected(m.Reason.INVALID_SPLIT_RULES, why)
    scope = (
        f"programme:{event.core_enterprise_id}"
        if event.scope is m.SplitScope.PROGRAMME
        else f"pool:{event.pool_id}"
    )
    version = await ledger_of(uow).save_rules(
        uow.conn, scope, event.rules.model_dump(mode="json"), event.event_id
    )
    log.info("split rules set", scope=scope, version=version, event_id=event.event_id)
    return None


async def on_pool_opened(uow: Uow, event: m.PoolOpened) -> Rejected | None:
    """Whose pool it is: its supplier alone prepays from its free balance."""
    ledger_of(uow).open_pool(event.pool_id, event.core_enterprise_id, event.supplier_id)
    return None


async def on_loan_opened(uow: Uow, event: m.LoanOpened) -> Rejected | None:
    """credit opened a loan: from now on instructions may repay it, within its principal."""
    ledger = ledger_of(uow)
    known = await ledger.loan(uow.conn, event.loan_id)
    if known is not None:
        if (known.pool_id, known.funder_id, known.principal) == (
            event.pool_id,
            event.funder_id,
            event.principal,
        ):
            return None  # told again (e.g. a relay's repeat under a new event): nothing new
        return Rejected(
            m.Reason.INVALID_MESSAGE,
            f"loan {event.loan_id} is held already as {known.principal} from "
            f"{known.funder_id} in {known.pool_id}",
        )
    account = await ledger.account(uow.conn, event.pool_id)
    supplier = await ledger.supplier(uow.conn, event.pool_id) or event.pool_id
    investors = [(i.investor_id, i.amount) for i in event.investors]
    ledger.open_loan(
        repo.HeldLoan(
            event.loan_id,
            event.pool_id,
            event.funder_id,
            event.principal,
            booked=True,
            investors=investors,
        )
    )
    # Every fen booked: the funder's money to the supplier (a platform's: its investors'), and
    # the debt it leaves.
    entries = disbursement_entries(
        event.pool_id, supplier, event.loan_id, event.funder_id, event.principal
    )
    if investors:
        entries = [line for line in entries if line[0] != funder_account(event.funder_id)] + [
            (investor_account(event.loan_id, investor), -amount) for investor, amount in investors
        ]
    ledger.post(
        account,
        payment_id=event.loan_id,
        kind="disbursement",
        entries=entries,
        inputs={
            "event_id": event.event_id,
            "funder_id": event.funder_id,
            "supplier_id": supplier,
            "disbursed_on": event.disbursed_on.isoformat(),
            "contract_hash": event.contract_hash,
        },
    )
    return None


async def _unheld_loans(
    uow: Uow, pool_id: str, repayments: Sequence[m.LoanRepayment]
) -> Rejected | None:
    """Money goes to a funder only for a loan credit opened in this pool, to that funder, and
    never more principal than is outstanding (reconciled by id with credit's LoanOpened)."""
    principal: dict[str, Decimal] = {}
    for r in repayments:
        principal[r.loan_id] = principal.get(r.loan_id, Decimal("0.00")) + r.principal
    for r in repayments:
        loan = await ledger_of(uow).loan(uow.conn, r.loan_id)
        if loan is None or loan.pool_id != pool_id:
            return Rejected(
                m.Reason.LOAN_NOT_HELD, f"credit opened no loan {r.loan_id} in pool {pool_id}"
            )
        if loan.funder_id != r.funder_id:
            return Rejected(
                m.Reason.LOAN_NOT_HELD,
                f"loan {r.loan_id} was lent by {loan.funder_id}, not {r.funder_id}",
            )
        if principal[r.loan_id] > loan.outstanding:
            return Rejected(
                m.Reason.LOAN_NOT_HELD,
                f"repays {principal[r.loan_id]} of loan {r.loan_id}, which has "
                f"{loan.outstanding} outstanding",
            )
    return None


def _with_investors(
    ledger: repo.LedgerBatch,
    entries: list[tuple[str, Decimal]],
    repayments: Sequence[m.LoanRepayment],
) -> tuple[list[tuple[str, Decimal]], dict[str, dict[str, Decimal]]]:
    """A platform's loans repay its investors, by their shares, not the platform itself."""
    investors = {
        r.loan_id: loan.investors
        for r in repayments
        if (loan := ledger.loans.get(r.loan_id)) is not None and loan.investors
    }
    if not investors:
        return entries, {}
    parts = [(r.loan_id, r.funder_id, r.total) for r in repayments if r.loan_id in investors]
    return to_investors(entries, parts, investors)


def _principal_lines(
    ledger: repo.LedgerBatch, cause: m.RepaymentInstruction | m.HoldSettled
) -> list[tuple[str, Decimal]]:
    """The principal a split repays, off the funders' receivables and the supplier's loan
    account, for every loan whose disbursement the book holds."""
    by_loan: dict[str, Decimal] = {}
    for r in cause.repayments:
        loan = ledger.loans.get(r.loan_id)
        if loan is not None and loan.booked and r.principal:
            by_loan[r.loan_id] = by_loan.get(r.loan_id, ZERO) + r.principal
    return principal_entries(cause.pool_id, by_loan)


def _repay(ledger: repo.LedgerBatch, repayments: Sequence[m.LoanRepayment]) -> None:
    for r in repayments:
        if r.principal:
            ledger.repay(r.loan_id, r.principal)


async def _settlement_of(
    uow: Uow, pool_id: str, payment_id: str
) -> repo.Settlement | Rejected | None:
    """The payment's settlement, which must be of this pool: a lookup by id alone would let a
    message of one pool split money frozen in another's account (issue 6, defect 1)."""
    existing = await ledger_of(uow).settlement(uow.conn, payment_id)
    if existing is not None and existing.pool_id != pool_id:
        return Rejected(
            m.Reason.PAYMENT_NOT_IN_POOL,
            f"payment {payment_id} belongs to another pool, not {pool_id}",
        )
    return existing


def _freeze(
    ledger: repo.LedgerBatch, account: repo.ControlledAccount, payment: m.ReceivablesSettled
) -> None:
    ledger.post(
        account,
        payment_id=payment.payment_id,
        kind="freeze",
        entries=[
            (buyer_account(payment.core_enterprise_id), -payment.amount),
            (frozen_account(payment.pool_id), payment.amount),
        ],
        inputs={
            "event_id": payment.event_id,
            "receivable_ids": payment.receivable_ids,
            "written_off": in_fen(payment.written_off),
            "paid_on": payment.paid_on.isoformat(),
        },
    )


def _parts(repayments: Sequence[m.LoanRepayment]) -> list[FunderPart]:
    return [FunderPart(r.funder_id, r.principal, r.interest, r.penalty, r.fees) for r in repayments]


@dataclass(frozen=True, slots=True)
class Pricing:
    """How the rest of a payment is split: the pool's split rules in force (with the facts
    their dynamic rates resolve from), else the platform fee in basis points."""

    fee_bps: int
    rules: repo.PoolRules | None = None
    facts: Facts = field(default_factory=Facts)


async def _pricing(
    uow: Uow,
    instruction: m.RepaymentInstruction,
    fee_bps: int,
    not_yet_frozen: Decimal = ZERO,
) -> Pricing:
    # A prepayment is the supplier's own money, already split when it was first released:
    # what of it no loan needs goes back to its free balance, with no fee and no rule.
    if instruction.kind == "prepayment":
        return Pricing(0)
    rules = await ledger_of(uow).rules_for(uow.conn, instruction.pool_id)
    if rules is None:
        return Pricing(fee_bps)
    volume = await ledger_of(uow).volume_this_month(uow.conn, instruction.pool_id)
    volume += not_yet_frozen
    return Pricing(fee_bps, rules, Facts(grade=instruction.grade, volume_this_month=volume))


def _split_of(instruction: m.RepaymentInstruction, pricing: Pricing) -> Split | Rejected:
    return split_payment(
        instruction.amount,
        _parts(instruction.repayments),
        pricing.fee_bps,
        held=instruction.held,
        from_held=instruction.from_held,
        rules=pricing.rules.rules if pricing.rules else None,
        rule_version=pricing.rules.label if pricing.rules else None,
        facts=pricing.facts,
    )


def _plan(
    instruction: m.RepaymentInstruction, account: repo.ControlledAccount, pricing: Pricing
) -> Split | Rejected:
    """The instruction's split, if the pool holds the held money it adds."""
    split = _split_of(instruction, pricing)
    if isinstance(split, Rejected):
        return split
    short = insufficient(held_account(instruction.pool_id), split.from_held, account.held)
    return short if short is not None else split


def _repayment_inputs(repayments: Sequence[m.LoanRepayment]) -> list[dict[str, Any]]:
    return [
        {
            "loan_id": r.loan_id,
            "funder_id": r.funder_id,
            "principal": in_fen(r.principal),
            "interest": in_fen(r.interest),
            "penalty": in_fen(r.penalty),
            "fees": in_fen(r.fees),
            "days": r.days,
        }
        for r in repayments
    ]


def _post_split(
    uow: Uow,
    account: repo.ControlledAccount,
    payment_id: str,
    instruction: m.RepaymentInstruction,
    split: Split,
    payment: m.ReceivablesSettled | None = None,
) -> None:
    pool_id = instruction.pool_id
    ledger = ledger_of(uow)
    digest = ledger.post(
        account,
        payment_id=payment_id,
        kind="split",
        entries=_with_investors(ledger, split.entries(pool_id), instruction.repayments)[0]
        + _principal_lines(ledger, instruction),
        # What decided this split, so an auditor can replay why (invariant 7).
        inputs={
            "instruction_event_id": instruction.event_id,
            "kind": instruction.kind,
            "water_level_after": in_fen(instruction.water_level_after),
            "discount_rate": instruction.discount_rate,  # fixed-point text in the hash
            "credit_line": in_fen(instruction.credit_line),
            "loan_balance_before": in_fen(instruction.loan_balance_before),
            "loan_balance_after": in_fen(instruction.loan_balance_after),
            "held": in_fen(instruction.held),
            "from_held": in_fen(instruction.from_held),
            "value_date": instruction.value_date,
            "repayments": _repayment_inputs(instruction.repayments),
            "rule_version": split.rule_version,
            # Why a dynamic rule came out as it did: the facts it resolved (issue 10).
            **({"rule_facts": dict(split.rule_facts)} if split.rule_facts else {}),
        },
    )
    _repay(ledger, instruction.repayments)
    ledger.save_settlement(
        payment_id,
        pool_id,
        instruction.amount,
        "released",
        kind=instruction.kind,
        payment=payment.model_dump(mode="json") if payment is not None else None,
        instruction=instruction.model_dump(mode="json"),
        released=split.released,
    )
    _announce(
        uow, instruction, payment_id, instruction.amount, split, instruction.repayments, digest
    )


def _announce(
    uow: Uow,
    cause: m.Message,
    payment_id: str,
    amount: Decimal,
    split: Split,
    repayments: Sequence[m.LoanRepayment],
    digest: str,
) -> None:
    """The results of a posted split: to credit, to each funder paid, to the supplier."""
    pool_id = cause.pool_id
    uow.emit(
        topics.SETTLEMENT_RESULTS,
        m.new_event(
            m.SettlementReleased,
            source=SOURCE,
            pool_id=pool_id,
            cause=cause,
            payment_id=payment_id,
            amount=amount,
            repaid_principal=split.principal,
            # Everything else the funders got: interest, penalty and the loan's fees (the
            # funder's, not the platform's); `fees` is the platform's fee only.
            repaid_interest=split.interest + split.penalty + split.loan_fees,
            fees=split.fees,
            released=split.released,
            held=split.held,
            from_held=split.from_held,
            receivers=dict(split.receivers),
            rule_version=split.rule_version,
            ledger_hash=digest,
        ),
    )
    by_investor = _with_investors(ledger_of(uow), [], repayments)[1]  # a platform's lenders
    for funder_id, total in sorted(split.to_funders.items()):
        if total > 0:
            uow.emit(
                topics.SETTLEMENT_FUNDER_REPAYMENTS,
                m.new_event(
                    m.FunderRepaymentNotice,
                    source=SOURCE,
                    pool_id=pool_id,
                    cause=cause,
                    payment_id=payment_id,
                    funder_id=funder_id,
                    total=total,
                    repayments=[r for r in repayments if r.funder_id == funder_id],
                    investors=by_investor.get(funder_id, {}),
                ),
            )
    uow.emit(
        topics.SETTLEMENT_RELEASES,
        m.new_event(
            m.SupplierFundsReleased,
            source=SOURCE,
            pool_id=pool_id,
            cause=cause,
            payment_id=payment_id,
            released=split.released,
        ),
    )
