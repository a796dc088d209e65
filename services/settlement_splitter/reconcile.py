"""Daily reconciliation of a pool's controlled account against its bank statement (issue 10).

The bank reports the account in ISO 20022: a camt.053 statement (end of day) or camt.054
notifications (intraday). Every booked entry (`Ntry`) gives a direction (CRDT / DBIT), an
amount, a booking date and the reference poolfin gave the money (the end-to-end id: the
payment, payout or reversal id). poolfin expects a bank line for every ledger movement that
crosses the account:

    freeze            CRDT  the buyer's payment                    reference: payment id
    split, hold       DBIT  each funder's repayment                reference: payment id
    payout_executed   DBIT  the supplier's payout                  reference: payout id
    void              DBIT  the payment returned to the buyer      reference: payment id
    reversal          DBIT  returned to the buyer, CRDT each funder's return
                                                                   reference: reversal id

(Disbursements go from the funder to the supplier directly, and fees and other receivers
stay in the account until paid: neither crosses it on the day.) Lines are matched on
(direction, amount, reference), one to one; what is left on either side is reported with
its amount.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from defusedxml import ElementTree

from shared.calendar import timezone
from shared.db import Connection
from shared.money import ZERO

SCHEMA = "settlement"


@dataclass(frozen=True, slots=True)
class Line:
    direction: str  # CRDT (into the account) | DBIT (out of it)
    amount: Decimal
    reference: str
    booked_on: date | None = None
    detail: str = ""

    @property
    def key(self) -> tuple[str, Decimal, str]:
        return self.direction, self.amount, self.reference

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "amount": str(self.amount),
            "reference": self.reference,
            "booked_on": self.booked_on.isoformat() if self.booked_on else None,
            "detail": self.detail,
        }


class NotCamt(ValueError):
    """The file is not a camt.053 or camt.054 document poolfin can read."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(node: Any, *path: str) -> Any:
    for name in path:
        node = next((child for child in node if _local(child.tag) == name), None)
        if node is None:
            return None
    return node


def _text(node: Any, *path: str) -> str | None:
    found = _find(node, *path)
    return found.text.strip() if found is not None and found.text else None


def parse_camt(raw: bytes) -> tuple[str, list[Line]]:
    """The account id and booked lines of a camt.053 or camt.054 document. Hostile XML
    (entities, external references) is refused by defusedxml."""
    try:
        root = ElementTree.fromstring(raw)
    except Exception as exc:  # defusedxml's and expat's errors alike
        raise NotCamt(f"not well-formed or unsafe XML: {exc}") from exc
    body = next(iter(root), None)
    kinds = {"BkToCstmrStmt": "Stmt", "BkToCstmrDbtCdtNtfctn": "Ntfctn"}
    if body is None or _local(body.tag) not in kinds:
        raise NotCamt("expected a camt.053 (BkToCstmrStmt) or camt.054 (BkToCstmrDbtCdtNtfctn)")
    lines: list[Line] = []
    account = None
    for report in (c for c in body if _local(c.tag) == kinds[_local(body.tag)]):
        account = (
            account
            or _text(report, "Acct", "Id", "Othr", "Id")
            or _text(report, "Acct", "Id", "IBAN")
        )
        for entry in (c for c in report if _local(c.tag) == "Ntry"):
            status = _text(entry, "Sts", "Cd") or _text(entry, "Sts")
            if status not in (None, "BOOK"):
                continue  # pending or informational entries are not booked money
            amount_node = _find(entry, "Amt")
            direction = _text(entry, "CdtDbtInd")
            try:
                amount = Decimal(amount_node.text.strip()).quantize(Decimal("0.01"))
            except (AttributeError, InvalidOperation) as exc:
                raise NotCamt(f"an entry has no readable Amt: {exc}") from exc
            if direction not in ("CRDT", "DBIT") or amount <= 0:
                raise NotCamt(f"an entry has CdtDbtInd {direction!r} and amount {amount}")
            reference = (
                _text(entry, "NtryDtls", "TxDtls", "Refs", "EndToEndId")
                or _text(entry, "NtryRef")
                or _text(entry, "AcctSvcrRef")
                or ""
            )
            booked = _text(entry, "BookgDt", "Dt") or (_text(entry, "BookgDt", "DtTm") or "")[:10]
            lines.append(
                Line(
                    direction,
                    amount,
                    reference,
                    date.fromisoformat(booked) if booked else None,
                    _text(entry, "AddtlNtryInf") or "",
                )
            )
    return account or "", lines


