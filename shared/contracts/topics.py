"""Every topic name in poolfin, in one place. Versioned: a breaking change is a new `.v2` topic.

Partition key on every topic: `pool_id`, so all events of one pool reach the same consumer
instance of each service in order.
"""

from __future__ import annotations

# Published by core enterprises' ERP systems, consumed by intake.
ERP_SUPPLIERS = "erp.suppliers.v1"
ERP_SETTLEMENT_SLIPS = "erp.settlement-slips.v1"
ERP_PAYMENTS = "erp.payments.v1"
ERP_FINANCING_CONFIRMATIONS = "erp.financing-confirmations.v1"
# Credit notes, cancellations, amendments and disputes of slips (dilution).
ERP_SLIP_ADJUSTMENTS = "erp.slip-adjustments.v1"
# Purchase orders, goods receipts and invoices (trade background, three-way match).
ERP_TRADE_DOCUMENTS = "erp.trade-documents.v1"
# Payments returned, charged back or credited after their split: published by the buyer's
# ERP (or its bank connector), consumed by the splitter, which holds what the split paid.
ERP_PAYMENT_REVERSALS = "erp.payment-reversals.v1"
ERP_TOPICS = (
    ERP_SUPPLIERS,
    ERP_SETTLEMENT_SLIPS,
    ERP_PAYMENTS,
    ERP_FINANCING_CONFIRMATIONS,
    ERP_SLIP_ADJUSTMENTS,
    ERP_TRADE_DOCUMENTS,
)

# Published by operators (or `poolfin facility set`), consumed by credit.
ADMIN_FACILITIES = "admin.facilities.v1"
# Day closes (loan servicing), published by operators or credit's scheduler, consumed by credit.
ADMIN_SERVICING = "admin.servicing.v1"
# Split rules of programmes and pools, published by operators, consumed by the splitter.
ADMIN_SPLIT_RULES = "admin.split-rules.v1"
# Programmes: a core enterprise's funders, their agreements, routing and intercreditor rule;
# published by operators, consumed by credit and the funding gateway.
ADMIN_PROGRAMMES = "admin.programmes.v1"
# Operators void or release frozen payments credit never instructed.
ADMIN_HOLDS = "admin.holds.v1"
# Parties and their keys: maker-checker changes by operators, consumed by every service.
ADMIN_PARTIES = "admin.parties.v1"
# Published by suppliers (or the HTTP front), consumed by credit.
SUPPLIER_FINANCING_APPLICATIONS = "supplier.financing-applications.v1"
# Published by suppliers (or the HTTP front), consumed by the settlement splitter.
SUPPLIER_PREPAYMENTS = "supplier.prepayments.v1"
# Suppliers have their free balance paid out, consumed by the settlement splitter.
SUPPLIER_PAYOUTS = "supplier.payouts.v1"
# The controlled account's bank answers payout instructions.
BANK_PAYOUT_RESULTS = "bank.payout-results.v1"
# Suppliers sign loan contracts, consumed by the funding gateway.
SUPPLIER_CONTRACT_SIGNATURES = "supplier.contract-signatures.v1"

# intake → credit, settlement-splitter: the canonical, validated pool events.
POOL_EVENTS = "pool.events.v1"

# credit → everyone who cares.
CREDIT_DECISIONS = "credit.decisions.v1"
CREDIT_POSITIONS = "credit.positions.v1"
CREDIT_LOAN_REQUESTS = "credit.loan-requests.v1"
CREDIT_REPAYMENT_INSTRUCTIONS = "credit.repayment-instructions.v1"
CREDIT_SERVICING = "credit.servicing.v1"  # accruals, charges, overdue, repayments per loan
CREDIT_SUGGESTIONS = "credit.suggestions.v1"  # the credit model's suggestions

