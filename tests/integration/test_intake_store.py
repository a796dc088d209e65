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
        ("CE-1", Receivable("R-2", "P-1", Decimal("5.50"), "open"))
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
            paid=[("CE-1", "R-1", "PAY-1")],
            totals={"P-1": Decimal("5.00")},
        )
    )
    assert await store.known_payments(["PAY-1", "PAY-2"]) == {"PAY-1"}
    states = {
        r.receivable_id: r.state
        for _, r in await store.receivables([("CE-1", "R-1"), ("CE-1", "R-2")])
    }
    assert states == {"R-1": "paid", "R-2": "open"}
    assert (await store.pools(["P-1"], []))[0].open_total == Decimal("5.00")


async def test_a_receivable_registered_twice_is_refused_by_the_store(store: IntakeStore) -> None:
    await store.write(
        IntakeChanges(pools=[opened("P-1", "S-1")], receivables=[receivable("R-1", "P-1", "1.00")])
    )
    with pytest.raises((ValueError, asyncpg.UniqueViolationError)):
        await store.write(IntakeChanges(receivables=[receivable("R-1", "P-1", "2.00")]))
