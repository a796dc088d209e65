-- Issue 10: the ledger as the book of record.
--
-- Every account has a type and an overdraft rule, and its balance is kept by the statement
-- that writes its entries (never summed in the hot path). The database refuses a balance
-- outside the account's bounds, whatever Python decided. Every entry keeps the account's
-- balance after it, so a balance as of any past instant is one indexed read.
CREATE TABLE ledger_accounts (
    account      text          PRIMARY KEY,
    type         text          NOT NULL CHECK (type IN ('asset', 'liability', 'income', 'external')),
    min_balance  numeric(18,2),
    max_balance  numeric(18,2),
    balance      numeric(18,2) NOT NULL DEFAULT 0,
    CONSTRAINT ledger_accounts_overdraft CHECK (
        (min_balance IS NULL OR balance >= min_balance)
        AND (max_balance IS NULL OR balance <= max_balance))
);

ALTER TABLE ledger_entries ADD COLUMN balance_after numeric(18,2);
CREATE INDEX ledger_entries_by_account_in_order ON ledger_entries (account, transaction_id);
DROP INDEX IF EXISTS ledger_entries_by_account;
CREATE INDEX ledger_transactions_by_time ON ledger_transactions (posted_at);

-- Existing entries: their running balances, and the accounts they built (typed as the code
-- types them; bounds come with the next write of each account).
UPDATE ledger_entries e SET balance_after = r.running
FROM (
    SELECT transaction_id, line,
        sum(amount) OVER (PARTITION BY account ORDER BY transaction_id, line) AS running
    FROM ledger_entries
) r
WHERE e.transaction_id = r.transaction_id AND e.line = r.line;
ALTER TABLE ledger_entries ALTER COLUMN balance_after SET NOT NULL;

INSERT INTO ledger_accounts(account, type, balance)
SELECT account,
    CASE split_part(account, ':', 1)
        WHEN 'buyer' THEN 'external' WHEN 'funder' THEN 'external' WHEN 'bank' THEN 'external'
        WHEN 'platform' THEN 'income'
        ELSE 'liability' END,
    sum(amount)
FROM ledger_entries GROUP BY account;

-- What the book records besides payments: disbursements, payouts and their bank answers,
-- operators' voids and releases, reversals.
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check
    CHECK (kind IN ('freeze', 'split', 'prepayment', 'hold', 'disbursement', 'payout',
                    'payout_executed', 'payout_rejected', 'void', 'release', 'reversal'));
-- A reversal's id is its own; several reversals may follow one payment.

ALTER TABLE settlements DROP CONSTRAINT settlements_state_check;
ALTER TABLE settlements ADD CONSTRAINT settlements_state_check
    CHECK (state IN ('frozen', 'instructed', 'released', 'voided'));
ALTER TABLE settlements
    ADD COLUMN frozen_at timestamptz,
    ADD COLUMN alerted_at timestamptz,
    ADD COLUMN reversed numeric(18,2) NOT NULL DEFAULT 0 CHECK (reversed >= 0 AND reversed <= amount),
    -- What each account the split paid has given back so far (returned or owed), by account.
    ADD COLUMN reversed_parts jsonb NOT NULL DEFAULT '{}';
UPDATE settlements SET frozen_at = updated_at WHERE state = 'frozen';
CREATE INDEX settlements_frozen ON settlements (frozen_at) WHERE state = 'frozen';

-- Loans whose disbursement the book holds (loans opened before issue 10 were not booked:
-- their principal moves only in the `loans` table).
ALTER TABLE loans ADD COLUMN booked boolean NOT NULL DEFAULT false;

-- Payouts of free balances: instructed, then executed or rejected by the bank.
CREATE TABLE payouts (
    payout_id     text          PRIMARY KEY,
    pool_id       text          NOT NULL,
    supplier_id   text          NOT NULL,
    bank_account  text          NOT NULL,
    amount        numeric(18,2) NOT NULL CHECK (amount > 0),
    state         text          NOT NULL CHECK (state IN ('instructed', 'executed', 'rejected')),
    bank_reference text,
    updated_at    timestamptz   NOT NULL DEFAULT now()
);
