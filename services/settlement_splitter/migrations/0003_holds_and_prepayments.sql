-- Issue 8: money on hold, prepayments and hold settlements.

-- A pool's own accounts' balances, kept on its controlled account by the statement that
-- writes the entries: a batch reads them with the lock it takes on the account (no sum over
-- the ledger in the hot path). No pool account goes below zero.
ALTER TABLE controlled_accounts
    ADD COLUMN frozen numeric(18,2) NOT NULL DEFAULT 0 CHECK (frozen >= 0),
    ADD COLUMN held   numeric(18,2) NOT NULL DEFAULT 0 CHECK (held >= 0),
    ADD COLUMN free   numeric(18,2) NOT NULL DEFAULT 0 CHECK (free >= 0);

UPDATE controlled_accounts c
SET frozen = s.frozen, held = s.held, free = s.free
FROM (
    SELECT c2.pool_id,
        coalesce(sum(e.amount) FILTER (WHERE e.account = 'frozen:' || c2.pool_id), 0) AS frozen,
        coalesce(sum(e.amount) FILTER (WHERE e.account = 'held:' || c2.pool_id), 0) AS held,
        coalesce(sum(e.amount) FILTER (WHERE e.account = 'free:' || c2.pool_id), 0) AS free
    FROM controlled_accounts c2
    JOIN ledger_entries e
        ON e.account IN ('frozen:' || c2.pool_id, 'held:' || c2.pool_id, 'free:' || c2.pool_id)
    GROUP BY c2.pool_id
) s
WHERE c.pool_id = s.pool_id;

-- A prepayment is frozen out of the free balance ('prepayment'); money on hold is moved by
-- credit's HoldSettled ('hold').
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check
    CHECK (kind IN ('freeze', 'split', 'prepayment', 'hold'));

-- What a settlement settles: a buyer's payment, a supplier's prepayment, or money on hold.
ALTER TABLE settlements ADD COLUMN kind text NOT NULL DEFAULT 'payment'
    CHECK (kind IN ('payment', 'prepayment', 'hold'));
ALTER TABLE settlements ALTER COLUMN kind DROP DEFAULT;
