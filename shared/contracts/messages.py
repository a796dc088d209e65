"""The message contract: one frozen pydantic model per message, each with its envelope.

ERP integrators and funders read this module (or the JSON Schemas and AsyncAPI document
generated from it under docs/contracts/). Within v1 only optional fields are added; a breaking
change is a new model on a `.v2` topic. Unknown fields are ignored so that a newer producer
does not break an older consumer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from shared.contracts.split_rules import RuleSet
from shared.money import Amount, PositiveAmount, PositiveTotal, Rate

Currency = Literal["CNY"]

# Dates are bounded at the edge, so no service accepts a date another cannot compute with
# (issue 6, defect 3). Every date lies in [DATE_FLOOR, DATE_CEILING]. A date an outside party
# says something happened on (a slip issued, a payment made, money disbursed) lies within
# PAST_WINDOW before and FUTURE_SLACK after the day the message arrives; a due date lies on or
# after the issue date and within DUE_WINDOW of arrival. "Arrival" is the UTC date on which
# the consuming service decodes the message (FUTURE_SLACK covers Beijing being ahead of UTC).
DATE_FLOOR = date(2000, 1, 1)
DATE_CEILING = date(2099, 12, 31)
PAST_WINDOW = timedelta(days=3660)
FUTURE_SLACK = timedelta(days=1)
DUE_WINDOW = timedelta(days=3660)
# A payment's date from the ERP is checked against the business day the money arrives (issue
# 8): not after it, and at most PAID_ON_WINDOW before it. Interest runs to the day the money
# arrives (`value_date` on ReceivablesSettled), never to a date the sender chose.
PAID_ON_WINDOW = timedelta(days=31)


def arrival_day(info: ValidationInfo) -> date | None:
    """The day a message arrives, when the decoder says (external topics); else None."""
    context = info.context if isinstance(info.context, dict) else {}
    today = context.get("today")
    return today if isinstance(today, date) else None


def _within_bounds(value: date) -> date:
    if not DATE_FLOOR <= value <= DATE_CEILING:
        raise ValueError(f"date {value} is outside {DATE_FLOOR} to {DATE_CEILING}")
    return value


def _happened(value: date, info: ValidationInfo) -> date:
    today = arrival_day(info)
    if today is not None and not today - PAST_WINDOW <= value <= today + FUTURE_SLACK:
        raise ValueError(
            f"date {value} must lie between {today - PAST_WINDOW} and {today + FUTURE_SLACK}"
            f" ({PAST_WINDOW.days} days before the day it arrives, to the day after)"
        )
    return value


def _due(value: date, info: ValidationInfo) -> date:
    today = arrival_day(info)
    if today is not None and value > today + DUE_WINDOW:
        raise ValueError(f"due date {value} is after {today + DUE_WINDOW}")
    return value


def _paid(value: date, info: ValidationInfo) -> date:
    today = arrival_day(info)
    if today is not None and not today - PAID_ON_WINDOW <= value <= today:
        raise ValueError(
            f"payment date {value} (paid_on) must lie between {today - PAID_ON_WINDOW} and "
            f"{today}, the business day the payment arrives "
            f"({PAID_ON_WINDOW.days} days before it, to it)"
        )
    return value


_DATE_SCHEMA = {"type": "string", "format": "date"}
BoundedDate = Annotated[
    date,
    AfterValidator(_within_bounds),
    WithJsonSchema(
        {
            **_DATE_SCHEMA,
            "description": f"ISO date from {DATE_FLOOR} to {DATE_CEILING}.",
        }
    ),
]
HappenedOn = Annotated[
    date,
    AfterValidator(_within_bounds),
    AfterValidator(_happened),
    WithJsonSchema(
        {
            **_DATE_SCHEMA,
            "description": f"ISO date, at most {PAST_WINDOW.days} days before the day the "
            "message arrives and at most one day after it.",
        }
    ),
]
DueOn = Annotated[
    date,
    AfterValidator(_within_bounds),
    AfterValidator(_due),
    WithJsonSchema(
        {
            **_DATE_SCHEMA,
            "description": "ISO date, on or after issued_on, at most "
            f"{DUE_WINDOW.days} days after the day the message arrives.",
        }
    ),
]
PaidOn = Annotated[
    date,
    AfterValidator(_within_bounds),
    AfterValidator(_paid),
    WithJsonSchema(
        {
            **_DATE_SCHEMA,
            "description": f"ISO date, at most {PAID_ON_WINDOW.days} days before the business "
            "day (Asia/Shanghai) the payment arrives, and not after it.",
        }
    ),
]
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/-]+$")]


class Reason(StrEnum):
    """Machine-readable reasons carried by dead letters and refusals."""

    NOT_JSON = "not_json"
    INVALID_MESSAGE = "invalid_message"
    INVALID_AMOUNT = "invalid_amount"
    UNKNOWN_TYPE = "unknown_type"
    EVENT_ID_CONFLICT = "event_id_conflict"
    # The record's Kafka key is missing or is not the message's pool_id (the partition key).
    KEY_MISMATCH = "key_mismatch"
    UNKNOWN_POOL = "unknown_pool"
    POOL_EXISTS = "pool_exists"
    DUPLICATE_RECEIVABLE = "duplicate_receivable"
    UNKNOWN_RECEIVABLE = "unknown_receivable"
    RECEIVABLE_NOT_IN_POOL = "receivable_not_in_pool"
    RECEIVABLE_ALREADY_PAID = "receivable_already_paid"
    PAYMENT_EXCEEDS_RECEIVABLES = "payment_exceeds_receivables"
    DUPLICATE_PAYMENT = "duplicate_payment"
    UNKNOWN_APPLICATION = "unknown_application"
    APPLICATION_NOT_PENDING = "application_not_pending"
    APPLICATION_NOT_IN_POOL = "application_not_in_pool"
    NOT_THE_POOLS_BUYER = "not_the_pools_buyer"
    PAYMENT_NOT_IN_POOL = "payment_not_in_pool"
    POOL_LIMIT_EXCEEDED = "pool_limit_exceeded"
    LEVEL_BELOW_ZERO = "level_below_zero"
    INVALID_DATE = "invalid_date"
    UNKNOWN_REQUEST = "unknown_request"
    INVALID_FACILITY = "invalid_facility"
    NO_FACILITY = "no_facility"
    EXCEEDS_AVAILABLE = "exceeds_available"
    DUPLICATE_APPLICATION = "duplicate_application"
    REJECTED_BY_BUYER = "rejected_by_buyer"
    REJECTED_BY_FUNDER = "rejected_by_funder"
    AMOUNT_MISMATCH = "amount_mismatch"
    RECEIVABLE_CLOSED = "receivable_closed"
    EXCEEDS_OPEN_AMOUNT = "exceeds_open_amount"
    DUPLICATE_ADJUSTMENT = "duplicate_adjustment"
    DISPUTE_STATE = "dispute_state"
    MARGIN_CALL = "margin_call"
    POOL_OVERDUE = "pool_overdue"
    DAY_ALREADY_CLOSED = "day_already_closed"
    DAY_NOT_BEGUN = "day_not_begun"
    UNKNOWN_SUGGESTION = "unknown_suggestion"
    UNKNOWN_LOAN = "unknown_loan"
    NOTHING_OWED = "nothing_owed"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    # Trust (issue 9): who proved the message, and whether it may send it.
    UNSIGNED = "unsigned"
    MALFORMED_SIGNATURE = "malformed_signature"
    UNKNOWN_KEY = "unknown_key"
    KEY_NOT_VALID = "key_not_valid"
    BAD_SIGNATURE = "bad_signature"
    NOT_PERMITTED = "not_permitted"
    REPLAYED = "replayed"
    STALE = "stale"
    UNAUTHENTICATED = "unauthenticated"
    WRONG_PRODUCER = "wrong_producer"
    SAME_OPERATOR = "same_operator"
    UNKNOWN_KEY_CHANGE = "unknown_key_change"
    KEY_CHANGE_DECIDED = "key_change_decided"
    KEY_EXISTS = "key_exists"
    ROLE_CONFLICT = "role_conflict"
    INVALID_KEY = "invalid_key"
    DUPLICATE_DOCUMENT = "duplicate_document"
    INVOICE_ENCUMBERED = "invoice_encumbered"
    LOAN_NOT_HELD = "loan_not_held"
    CONTRACT_MISMATCH = "contract_mismatch"
    CONTRACT_NOT_SIGNED = "contract_not_signed"
    INVALID_SPLIT_RULES = "invalid_split_rules"
    # The ledger of record (issue 10).
    SETTLEMENT_CLOSED = "settlement_closed"
    UNKNOWN_PAYOUT = "unknown_payout"
    NOTHING_TO_REVERSE = "nothing_to_reverse"
    # Programmes and funders (issue 11).
    FUNDER_LIMIT_EXCEEDED = "funder_limit_exceeded"
    NOT_IN_PROGRAMME = "not_in_programme"
    INVALID_PROGRAMME = "invalid_programme"
    RAISE_EXPIRED = "raise_expired"
    RAISE_NOT_OPEN = "raise_not_open"
    EXCEEDS_RAISE = "exceeds_raise"
    PROCESSING_ERROR = "processing_error"


def _type_is_required(schema: dict[str, Any]) -> None:
    """JSON Schema only: `type` is required. Its default fills the field in Python (each model
    knows its own type), but on the wire the decoder picks the model by it, and poolfin always
    writes it. Runtime validation is unchanged."""
    required = schema.setdefault("required", [])
    properties = schema.get("properties")
    if not isinstance(required, list) or not isinstance(properties, dict):
        return
    if "type" in properties and "type" not in required:
        order = list(properties)
        required.append("type")
        required.sort(key=lambda name: order.index(name) if name in order else len(order))


class Message(BaseModel):
    """The envelope every message carries."""

    model_config = ConfigDict(frozen=True, extra="ignore", json_schema_extra=_type_is_required)

    event_id: Id = Field(description="Unique id of this event; the dedupe key everywhere.")
    type: str = Field(description="The message type; fixed per model.")
    occurred_at: datetime = Field(description="When the event happened at its source (ISO 8601).")
    source: str = Field(
        min_length=1,
        max_length=128,
        description="Who produced it: an ERP id, a funder id or a service name.",
    )
    pool_id: Id = Field(
        description="The receivables pool (core enterprise + supplier); also the partition key."
    )
    schema_version: Literal[1] = Field(default=1, description="Version of this message's schema.")
    correlation_id: str | None = Field(
        default=None,
        max_length=128,
        description="Ties together every event of one business "
        "flow (e.g. an application or a payment).",
    )
    causation_id: str | None = Field(
        default=None, max_length=128, description="event_id of the event that caused this one."
    )
    signature: str | None = Field(
        default=None,
        max_length=4096,
        description="External producers' detached signature, `<scheme>:<key_id>:<base64url>`, "
        "over the canonical bytes of the whole message without this field (JSON, keys sorted, "
        "no whitespace, UTF-8: RFC 8785 for poolfin's messages). Required on every external "
        "topic; see docs/contracts/publishers.md for who may sign what.",
    )


# ---------------------------------------------------------------- from ERP systems (external)


class SupplierOnboarded(Message):
    """ERP onboards a supplier of the core enterprise: this opens the pool `pool_id`."""

    type: Literal["SupplierOnboarded"] = "SupplierOnboarded"
    core_enterprise_id: Id = Field(description="The buyer (核心企业).")
    supplier_id: Id = Field(description="The supplier (供应商), the borrower.")
    supplier_name: str = Field(min_length=1, max_length=256, description="Legal name.")


class SettlementSlipIssued(Message):
    """A confirmed payable (结算单): the receivable enters the pool; pushing it is 确权."""

    type: Literal["SettlementSlipIssued"] = "SettlementSlipIssued"
    receivable_id: Id = Field(description="The settlement slip's id, unique per core enterprise.")
    amount: PositiveAmount = Field(description="Amount owed, CNY, decimal string.")
    currency: Currency = Field(default="CNY", description="ISO 4217 currency code.")
    issued_on: HappenedOn = Field(description="Date the slip was generated.")
    due_on: DueOn | None = Field(default=None, description="Agreed payment date.")
    purchase_order_id: Id | None = Field(
        default=None, description="The purchase order behind it (erp.trade-documents.v1)."
    )
    goods_receipt_id: Id | None = Field(
        default=None, description="The goods receipt behind it (erp.trade-documents.v1)."
    )
    invoice_id: Id | None = Field(
        default=None,
        description="The invoice (fapiao) behind it (erp.trade-documents.v1); one invoice "
        "backs one open slip platform-wide.",
    )

    @model_validator(mode="after")
    def _due_after_issue(self) -> SettlementSlipIssued:
        if self.due_on is not None and self.due_on < self.issued_on:
            raise ValueError(
                f"due date {self.due_on} (due_on) is before the issue date {self.issued_on}"
            )
        return self


class PaymentReceived(Message):
    """The core enterprise pays the supplier and writes off (核销) the named receivables."""

    type: Literal["PaymentReceived"] = "PaymentReceived"
    payment_id: Id = Field(description="Unique id of the payment.")
    amount: PositiveAmount = Field(description="Money paid into the controlled account, CNY.")
    currency: Currency = Field(default="CNY", description="ISO 4217 currency code.")
    receivable_ids: list[Id] = Field(
        min_length=1, max_length=1000, description="Receivables this payment writes off."
    )
    paid_on: PaidOn = Field(
        description="The buyer's payment date; checked against the day the money arrives. "
        "Interest runs to the business day the money arrives, not to this date."
    )


class FinancingConfirmation(Message):
    """The core enterprise verifies (情况核实) a supplier's financing application."""

    type: Literal["FinancingConfirmation"] = "FinancingConfirmation"
    application_id: Id = Field(description="The application being confirmed or declined.")
    confirmed: bool = Field(description="True: the buyer confirms the trade background.")
    note: str | None = Field(default=None, max_length=1024, description="Free text.")
    core_enterprise_id: Id | None = Field(
        default=None,
        description="The confirming buyer; when given it must be the pool's core enterprise.",
    )


