"""Statements and balances as of any instant, read from the ledger of record (issue 10).

Every entry keeps its account's balance after it (`balance_after`), so the balance of any
account as of any instant is one indexed read: the last entry of the account in the last
transaction posted by then. A statement covers the transactions posted in (from, to]: its
opening balance is the balance as of `from`, every movement carries its cause (the
transaction's kind, id and hash), and the closing balance is the balance as of `to` — so the
movements sum exactly from the opening to the closing balance, by construction and checked.

Who sees what: a supplier its pools' free, payout, loan and clawback accounts; a funder its
own account and its receivable on each of its loans; a buyer (core enterprise) its account;
a platform's investor its account on each loan it lent to (issue 11).
Read-only, in one snapshot; the splitter owns the tables (schema `settlement`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.settlement_splitter.domain import account_kind
from shared.db import Connection
from shared.money import ZERO

SCHEMA = "settlement"


@dataclass(frozen=True, slots=True)
class Movement:
    posted_at: datetime
    pool_id: str
    seq: int
    kind: str  # freeze, split, disbursement, payout, reversal...
    reference: str  # the payment, loan, payout or reversal id
    amount: Decimal
    balance_after: Decimal
    transaction_hash: str


@dataclass(slots=True)
class AccountStatement:
    account: str
    type: str
    opening: Decimal
    closing: Decimal
    movements: list[Movement] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return self.opening + sum((mv.amount for mv in self.movements), ZERO) == self.closing


@dataclass(slots=True)
class Statement:
    party_id: str
    role: str
    start: datetime
    end: datetime
    accounts: list[AccountStatement]

    def to_json(self) -> dict[str, Any]:
        return {
            "party_id": self.party_id,
            "role": self.role,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "accounts": [
                {
                    "account": a.account,
                    "type": a.type,
                    "opening_balance": str(a.opening),
                    "closing_balance": str(a.closing),
                    "balanced": a.balanced,
                    "movements": [
                        {
                            "posted_at": mv.posted_at.isoformat(),
                            "pool_id": mv.pool_id,
                            "seq": mv.seq,
                            "cause": mv.kind,
                            "reference": mv.reference,
                            "amount": str(mv.amount),
                            "balance_after": str(mv.balance_after),
                            "transaction_hash": mv.transaction_hash,
                        }
                        for mv in a.movements
                    ],
                }
                for a in self.accounts
            ],
        }


async def _last_transaction(conn: Connection, instant: datetime) -> int:
    found: int = await conn.fetchval(
        f"SELECT coalesce(max(id), 0) FROM {SCHEMA}.ledger_transactions WHERE posted_at <= $1",
        instant,
    )
    return found


async def balance_as_of(conn: Connection, account: str, instant: datetime) -> Decimal:
    """The account's balance as it stood at `instant` (zero before its first entry)."""
    return await _balance_through(conn, account, await _last_transaction(conn, instant))


async def _balance_through(conn: Connection, account: str, transaction_id: int) -> Decimal:
    found: Decimal | None = await conn.fetchval(
        f"SELECT balance_after FROM {SCHEMA}.ledger_entries WHERE account = $1"
        " AND transaction_id <= $2 ORDER BY transaction_id DESC, line DESC LIMIT 1",
        account,
        transaction_id,
    )
    return found if found is not None else ZERO


async def accounts_of(conn: Connection, party_id: str) -> tuple[str, list[str]]:
    """The party's role as the ledger knows it, and the accounts its statement covers."""
    pools = await conn.fetch(
        f"SELECT pool_id, core_enterprise_id, supplier_id FROM {SCHEMA}.pool_parties"
        " WHERE supplier_id = $1 OR core_enterprise_id = $1 ORDER BY pool_id",
        party_id,
    )
    supplied = [r["pool_id"] for r in pools if r["supplier_id"] == party_id]
    if supplied:
        return "supplier", [
            f"{kind}:{pool}" for pool in supplied for kind in ("free", "payout", "loan")
        ] + [f"clawback:free:{pool}" for pool in supplied]
    if pools:
        return "core_enterprise", [f"buyer:{party_id}"]
    loans = await conn.fetch(
        f"SELECT loan_id FROM {SCHEMA}.loans WHERE funder_id = $1 ORDER BY loan_id", party_id
    )
    if loans:
        return "funder", [f"funder:{party_id}"] + [f"owed:{r['loan_id']}" for r in loans]
    lent = await conn.fetch(
        f"SELECT account FROM {SCHEMA}.ledger_accounts WHERE account LIKE 'investor:%'"
        " AND split_part(account, '/', -1) = $1 ORDER BY account",
        party_id,
    )
    if lent:
        return "investor", [r["account"] for r in lent]
    return "unknown", []


