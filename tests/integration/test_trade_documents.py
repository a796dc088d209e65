"""Issue 9 on the real broker and PostgreSQL: a slip counts in the base only with its purchase
order, goods receipt and invoice matching it (three-way match), and one invoice backs one open
slip platform-wide (the encumbrance registry), whichever buyer books it."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from poolfin import scenario as erp
from poolfin.clients import Observer, Publisher
from shared.contracts import topics
from tests.integration.scenario import payment, today

pytestmark = pytest.mark.integration


async def pool_requiring_documents(
    publisher: Publisher, observer: Observer, core: str
) -> tuple[str, str]:
    run = uuid.uuid4().hex[:8]
    pool_id = f"{core}/S-{run}"
    onboarding = erp.onboarding(pool_id, core, f"S-{run}", "Documented Supplier")
    await publisher.send(*onboarding)
    await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=onboarding[1]["event_id"])
    _, facility = erp.facility(
        pool_id, funder="bank-test", require_trade_documents=True, match_tolerance="0.01"
    )
    await publisher.send(topics.ADMIN_FACILITIES, facility)
    await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=facility["event_id"])
    return pool_id, run


async def send_and_wait(publisher: Publisher, observer: Observer, record: Any) -> dict[str, Any]:
    topic, event = record
    await publisher.send(topic, event)
    positions = await observer.wait_for(topics.CREDIT_POSITIONS, correlation_id=event["event_id"])
    return dict(positions[-1])


async def test_a_slip_counts_only_once_its_three_documents_match(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    pool_id, run = await pool_requiring_documents(publisher, observer, "CE-DOC")
    refs = {
        "purchase_order_id": f"PO-{run}",
        "goods_receipt_id": f"GR-{run}",
        "invoice_id": f"INV-{run}",
    }
    # The slip arrives before its documents: in the pool, not in the base.
    position = await send_and_wait(
        publisher, observer, erp.slip(pool_id, f"R-{run}", "100000.00", today(), **refs)
    )
    assert position["water_level"] == "100000.00"
    assert position["ineligible"] == {"unmatched_documents": "100000.00"}
    assert position["borrowing_base"] == "0.00"
    await send_and_wait(
        publisher, observer, erp.purchase_order(pool_id, f"PO-{run}", "100000.00", today())
    )
    position = await send_and_wait(
        publisher,
        observer,
        erp.goods_receipt(pool_id, f"GR-{run}", "99500.00", today(), order=f"PO-{run}"),
    )
    assert position["eligible_level"] == "0.00"  # still no invoice
    position = await send_and_wait(
        publisher,
        observer,
        erp.invoice(
            pool_id,
            f"INV-{run}",
            "100000.00",
            today(),
            number=run_number(run),
            seller_tax_id=tax_id(run),
        ),
    )
    # All three within 1% of the slip (the receipt is 0.5% short): it counts now.
    assert position["ineligible"] == {}
    assert (position["eligible_level"], position["borrowing_base"]) == ("100000.00", "80000.00")
    recorded = await db.fetch(
        "SELECT kind, document_id FROM intake.receivable_documents WHERE receivable_id = $1"
        " ORDER BY kind",
        f"R-{run}",
    )
    assert [(r["kind"], r["document_id"]) for r in recorded] == [
        ("goods_receipt", f"GR-{run}"),
        ("invoice", f"INV-{run}"),
        ("purchase_order", f"PO-{run}"),
    ]
    assert await db.fetchval(
        "SELECT document_gap FROM credit.receivables WHERE receivable_id = $1", f"R-{run}"
    ) == Decimal("0.00500000")


async def test_documents_outside_the_tolerance_keep_the_slip_out_of_the_base(
    publisher: Publisher, observer: Observer
) -> None:
    pool_id, run = await pool_requiring_documents(publisher, observer, "CE-DOC")
    for record in (
        erp.purchase_order(pool_id, f"PO-{run}", "50000.00", today()),
        erp.goods_receipt(pool_id, f"GR-{run}", "50000.00", today()),
        erp.invoice(
            pool_id,
            f"INV-{run}",
            "40000.00",
            today(),
            number=run_number(run),
            seller_tax_id=tax_id(run),
        ),
    ):
        await publisher.send(*record)
    position = await send_and_wait(
        publisher,
        observer,
        erp.slip(
            pool_id,
            f"R-{run}",
            "50000.00",
            today(),
            purchase_order_id=f"PO-{run}",
            goods_receipt_id=f"GR-{run}",
            invoice_id=f"INV-{run}",
        ),
    )
    assert position["ineligible"] == {"unmatched_documents": "50000.00"}  # invoice 20% short


async def test_one_invoice_is_financed_once_whoever_books_it(
    publisher: Publisher, observer: Observer, db: asyncpg.Connection
) -> None:
    first_pool, run = await pool_requiring_documents(publisher, observer, "CE-ONE")
    number = run_number(run)
    seller = tax_id(run)  # the supplier's; both buyers book its invoice
    _, booked = erp.invoice(
        first_pool, f"INV-{run}", "30000.00", today(), number=number, seller_tax_id=seller
    )
    await publisher.send(topics.ERP_TRADE_DOCUMENTS, booked)
    slip_topic, slip = erp.slip(
        first_pool, f"R-{run}", "30000.00", today(), invoice_id=f"INV-{run}"
    )
    await publisher.send(slip_topic, slip)
    await observer.wait_for(topics.POOL_EVENTS, type="ReceivableAdded", receivable_id=f"R-{run}")

    # A second buyer books the very same invoice (same seller tax id, code and number)...
    second_pool, _ = await pool_requiring_documents(publisher, observer, "CE-TWO")
    _, again = erp.invoice(
        second_pool, f"INV2-{run}", "30000.00", today(), number=number, seller_tax_id=seller
    )
    await publisher.send(topics.ERP_TRADE_DOCUMENTS, again)
    # ...or the same sale under another number (same seller, buyer, amount and date).
    _, renumbered = erp.invoice(
        second_pool,
        f"INV3-{run}",
        "30000.00",
        today(),
        number=run_number(run[::-1]),
        seller_tax_id=seller,
    )
    await publisher.send(topics.ERP_TRADE_DOCUMENTS, renumbered)
    # The first buyer names its invoice under a second slip id.
    _, second_slip = erp.slip(first_pool, f"R2-{run}", "30000.00", today(), invoice_id=f"INV-{run}")
    await publisher.send(topics.ERP_SETTLEMENT_SLIPS, second_slip)
    for event, earlier in (
        (again, first_pool),
        (renumbered, first_pool),
        (second_slip, f"R-{run}"),
    ):
        [letter] = await observer.wait_for(topics.INTAKE_REJECTED, event_id=event["event_id"])
        assert letter["reason"] == "invoice_encumbered", letter
        assert earlier in letter["detail"], letter["detail"]

    # Paid in full, the receivable releases its invoice: the identity may be booked again.
    paid = payment_of(first_pool, f"R-{run}", "30000.00")
    await publisher.send(topics.ERP_PAYMENTS, paid)
    await observer.wait_for(topics.SETTLEMENT_RESULTS, payment_id=paid["payment_id"])
    assert (
        await db.fetchval(
            "SELECT state FROM intake.invoice_encumbrances WHERE document_id = $1", f"INV-{run}"
        )
        == "released"
    )
    _, later = erp.invoice(
        second_pool, f"INV4-{run}", "30000.00", today(), number=number, seller_tax_id=seller
    )
    await publisher.send(topics.ERP_TRADE_DOCUMENTS, later)
    await _until_booked(db, f"INV4-{run}")


def tax_id(run: str) -> str:
    """A supplier's tax id unique to the run: invoices are encumbered platform-wide."""
    return f"9144{run.upper()}000000"


def run_number(run: str) -> str:
    """An 8-digit invoice number unique to the run."""
    return str(int(run, 16) % 10**8).zfill(8)


def payment_of(pool_id: str, receivable_id: str, amount: str) -> dict[str, Any]:
    from tests.integration.scenario import Pool

    return payment(Pool(pool_id, pool_id.split("/")[1]), amount, [receivable_id])


async def _until_booked(db: asyncpg.Connection, document_id: str) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + 30
    while not await db.fetchval(
        "SELECT count(*) FROM intake.trade_documents WHERE document_id = $1", document_id
    ):
        assert time.monotonic() < deadline, f"{document_id} was not booked"
        await asyncio.sleep(0.1)