Why = Annotated[str, Field(min_length=1, max_length=1024)]


class CreditNoteIssued(Message):
    """The buyer credits part of a slip back (a return, a price correction): dilution."""

    type: Literal["CreditNoteIssued"] = "CreditNoteIssued"
    receivable_id: Id = Field(description="The slip credited.")
    credit_note_id: Id = Field(description="The credit note's id, unique per core enterprise.")
    amount: PositiveAmount = Field(description="Amount credited, at most the slip's open amount.")
    reason: Why = Field(description="Why (free text, kept with the dilution record).")


class SlipCancelled(Message):
    """The buyer cancels an open slip: its whole open amount leaves the pool."""

    type: Literal["SlipCancelled"] = "SlipCancelled"
    receivable_id: Id = Field(description="The slip cancelled.")
    reason: Why = Field(description="Why (required: a slip is never closed silently).")


class SlipAmended(Message):
    """The buyer corrects a slip's face value; what was paid or credited stays so."""

    type: Literal["SlipAmended"] = "SlipAmended"
    receivable_id: Id = Field(description="The slip amended.")
    amount: PositiveAmount = Field(
        description="The new face value; at least what was already paid and credited."
    )
    reason: Why = Field(description="Why.")


class DisputeOpened(Message):
    """The buyer disputes a slip: it stays open but leaves the borrowing base."""

    type: Literal["DisputeOpened"] = "DisputeOpened"
    receivable_id: Id = Field(description="The slip disputed.")
    dispute_id: Id = Field(description="The dispute's id.")
    reason: Why = Field(description="Why.")


