"""One contract for credit's store, run against the in-memory fake and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.credit.domain import Facility, Loan, Receivable
from services.credit.model import MonthTrade
from services.credit.repository import (
    Application,
    CreditChanges,
    CreditStore,
    InMemoryCreditStore,
    PoolState,
    PostgresCreditStore,
    Repaid,
    Suggestion,
    facility_of,
)
from shared.contracts import messages as m
from tests.integration.scenario import contract_store

pytestmark = pytest.mark.integration

store = contract_store(InMemoryCreditStore, PostgresCreditStore, "credit")


def pool_row(pool_id: str, level: str) -> PoolState:
    return PoolState(pool_id, "CE-1", "S-1", Decimal(level), None, [], Decimal("0.00"))


TODAY = date(2026, 11, 20)


def facility_set(pool_id: str, **terms: Any) -> tuple[str, Facility, str]:
    event = m.new_event(
        m.FacilitySet,
        source="test",
        pool_id=pool_id,
        credit_line=Decimal("500.00"),
        discount_rate=Decimal("0.8"),
        annual_interest_rate=Decimal("0.0435"),
        funder_id="bank-a",
        **terms,
    )
    return pool_id, facility_of(event), event.event_id


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
    [pool, unknown] = await store.pools(["P-1", "P-9"], TODAY)
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
            loans={("P-1", "L-1"): loan("L-1", "0.00", date(2026, 8, 1))},
            repayments=[
                Repaid("PAY-1", "P-1", Decimal("100.00"), Decimal("100.00"), Decimal("0.00"), {})
            ],
        )
    )
    [pool] = await store.pools(["P-1"], TODAY)
    assert pool.loans == []
    assert set(await store.payments(["PAY-1", "PAY-2"])) == {"PAY-1"}


async def test_an_application_moves_and_is_read_back_with_its_pool(store: CreditStore) -> None:
    application = Application("A-1", "P-1", Decimal("30.00"), "awaiting_buyer", None, "bank-a")
    await store.write(
        CreditChanges(pools=[pool_row("P-1", "100.00")], new_applications=[application])
    )
    moved = Application("A-1", "P-1", Decimal("30.00"), "refused", "rejected_by_buyer", "bank-a")
    await store.write(CreditChanges(moved_applications=[moved]))
    found, claims = await store.applications(["A-1", "A-9"])
    assert found == [moved] and claims == {}
    [pool] = await store.pools(["P-1"], TODAY)
    assert pool.in_flight == Decimal("0.00")


async def test_a_pool_reads_back_the_slips_that_may_not_count_and_only_those(
    store: CreditStore,
) -> None:
    def slip(rid: str, open_: str, issued: int, due: int, disputed: bool = False) -> Receivable:
        return Receivable(
            rid,
            Decimal(open_),
            TODAY - timedelta(days=issued),
            TODAY - timedelta(days=due),
            disputed,
        )

    await store.write(
        CreditChanges(
            pools=[pool_row("P-1", "1000.00")],
            facilities=[facility_set("P-1", max_days_past_due=30, max_tenor_days=90)],
            receivables={
                ("P-1", "ok"): slip("ok", "100.00", 10, -50),
                ("P-1", "disputed"): slip("disputed", "100.00", 10, -50, disputed=True),
                ("P-1", "long"): slip("long", "100.00", 10, -100),  # tenor 110 days
                ("P-1", "late"): slip("late", "100.00", 60, 31),  # 31 days past due
                ("P-1", "paid"): slip("paid", "100.00", 60, 31),
            },
        )
    )
    await store.write(CreditChanges(open_amounts={("P-1", "paid"): Decimal("0.00")}))
    [pool] = await store.pools(["P-1"], TODAY)
    assert sorted(pool.flagged) == ["disputed", "late", "long"]
    assert pool.eligibility.ineligible == {
        "disputed": Decimal("100.00"),
        "tenor": Decimal("100.00"),
        "past_due": Decimal("100.00"),
    }
    assert await store.receivables([("P-1", "ok"), ("P-1", "none")]) == [
        ("P-1", slip("ok", "100.00", 10, -50))
    ]


async def test_holds_closed_days_and_loan_servicing_fields_read_back(store: CreditStore) -> None:
    row = pool_row("P-1", "100.00")
    row.held, row.held_pending, row.closed_through = Decimal("8.00"), Decimal("2.00"), TODAY
    serviced = Loan(
        "L-1",
        "bank-a",
        Decimal("50.00"),
        Decimal("0.0435"),
        date(2026, 8, 1),
        date(2026, 9, 1),
        penalty_rate=Decimal("0.06525"),
        interest_from=date(2026, 9, 1),
        interest_due=Decimal("1.00"),
        penalty_due=Decimal("0.50"),
        accrued=Decimal("0.00"),
        overdue=True,
    )
    await store.write(CreditChanges(pools=[row], new_loans=[("P-1", serviced)]))
    [pool] = await store.pools(["P-1"], TODAY)
    assert (pool.held, pool.held_pending, pool.closed_through) == (
        Decimal("8.00"),
        Decimal("2.00"),
        TODAY,
    )
    assert pool.today == TODAY + timedelta(days=1)  # a pool closed through today is tomorrow
    assert pool.loans == [serviced]
    repaid = dataclasses.replace(serviced, outstanding=Decimal("0.00"), penalty_due=Decimal(0))
    await store.write(CreditChanges(loans={("P-1", "L-1"): repaid}))
    [pool] = await store.pools(["P-1"], TODAY)
    assert [loan.interest_due for loan in pool.loans] == [Decimal("1.00")]  # still owed


async def test_trade_months_add_up_and_suggestions_and_positions_are_kept(
    store: CreditStore,
) -> None:
    month = date(2026, 11, 1)
    for _ in range(2):
        await store.write(
            CreditChanges(
                trade={
                    ("P-1", month): [
                        Decimal("10.00"),
                        Decimal("4.00"),
                        Decimal("1.00"),
                        Decimal("0.50"),
                        3,
                    ]
                }
            )
        )
    assert await store.trade_history(["P-1"]) == {
        "P-1": [
            MonthTrade(
                month, Decimal("20.00"), Decimal("8.00"), Decimal("2.00"), Decimal("1.00"), 3
            )
        ]
    }
    suggestion = Suggestion(
        "S-1", "P-1", Decimal("100.00"), Decimal("0.75"), "B", "pending", {"a": 1}
    )
    await store.write(CreditChanges(suggestions=[suggestion]))
    await store.write(CreditChanges(suggestions=[dataclasses.replace(suggestion, state="applied")]))
    [found] = await store.suggestions(["S-1", "S-9"])
    assert (found.state, found.body) == ("applied", {"a": 1})
    at = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    await store.write(CreditChanges(positions=[("E-1", "P-1", at, {"water_level": "1.00"})]))
