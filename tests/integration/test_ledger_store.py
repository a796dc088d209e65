"""One contract for the splitter's ledger store, run against the in-memory fake and
PostgreSQL."""

from __future__ import annotations

import shutil
import uuid
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from poolfin.stack import Stack
from services.settlement_splitter import repository as repo
from services.settlement_splitter.domain import GENESIS
from services.settlement_splitter.handlers import make_handler
from services.settlement_splitter.repository import (
    ControlledAccount,
    Entry,
    InMemoryLedgerStore,
    LedgerBatch,
    LedgerChanges,
    LedgerStore,
    PostgresLedgerStore,
    Settlement,
    Transaction,
)
from shared.contracts import messages as m
from shared.db import create_pool, migrate
from shared.money import ZERO
from tests.integration.scenario import contract_store
from tests.unit.batches import run_batch
from tests.unit.test_splitter_handlers import (
    POOL,
    hold_settled,
    instructed,
    opened,
    paid,
    prepaid,
)

pytestmark = pytest.mark.integration

store = contract_store(InMemoryLedgerStore, PostgresLedgerStore, "settlement_splitter")
handle = make_handler(fee_bps=0)

MIGRATIONS = Path(__file__).parents[2] / "services" / "settlement_splitter" / "migrations"


def posted(
    pool_id: str, seq: int, payment_id: str, kind: str, *lines: tuple[str, str]
) -> tuple[Transaction, list[Entry]]:
    prev = GENESIS if seq == 1 else f"h{seq - 1}"
    return (
        (pool_id, seq, payment_id, kind, "{}", prev, f"h{seq}", "f", b"x"),
        [(pool_id, seq, line, a, Decimal(v)) for line, (a, v) in enumerate(lines)],
    )


def changes(
    *txs: tuple[Transaction, list[Entry]], settlements: list[Settlement] | None = None
) -> LedgerChanges:
    return LedgerChanges(
        transactions=[tx for tx, _ in txs],
        entries=[e for _, entries in txs for e in entries],
        settlements=settlements or [],
    )


async def test_a_new_account_starts_at_genesis_and_moves_with_what_is_posted(
    store: LedgerStore,
) -> None:
    assert await store.accounts(["P-1"]) == {"P-1": ControlledAccount("P-1", 0, GENESIS)}
    await store.write(
        changes(
            posted("P-1", 1, "PAY-1", "freeze", ("buyer:CE-1", "-10.00"), ("frozen:P-1", "10.00")),
            settlements=[
                Settlement(
                    "PAY-1", "P-1", Decimal("10.00"), "frozen", "payment", {"payment_id": "PAY-1"}
                )
            ],
        )
    )
    found_accounts = await store.accounts(["P-1", "P-2"])
    assert found_accounts["P-1"].head == (1, "h1")
    assert found_accounts["P-2"] == ControlledAccount("P-2", 0, GENESIS, ZERO, ZERO, ZERO)
    found = await store.settlements(["PAY-1", "PAY-9"])
    assert list(found) == ["PAY-1"]
    assert (found["PAY-1"].state, found["PAY-1"].amount) == ("frozen", Decimal("10.00"))
    assert found["PAY-1"].payment == {"payment_id": "PAY-1"}


async def test_the_pools_frozen_held_and_free_balances_move_with_its_entries(
    store: LedgerStore,
) -> None:
    await store.accounts(["P-1", "P-2"])
    await store.write(
        changes(
            posted("P-1", 1, "PAY-1", "freeze", ("buyer:CE-1", "-10.00"), ("frozen:P-1", "10.00")),
            posted(
                "P-1",
                2,
                "PAY-1",
                "split",
                ("frozen:P-1", "-10.00"),
                ("held:P-1", "3.00"),
                ("funder:bank-a", "5.00"),
                ("free:P-1", "2.00"),
            ),
            posted("P-2", 1, "PAY-2", "freeze", ("buyer:CE-1", "-4.00"), ("frozen:P-2", "4.00")),
        )
    )
    await store.write(
        changes(
            posted("P-1", 3, "PP-1", "prepayment", ("free:P-1", "-1.50"), ("frozen:P-1", "1.50")),
            posted("P-1", 4, "hold:1", "hold", ("held:P-1", "-3.00"), ("free:P-1", "3.00")),
        )
    )
    found = await store.accounts(["P-1", "P-2"])
    p1, p2 = found["P-1"], found["P-2"]
    assert (p1.seq, p1.frozen, p1.held, p1.free) == (4, Decimal("1.50"), ZERO, Decimal("3.50"))
    assert (p2.seq, p2.frozen, p2.held, p2.free) == (1, Decimal("4.00"), ZERO, ZERO)