class DisputeClosed(Message):
    """The dispute is resolved: the slip counts again (a credit note settles any reduction)."""

    type: Literal["DisputeClosed"] = "DisputeClosed"
    receivable_id: Id = Field(description="The slip.")
    dispute_id: Id = Field(description="The dispute closed.")
    reason: Why = Field(description="How it was resolved.")


# ---------------------------------------------------------------- trade documents (ERP / WMS)

TaxId = Annotated[
    str, Field(pattern=r"^[0-9A-Z]{15,20}$", description="Unified social credit code / tax id.")
]


class PurchaseOrderIssued(Message):
    """The buyer's purchase order (采购订单): the first leg of the three-way match."""

    type: Literal["PurchaseOrderIssued"] = "PurchaseOrderIssued"
    document_id: Id = Field(description="The order's id, unique per core enterprise.")
    amount: PositiveAmount = Field(description="Ordered value, CNY.")
    currency: Currency = Field(default="CNY", description="ISO 4217 currency code.")
    issued_on: HappenedOn = Field(description="Date of the order.")


class GoodsReceived(Message):
    """The buyer's warehouse (WMS) received the goods (入库单): the second leg."""

    type: Literal["GoodsReceived"] = "GoodsReceived"
    document_id: Id = Field(description="The receipt's id, unique per core enterprise.")
    purchase_order_id: Id | None = Field(default=None, description="The order it fulfils.")
    amount: PositiveAmount = Field(description="Value of the goods received, CNY.")
    currency: Currency = Field(default="CNY", description="ISO 4217 currency code.")
    received_on: HappenedOn = Field(description="Date the goods were received.")


class InvoiceIssued(Message):
    """The supplier's VAT invoice (发票) as the buyer's ERP booked it: the third leg. Its
    identity (seller tax id + invoice code + number) and its content are encumbered
    platform-wide while a slip it backs is open."""

    type: Literal["InvoiceIssued"] = "InvoiceIssued"
    document_id: Id = Field(description="The ERP's id of the booked invoice.")
    invoice_code: str = Field(pattern=r"^[0-9]{10,12}$", description="发票代码.")
    invoice_number: str = Field(pattern=r"^[0-9]{8,20}$", description="发票号码.")
    seller_tax_id: TaxId
    buyer_tax_id: TaxId
    amount: PositiveAmount = Field(description="Total including tax, CNY.")
    currency: Currency = Field(default="CNY", description="ISO 4217 currency code.")
    issued_on: HappenedOn = Field(description="Invoice date.")


# ---------------------------------------------------------------- operators and suppliers


class DayCount(StrEnum):
    ACT_360 = "ACT/360"
    ACT_365 = "ACT/365"


class InterestPeriod(StrEnum):
    AT_REPAYMENT = "at_repayment"  # 利随本清: interest is paid with the principal it ran on
    MONTHLY = "monthly"  # charged at each month's end
    QUARTERLY = "quarterly"  # charged at each quarter's end (Mar, Jun, Sep, Dec)


class InterestCollection(StrEnum):
    FROM_PAYMENTS = "from_payments"  # charged interest is taken from the next payments
    BILLED = "billed"  # charged interest is billed to the supplier, who prepays it


class CreditBounds(BaseModel):
    """Within these bounds a suggestion of the credit model is applied without an operator."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    line_min: PositiveAmount = Field(description="Lowest credit line applied automatically.")
    line_max: PositiveAmount = Field(description="Highest credit line applied automatically.")
    rate_min: Rate = Field(description="Lowest discount rate applied automatically.")
    rate_max: Rate = Field(description="Highest discount rate applied automatically.")


class FacilitySet(Message):
    """An operator sets (or replaces) the credit facility of a pool."""

    type: Literal["FacilitySet"] = "FacilitySet"
    credit_line: PositiveAmount = Field(description="授信额度: hard cap on the borrowing base.")
    discount_rate: Rate = Field(description="打折率: pool × rate is the borrowing base (0–1).")
    annual_interest_rate: Rate = Field(description='Yearly interest rate, e.g. "0.0435".')
    funder_id: Id = Field(description="The funder that lends to this pool.")
    funder_kind: Literal["bank", "platform"] = Field(
        default="bank", description="How the funder disburses."
    )
    day_count: DayCount = Field(default=DayCount.ACT_360, description="Interest day count.")
    tenor_days: int = Field(default=180, ge=1, le=3650, description="Loan term in days.")
    currency: Currency = Field(default="CNY", description="ISO 4217 currency code.")
    penalty_rate: Rate | None = Field(
        default=None,
        description="罚息: yearly rate on overdue principal; default 1.5 × annual_interest_rate.",
    )
    interest_period: InterestPeriod = Field(
        default=InterestPeriod.AT_REPAYMENT, description="When interest is charged."
    )
    interest_collection: InterestCollection = Field(
        default=InterestCollection.FROM_PAYMENTS, description="How charged interest is paid."
    )
    max_days_past_due: int = Field(
        default=90, ge=0, le=3650, description="A slip this many days past due is ineligible."
    )
    max_tenor_days: int = Field(
        default=365, ge=1, le=3660, description="A slip with a longer tenor is ineligible."
    )
    cross_age_percent: Rate = Field(
        default=Decimal("0.5"),
        le=1,
        description="When more than this share of the pool is past due beyond "
        "max_days_past_due, the whole pool is ineligible (cross-aging).",
    )
    concentration_limit: PositiveAmount | None = Field(
        default=None,
        description="At most this much of the buyer's receivables counts (a pool has one "
        "buyer: its sub-limit). None: no cap.",
    )
    auto_apply: CreditBounds | None = Field(
        default=None,
        description="Apply the credit model's suggestions within these bounds without an "
        "operator; None: every suggestion waits for approval.",
    )
    require_trade_documents: bool = Field(
        default=False,
        description="A slip counts in the base only when a purchase order, a goods receipt "
        "and an invoice match it (three-way match). False keeps v1's meaning for a message "
        "without the field.",
    )
    match_tolerance: Rate = Field(
        default=Decimal("0.01"),
        le=1,
        description="How far each document's amount may lie from the slip's, as a share of "
        "the slip (0.01: 1%).",
    )


class DayClosed(Message):
    """An operator (or credit's own scheduler) closes a pool's business day: interest accrues
    for it, charged periods end, unpaid loans that matured fall overdue, penalty accrues."""

    type: Literal["DayClosed"] = "DayClosed"
    business_date: BoundedDate = Field(description="The business day closed (Asia/Shanghai).")


class SplitScope(StrEnum):
    PROGRAMME = "programme"  # every pool of a core enterprise
    POOL = "pool"  # one pool, overriding its programme's


class SplitRulesSet(Message):
    """An operator sets the split rules of a programme (core enterprise) or of one pool. Each
    set is a new version; every split records the version it used. Validated before it takes
    effect (`invalid_split_rules`); the funders' repayment always comes first."""

    type: Literal["SplitRulesSet"] = "SplitRulesSet"
    scope: SplitScope = Field(description="programme | pool.")
    core_enterprise_id: Id | None = Field(
        default=None, description="The programme's core enterprise (scope programme)."
    )
    rules: RuleSet = Field(description="Receivers in priority order after the funders.")
    note: str | None = Field(default=None, max_length=1024, description="Why.")

    @model_validator(mode="after")
    def _scoped(self) -> SplitRulesSet:
        if (self.scope is SplitScope.PROGRAMME) != (self.core_enterprise_id is not None):
            raise ValueError("core_enterprise_id is given exactly for a programme's rules")
        return self


class CreditSuggestionApproved(Message):
    """An operator approves (or rejects) a suggestion of the credit model."""

    type: Literal["CreditSuggestionApproved"] = "CreditSuggestionApproved"
    suggestion_id: Id = Field(description="The suggestion.")
    approved: bool = Field(default=True, description="False rejects it.")
    note: str | None = Field(default=None, max_length=1024, description="Free text.")


# ---------------------------------------------------------------- parties and keys (operators)

REGISTRY_KEY = "registry"  # pool_id (and partition key) of every message on admin.parties.v1


class PartyRole(StrEnum):
    CORE_ENTERPRISE = "core_enterprise"
    SUPPLIER = "supplier"
    FUNDER = "funder"
    INVESTOR_PLATFORM = "investor_platform"
    INVESTOR = "investor"  # a platform's investor: signs its own loan contract (issue 11)
    OPERATOR = "operator"
    PLATFORM = "platform"  # poolfin's own signing keys (ledger anchors, contracts)


class KeyAction(StrEnum):
    REGISTER = "register"
    REVOKE = "revoke"


class KeyChangeProposed(Message):
    """An operator (the maker) proposes to register or revoke a party's public key. It takes
    effect only when a second operator approves it (KeyChangeApproved)."""

    type: Literal["KeyChangeProposed"] = "KeyChangeProposed"
    change_id: Id = Field(description="Unique id of this change.")
    action: KeyAction = Field(description="register | revoke.")
    party_id: Id = Field(description="Whose key.")
    role: PartyRole = Field(description="The party's role (one role per party).")
    party_name: str | None = Field(default=None, max_length=256, description="Legal name.")
    key_id: Id = Field(description="The key's id, unique platform-wide.")
    scheme: str = Field(default="ed25519", max_length=32, description="Signature scheme.")
    public_key: str | None = Field(
        default=None,
        max_length=1024,
        description="The raw public key, base64url (register only).",
    )
    valid_from: datetime | None = Field(
        default=None, description="From when the key signs; default: when approved."
    )
    valid_to: datetime | None = Field(
        default=None, description="Until when (exclusive); revoke: default when approved."
    )
    note: str | None = Field(default=None, max_length=1024, description="Why.")


class KeyChangeApproved(Message):
    """A second operator (the checker, never the maker) approves or rejects a key change."""

    type: Literal["KeyChangeApproved"] = "KeyChangeApproved"
    change_id: Id = Field(description="The change decided.")
    approved: bool = Field(default=True, description="False rejects it.")
    note: str | None = Field(default=None, max_length=1024, description="Why.")


class ContractSigned(Message):
    """The supplier signs a loan contract: this message, signed by the supplier's key, is its
    signature over `contract_hash`."""

    type: Literal["ContractSigned"] = "ContractSigned"
    request_id: Id = Field(description="The loan request whose contract is signed.")
    contract_hash: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the contract document, hex."
    )


