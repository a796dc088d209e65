"""The ERP scenario, once: the raw messages an ERP, an operator, a supplier and a funder
publish, as JSON-ready dicts with amounts as strings. The demo, the benchmark and the tests
build their traffic from these."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from poolfin.clients import erp_event
from shared.contracts import topics

Record = tuple[str, dict[str, Any]]  # (topic, message)


def onboarding(pool_id: str, core: str, supplier: str, name: str = "Supplier") -> Record:
    return topics.ERP_SUPPLIERS, erp_event(
        "SupplierOnboarded",
        pool_id,
        core_enterprise_id=core,
        supplier_id=supplier,
        supplier_name=name,
    )


def facility(
    pool_id: str,
    *,
    line: str = "1000000.00",
    rate: str = "0.8",
    interest: str = "0.0435",
    funder: str = "bank-test",
    source: str = "operator",
    **extra: Any,
) -> Record:
    return topics.ADMIN_FACILITIES, erp_event(
        "FacilitySet",
        pool_id,
        source=source,
        credit_line=line,
        discount_rate=rate,
        annual_interest_rate=interest,
        funder_id=funder,
        **extra,
    )


def slip(
    pool_id: str, receivable_id: str, amount: str, issued_on: date | str, **documents: str
) -> Record:
    """A settlement slip; `documents` may name its purchase_order_id, goods_receipt_id and
    invoice_id (trade background)."""
    return topics.ERP_SETTLEMENT_SLIPS, erp_event(
        "SettlementSlipIssued",
        pool_id,
        receivable_id=receivable_id,
        amount=amount,
        issued_on=str(issued_on),
        **documents,
    )


def split_rules(core: str, rules: dict[str, Any]) -> Record:
    """An operator's split rules for a programme (all of a core enterprise's pools)."""
    return topics.ADMIN_SPLIT_RULES, erp_event(
        "SplitRulesSet",
        core,
        source="operator",
        scope="programme",
        core_enterprise_id=core,
        rules=rules,
    )


def purchase_order(pool_id: str, document_id: str, amount: str, issued_on: date | str) -> Record:
    return topics.ERP_TRADE_DOCUMENTS, erp_event(
        "PurchaseOrderIssued",
        pool_id,
        document_id=document_id,
        amount=amount,
        issued_on=str(issued_on),
    )


def goods_receipt(
    pool_id: str, document_id: str, amount: str, received_on: date | str, order: str | None = None
) -> Record:
    return topics.ERP_TRADE_DOCUMENTS, erp_event(
        "GoodsReceived",
        pool_id,
        document_id=document_id,
        purchase_order_id=order,
        amount=amount,
        received_on=str(received_on),
    )


def invoice(
    pool_id: str,
    document_id: str,
    amount: str,
    issued_on: date | str,
    *,
    number: str,
    code: str = "044031900111",
    seller_tax_id: str = "91440300MA5F00042X",
    buyer_tax_id: str = "91110000100000001A",
) -> Record:
    """A VAT invoice (fapiao) as the buyer's ERP booked it."""
    return topics.ERP_TRADE_DOCUMENTS, erp_event(
        "InvoiceIssued",
        pool_id,
        document_id=document_id,
        invoice_code=code,
        invoice_number=number,
        seller_tax_id=seller_tax_id,
        buyer_tax_id=buyer_tax_id,
        amount=amount,
        issued_on=str(issued_on),
    )


def payment(
    pool_id: str, payment_id: str, amount: str, receivable_ids: list[str], paid_on: date | str
) -> Record:
    return topics.ERP_PAYMENTS, erp_event(
        "PaymentReceived",
        pool_id,
        payment_id=payment_id,
        amount=amount,
        receivable_ids=receivable_ids,
        paid_on=str(paid_on),
    )


def application(
    pool_id: str, application_id: str, amount: str, supplier: str = "supplier"
) -> Record:
    return topics.SUPPLIER_FINANCING_APPLICATIONS, erp_event(
        "FinancingApplied", pool_id, source=supplier, application_id=application_id, amount=amount
    )