async def test_no_pool_account_may_go_below_zero(store: LedgerStore) -> None:
    await store.accounts(["P-1"])
    with pytest.raises((ValueError, asyncpg.CheckViolationError)):
        await store.write(
            changes(
                posted(
                    "P-1", 1, "PP-1", "prepayment", ("free:P-1", "-0.01"), ("frozen:P-1", "0.01")
                )
            )
        )


async def test_settlements_keep_their_kind_and_move_to_a_new_state(store: LedgerStore) -> None:
    await store.write(
        changes(
            settlements=[
                Settlement("PP-1", "P-1", Decimal("5.00"), "frozen", "prepayment", {"a": 1}),
                Settlement(
                    "hold:1", "P-1", Decimal("3.00"), "released", "hold", None, {"b": 2}, ZERO
                ),
            ]
        )
    )
    await store.write(
        changes(
            settlements=[
                Settlement(
                    "PP-1",
                    "P-1",
                    Decimal("5.00"),
                    "released",
                    "prepayment",
                    {"a": 1},
                    {"c": 3},
                    Decimal("1.00"),
                )
            ]
        )
    )
    found = await store.settlements(["PP-1", "hold:1"])
    assert found["PP-1"] == Settlement(
        "PP-1",
        "P-1",
        Decimal("5.00"),
        "released",
        "prepayment",
        {"a": 1},
        {"c": 3},
        Decimal("1.00"),
    )
    assert (found["hold:1"].kind, found["hold:1"].instruction) == ("hold", {"b": 2})


async def test_the_splitters_batches_keep_the_balances_they_decide_on(store: LedgerStore) -> None:
    """The handlers' batches on the store: a hold, money taken from it, a hold settled and a
    prepayment, each batch deciding on the balances the previous one wrote."""

    async def batch(*events: m.Message) -> list[str | None]:
        return (await run_batch(LedgerBatch(store=store), handle, *events))[1]

    assert await batch(opened("L-1", "100.00")) == [None]  # the loan credit holds
    assert await batch(
        paid(amount="10.00"), instructed(amount="10.00", principal="5.00", held="3.00")
    ) == [None, None]
    assert await batch(
        paid("P-2", amount="10.00"),
        instructed("P-2", amount="10.00", principal="11.00", held="1.00", from_held="2.00"),
    ) == [None, None]
    assert await batch(hold_settled(amount="2.01", principal="1.01")) == ["insufficient_funds"]
    assert await batch(hold_settled(amount="2.00", principal="1.00"), prepaid(amount="3.01")) == [
        None,
        "insufficient_funds",
    ]
    assert await batch(prepaid(amount="3.00")) == [None]
    [account] = (await store.accounts([POOL])).values()
    # held: 3.00 + 1.00 − 2.00 − 2.00; free: 2.00 + 1.00 from hold − 3.00 prepaid. Seven
    # transactions: the loan's disbursement, then two of each payment, the hold, the prepayment.
    assert (account.seq, account.frozen, account.held, account.free) == (
        7,
        Decimal("3.00"),
        ZERO,
        ZERO,
    )