class PrepaymentRequested(Message):
    """The supplier repays early (随借随还) from its free balance."""

    type: Literal["PrepaymentRequested"] = "PrepaymentRequested"
    prepayment_id: Id = Field(description="Unique id of the prepayment.")
    amount: PositiveAmount = Field(description="Money to take from the free balance, CNY.")
    loan_id: Id | None = Field(default=None, description="Repay this loan; default oldest first.")
    currency: Currency = Field(default="CNY", description="ISO 4217 currency code.")


class PayoutRequested(Message):
    """The supplier has (part of) its free balance paid out to its bank account."""

    type: Literal["PayoutRequested"] = "PayoutRequested"
    payout_id: Id = Field(description="Unique id of the payout; the bank's end-to-end reference.")
    amount: PositiveAmount = Field(description="Money to pay out of the free balance, CNY.")
    bank_account: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9 -]+$",
        description="The supplier's bank account (IBAN or domestic account number).",
    )
    currency: Currency = Field(default="CNY", description="ISO 4217 currency code.")


class PayoutStatus(StrEnum):
    EXECUTED = "executed"  # the money left the controlled account
    REJECTED = "rejected"  # the bank refused or returned it: back to the free balance


class PayoutResult(Message):
    """The controlled account's bank answers a payout instruction (its connector signs it with
    an operator key)."""

    type: Literal["PayoutResult"] = "PayoutResult"
    payout_id: Id = Field(description="The payout answered.")
    status: PayoutStatus = Field(description="executed | rejected.")
    bank_reference: str | None = Field(
        default=None, max_length=128, description="The bank's own reference."
    )
    reason: str | None = Field(default=None, max_length=1024, description="Why it was rejected.")


class HoldAction(StrEnum):
    VOID = "void"  # the money goes back to the buyer; no loan is repaid from it
    RELEASE = "release"  # the money goes to the supplier's free balance; no loan is repaid


class HoldResolved(Message):
    """An operator decides a frozen payment credit never instructed (issue 10): void it or
    release it. Only a payment still frozen can be resolved; an instruction arriving later is
    refused and credit's reservation undone."""

    type: Literal["HoldResolved"] = "HoldResolved"
    payment_id: Id = Field(description="The frozen payment.")
    action: HoldAction = Field(description="void | release.")
    note: str = Field(min_length=1, max_length=1024, description="Why (kept in the ledger).")


class ReversalReason(StrEnum):
    RETURNED = "returned"  # the buyer's bank returned the payment
    CHARGEBACK = "chargeback"
    CREDIT_NOTE = "credit_note"  # a credit note after the split


class PaymentReversed(Message):
    """The buyer's payment, already split, is reversed in whole or in part. Every party the
    split paid returns its pro-rata part, by the split's own rule version and never more than
    it received; what a party can no longer return becomes a receivable from it."""

    type: Literal["PaymentReversed"] = "PaymentReversed"
    reversal_id: Id = Field(description="Unique id of this reversal.")
    payment_id: Id = Field(description="The payment reversed.")
    amount: PositiveAmount = Field(description="Money returned to the buyer, CNY.")
    reason: ReversalReason = Field(description="returned | chargeback | credit_note.")
    note: str | None = Field(default=None, max_length=1024, description="Free text.")


class FinancingApplied(Message):
    """A supplier applies to borrow against its pool."""

    type: Literal["FinancingApplied"] = "FinancingApplied"
    application_id: Id = Field(description="Unique id of the application.")
    amount: PositiveAmount = Field(description="Amount asked for, CNY.")
    currency: Currency = Field(default="CNY", description="ISO 4217 currency code.")
    funder_id: Id | None = Field(
        default=None,
        description="Ask this funder of the programme (routing rule `named`); default: the "
        "programme's routing rule picks one.",
    )


class Routing(StrEnum):
    CHEAPEST = "cheapest"  # the cheapest eligible funder with room under its limits
    NAMED = "named"  # only the funder the application names (refused without one)
    SPLIT = "split"  # filled from the cheapest funders in turn, each up to its room


class Intercreditor(StrEnum):
    PRO_RATA = "pro_rata"  # principal across the loans in proportion to what is outstanding
    MATURITY_THEN_AGE = "maturity_then_age"  # matured loans first, then the oldest


