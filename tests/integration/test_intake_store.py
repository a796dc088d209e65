"""One contract for intake's store, run against the in-memory fake and PostgreSQL: the fake
the handler tests use behaves as the real thing does."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import asyncpg
import pytest

from services.intake.domain import Receivable
from services.intake.repository import (
    InMemoryIntakeStore,
    IntakeChanges,
    IntakeStore,
    NewAdjustment,
    NewPayment,
    NewReceivable,
    Pool,
    PostgresIntakeStore,
)
from tests.integration.scenario import contract_store

pytestmark = pytest.mark.integration

store = contract_store(InMemoryIntakeStore, PostgresIntakeStore, "intake")


def opened(pool_id: str, supplier: str) -> tuple[str, str, str, str]:
    return (pool_id, "CE-1", supplier, "Supplier")


def receivable(receivable_id: str, pool_id: str, amount: str) -> NewReceivable:
    return NewReceivable("CE-1", receivable_id, pool_id, Decimal(amount), date(2026, 7, 1), None)


async def test_what_is_written_is_read_back(store: IntakeStore) -> None:
    await store.write(
        IntakeChanges(
            pools=[opened("P-1", "S-1"), opened("P-2", "S-2")],
            receivables=[receivable("R-1", "P-1", "10.00"), receivable("R-2", "P-1", "5.50")],
            totals={"P-1": Decimal("15.50")},
        )
    )
    assert await store.pools(["P-1"], [("CE-1", "S-2")]) == [
        Pool("P-1", "CE-1", "S-1", Decimal("15.50")),
        Pool("P-2", "CE-1", "S-2", Decimal("0.00")),
    ]
    assert await store.pools(["P-9"], [("CE-9", "S-1")]) == []
    assert await store.receivables([("CE-1", "R-2"), ("CE-1", "R-9"), ("CE-2", "R-1")]) == [
        ("CE-1", Receivable("R-2", "P-1", Decimal("5.50"), "open", Decimal("5.50")))
    ]


async def test_a_payment_marks_its_receivables_paid_and_is_known_after(
    store: IntakeStore,
) -> None:
    await store.write(
        IntakeChanges(
            pools=[opened("P-1", "S-1")],
            receivables=[receivable("R-1", "P-1", "10.00"), receivable("R-2", "P-1", "5.00")],
        )
    )
    await store.write(
        IntakeChanges(
            payments=[
                NewPayment("PAY-1", "P-1", Decimal("10.00"), Decimal("10.00"), date(2026, 8, 3))
            ],
            updated={
                ("CE-1", "R-1"): Receivable(
                    "R-1", "P-1", Decimal("10.00"), "paid", Decimal("0.00"), payment_id="PAY-1"
                ),
                ("CE-1", "R-2"): Receivable("R-2", "P-1", Decimal("5.00"), "open", Decimal("4.99")),
            },
            totals={"P-1": Decimal("4.99")},
        )
    )
    assert await store.known_payments(["PAY-1", "PAY-2"]) == {"PAY-1"}
    states = {
        r.receivable_id: r.state
        for _, r in await store.receivables([("CE-1", "R-1"), ("CE-1", "R-2")])
    }
    assert states == {"R-1": "paid", "R-2": "open"}
    [(_, partly)] = await store.receivables([("CE-1", "R-2")])
    assert partly.open == Decimal("4.99")  # a partial payment leaves the rest open
    assert (await store.pools(["P-1"], []))[0].open_total == Decimal("4.99")


async def test_a_receivable_registered_twice_is_refused_by_the_store(store: IntakeStore) -> None:
    await store.write(
        IntakeChanges(pools=[opened("P-1", "S-1")], receivables=[receivable("R-1", "P-1", "1.00")])
    )
    with pytest.raises((ValueError, asyncpg.UniqueViolationError)):
        await store.write(IntakeChanges(receivables=[receivable("R-1", "P-1", "2.00")]))


def adjustment(kind: str, reference: str | None, change: str) -> NewAdjustment:
    return NewAdjustment(
        "CE-1", "R-1", "P-1", kind, Decimal(change), Decimal("7.00"), "why", reference, "E-1"
    )


async def test_adjustments_are_recorded_and_a_credit_note_id_is_used_once(
    store: IntakeStore,
) -> None:
    await store.write(
        IntakeChanges(pools=[opened("P-1", "S-1")], receivables=[receivable("R-1", "P-1", "10.00")])
    )
    disputed = Receivable(
        "R-1", "P-1", Decimal("10.00"), "open", Decimal("7.00"), None, True, "D-1"
    )
    await store.write(
        IntakeChanges(
            updated={("CE-1", "R-1"): disputed},
            adjustments=[
                adjustment("credit_note", "CN-1", "-3.00"),
                adjustment("dispute_opened", "D-1", "0.00"),
            ],
        )
    )
    [(_, found)] = await store.receivables([("CE-1", "R-1")])
    assert (found.open, found.disputed, found.dispute_id) == (Decimal("7.00"), True, "D-1")
    assert await store.credit_notes([("CE-1", "CN-1"), ("CE-1", "CN-2"), ("CE-2", "CN-1")]) == {
        ("CE-1", "CN-1")
    }
    with pytest.raises((ValueError, asyncpg.UniqueViolationError)):
        await store.write(IntakeChanges(adjustments=[adjustment("credit_note", "CN-1", "-1.00")]))
