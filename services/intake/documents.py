"""Trade documents (issue 9): purchase orders, goods receipts and invoices, the slips that name
them, and the encumbrance registry that lets one invoice back one open slip platform-wide.

Low-volume and keyed by document, so plain statements on the batch's connection (decide with
reads first, then write); the three-way match itself is credit's, with its facility's
tolerance, from the documents intake publishes with each slip."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from decimal import Decimal

from shared.contracts import messages as m
from shared.contracts.codec import Rejected
from shared.db import Connection
from shared.money import FEN

KIND = {
    "PurchaseOrderIssued": m.DocumentKind.PURCHASE_ORDER,
    "GoodsReceived": m.DocumentKind.GOODS_RECEIPT,
    "InvoiceIssued": m.DocumentKind.INVOICE,
}
Document = m.PurchaseOrderIssued | m.GoodsReceived | m.InvoiceIssued


def invoice_identity(invoice: m.InvoiceIssued) -> str:
    """Seller tax id + invoice code + number: the invoice, whoever books it."""
    return f"{invoice.seller_tax_id}/{invoice.invoice_code}/{invoice.invoice_number}"


def content_hash(invoice: m.InvoiceIssued) -> str:
    """The invoice's content, normalised: the same sale under another number hashes the same."""
    normalised = "|".join(
        (
            invoice.seller_tax_id.upper(),
            invoice.buyer_tax_id.upper(),
            str(Decimal(invoice.amount).quantize(FEN)),
            invoice.currency,
            invoice.issued_on.isoformat(),
        )
    )
    return hashlib.sha256(normalised.encode()).hexdigest()


def named(slip: m.SettlementSlipIssued) -> list[tuple[m.DocumentKind, str]]:
    return [
        (kind, document_id)
        for kind, document_id in (
            (m.DocumentKind.PURCHASE_ORDER, slip.purchase_order_id),
            (m.DocumentKind.GOODS_RECEIPT, slip.goods_receipt_id),
            (m.DocumentKind.INVOICE, slip.invoice_id),
        )
        if document_id is not None
    ]


async def documents_of(
    conn: Connection, core: str, refs: Sequence[tuple[m.DocumentKind, str]]
) -> list[m.TradeDocument]:
    """The named documents, with their amounts (None: not received yet)."""
    rows = await conn.fetch(
        "SELECT kind, document_id, amount FROM trade_documents WHERE core_enterprise_id = $1"
        " AND (kind, document_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))",
        core,
        [kind.value for kind, _ in refs],
        [document_id for _, document_id in refs],
    )
    found = {(r["kind"], r["document_id"]): r["amount"] for r in rows}
    return [
        m.TradeDocument(kind=kind, document_id=document_id, amount=found.get((kind, document_id)))
        for kind, document_id in refs
    ]


async def check_slip(conn: Connection, core: str, slip: m.SettlementSlipIssued) -> Rejected | None:
    """A slip's documents must be of its pool, and its invoice must back no other open slip
    (the encumbrance, whoever names it)."""
    refs = named(slip)
    rows = await conn.fetch(
        "SELECT kind, document_id, pool_id FROM trade_documents WHERE core_enterprise_id = $1"
        " AND (kind, document_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))",
        core,
        [kind.value for kind, _ in refs],
        [document_id for _, document_id in refs],
    )
    for row in rows:
        if row["pool_id"] != slip.pool_id:
            return Rejected(
                m.Reason.INVALID_MESSAGE,
                f"{row['kind']} {row['document_id']} belongs to pool {row['pool_id']}, "
                f"not {slip.pool_id}",
            )
    if slip.invoice_id is not None:
        other = await conn.fetchrow(
            "SELECT d.receivable_id, r.pool_id FROM receivable_documents d JOIN receivables r"
            " ON r.core_enterprise_id = d.core_enterprise_id AND r.receivable_id = d.receivable_id"
            " WHERE d.core_enterprise_id = $1 AND d.kind = 'invoice' AND d.document_id = $2"
            " AND r.state = 'open' AND d.receivable_id <> $3",
            core,
            slip.invoice_id,
            slip.receivable_id,
        )
        if other is not None:
            return Rejected(
                m.Reason.INVOICE_ENCUMBERED,
                f"invoice {slip.invoice_id} already backs open slip {other['receivable_id']} "
                f"of pool {other['pool_id']}: one invoice is financed once",
            )
    return None


async def link_slip(conn: Connection, core: str, slip: m.SettlementSlipIssued) -> None:
    refs = named(slip)
    await conn.execute(
        "INSERT INTO receivable_documents(core_enterprise_id, receivable_id, face_amount, kind,"
        " document_id) SELECT $1, $2, $5, * FROM unnest($3::text[], $4::text[])"
        " ON CONFLICT DO NOTHING",
        core,
        slip.receivable_id,
        [kind.value for kind, _ in refs],
        [document_id for _, document_id in refs],
        slip.amount,
    )