class ProgrammeFunder(BaseModel):
    """One funder's agreement in a programme."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    funder_id: Id = Field(description="The funder.")
    kind: Literal["bank", "platform"] = Field(default="bank", description="How it disburses.")
    limit: PositiveAmount = Field(
        description="Its exposure to the core enterprise (all its suppliers' pools): "
        "outstanding principal plus requests in flight, never above this."
    )
    supplier_limit: PositiveAmount | None = Field(
        default=None, description="Its exposure to any one supplier; default: no sub-limit."
    )
    annual_interest_rate: Rate = Field(description="Its price: the loan's yearly rate.")
    discount_rate_cap: Rate = Field(
        default=Decimal("1"),
        description="It funds a pool only if the pool's discount rate is at most this.",
    )
    tenor_days: int = Field(default=180, ge=1, le=3650, description="Its loan term in days.")
    suppliers: list[Id] | None = Field(
        default=None, max_length=10000, description="Only these suppliers; default: all."
    )
    partial_raise: bool = Field(
        default=False,
        description="A platform's raise not fully committed by its deadline funds what was "
        "committed (a smaller loan) instead of being refused.",
    )


class ProgrammeSet(Message):
    """An operator sets a core enterprise's programme: its funders with their agreements,
    how applications are routed among them, and how repayments are shared (intercreditor)."""

    type: Literal["ProgrammeSet"] = "ProgrammeSet"
    core_enterprise_id: Id = Field(description="Whose programme (pool_id carries it too).")
    funders: list[ProgrammeFunder] = Field(min_length=1, max_length=100)
    routing: Routing = Field(default=Routing.CHEAPEST, description="cheapest | named.")
    intercreditor: Intercreditor = Field(
        default=Intercreditor.MATURITY_THEN_AGE, description="pro_rata | maturity_then_age."
    )

    @model_validator(mode="after")
    def _distinct(self) -> ProgrammeSet:
        ids = [f.funder_id for f in self.funders]
        if len(set(ids)) != len(ids):
            raise ValueError("each funder appears once in a programme")
        return self


class RouteCandidate(BaseModel):
    """How one funder of the programme stood when an application was routed."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    funder_id: Id
    annual_interest_rate: Rate
    room: Amount = Field(description="What its limits leave, counting requests in flight.")
    eligible: bool
    reason: str | None = Field(default=None, description="Why not, when not.")


class RoutePart(BaseModel):
    """One funder's part of a routed application: its own request, contract and loan."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    request_id: Id = Field(description="The request (and loan) id of this part.")
    funder_id: Id
    amount: PositiveAmount


class ApplicationRouted(Message):
    """credit routed an application to a funder of the programme (or found none): the rule,
    the funder, and every candidate with its room and why it was or was not chosen."""

    type: Literal["ApplicationRouted"] = "ApplicationRouted"
    application_id: Id = Field(description="The application.")
    amount: PositiveAmount = Field(description="Amount asked for, CNY.")
    rule: Routing = Field(description="The programme's routing rule applied.")
    funder_id: Id | None = Field(
        default=None, description="The funder chosen; none: refused, or split among `parts`."
    )
    candidates: list[RouteCandidate] = Field(description="Every funder considered.")
    parts: list[RoutePart] = Field(
        default_factory=list,
        description="What each chosen funder lends, each its own request (one part when whole).",
    )


# ---------------------------------------------------------------- intake → canonical pool events


class PoolOpened(Message):
    type: Literal["PoolOpened"] = "PoolOpened"
    core_enterprise_id: Id = Field(description="The buyer.")
    supplier_id: Id = Field(description="The supplier.")


class DocumentKind(StrEnum):
    PURCHASE_ORDER = "purchase_order"
    GOODS_RECEIPT = "goods_receipt"
    INVOICE = "invoice"


class TradeDocument(BaseModel):
    """One document a slip names, as intake holds it: its amount, or None while missing."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    kind: DocumentKind = Field(description="purchase_order | goods_receipt | invoice.")
    document_id: Id = Field(description="The document's id.")
    amount: Amount | None = Field(default=None, description="Its amount; None: not received.")


class ReceivableAdded(Message):
    type: Literal["ReceivableAdded"] = "ReceivableAdded"
    receivable_id: Id = Field(description="The settlement slip now in the pool.")
    amount: PositiveAmount = Field(description="Its amount, CNY.")
    due_on: BoundedDate | None = Field(default=None, description="Agreed payment date.")
    issued_on: BoundedDate | None = Field(default=None, description="Date the slip was issued.")
    documents: list[TradeDocument] = Field(
        default_factory=list, description="The trade documents the slip names."
    )


class ReceivableDocumented(Message):
    """A document a slip names has arrived: the slip's documents as they stand now."""

    type: Literal["ReceivableDocumented"] = "ReceivableDocumented"
    receivable_id: Id = Field(description="The slip.")
    documents: list[TradeDocument] = Field(description="Every document the slip names.")
    amount: PositiveAmount | None = Field(
        default=None, description="The slip's face amount, which the documents must match."
    )


class ReceivableAllocation(BaseModel):
    """What one payment paid on one slip."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    receivable_id: Id = Field(description="The slip.")
    amount: Amount = Field(description="Paid on it by this payment, CNY.")
    open_after: Amount = Field(description="Still open on it afterwards (0: closed).")
    due_on: BoundedDate | None = Field(default=None, description="The slip's due date.")


class ReceivablesSettled(Message):
    """A validated payment: `amount` arrived, `written_off` leaves the pool.

    A payment is applied to the slips it names in their order, each up to its open amount; a
    slip paid in part stays open for the rest (issue 8), so `written_off` equals `amount`."""

    type: Literal["ReceivablesSettled"] = "ReceivablesSettled"
    payment_id: Id = Field(description="The ERP payment id.")
    amount: PositiveAmount = Field(description="Money received, CNY (A).")
    written_off: PositiveTotal = Field(description="Sum of the receivables written off.")
    receivable_ids: list[Id] = Field(description="The receivables written off.")
    paid_on: BoundedDate = Field(description="The buyer's payment date.")
    core_enterprise_id: Id = Field(description="Who paid.")
    allocations: list[ReceivableAllocation] = Field(
        default_factory=list, description="Per slip: paid, and open afterwards."
    )
    value_date: BoundedDate | None = Field(
        default=None,
        description="Business day (Asia/Shanghai) the money arrived; interest runs to it. "
        "Absent on old messages: paid_on.",
    )

    @property
    def interest_date(self) -> date:
        return self.value_date or self.paid_on


class AdjustmentKind(StrEnum):
    CREDIT_NOTE = "credit_note"
    CANCELLATION = "cancellation"
    AMENDMENT = "amendment"
    DISPUTE_OPENED = "dispute_opened"
    DISPUTE_CLOSED = "dispute_closed"


class ReceivableAdjusted(Message):
    """A slip shrank, grew, or its dispute state changed: intake's canonical dilution event."""

    type: Literal["ReceivableAdjusted"] = "ReceivableAdjusted"
    receivable_id: Id = Field(description="The slip.")
    kind: AdjustmentKind = Field(description="What happened.")
    change: Amount = Field(description="Change of the pool's level, CNY (negative: dilution).")
    open_after: Amount = Field(description="The slip's open amount afterwards.")
    disputed: bool = Field(description="Whether the slip is disputed afterwards.")
    reason: str = Field(description="The buyer's reason.")
    reference: str | None = Field(default=None, description="Credit note or dispute id.")


class BuyerConfirmedFinancing(Message):
    type: Literal["BuyerConfirmedFinancing"] = "BuyerConfirmedFinancing"
    application_id: Id = Field(description="The application.")
    confirmed: bool = Field(description="True when the buyer confirmed.")
    core_enterprise_id: Id | None = Field(
        default=None, description="The pool's core enterprise, which confirmed (intake)."
    )


# ---------------------------------------------------------------- credit


class ApplicationState(StrEnum):
    AWAITING_BUYER = "awaiting_buyer"
    REQUESTED = "requested"
    FUNDED = "funded"
    REFUSED = "refused"
    SPLIT = "split"  # routed to several funders: each part is an application of its own


class Standing(StrEnum):
    GOOD = "good"
    MARGIN_CALL = "margin_call"  # loans above the base: payments are swept, no new draws
    OVERDUE = "overdue"  # a loan is past its maturity: no new draws, penalty accrues


