"""One contract for credit's store, run against the in-memory fake and PostgreSQL."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from services.credit.domain import Loan
from services.credit.repository import (
    Application,
    CreditChanges,
    CreditStore,
    InMemoryCreditStore,
    PoolState,
    PostgresCreditStore,
    Repaid,
)
from shared.contracts import messages as m
from tests.integration.scenario import contract_store

pytestmark = pytest.mark.integration

store = contract_store(InMemoryCreditStore, PostgresCreditStore, "credit")


def pool_row(pool_id: str, level: str) -> PoolState:
    return PoolState(pool_id, "CE-1", "S-1", Decimal(level), None, [], Decimal("0.00"))


def facility_set(pool_id: str) -> m.FacilitySet:
    return m.new_event(
        m.FacilitySet,
        source="test",
        pool_id=pool_id,
        credit_line=Decimal("500.00"),
        discount_rate=Decimal("0.8"),
        annual_interest_rate=Decimal("0.0435"),
        funder_id="bank-a",
    )


def loan(loan_id: str, outstanding: str, disbursed: date) -> Loan:
    return Loan(loan_id, "bank-a", Decimal(outstanding), Decimal("0.0435"), disbursed, disbursed)


async def test_a_pool_reads_back_with_its_facility_loans_and_amount_in_flight(
    store: CreditStore,
) -> None:
    await store.write(
        CreditChanges(
            pools=[pool_row("P-1", "1000.00")],
            facilities=[facility_set("P-1")],
            new_applications=[
                Application("A-1", "P-1", Decimal("30.00"), "awaiting_buyer", None, "bank-a"),
                Application("A-2", "P-1", Decimal("20.00"), "requested", None, "bank-a"),
                Application("A-3", "P-1", Decimal("99.00"), "refused", "exceeds_available", None),
            ],
            new_loans=[
                ("P-1", loan("L-2", "200.00", date(2026, 8, 2))),
                ("P-1", loan("L-1", "100.00", date(2026, 8, 1))),
            ],
        )
    )
    [pool, unknown] = await store.pools(["P-1", "P-9"])
    assert (pool.exists, pool.water_level, pool.in_flight) == (
        True,
        Decimal("1000.00"),
        Decimal("50.00"),
    )
    assert pool.facility is not None and pool.facility.credit_line == Decimal("500.00")
    assert [loan.loan_id for loan in pool.loans] == ["L-1", "L-2"]  # oldest first
    assert (unknown.exists, unknown.water_level, unknown.loans) == (False, Decimal("0.00"), [])


async def test_repayments_reduce_loans_and_a_repaid_loan_is_no_longer_open(
    store: CreditStore,
) -> None:
    await store.write(
        CreditChanges(
            pools=[pool_row("P-1", "1000.00")],
            new_loans=[("P-1", loan("L-1", "100.00", date(2026, 8, 1)))],
        )
    )
    await store.write(
        CreditChanges(
            outstanding={("P-1", "L-1"): Decimal("0.00")},
            repayments=[
                Repaid("PAY-1", "P-1", Decimal("100.00"), Decimal("100.00"), Decimal("0.00"), {})
            ],
        )
    )
    [pool] = await store.pools(["P-1"])
    assert pool.loans == []
    assert await store.decided_payments(["PAY-1", "PAY-2"]) == {"PAY-1"}


async def test_an_application_moves_and_is_read_back_with_its_pool(store: CreditStore) -> None:
    application = Application("A-1", "P-1", Decimal("30.00"), "awaiting_buyer", None, "bank-a")
    await store.write(
        CreditChanges(pools=[pool_row("P-1", "100.00")], new_applications=[application])
    )
    moved = Application("A-1", "P-1", Decimal("30.00"), "refused", "rejected_by_buyer", "bank-a")
    await store.write(CreditChanges(moved_applications=[moved]))
    found, claims = await store.applications(["A-1", "A-9"])
    assert found == [moved] and claims == {}
    [pool] = await store.pools(["P-1"])
    assert pool.in_flight == Decimal("0.00")