# funding-gateway ↔ funders.
FUNDING_RESPONSES = "funding.responses.v1"
FUNDING_RESULTS = "funding.results.v1"
# funding-gateway → suppliers: loan contracts to sign.
FUNDING_CONTRACTS = "funding.contracts.v1"


def funder_requests_topic(funder_id: str) -> str:
    """The topic one funder consumes its loan requests from."""
    return f"funding.requests.{funder_id}.v1"


# settlement-splitter → credit, funders, suppliers.
SETTLEMENT_RESULTS = "settlement.results.v1"
SETTLEMENT_FUNDER_REPAYMENTS = "settlement.funder-repayments.v1"
SETTLEMENT_RELEASES = "settlement.releases.v1"
# The ledger's chain heads, signed, outside the database (`poolfin ledger verify --anchors`).
SETTLEMENT_LEDGER_ANCHORS = "settlement.ledger-anchors.v1"
# Payout instructions to the controlled account's bank.
SETTLEMENT_PAYOUTS = "settlement.payouts.v1"
# Alerts for operators: payments frozen too long with no instruction.
SETTLEMENT_ALERTS = "settlement.alerts.v1"

# Dead letters: raw payload, source coordinates and a machine-readable reason.
INTAKE_REJECTED = "intake.rejected.v1"
CREDIT_REJECTED = "credit.rejected.v1"
FUNDING_GATEWAY_REJECTED = "funding-gateway.rejected.v1"
SETTLEMENT_REJECTED = "settlement.rejected.v1"

ALL_STATIC_TOPICS = (
    *ERP_TOPICS,
    ERP_PAYMENT_REVERSALS,
    ADMIN_FACILITIES,
    ADMIN_SERVICING,
    ADMIN_PARTIES,
    ADMIN_SPLIT_RULES,
    ADMIN_HOLDS,
    ADMIN_PROGRAMMES,
    SUPPLIER_FINANCING_APPLICATIONS,
    SUPPLIER_PREPAYMENTS,
    SUPPLIER_PAYOUTS,
    SUPPLIER_CONTRACT_SIGNATURES,
    BANK_PAYOUT_RESULTS,
    POOL_EVENTS,
    CREDIT_DECISIONS,
    CREDIT_POSITIONS,
    CREDIT_LOAN_REQUESTS,
    CREDIT_REPAYMENT_INSTRUCTIONS,
    CREDIT_SERVICING,
    CREDIT_SUGGESTIONS,
    FUNDING_RESPONSES,
    FUNDING_RESULTS,
    FUNDING_CONTRACTS,
    SETTLEMENT_RESULTS,
    SETTLEMENT_FUNDER_REPAYMENTS,
    SETTLEMENT_RELEASES,
    SETTLEMENT_LEDGER_ANCHORS,
    SETTLEMENT_PAYOUTS,
    SETTLEMENT_ALERTS,
    INTAKE_REJECTED,
    CREDIT_REJECTED,
    FUNDING_GATEWAY_REJECTED,
    SETTLEMENT_REJECTED,
)


# Topics outside parties publish to: every message on them must be signed by a registered key
# (or come from credit's HTTP front for a party it authenticated). Every other topic is
# internal: its messages carry their producing service's MAC.
EXTERNAL_TOPICS = frozenset(
    (
        *ERP_TOPICS,
        ERP_PAYMENT_REVERSALS,
        ADMIN_FACILITIES,
        ADMIN_SERVICING,
        ADMIN_PARTIES,
        ADMIN_SPLIT_RULES,
        ADMIN_HOLDS,
        ADMIN_PROGRAMMES,
        SUPPLIER_FINANCING_APPLICATIONS,
        SUPPLIER_PREPAYMENTS,
        SUPPLIER_PAYOUTS,
        SUPPLIER_CONTRACT_SIGNATURES,
        BANK_PAYOUT_RESULTS,
        FUNDING_RESPONSES,
    )
)


def is_external(topic: str) -> bool:
    return topic in EXTERNAL_TOPICS