class FinancingDecision(Message):
    """credit's answer to an application or a buyer confirmation."""

    type: Literal["FinancingDecision"] = "FinancingDecision"
    application_id: Id = Field(description="The application.")
    state: ApplicationState = Field(description="Where the application now stands.")
    amount: Amount = Field(description="Amount asked for, CNY.")
    available: Amount = Field(description="Available to borrow at decision time, before it.")
    reason: Reason | None = Field(default=None, description="Why, when refused.")


class LoanRequested(Message):
    """credit asks the funding gateway to obtain a loan from the pool's funder."""

    type: Literal["LoanRequested"] = "LoanRequested"
    request_id: Id = Field(description="= application_id.")
    funder_id: Id = Field(description="Which funder.")
    funder_kind: Literal["bank", "platform"] = Field(
        default="bank", description="A platform raises the money from its investors first."
    )
    partial_raise: bool = Field(
        default=False, description="A platform's raise may fund what was committed by its deadline."
    )
    supplier_id: Id = Field(description="The borrower.")
    amount: PositiveAmount = Field(description="Principal asked for, CNY.")
    annual_interest_rate: Rate = Field(description="Agreed rate.")
    tenor_days: int = Field(description="Term in days.")
    day_count: DayCount = Field(default=DayCount.ACT_360, description="Interest day count.")
    requested_on: BoundedDate | None = Field(
        default=None, description="Business day of the request; disbursal not before it."
    )
    water_level: Amount | None = Field(
        default=None, description="The pool's level (receivables pledged), at the request."
    )


class LoanOpened(Message):
    type: Literal["LoanOpened"] = "LoanOpened"
    loan_id: Id = Field(description="= the funding request id.")
    funder_id: Id = Field(description="The lender.")
    principal: PositiveAmount = Field(description="Disbursed principal, CNY.")
    disbursed_on: BoundedDate = Field(description="Interest runs from this date.")
    maturity_on: BoundedDate = Field(description="Principal due at the latest on this date.")
    annual_interest_rate: Rate | None = Field(
        default=None, description="The rate of the request the funder accepted."
    )
    day_count: DayCount | None = Field(default=None, description="Its day count.")
    contract_hash: str | None = Field(
        default=None, description="SHA-256 of the loan contract both parties signed."
    )
    investors: list[InvestorShare] = Field(
        default_factory=list,
        description="A platform's loan: its investors and what each committed; every "
        "repayment is divided among them by these shares.",
    )


class PoolPosition(Message):
    """The pool's position after a change: what a supplier sees online."""

    type: Literal["PoolPosition"] = "PoolPosition"
    water_level: Amount = Field(description="池水位: open receivables, CNY.")
    borrowing_base: Amount = Field(description="min(level × rate, credit line).")
    loan_balance: Amount = Field(description="Outstanding principal.")
    in_flight: Amount = Field(description="Requested and not yet decided.")
    available: Amount = Field(description="What may still be borrowed.")
    ineligible: dict[str, Amount] = Field(
        default_factory=dict,
        description="Open receivables that do not count, by reason: disputed, tenor, "
        "past_due, cross_aged, concentration.",
    )
    eligible_level: Amount | None = Field(
        default=None, description="water_level − ineligible: what the base is taken of."
    )
    held: Amount = Field(
        default=Decimal("0.00"),
        description="Payment money kept frozen against confirmed requests in flight or a "
        "loan above the base (never released while it is needed).",
    )
    interest_due: Amount = Field(default=Decimal("0.00"), description="Charged, unpaid interest.")
    penalty_due: Amount = Field(default=Decimal("0.00"), description="Unpaid penalty interest.")
    standing: Standing = Field(default=Standing.GOOD, description="good | margin_call | overdue.")
    business_date: BoundedDate | None = Field(default=None, description="As of this day.")


class LoanRepayment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    loan_id: Id = Field(description="The loan repaid.")
    funder_id: Id = Field(description="Its funder, who receives the money.")
    principal: Amount = Field(description="Principal repaid, CNY.")
    interest: Amount = Field(description="Interest on that principal, CNY.")
    days: int = Field(description="Days of interest counted.")
    penalty: Amount = Field(default=Decimal("0.00"), description="Penalty interest paid, CNY.")
    fees: Amount = Field(default=Decimal("0.00"), description="Loan fees paid, CNY.")

    @property
    def total(self) -> Decimal:
        return self.principal + self.interest + self.penalty + self.fees


class RepaymentInstruction(Message):
    """credit's decision for one payment: how much of A repays which loans. Also when zero."""

    type: Literal["RepaymentInstruction"] = "RepaymentInstruction"
    payment_id: Id = Field(description="The payment this decides.")
    amount: PositiveAmount = Field(description="A, the frozen amount.")
    repayments: list[LoanRepayment] = Field(description="Per loan, oldest first.")
    water_level_after: Amount = Field(description="Pool after the write-off.")
    discount_rate: Rate = Field(description="Rate in force.")
    credit_line: Amount = Field(description="Line in force.")
    loan_balance_before: Amount = Field(description="Outstanding principal before.")
    loan_balance_after: Amount = Field(description="Outstanding principal after.")
    held: Amount = Field(
        default=Decimal("0.00"),
        description="Part of A kept frozen (on hold), not released: it covers confirmed "
        "requests in flight above the base, or fen no principal could use.",
    )
    from_held: Amount = Field(
        default=Decimal("0.00"),
        description="Money already on hold in the pool added to this split (goes to funders).",
    )
    value_date: BoundedDate | None = Field(default=None, description="Interest ran to this day.")
    kind: Literal["payment", "prepayment"] = Field(
        default="payment", description="A buyer's payment, or the supplier's prepayment."
    )
    grade: Literal["A", "B", "C", "D", "E"] | None = Field(
        default=None,
        description="The credit model's grade of the pool at its last day close: split rules "
        "with rates by grade resolve from it (none yet: grade E, the most cautious).",
    )


class HoldSettled(Message):
    """credit moves money on hold: to the funders (a disbursal it covered arrived) and/or back
    to the supplier (the request it covered was refused, or the pool is under its base)."""

    type: Literal["HoldSettled"] = "HoldSettled"
    settlement_id: Id = Field(description="Unique id of this movement (answered like a payment).")
    amount: PositiveAmount = Field(description="Taken from the pool's held money, CNY.")
    repayments: list[LoanRepayment] = Field(description="Per loan, to the funders.")
    released: Amount = Field(description="Back to the supplier's free balance.")
    reason: str = Field(description="Why the hold moves now.")


class InterestAccrued(Message):
    """A loan's interest (and penalty) for one closed business day: the daily accrual."""

    type: Literal["InterestAccrued"] = "InterestAccrued"
    loan_id: Id = Field(description="The loan.")
    business_date: BoundedDate = Field(description="The day accrued.")
    principal: Amount = Field(description="Outstanding principal that day.")
    interest: Amount = Field(description="Interest of that day, CNY.")
    penalty: Amount = Field(default=Decimal("0.00"), description="Penalty of that day, CNY.")
    accrued: Amount = Field(description="Interest accrued and not yet charged or paid, after.")


class InterestCharged(Message):
    """An interest period ended: its interest is now due (collected or billed)."""

    type: Literal["InterestCharged"] = "InterestCharged"
    loan_id: Id = Field(description="The loan.")
    period_end: BoundedDate = Field(description="Last day of the period.")
    amount: Amount = Field(description="Interest charged, CNY.")
    collection: InterestCollection = Field(description="from_payments | billed.")


class LoanOverdue(Message):
    """A loan passed its maturity unpaid: penalty interest runs, the supplier cannot draw."""

    type: Literal["LoanOverdue"] = "LoanOverdue"
    loan_id: Id = Field(description="The loan.")
    maturity_on: BoundedDate = Field(description="When it was due.")
    overdue_principal: Amount = Field(description="Principal unpaid at maturity.")
    penalty_rate: Rate = Field(description="Yearly penalty rate on it.")