async def ledger_lines(conn: Connection, pool_id: str, start: date, end: date) -> list[Line]:
    """What the pool's controlled account should show at the bank for business days
    start..end (Asia/Shanghai)."""
    zone = timezone()
    rows = await conn.fetch(
        f"SELECT t.kind, t.payment_id, t.posted_at, e.account, e.amount"
        f" FROM {SCHEMA}.ledger_transactions t JOIN {SCHEMA}.ledger_entries e"
        " ON e.transaction_id = t.id WHERE t.pool_id = $1 AND t.posted_at >= $2"
        " AND t.posted_at < $3 ORDER BY t.id, e.line",
        pool_id,
        datetime.combine(start, time(), tzinfo=zone),
        datetime.combine(end + timedelta(days=1), time(), tzinfo=zone),
    )
    lines = []
    for r in rows:
        kind, account, amount = r["kind"], r["account"], r["amount"]
        day = r["posted_at"].astimezone(zone).date()
        crossing = (
            (kind == "freeze" and account.startswith("frozen:"))
            or (kind in ("split", "hold", "reversal") and account.startswith("funder:"))
            or (kind == "payout_executed" and account.startswith("bank:"))
            or (kind in ("void", "reversal") and account.startswith("buyer:"))
        )
        if crossing:
            into = amount > 0 if kind == "freeze" else amount < 0
            lines.append(
                Line("CRDT" if into else "DBIT", abs(amount), r["payment_id"], day, account)
            )
    return lines


@dataclass(frozen=True, slots=True)
class Report:
    matched: int
    missing_at_bank: list[Line]  # in the ledger, not on the statement
    extra_at_bank: list[Line]  # on the statement, not in the ledger

    @property
    def clean(self) -> bool:
        return not self.missing_at_bank and not self.extra_at_bank

    def to_json(self) -> dict[str, Any]:
        def total(lines: list[Line], direction: str) -> str:
            return str(sum((ln.amount for ln in lines if ln.direction == direction), ZERO))

        return {
            "matched": self.matched,
            "clean": self.clean,
            "missing_at_bank": [ln.to_json() for ln in self.missing_at_bank],
            "extra_at_bank": [ln.to_json() for ln in self.extra_at_bank],
            "missing_at_bank_total": {d: total(self.missing_at_bank, d) for d in ("CRDT", "DBIT")},
            "extra_at_bank_total": {d: total(self.extra_at_bank, d) for d in ("CRDT", "DBIT")},
        }


def match(ledger: list[Line], bank: list[Line]) -> Report:
    """One to one on (direction, amount, reference)."""
    waiting = Counter(ln.key for ln in bank)
    missing = []
    matched = 0
    for line in ledger:
        if waiting[line.key] > 0:
            waiting[line.key] -= 1
            matched += 1
        else:
            missing.append(line)
    extra = []
    for line in bank:
        if waiting[line.key] > 0:
            waiting[line.key] -= 1
            extra.append(line)
    return Report(matched, missing, extra)


def camt053(account: str, lines: list[Line], statement_id: str = "STMT-1") -> bytes:
    """A minimal camt.053.001.08 statement of these lines (for tests and for banks' sandboxes)."""
    entries = "".join(
        "<Ntry>"
        f'<Amt Ccy="CNY">{ln.amount}</Amt><CdtDbtInd>{ln.direction}</CdtDbtInd>'
        "<Sts><Cd>BOOK</Cd></Sts>"
        f"<BookgDt><Dt>{(ln.booked_on or date.today()).isoformat()}</Dt></BookgDt>"
        "<BkTxCd><Prtry><Cd>poolfin</Cd></Prtry></BkTxCd>"
        f"<NtryDtls><TxDtls><Refs><EndToEndId>{ln.reference}</EndToEndId></Refs>"
        "</TxDtls></NtryDtls>"
        "</Ntry>"
        for ln in lines
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
        f"<GrpHdr><MsgId>{statement_id}</MsgId>"
        f"<CreDtTm>{datetime.now(timezone()).isoformat(timespec='seconds')}</CreDtTm></GrpHdr>"
        f"<Stmt><Id>{statement_id}</Id><Acct><Id><Othr><Id>{account}</Id></Othr></Id></Acct>"
        f"{entries}</Stmt></BkToCstmrStmt></Document>"
    ).encode()
