-- intake owns the archive of every raw ERP record, the pools it knows and the receivable
-- registry (with their write-offs).

CREATE TABLE raw_events (
    topic        text        NOT NULL,
    "partition"  integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    key          bytea,
    value        bytea       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, "partition", "offset")
);

CREATE TABLE pools (
    pool_id             text PRIMARY KEY,
    core_enterprise_id  text NOT NULL,
    supplier_id         text NOT NULL,
    supplier_name       text NOT NULL,
    opened_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (core_enterprise_id, supplier_id)
);

CREATE TABLE receivables (
    core_enterprise_id  text          NOT NULL,
    receivable_id       text          NOT NULL,
    pool_id             text          NOT NULL REFERENCES pools,
    amount              numeric(18,2) NOT NULL CHECK (amount > 0),
    issued_on           date          NOT NULL,
    due_on              date,
    state               text          NOT NULL CHECK (state IN ('open', 'paid')),
    payment_id          text,
    PRIMARY KEY (core_enterprise_id, receivable_id)
);
CREATE INDEX receivables_open_by_pool ON receivables (pool_id) WHERE state = 'open';

CREATE TABLE payments (
    payment_id   text          PRIMARY KEY,
    pool_id      text          NOT NULL REFERENCES pools,
    amount       numeric(18,2) NOT NULL,
    written_off  numeric(18,2) NOT NULL,
    paid_on      date          NOT NULL
);
