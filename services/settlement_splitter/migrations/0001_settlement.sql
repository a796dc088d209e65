-- settlement-splitter owns the controlled accounts, the hash-chained double-entry ledger and
-- the settlements (frozen → released).

-- One row per pool's controlled account: the lock point and the head of its hash chain.
CREATE TABLE controlled_accounts (
    pool_id     text    PRIMARY KEY,
    last_seq    integer NOT NULL DEFAULT 0,
    head_hash   text    NOT NULL
);

CREATE TABLE ledger_transactions (
    id          bigserial   PRIMARY KEY,
    pool_id     text        NOT NULL REFERENCES controlled_accounts,
    seq         integer     NOT NULL,
    payment_id  text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('freeze', 'split')),
    inputs      jsonb       NOT NULL,
    prev_hash   text        NOT NULL,
    hash        text        NOT NULL,
    posted_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (pool_id, seq),
    UNIQUE (payment_id, kind)
);

-- Signed amounts: debits negative, credits positive; every transaction sums to zero.
CREATE TABLE ledger_entries (
    transaction_id  bigint        NOT NULL REFERENCES ledger_transactions,
    line            integer       NOT NULL,
    account         text          NOT NULL,
    amount          numeric(18,2) NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (transaction_id, line)
);
CREATE INDEX ledger_entries_by_account ON ledger_entries (account);

CREATE TABLE settlements (
    payment_id   text          PRIMARY KEY,
    pool_id      text          NOT NULL,
    amount       numeric(18,2) NOT NULL,
    state        text          NOT NULL CHECK (state IN ('frozen', 'instructed', 'released')),
    payment      jsonb,
    instruction  jsonb,
    released     numeric(18,2),
    updated_at   timestamptz   NOT NULL DEFAULT now()
);