async def test_migration_3_takes_the_balances_of_an_existing_ledger(
    stack: Stack, tmp_path: Path
) -> None:
    """An existing ledger, written before the balance columns, gets them from its entries."""
    database_url = stack.database_url
    schema = f"settlement_splitter_upgrade_{uuid.uuid4().hex[:8]}"
    for old in ("0001_settlement.sql", "0002_canonical_hash.sql"):
        shutil.copy(MIGRATIONS / old, tmp_path / old)
    await migrate(database_url, schema, tmp_path)
    pool = await create_pool(database_url, schema, 1)
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO controlled_accounts(pool_id, last_seq, head_hash)"
                f" VALUES ('P-1', 2, 'h2'), ('P-2', 0, '{GENESIS}');"
                "INSERT INTO ledger_transactions(id, pool_id, seq, payment_id, kind, inputs,"
                " prev_hash, hash, format) VALUES"
                " (1, 'P-1', 1, 'PAY-1', 'freeze', '{}', 'g', 'h1', 'f'),"
                " (2, 'P-1', 2, 'PAY-1', 'split', '{}', 'h1', 'h2', 'f'),"
                " (3, 'P-1', 3, 'PAY-2', 'freeze', '{}', 'h2', 'h3', 'f');"
                "INSERT INTO ledger_entries(transaction_id, line, account, amount) VALUES"
                " (1, 0, 'buyer:CE-1', -10), (1, 1, 'frozen:P-1', 10),"
                " (2, 0, 'frozen:P-1', -10), (2, 1, 'funder:bank-a', 8), (2, 2, 'free:P-1', 2),"
                " (3, 0, 'buyer:CE-1', -7), (3, 1, 'frozen:P-1', 7);"
                "INSERT INTO settlements(payment_id, pool_id, amount, state)"
                " VALUES ('PAY-1', 'P-1', 10, 'released')"
            )
        assert await migrate(database_url, schema, MIGRATIONS) == [
            f"{schema}/0003_holds_and_prepayments.sql",
            f"{schema}/0004_loans_held.sql",
            f"{schema}/0005_pool_parties.sql",
            f"{schema}/0006_split_rules.sql",
            f"{schema}/0007_book.sql",
            f"{schema}/0008_investors.sql",
        ]
        async with pool.acquire() as conn:
            found = await PostgresLedgerStore(conn).accounts(["P-1", "P-2"])
            assert (found["P-1"].frozen, found["P-1"].held, found["P-1"].free) == (
                Decimal("7.00"),
                ZERO,
                Decimal("2.00"),
            )
            assert (found["P-2"].frozen, found["P-2"].free) == (ZERO, ZERO)
            [before] = (await PostgresLedgerStore(conn).settlements(["PAY-1"])).values()
            assert before.kind == "payment"
            assert await repo.balance_drift(conn) == []
            await conn.execute("UPDATE controlled_accounts SET free = 3 WHERE pool_id = 'P-1'")
            assert await repo.balance_drift(conn) == [
                "pool P-1: recorded free balance 3.00 but its entries sum to 2.00"
            ]
    finally:
        await pool.close()


async def test_every_account_keeps_its_balance_and_an_edit_is_found(store: LedgerStore) -> None:
    """Issue 10: balances kept by the write (not summed), a running balance on every entry,
    and PostgreSQL's CHECK refusing an overdraft; an edit of either is found by the audit."""
    await store.accounts(["P-1"])
    await store.write(
        changes(
            posted("P-1", 1, "PAY-1", "freeze", ("buyer:CE-1", "-10.00"), ("frozen:P-1", "10.00")),
            posted(
                "P-1", 2, "PAY-1", "split", ("frozen:P-1", "-10.00"), ("platform:fees", "10.00")
            ),
        )
    )
    assert await store.balances(["platform:fees", "frozen:P-1", "none"]) == {
        "platform:fees": Decimal("10.00"),
        "frozen:P-1": ZERO,
    }
    overdraft = changes(
        posted("P-1", 3, "R-1", "reversal", ("platform:fees", "-10.01"), ("x:y", "10.01"))
    )
    with pytest.raises((ValueError, asyncpg.CheckViolationError)):  # fees never below zero
        if isinstance(store, PostgresLedgerStore):
            async with store.conn.transaction():  # a savepoint: the test goes on after it
                await store.write(overdraft)
        else:
            await store.write(overdraft)
    if isinstance(store, PostgresLedgerStore):
        conn = store.conn
        assert await repo.account_drift(conn) == []
        await conn.execute("UPDATE ledger_accounts SET balance = 9 WHERE account = 'platform:fees'")
        await conn.execute(
            "UPDATE ledger_entries SET balance_after = 5 WHERE account = 'buyer:CE-1'"
        )
        found = await repo.account_drift(conn)
        assert any("platform:fees: kept balance 9" in p for p in found), found
        assert any("buyer:CE-1: the running balance breaks" in p for p in found), found
