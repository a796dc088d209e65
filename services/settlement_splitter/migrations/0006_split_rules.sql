-- Issue 10: split rules as data. A programme's (core enterprise) rules and a pool's own, each
-- set a new version; a split records the version it used and the facts it resolved.
CREATE TABLE split_rules (
    scope_key   text        NOT NULL,  -- programme:<core enterprise> | pool:<pool_id>
    version     integer     NOT NULL CHECK (version >= 1),
    rules       jsonb       NOT NULL,
    event_id    text        NOT NULL,
    set_by      text,
    set_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope_key, version)
);
-- The month's volume of a pool (dynamic tiers) is read from its freezes.
CREATE INDEX ledger_freezes_by_pool_and_time ON ledger_transactions (pool_id, posted_at)
    WHERE kind = 'freeze';
