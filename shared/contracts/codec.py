"""Bytes ↔ messages. Decoding never raises anything but `Rejected`, with a reason code."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Annotated, Any, Union

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic import Field as _Field

from shared.calendar import business_date
from shared.contracts import messages as m
from shared.contracts import topics as t

# What may arrive on each topic a service consumes. Funder request topics are per funder and
# carry FundingRequest only.
TOPIC_MODELS: dict[str, tuple[type[m.Message], ...]] = {
    t.ERP_SUPPLIERS: (m.SupplierOnboarded,),
    t.ERP_SETTLEMENT_SLIPS: (m.SettlementSlipIssued,),
    t.ERP_PAYMENTS: (m.PaymentReceived,),
    t.ERP_FINANCING_CONFIRMATIONS: (m.FinancingConfirmation,),
    t.ERP_SLIP_ADJUSTMENTS: (
        m.CreditNoteIssued,
        m.SlipCancelled,
        m.SlipAmended,
        m.DisputeOpened,
        m.DisputeClosed,
    ),
    t.ERP_TRADE_DOCUMENTS: (m.PurchaseOrderIssued, m.GoodsReceived, m.InvoiceIssued),
    t.ADMIN_PARTIES: (m.KeyChangeProposed, m.KeyChangeApproved),
    t.ADMIN_SPLIT_RULES: (m.SplitRulesSet,),
    t.ADMIN_HOLDS: (m.HoldResolved,),
    t.ADMIN_PROGRAMMES: (m.ProgrammeSet,),
    t.ERP_PAYMENT_REVERSALS: (m.PaymentReversed,),
    t.SUPPLIER_PAYOUTS: (m.PayoutRequested,),
    t.BANK_PAYOUT_RESULTS: (m.PayoutResult,),
    t.SETTLEMENT_PAYOUTS: (m.PayoutInstructed,),
    t.SETTLEMENT_ALERTS: (m.FrozenPaymentOverdue,),
    t.SUPPLIER_CONTRACT_SIGNATURES: (m.ContractSigned, m.InvestorContractSigned),
    t.FUNDING_CONTRACTS: (m.ContractIssued, m.InvestorContractIssued, m.RaiseContracted),
    t.SETTLEMENT_LEDGER_ANCHORS: (m.LedgerAnchored,),
    t.ADMIN_FACILITIES: (m.FacilitySet, m.CreditSuggestionApproved),
    t.ADMIN_SERVICING: (m.DayClosed,),
    t.SUPPLIER_FINANCING_APPLICATIONS: (m.FinancingApplied,),
    t.SUPPLIER_PREPAYMENTS: (m.PrepaymentRequested,),
    t.POOL_EVENTS: (
        m.PoolOpened,
        m.ReceivableAdded,
        m.ReceivablesSettled,
        m.BuyerConfirmedFinancing,
        m.ReceivableAdjusted,
        m.ReceivableDocumented,
    ),
    t.CREDIT_DECISIONS: (m.FinancingDecision, m.LoanOpened, m.ApplicationRouted),
    t.CREDIT_POSITIONS: (m.PoolPosition,),
    t.CREDIT_LOAN_REQUESTS: (m.LoanRequested,),
    t.CREDIT_REPAYMENT_INSTRUCTIONS: (m.RepaymentInstruction, m.HoldSettled, m.LoanOpened),
    t.CREDIT_SERVICING: (
        m.InterestAccrued,
        m.InterestCharged,
        m.LoanOverdue,
        m.LoanRepaid,
    ),
    t.CREDIT_SUGGESTIONS: (m.CreditSuggested,),
    t.FUNDING_RESPONSES: (m.FunderResponse, m.InvestorCommitted, m.InvestorContractSigned),
    t.FUNDING_RESULTS: (m.FundingResult,),
    t.SETTLEMENT_RESULTS: (
        m.SettlementReleased,
        m.PrepaymentFrozen,
        m.InstructionRefused,
        m.SettlementReversed,
    ),
    t.SETTLEMENT_FUNDER_REPAYMENTS: (m.FunderRepaymentNotice,),
    t.SETTLEMENT_RELEASES: (m.SupplierFundsReleased,),
}

# Fields whose refusal is reported as `invalid_amount` rather than `invalid_message`.
AMOUNT_FIELDS = frozenset({"amount", "credit_line", "written_off"})


class Rejected(Exception):
    """A message refused with a reason code; it ends as a dead letter or a refusal event."""

    def __init__(self, reason: m.Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def not_the_pools_buyer(
    pool_id: str, pools_buyer: str | None, named: str | None
) -> Rejected | None:
    """A confirmation may name its buyer; when it does, that must be the pool's own core
    enterprise. Intake checks it at the edge, credit again on the internal topic."""
    if named is None or named == pools_buyer:
        return None
    return Rejected(
        m.Reason.NOT_THE_POOLS_BUYER, f"{named} is not the core enterprise of pool {pool_id}"
    )


def _adapter(models: tuple[type[m.Message], ...]) -> TypeAdapter[Any]:
    if len(models) == 1:
        return TypeAdapter(models[0])
    return TypeAdapter(Annotated[Union[models], _Field(discriminator="type")])  # type: ignore[arg-type]  # noqa: UP007


_ADAPTERS = {topic: _adapter(models) for topic, models in TOPIC_MODELS.items()}
_TYPES = {
    topic: {model.model_fields["type"].default for model in models}
    for topic, models in TOPIC_MODELS.items()
}


def models_for(topic: str) -> tuple[type[m.Message], ...]:
    if topic.startswith("funding.requests."):
        return (m.FundingRequest,)
    return TOPIC_MODELS[topic]


def parse_json(raw: bytes) -> Any:
    try:
        # JSON numbers stay numbers here so that the money type refuses them by name.
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected(m.Reason.NOT_JSON, f"payload is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise Rejected(m.Reason.NOT_JSON, "payload is nested too deeply to parse") from exc
    except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit limit
        raise Rejected(m.Reason.NOT_JSON, f"payload is not usable JSON: {exc}") from exc


def _field_path(loc: tuple[int | str, ...], kind: str) -> tuple[int | str, ...]:
    """Where a problem is, without the message type a topic of several types puts first."""
    return loc[1:] if loc and loc[0] == kind else loc


def decode(topic: str, raw: bytes, today: date | None = None) -> m.Message:
    """Validate raw bytes read from `topic` into its message model. Dates an outside party
    gives are checked against `today`, the day the message arrives (default: the business
    day in the platform's time zone)."""
    return decode_document(topic, raw, today)[1]


def decode_document(
    topic: str, raw: bytes, today: date | None = None
) -> tuple[dict[str, Any], m.Message]:
    """`decode`, also returning the parsed JSON object (what a signature covers)."""
    document = parse_json(raw)
    if not isinstance(document, dict):
        raise Rejected(m.Reason.INVALID_MESSAGE, "payload must be a JSON object")
    adapter = _ADAPTERS.get(topic) or TypeAdapter(models_for(topic)[0])
    allowed = _TYPES.get(topic, {"FundingRequest"})
    kind = document.get("type")
    if not isinstance(kind, str) or kind not in allowed:
        raise Rejected(
            m.Reason.UNKNOWN_TYPE,
            f"type {kind!r} is not accepted on {topic}; expected one of {sorted(allowed)}",
        )
    try:
        message: m.Message = adapter.validate_python(
            document, context={"today": today or business_date()}
        )
    except ValidationError as exc:
        problems = exc.errors(include_url=False)
        fields = {str(err["loc"][-1]) if err["loc"] else "" for err in problems}
        if any(str(loc) in AMOUNT_FIELDS for err in problems for loc in err["loc"]):
            reason = m.Reason.INVALID_AMOUNT
        elif all(
            err["type"] == "value_error" and "date" in err["msg"] for err in problems
        ):  # a well-formed date outside its bounds or window
            reason = m.Reason.INVALID_DATE
        else:
            reason = m.Reason.INVALID_MESSAGE
        detail = "; ".join(
            f"{'.'.join(str(p) for p in _field_path(err['loc'], kind))}: {err['msg']}"
            for err in problems
        )
        raise Rejected(reason, detail or f"invalid fields {sorted(fields)}") from exc
    return document, message


def key_mismatch(key: bytes | None, message: m.Message) -> Rejected | None:
    """A record's Kafka key must be its message's `pool_id` (UTF-8): the key is the partition
    key, so one pool's events reach one consumer in order only if every producer keys them so.
    None when it does; else the `key_mismatch` refusal that dead-letters the record."""
    expected = message.pool_id.encode()
    if key == expected:
        return None
    advice = (
        "key every record by its pool_id (UTF-8 bytes), with the murmur2 partitioner "
        "(librdkafka: partitioner=murmur2_random), so that one pool's events stay in order "
        "on one partition"
    )
    if key is None:
        return Rejected(
            m.Reason.KEY_MISMATCH,
            f"record has no key; it must be the message's pool_id {message.pool_id!r}: {advice}",
        )
    shown = key[:200].decode(errors="replace")
    return Rejected(
        m.Reason.KEY_MISMATCH,
        f"record key {shown!r} is not the message's pool_id {message.pool_id!r}: {advice}",
    )


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json().encode()


def payload_digest(raw: bytes) -> str:
    """Digest of a message's meaning: the same JSON with other key order or spacing is equal."""
    try:
        canonical = json.dumps(
            json.loads(raw, parse_float=str),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return hashlib.sha256(raw).hexdigest()
    return hashlib.sha256(canonical.encode()).hexdigest()