async def check_document(
    conn: Connection, core: str, document: Document, payload_hash: str
) -> Rejected | bool | None:
    """Refused (a known id with other content; an invoice encumbered elsewhere), True when
    the very same document is booked already (nothing to do), None when it is new."""
    kind = KIND[document.type]
    known = await conn.fetchval(
        "SELECT payload_hash FROM trade_documents"
        " WHERE core_enterprise_id = $1 AND kind = $2 AND document_id = $3",
        core,
        kind.value,
        document.document_id,
    )
    if known is not None:
        if known == payload_hash:
            return True
        return Rejected(
            m.Reason.DUPLICATE_DOCUMENT,
            f"{kind.value} {document.document_id} of {core} is booked already with other content",
        )
    if isinstance(document, m.InvoiceIssued):
        held = await conn.fetchrow(
            "SELECT core_enterprise_id, pool_id, document_id,"
            " invoice_identity = $1 AS same_identity FROM invoice_encumbrances"
            " WHERE state = 'open' AND (invoice_identity = $1 OR content_hash = $2) LIMIT 1",
            invoice_identity(document),
            content_hash(document),
        )
        if held is not None:
            what = "this invoice" if held["same_identity"] else "an invoice with the same content"
            return Rejected(
                m.Reason.INVOICE_ENCUMBERED,
                f"{what} ({invoice_identity(document)}) is held by {held['core_enterprise_id']}'s "
                f"invoice {held['document_id']} in pool {held['pool_id']} while the receivable "
                "it backs is open: one receivable is financed once",
            )
    return None


async def record_document(
    conn: Connection, core: str, document: Document, payload_hash: str
) -> None:
    kind = KIND[document.type]
    await conn.execute(
        "INSERT INTO trade_documents(core_enterprise_id, kind, document_id, pool_id, amount,"
        " payload_hash, event_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        core,
        kind.value,
        document.document_id,
        document.pool_id,
        document.amount,
        payload_hash,
        document.event_id,
    )
    if isinstance(document, m.InvoiceIssued):
        await conn.execute(
            "INSERT INTO invoice_encumbrances(invoice_identity, content_hash,"
            " core_enterprise_id, pool_id, document_id) VALUES ($1, $2, $3, $4, $5)",
            invoice_identity(document),
            content_hash(document),
            core,
            document.pool_id,
            document.document_id,
        )


async def open_slips_naming(
    conn: Connection, core: str, kind: m.DocumentKind, document_id: str
) -> list[tuple[str, Decimal, list[tuple[m.DocumentKind, str]]]]:
    """(slip, face amount, every document it names) of the open slips naming this one. A slip
    of this very batch has its documents linked but its row not written yet: open too."""
    rows = await conn.fetch(
        "SELECT d.receivable_id, d.face_amount AS amount,"
        " array_agg(d2.kind ORDER BY d2.kind) AS kinds,"
        " array_agg(d2.document_id ORDER BY d2.kind) AS ids"
        " FROM receivable_documents d"
        " LEFT JOIN receivables r ON r.core_enterprise_id = d.core_enterprise_id"
        "  AND r.receivable_id = d.receivable_id"
        " JOIN receivable_documents d2 ON d2.core_enterprise_id = d.core_enterprise_id"
        "  AND d2.receivable_id = d.receivable_id"
        " WHERE d.core_enterprise_id = $1 AND d.kind = $2 AND d.document_id = $3"
        "  AND (r.state IS NULL OR r.state = 'open')"
        " GROUP BY d.receivable_id, d.face_amount ORDER BY d.receivable_id",
        core,
        kind.value,
        document_id,
    )
    return [
        (
            r["receivable_id"],
            r["amount"],
            [(m.DocumentKind(k), i) for k, i in zip(r["kinds"], r["ids"], strict=True)],
        )
        for r in rows
    ]


async def release_closed(conn: Connection, keys: Sequence[tuple[str, str]]) -> None:
    """Invoices backing slips now closed (paid, credited in full, cancelled) free their
    identity and content again."""
    await conn.execute(
        "UPDATE invoice_encumbrances e SET state = 'released', released_at = now()"
        " FROM receivable_documents d JOIN receivables r"
        "  ON r.core_enterprise_id = d.core_enterprise_id AND r.receivable_id = d.receivable_id"
        " WHERE d.kind = 'invoice' AND e.core_enterprise_id = d.core_enterprise_id"
        "  AND e.document_id = d.document_id AND e.state = 'open' AND r.state <> 'open'"
        "  AND (d.core_enterprise_id, d.receivable_id) IN"
        "   (SELECT * FROM unnest($1::text[], $2::text[]))",
        [core for core, _ in keys],
        [rid for _, rid in keys],
    )
