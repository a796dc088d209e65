"""Who may publish what: part of the contract (DESIGN "Trust"), read by every consumer.

External messages are signed by a registered party key (shared/trust.py checks the signature
and the signer's role here); the consuming service then checks the relationship the table
names (the pool's own core enterprise, the request's own funder, the pool's own supplier)
against its own state. Internal messages carry the MAC of the one service that owns them.
`docs/contracts/publishers.md` is generated from these tables.
"""

from __future__ import annotations

from shared.contracts.messages import PartyRole

CORE = frozenset({PartyRole.CORE_ENTERPRISE})
SUPPLIER = frozenset({PartyRole.SUPPLIER})
FUNDERS = frozenset({PartyRole.FUNDER, PartyRole.INVESTOR_PLATFORM})
OPERATORS = frozenset({PartyRole.OPERATOR})
INVESTOR_OR_SUPPLIER = frozenset({PartyRole.INVESTOR, PartyRole.SUPPLIER})

# Message type → (roles that may sign it, the relationship the consumer checks).
EXTERNAL: dict[str, tuple[frozenset[PartyRole], str]] = {
    "SupplierOnboarded": (CORE, "the core enterprise it names (core_enterprise_id)"),
    "SettlementSlipIssued": (CORE, "the pool's core enterprise"),
    "PaymentReceived": (CORE, "the pool's core enterprise"),
    "FinancingConfirmation": (CORE, "the pool's core enterprise"),
    "CreditNoteIssued": (CORE, "the pool's core enterprise"),
    "SlipCancelled": (CORE, "the pool's core enterprise"),
    "SlipAmended": (CORE, "the pool's core enterprise"),
    "DisputeOpened": (CORE, "the pool's core enterprise"),
    "DisputeClosed": (CORE, "the pool's core enterprise"),
    "PurchaseOrderIssued": (CORE, "the pool's core enterprise"),
    "GoodsReceived": (CORE, "the pool's core enterprise"),
    "InvoiceIssued": (CORE, "the pool's core enterprise"),
    "PaymentReversed": (CORE, "the pool's core enterprise"),
    "FinancingApplied": (SUPPLIER, "the pool's supplier"),
    "PrepaymentRequested": (SUPPLIER, "the pool's supplier"),
    "PayoutRequested": (SUPPLIER, "the pool's supplier"),
    "ContractSigned": (SUPPLIER, "the supplier the contract names"),
    "FunderResponse": (FUNDERS, "the funder the request went to"),
    "InvestorCommitted": (FUNDERS, "the platform the raise's request went to"),
    "InvestorContractSigned": (
        INVESTOR_OR_SUPPLIER,
        "the investor or the supplier the contract names",
    ),
    "FacilitySet": (OPERATORS, "any operator"),
    "CreditSuggestionApproved": (OPERATORS, "any operator"),
    "DayClosed": (OPERATORS, "any operator"),
    "SplitRulesSet": (OPERATORS, "any operator"),
    "HoldResolved": (OPERATORS, "any operator"),
    "ProgrammeSet": (OPERATORS, "any operator"),
    "PayoutResult": (OPERATORS, "any operator (the controlled account's bank connector)"),
    "KeyChangeProposed": (OPERATORS, "any operator (the maker)"),
    "KeyChangeApproved": (OPERATORS, "an operator other than the maker (the checker)"),
}

# What credit's HTTP front may publish for a party it authenticated (bearer token): it carries
# credit's MAC instead of the party's signature, and `source` names the party.
FRONT = "credit"
FRONT_MAY_SEND = frozenset(
    {
        "FinancingApplied",
        "PrepaymentRequested",
        "PayoutRequested",
        "FinancingConfirmation",
        "ContractSigned",
    }
)

# Internal message type → the one service that may produce it.
INTERNAL: dict[str, str] = {
    "PoolOpened": "intake",
    "ReceivableAdded": "intake",
    "ReceivablesSettled": "intake",
    "BuyerConfirmedFinancing": "intake",
    "ReceivableAdjusted": "intake",
    "ReceivableDocumented": "intake",
    "FinancingDecision": "credit",
    "LoanOpened": "credit",
    "ApplicationRouted": "credit",
    "PoolPosition": "credit",
    "LoanRequested": "credit",
    "RepaymentInstruction": "credit",
    "HoldSettled": "credit",
    "InterestAccrued": "credit",
    "InterestCharged": "credit",
    "LoanOverdue": "credit",
    "LoanRepaid": "credit",
    "CreditSuggested": "credit",
    "FundingRequest": "funding-gateway",
    "FundingResult": "funding-gateway",
    "ContractIssued": "funding-gateway",
    "InvestorContractIssued": "funding-gateway",
    "RaiseContracted": "funding-gateway",
    "SettlementReleased": "settlement-splitter",
    "PrepaymentFrozen": "settlement-splitter",
    "FunderRepaymentNotice": "settlement-splitter",
    "SupplierFundsReleased": "settlement-splitter",
    "LedgerAnchored": "settlement-splitter",
    "InstructionRefused": "settlement-splitter",
    "SettlementReversed": "settlement-splitter",
    "PayoutInstructed": "settlement-splitter",
    "FrozenPaymentOverdue": "settlement-splitter",
}
