"""settlement-splitter: freeze every payment, split it once the instruction for it is here
(either arrival order), release the rest (DESIGN steps 3 and 5)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.settlement_splitter import repository as repo
from services.settlement_splitter.domain import (
    buyer_account,
    frozen_account,
    in_fen,
    split_payment,
)
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected
from shared.inbox import Handler, UnitOfWork, dispatch

SOURCE = "settlement-splitter"


Uow = UnitOfWork[repo.LedgerBatch]


def make_handler(fee_bps: int) -> Handler:
    async def on_payment_(uow: Uow, event: m.ReceivablesSettled) -> Rejected | None:
        return await on_payment(uow, event, fee_bps)

    async def on_instruction_(uow: Uow, event: m.RepaymentInstruction) -> Rejected | None:
        return await on_instruction(uow, event, fee_bps)

    async def moves_no_money(uow: Uow, event: m.Message) -> Rejected | None:
        return None

    return dispatch(
        {
            m.ReceivablesSettled: on_payment_,
            m.RepaymentInstruction: on_instruction_,
            m.PoolOpened: moves_no_money,
            m.ReceivableAdded: moves_no_money,
            m.BuyerConfirmedFinancing: moves_no_money,
        }
    )


def ledger_of(uow: Uow) -> repo.LedgerBatch:
    """This batch transaction's reads and pending writes (flushed by `flush` before commit)."""
    return uow.state


async def on_payment(uow: Uow, payment: m.ReceivablesSettled, fee_bps: int) -> Rejected | None:
    ledger = ledger_of(uow)
    head = await ledger.head(uow.conn, payment.pool_id)
    existing = await _settlement_of(uow, payment.pool_id, payment.payment_id)
    if isinstance(existing, Rejected):
        return existing
    if existing is not None and existing["state"] != "instructed":
        return Rejected(
            m.Reason.DUPLICATE_PAYMENT,
            f"payment {payment.payment_id} is already {existing['state']}",
        )
    instruction = (
        m.RepaymentInstruction.model_validate(existing["instruction"])
        if existing is not None
        else None
    )
    if instruction is not None and instruction.amount != payment.amount:
        return Rejected(
            m.Reason.AMOUNT_MISMATCH,
            f"instruction is for {instruction.amount}, payment is {payment.amount}",
        )
    _freeze(ledger, head, payment)
    if instruction is None:
        ledger.save_settlement(
            payment.payment_id,
            payment.pool_id,
            payment.amount,
            "frozen",
            payment=payment.model_dump(mode="json"),
        )
        return None
    await _split(
        uow, head, payment.payment_id, instruction, fee_bps, payment=payment.model_dump(mode="json")
    )
    return None


async def on_instruction(
    uow: Uow, instruction: m.RepaymentInstruction, fee_bps: int
) -> Rejected | None:
    ledger = ledger_of(uow)
    head = await ledger.head(uow.conn, instruction.pool_id)
    existing = await _settlement_of(uow, instruction.pool_id, instruction.payment_id)
    if isinstance(existing, Rejected):
        return existing
    if existing is None:
        # The instruction overtook the payment: keep it; no money moves (invariant 3).
        ledger.save_settlement(
            instruction.payment_id,
            instruction.pool_id,
            instruction.amount,
            "instructed",
            instruction=instruction.model_dump(mode="json"),
        )
        return None
    if existing["state"] != "frozen":
        return Rejected(
            m.Reason.DUPLICATE_PAYMENT,
            f"payment {instruction.payment_id} is already {existing['state']}",
        )
    if Decimal(existing["amount"]) != instruction.amount:
        return Rejected(
            m.Reason.AMOUNT_MISMATCH,
            f"instruction is for {instruction.amount}, {existing['amount']} is frozen",
        )
    await _split(uow, head, instruction.payment_id, instruction, fee_bps)
    return None


async def _settlement_of(
    uow: Uow, pool_id: str, payment_id: str
) -> dict[str, Any] | Rejected | None:
    """The payment's settlement, which must be of this pool: a lookup by id alone would let a
    message of one pool split money frozen in another's account (issue 6, defect 1)."""
    existing = await ledger_of(uow).settlement(uow.conn, payment_id)
    if existing is not None and existing["pool_id"] != pool_id:
        return Rejected(
            m.Reason.PAYMENT_NOT_IN_POOL,
            f"payment {payment_id} belongs to another pool, not {pool_id}",
        )
    return existing


def _freeze(ledger: repo.LedgerBatch, head: dict[str, Any], payment: m.ReceivablesSettled) -> None:
    ledger.post(
        head,
        pool_id=payment.pool_id,
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


async def _split(
    uow: Uow,
    head: dict[str, Any],
    payment_id: str,
    instruction: m.RepaymentInstruction,
    fee_bps: int,
    payment: dict[str, Any] | None = None,
) -> None:
    split = split_payment(
        instruction.amount,
        ((r.funder_id, r.principal, r.interest) for r in instruction.repayments),
        fee_bps,
    )
    pool_id = instruction.pool_id
    ledger = ledger_of(uow)
    digest = ledger.post(
        head,
        pool_id=pool_id,
        payment_id=payment_id,
        kind="split",
        entries=split.entries(pool_id),
        # What decided this split, so an auditor can replay why (invariant 7).
        inputs={
            "instruction_event_id": instruction.event_id,
            "water_level_after": in_fen(instruction.water_level_after),
            "discount_rate": instruction.discount_rate,  # fixed-point text in the hash
            "credit_line": in_fen(instruction.credit_line),
            "loan_balance_before": in_fen(instruction.loan_balance_before),
            "loan_balance_after": in_fen(instruction.loan_balance_after),
            "repayments": [
                {
                    "loan_id": r.loan_id,
                    "funder_id": r.funder_id,
                    "principal": in_fen(r.principal),
                    "interest": in_fen(r.interest),
                    "days": r.days,
                }
                for r in instruction.repayments
            ],
            "rule_version": split.rule_version,
        },
    )
    ledger.save_settlement(
        payment_id,
        pool_id,
        instruction.amount,
        "released",
        payment=payment,
        instruction=instruction.model_dump(mode="json"),
        released=split.released,
    )
    uow.emit(
        topics.SETTLEMENT_RESULTS,
        m.new_event(
            m.SettlementReleased,
            source=SOURCE,
            pool_id=pool_id,
            cause=instruction,
            payment_id=payment_id,
            amount=instruction.amount,
            repaid_principal=split.principal,
            repaid_interest=split.interest,
            fees=split.fees,
            released=split.released,
            ledger_hash=digest,
        ),
    )
    for funder_id, total in sorted(split.to_funders.items()):
        if total > 0:
            uow.emit(
                topics.SETTLEMENT_FUNDER_REPAYMENTS,
                m.new_event(
                    m.FunderRepaymentNotice,
                    source=SOURCE,
                    pool_id=pool_id,
                    cause=instruction,
                    payment_id=payment_id,
                    funder_id=funder_id,
                    total=total,
                    repayments=[r for r in instruction.repayments if r.funder_id == funder_id],
                ),
            )
    uow.emit(
        topics.SETTLEMENT_RELEASES,
        m.new_event(
            m.SupplierFundsReleased,
            source=SOURCE,
            pool_id=pool_id,
            cause=instruction,
            payment_id=payment_id,
            released=split.released,
        ),
    )