def confirmation(pool_id: str, application_id: str, confirmed: bool = True, **extra: Any) -> Record:
    return topics.ERP_FINANCING_CONFIRMATIONS, erp_event(
        "FinancingConfirmation",
        pool_id,
        application_id=application_id,
        confirmed=confirmed,
        **extra,
    )


def disbursal(request: dict[str, Any], value_date: date | str) -> Record:
    """A bank's answer to a FundingRequest it read on its topic: the money is paid out, and
    its signed answer carries the contract's hash (its signature of the contract)."""
    return topics.FUNDING_RESPONSES, erp_event(
        "FunderResponse",
        request["pool_id"],
        source=request["funder_id"],
        request_id=request["request_id"],
        funder_id=request["funder_id"],
        decision="disbursed",
        amount=request["amount"],
        value_date=str(value_date),
        contract_hash=request.get("contract_hash"),
    )


def investor_commitment(request: dict[str, Any], investor: str, amount: str) -> Record:
    """An investor platform reports one investor's commitment to the raise `request` opened."""
    return topics.FUNDING_RESPONSES, erp_event(
        "InvestorCommitted",
        request["pool_id"],
        source=request["funder_id"],
        request_id=request["request_id"],
        funder_id=request["funder_id"],
        investor_id=investor,
        amount=amount,
        committed_at=datetime.now(UTC).isoformat(),
    )


def investor_contract_signatures(issued: dict[str, Any]) -> list[Record]:
    """The supplier's and the investor's signatures of one investor's contract
    (InvestorContractIssued): the supplier's on its topic, the investor's through its
    platform's. Each is signed by its signer's own key (the investor's: pass its role)."""
    fields = {
        "request_id": issued["request_id"],
        "investor_id": issued["investor_id"],
        "contract_hash": issued["contract_hash"],
    }
    return [
        (
            topics.SUPPLIER_CONTRACT_SIGNATURES,
            erp_event(
                "InvestorContractSigned", issued["pool_id"], source=issued["supplier_id"], **fields
            ),
        ),
        (
            topics.FUNDING_RESPONSES,
            erp_event(
                "InvestorContractSigned", issued["pool_id"], source=issued["investor_id"], **fields
            ),
        ),
    ]


def contract_signature(issued: dict[str, Any]) -> Record:
    """The supplier signs the loan contract the gateway issued (ContractIssued): signed by
    the supplier's key, this message is its signature over the contract's hash."""
    return topics.SUPPLIER_CONTRACT_SIGNATURES, erp_event(
        "ContractSigned",
        issued["pool_id"],
        source=issued["supplier_id"],
        request_id=issued["request_id"],
        contract_hash=issued["contract_hash"],
    )


def credit_note(
    pool_id: str, receivable_id: str, credit_note_id: str, amount: str, reason: str
) -> Record:
    """The buyer credits part of a slip back (dilution)."""
    return topics.ERP_SLIP_ADJUSTMENTS, erp_event(
        "CreditNoteIssued",
        pool_id,
        receivable_id=receivable_id,
        credit_note_id=credit_note_id,
        amount=amount,
        reason=reason,
    )


def cancellation(pool_id: str, receivable_id: str, reason: str) -> Record:
    return topics.ERP_SLIP_ADJUSTMENTS, erp_event(
        "SlipCancelled", pool_id, receivable_id=receivable_id, reason=reason
    )


def amendment(pool_id: str, receivable_id: str, amount: str, reason: str) -> Record:
    return topics.ERP_SLIP_ADJUSTMENTS, erp_event(
        "SlipAmended", pool_id, receivable_id=receivable_id, amount=amount, reason=reason
    )


def dispute(
    pool_id: str, receivable_id: str, dispute_id: str, reason: str, *, opened: bool
) -> Record:
    return topics.ERP_SLIP_ADJUSTMENTS, erp_event(
        "DisputeOpened" if opened else "DisputeClosed",
        pool_id,
        receivable_id=receivable_id,
        dispute_id=dispute_id,
        reason=reason,
    )