class LoanRepaid(Message):
    """What one payment, prepayment or hold paid on one loan, through the waterfall."""

    type: Literal["LoanRepaid"] = "LoanRepaid"
    loan_id: Id = Field(description="The loan.")
    payment_id: Id = Field(description="The payment, prepayment or hold settlement.")
    penalty: Amount = Field(description="Penalty interest paid.")
    fees: Amount = Field(description="Fees paid.")
    interest: Amount = Field(description="Interest paid.")
    principal: Amount = Field(description="Principal paid.")
    outstanding_after: Amount = Field(description="Principal outstanding afterwards.")
    value_date: BoundedDate = Field(description="Interest ran to this day.")


class CreditSuggested(Message):
    """The credit model's suggestion for a pool, with the factors that produced it."""

    type: Literal["CreditSuggested"] = "CreditSuggested"
    suggestion_id: Id = Field(description="Approve with this id.")
    credit_line: Amount = Field(description="Suggested credit line, CNY.")
    discount_rate: Rate = Field(description="Suggested discount rate.")
    current_line: Amount | None = Field(default=None, description="The line in force.")
    current_rate: Rate | None = Field(default=None, description="The rate in force.")
    grade: str = Field(description="A (best) to E.")
    factors: dict[str, str] = Field(description="Each input factor's value, as text.")
    explanation: list[str] = Field(description="What a credit officer reads.")
    state: Literal["pending", "applied", "rejected"] = Field(description="Where it stands.")


# ---------------------------------------------------------------- funding gateway ↔ funders


class FundingRequest(Message):
    """What a funder receives on its own topic."""

    type: Literal["FundingRequest"] = "FundingRequest"
    request_id: Id = Field(description="Answer with this id.")
    funder_id: Id = Field(description="You.")
    funder_kind: Literal["bank", "platform"] = Field(
        default="bank",
        description="platform: raise the amount from your investors (InvestorCommitted) "
        "before `raise_deadline`, then disburse.",
    )
    raise_deadline: datetime | None = Field(
        default=None, description="A platform's raise closes unfunded at this instant."
    )
    supplier_id: Id = Field(description="The borrower.")
    amount: PositiveAmount = Field(description="Principal asked for, CNY.")
    annual_interest_rate: Rate = Field(description="Agreed rate.")
    tenor_days: int = Field(description="Term in days.")
    currency: Currency = Field(default="CNY", description="ISO 4217 currency code.")
    day_count: DayCount = Field(default=DayCount.ACT_360, description="Interest day count.")
    requested_on: BoundedDate | None = Field(
        default=None,
        description="Business day of the request: a disbursal's value_date lies between it "
        "and the day the disbursal arrives.",
    )
    contract_hash: str | None = Field(
        default=None,
        description="SHA-256 (hex) of `contract`: your answer carries it, signed by your key.",
    )
    contract: str | None = Field(
        default=None, max_length=65536, description="The loan contract, as the supplier signed it."
    )
    supplier_signature: str | None = Field(
        default=None, max_length=4096, description="The supplier's signed ContractSigned."
    )


class FunderDecision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    DISBURSED = "disbursed"


class InvestorShare(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    investor_id: Id = Field(description="The investor (one of the platform's).")
    amount: PositiveAmount = Field(description="What it committed, CNY.")


class InvestorCommitted(Message):
    """An investor platform reports one investor's commitment to a raise (its investor list
    is the platform's; each commitment is signed by the platform)."""

    type: Literal["InvestorCommitted"] = "InvestorCommitted"
    request_id: Id = Field(description="The raise (the loan request).")
    funder_id: Id = Field(description="The platform.")
    investor_id: Id = Field(description="Who commits.")
    amount: PositiveAmount = Field(description="How much, CNY.")
    committed_at: datetime = Field(description="When the investor committed.")


class InvestorContractIssued(Message):
    """A closed raise: each investor's share of the loan gets its own contract, which the
    investor and the supplier sign (InvestorContractSigned) before the platform disburses."""

    type: Literal["InvestorContractIssued"] = "InvestorContractIssued"
    request_id: Id = Field(description="The raise (the loan request).")
    funder_id: Id = Field(description="The platform.")
    supplier_id: Id = Field(description="The borrower, who signs.")
    investor_id: Id = Field(description="The lender of this share, who signs.")
    amount: PositiveAmount = Field(description="Its share of the principal, CNY.")
    contract_hash: str = Field(description="SHA-256 of `contract`, hex: what is signed.")
    contract: str = Field(description="The contract document (UTF-8 text).")


class RaiseContracted(Message):
    """Every investor's contract of a closed raise carries both signatures: the platform may
    disburse now."""

    type: Literal["RaiseContracted"] = "RaiseContracted"
    request_id: Id = Field(description="The raise.")
    funder_id: Id = Field(description="The platform, which disburses next.")
    investors: list[InvestorShare] = Field(description="Its investors and their shares.")


class InvestorContractSigned(Message):
    """The investor (on funding.responses.v1, relayed by its platform) or the supplier (on
    supplier.contract-signatures.v1) signs one investor's contract: this message, signed by
    the signer's own key, is its signature over `contract_hash`."""

    type: Literal["InvestorContractSigned"] = "InvestorContractSigned"
    request_id: Id = Field(description="The raise.")
    investor_id: Id = Field(description="Whose share's contract.")
    contract_hash: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the contract document, hex."
    )


class FunderResponse(Message):
    """A funder answers a request: approved, rejected or disbursed (money paid out)."""

    type: Literal["FunderResponse"] = "FunderResponse"
    request_id: Id = Field(description="The request answered.")
    funder_id: Id = Field(description="Who answers.")
    decision: FunderDecision = Field(description="approved | rejected | disbursed.")
    amount: PositiveAmount | None = Field(
        default=None, description="Disbursed amount (= requested)."
    )
    value_date: HappenedOn | None = Field(default=None, description="Disbursement value date.")
    reason: str | None = Field(default=None, max_length=1024, description="Why, if rejected.")
    contract_hash: str | None = Field(
        default=None,
        description="The request's contract_hash: with your signature on this message, your "
        "signature of the contract. Required to approve or disburse.",
    )


class FundingResult(Message):
    type: Literal["FundingResult"] = "FundingResult"
    request_id: Id = Field(description="The request.")
    funder_id: Id = Field(description="The funder.")
    decision: FunderDecision = Field(description="approved | rejected | disbursed.")
    amount: Amount = Field(description="Amount, CNY.")
    value_date: BoundedDate | None = Field(default=None, description="Disbursement value date.")
    reason: str | None = Field(default=None, description="Why, if rejected.")
    reason_code: Reason | None = Field(
        default=None, description="poolfin's reason, when it refused (e.g. raise_expired)."
    )
    investors: list[InvestorShare] = Field(
        default_factory=list, description="A platform's loan: who lent what (disbursed)."
    )
    partial: bool = Field(
        default=False,
        description="A platform's raise closed at its deadline with less than was asked: "
        "`amount` is what was raised, and the loan is that much.",
    )
    contract_hash: str | None = Field(
        default=None, description="SHA-256 of the loan contract the supplier and funder signed."
    )


class ContractIssued(Message):
    """The gateway renders a loan's contract for the supplier to sign (ContractSigned); the
    request goes to the funder only once the supplier has signed."""

    type: Literal["ContractIssued"] = "ContractIssued"
    request_id: Id = Field(description="The loan request.")
    supplier_id: Id = Field(description="Who signs first.")
    funder_id: Id = Field(description="Who signs second (its answer).")
    contract_hash: str = Field(description="SHA-256 of `contract`, hex: what is signed.")
    contract: str = Field(description="The contract document (UTF-8 text).")


