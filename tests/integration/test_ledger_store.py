"""One contract for the splitter's ledger store, run against the in-memory fake and
PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.settlement_splitter.domain import GENESIS
from services.settlement_splitter.repository import (
    InMemoryLedgerStore,
    LedgerChanges,
    LedgerStore,
    PostgresLedgerStore,
)
from tests.integration.scenario import contract_store

pytestmark = pytest.mark.integration

store = contract_store(InMemoryLedgerStore, PostgresLedgerStore, "settlement_splitter")


async def test_a_new_account_starts_at_genesis_and_moves_with_what_is_posted(
    store: LedgerStore,
) -> None:
    assert await store.heads(["P-1"]) == {"P-1": (0, GENESIS)}
    await store.write(
        LedgerChanges(
            transactions=[("P-1", 1, "PAY-1", "freeze", "{}", GENESIS, "h1", "f", b"x")],
            entries=[
                ("P-1", 1, 0, "buyer:CE-1", Decimal("-10.00")),
                ("P-1", 1, 1, "frozen:P-1", Decimal("10.00")),
            ],
            settlements=[
                {
                    "payment_id": "PAY-1",
                    "pool_id": "P-1",
                    "amount": Decimal("10.00"),
                    "state": "frozen",
                    "payment": {"payment_id": "PAY-1"},
                    "instruction": None,
                    "released": None,
                }
            ],
        )
    )
    assert await store.heads(["P-1", "P-2"]) == {"P-1": (1, "h1"), "P-2": (0, GENESIS)}
    found = await store.settlements(["PAY-1", "PAY-9"])
    assert list(found) == ["PAY-1"]
    assert (found["PAY-1"]["state"], found["PAY-1"]["amount"]) == ("frozen", Decimal("10.00"))