async def statement(
    conn: Connection, party_id: str, start: datetime, end: datetime
) -> Statement | None:
    """The party's statement for (start, end]; None if the ledger does not know the party."""
    if end < start:
        raise ValueError(f"the period ends ({end.isoformat()}) before it starts")
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        role, accounts = await accounts_of(conn, party_id)
        if not accounts:
            return None
        first, last = await _last_transaction(conn, start), await _last_transaction(conn, end)
        rows = await conn.fetch(
            f"SELECT e.account, e.amount, e.balance_after, t.posted_at, t.pool_id, t.seq,"
            f" t.kind, t.payment_id, t.hash FROM {SCHEMA}.ledger_entries e"
            f" JOIN {SCHEMA}.ledger_transactions t ON t.id = e.transaction_id"
            " WHERE e.account = ANY($1::text[]) AND e.transaction_id > $2"
            " AND e.transaction_id <= $3 ORDER BY e.transaction_id, e.line",
            accounts,
            first,
            last,
        )
        result = []
        for account in accounts:
            opening = await _balance_through(conn, account, first)
            closing = await _balance_through(conn, account, last)
            moves = [
                Movement(
                    r["posted_at"],
                    r["pool_id"],
                    r["seq"],
                    r["kind"],
                    r["payment_id"],
                    r["amount"],
                    r["balance_after"],
                    r["hash"],
                )
                for r in rows
                if r["account"] == account
            ]
            result.append(
                AccountStatement(account, account_kind(account).type, opening, closing, moves)
            )
    return Statement(party_id, role, start, end, result)


def render_pdf(stmt: Statement) -> bytes:
    """The statement as a PDF a person reads: per account, opening balance, every movement
    with its cause and running balance, closing balance."""
    from fpdf import FPDF

    pdf = FPDF(orientation="L", format="A4")
    pdf.set_compression(False)  # plain text streams: greppable, diffable
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(
        0, 8, f"poolfin statement: {stmt.party_id} ({stmt.role})", new_x="LMARGIN", new_y="NEXT"
    )
    pdf.set_font("Helvetica", "", 9)
    pdf.cell(
        0,
        6,
        f"Period: after {stmt.start.isoformat()} up to {stmt.end.isoformat()}",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    widths = (48, 52, 26, 62, 40, 40)
    for a in stmt.accounts:
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(0, 6, f"Account {a.account} ({a.type})", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 8)
        pdf.cell(0, 5, f"Opening balance: {a.opening} CNY", new_x="LMARGIN", new_y="NEXT")
        for head, w in zip(
            ("Posted at", "Pool / seq", "Cause", "Reference", "Amount", "Balance"),
            widths,
            strict=True,
        ):
            pdf.cell(w, 5, head, border=1)
        pdf.ln()
        for mv in a.movements:
            cells = (
                mv.posted_at.strftime("%Y-%m-%d %H:%M:%S %Z"),
                f"{mv.pool_id} #{mv.seq}",
                mv.kind,
                mv.reference[:40],
                str(mv.amount),
                str(mv.balance_after),
            )
            for text, w in zip(cells, widths, strict=True):
                pdf.cell(w, 5, text, border=1)
            pdf.ln()
        pdf.cell(0, 5, f"Closing balance: {a.closing} CNY", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


async def loan_investors(conn: Connection, loan_id: str) -> dict[str, Any] | None:
    """A platform's raise and its investors: what each committed and when (the gateway's
    record), and what the loan has repaid each (the book). None: no such request."""
    request = await conn.fetchrow(
        "SELECT request_id, pool_id, funder_id, amount, state, raise_deadline"
        " FROM funding_gateway.funding_requests WHERE request_id = $1",
        loan_id,
    )
    if request is None:
        return None
    rows = await conn.fetch(
        "SELECT c.investor_id, c.amount, c.committed_at, coalesce(("
        f"  SELECT sum(e.amount) FROM {SCHEMA}.ledger_entries e"
        "   WHERE e.account = 'investor:' || c.request_id || '/' || c.investor_id"
        "   AND e.amount > 0), 0) AS repaid"
        " FROM funding_gateway.investor_commitments c WHERE c.request_id = $1"
        " ORDER BY c.committed_at, c.investor_id",
        loan_id,
    )
    return {
        "loan_id": loan_id,
        "pool_id": request["pool_id"],
        "funder_id": request["funder_id"],
        "amount": str(request["amount"]),
        "state": request["state"],
        "raise_deadline": request["raise_deadline"].isoformat()
        if request["raise_deadline"]
        else None,
        "committed": str(sum((r["amount"] for r in rows), ZERO)),
        "investors": [
            {
                "investor_id": r["investor_id"],
                "committed": str(r["amount"]),
                "committed_at": r["committed_at"].isoformat(),
                "repaid": str(r["repaid"]),
            }
            for r in rows
        ],
    }