# ---------------------------------------------------------------- settlement splitter


class LedgerAnchored(Message):
    """A pool's ledger chain head, published (signed by the platform's key) after each batch
    that changed it: a history rewritten and re-hashed in the database no longer matches."""

    type: Literal["LedgerAnchored"] = "LedgerAnchored"
    seq: int = Field(ge=1, description="Sequence number of the pool's last ledger entry.")
    head_hash: str = Field(description="Hash of that entry (the chain head).")


class SettlementReleased(Message):
    """A payment fully split: amount + from_held = repaid_principal + repaid_interest + fees +
    held + released, exactly (without holds: the parts sum to `amount`)."""

    type: Literal["SettlementReleased"] = "SettlementReleased"
    payment_id: Id = Field(description="The payment.")
    amount: PositiveAmount = Field(description="A, frozen then split.")
    repaid_principal: Amount = Field(description="To funders, principal.")
    repaid_interest: Amount = Field(description="To funders, interest.")
    fees: Amount = Field(description="To the platform.")
    released: Amount = Field(description="Unfrozen to the supplier's free balance.")
    ledger_hash: str = Field(description="Hash of the ledger transaction that split it.")
    held: Amount = Field(default=Decimal("0.00"), description="Kept on hold in the pool.")
    from_held: Amount = Field(
        default=Decimal("0.00"), description="Money on hold added to this split."
    )
    receivers: dict[str, Amount] = Field(
        default_factory=dict,
        description="Other receivers of the pool's split rules (guarantor, insurer, logistics, "
        "tax), by ledger account; with them the parts sum exactly.",
    )
    rule_version: str | None = Field(
        default=None, description="The split rules' version used (rules:<scope>@v<n>)."
    )


class InstructionRefused(Message):
    """The splitter refused credit's instruction for a payment (its dead letter has the
    raw bytes): no money moved, so credit undoes the repayments it reserved for it."""

    type: Literal["InstructionRefused"] = "InstructionRefused"
    payment_id: Id = Field(description="The payment (prepayment, hold settlement) refused.")
    instruction_event_id: Id = Field(description="The refused instruction's event id.")
    reason: Reason = Field(description="Why, as in the dead letter.")
    detail: str = Field(max_length=2048, description="The refusal's detail.")
    returned_to_buyer: Amount = Field(
        default=Decimal("0.00"),
        description="The payment was voided by an operator: this much went back to the "
        "buyer, who owes it again.",
    )


class SettlementReversed(Message):
    """A reversal booked: what each party returned (`returned`, by ledger account), what it
    could not and now owes (`owed`), and each loan's part, which credit restores."""

    type: Literal["SettlementReversed"] = "SettlementReversed"
    reversal_id: Id = Field(description="The reversal.")
    payment_id: Id = Field(description="The payment reversed.")
    amount: PositiveAmount = Field(description="Returned to the buyer, CNY.")
    returned: dict[str, Amount] = Field(description="By ledger account: taken back from it.")
    owed: dict[str, Amount] = Field(
        default_factory=dict,
        description="By ledger account: its part it could not return, now a receivable.",
    )
    loans: list[LoanRepayment] = Field(
        default_factory=list, description="Per loan: the repayment undone (loan restored)."
    )
    rule_version: str | None = Field(default=None, description="The split's rule version.")
    ledger_hash: str = Field(description="Hash of the reversal's ledger transaction.")


class PayoutInstructed(Message):
    """The splitter instructs the controlled account's bank to pay the supplier."""

    type: Literal["PayoutInstructed"] = "PayoutInstructed"
    payout_id: Id = Field(description="The payout; the end-to-end reference at the bank.")
    supplier_id: Id = Field(description="Who is paid.")
    bank_account: str = Field(max_length=64, description="Its bank account.")
    amount: PositiveAmount = Field(description="CNY.")
    reference: str = Field(max_length=140, description="Remittance information.")


class FrozenPaymentOverdue(Message):
    """A payment frozen longer than the alert threshold with no instruction from credit: an
    operator voids or releases it (HoldResolved), or finds why credit is silent."""

    type: Literal["FrozenPaymentOverdue"] = "FrozenPaymentOverdue"
    payment_id: Id = Field(description="The frozen payment.")
    amount: PositiveAmount = Field(description="Frozen, CNY.")
    frozen_since: datetime = Field(description="When it was frozen.")


class PrepaymentFrozen(Message):
    """The splitter froze a prepayment from the supplier's free balance; credit decides it."""

    type: Literal["PrepaymentFrozen"] = "PrepaymentFrozen"
    prepayment_id: Id = Field(description="The prepayment.")
    amount: PositiveAmount = Field(description="Frozen, CNY.")
    loan_id: Id | None = Field(default=None, description="The loan named, if any.")


class FunderRepaymentNotice(Message):
    type: Literal["FunderRepaymentNotice"] = "FunderRepaymentNotice"
    payment_id: Id = Field(description="The payment.")
    funder_id: Id = Field(description="The funder paid.")
    repayments: list[LoanRepayment] = Field(description="Per loan.")
    total: PositiveAmount = Field(description="Principal + interest paid to this funder.")
    investors: dict[str, Amount] = Field(
        default_factory=dict,
        description="A platform's part, divided among its investors (investor -> amount).",
    )


class SupplierFundsReleased(Message):
    type: Literal["SupplierFundsReleased"] = "SupplierFundsReleased"
    payment_id: Id = Field(description="The payment.")
    released: Amount = Field(description="Now free for the supplier to use, CNY.")


# ---------------------------------------------------------------- dead letters


class DeadLetter(BaseModel):
    """A message a service could not accept: the raw bytes, where they came from, and why."""

    model_config = ConfigDict(frozen=True, extra="ignore", json_schema_extra=_type_is_required)

    type: Literal["DeadLetter"] = "DeadLetter"
    service: str = Field(description="Which service refused it.")
    reason: Reason = Field(description="Machine-readable reason.")
    detail: str = Field(description="Human-readable explanation.")
    source_topic: str = Field(description="Where it was read.")
    source_partition: int = Field(description="Partition.")
    source_offset: int = Field(description="Offset.")
    key: str | None = Field(default=None, description="Record key (UTF-8, replaced if not).")
    raw_payload_b64: str = Field(description="The exact bytes received, base64.")
    raw_text: str | None = Field(
        default=None, description="The bytes as UTF-8 when they are, up to 64 KiB."
    )
    raw_size: int = Field(default=0, description="How many bytes were received.")
    raw_truncated: bool = Field(
        default=False,
        description="True when raw_payload_b64 holds only the first 384 KiB; "
        "the service's dead_letters table keeps every byte.",
    )
    event_id: str | None = Field(default=None, description="When one could be read.")
    pool_id: str | None = Field(default=None, description="When one could be read.")
    rejected_at: datetime = Field(description="When.")


M = TypeVar("M", bound=Message)


def new_event(
    model: type[M],
    *,
    source: str,
    pool_id: str,
    cause: Message | None = None,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
    **fields: Any,
) -> M:
    """Make an event; `cause` fills causation and correlation ids. A field the model does not
    have is an error here: the models ignore unknown fields when decoding (a newer producer's
    addition), which would otherwise drop a misspelled field silently."""
    unknown = fields.keys() - model.model_fields.keys()
    if unknown:
        raise TypeError(f"{model.__name__} has no field(s) {sorted(unknown)}")
    return model(
        event_id=event_id or str(uuid.uuid4()),
        occurred_at=occurred_at or datetime.now(UTC),
        source=source,
        pool_id=pool_id,
        correlation_id=(cause.correlation_id or cause.event_id) if cause else None,
        causation_id=cause.event_id if cause else None,
        **fields,
    )
