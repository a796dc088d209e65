-- Issue 8: credit that holds in every ordering.
-- Facilities: servicing and eligibility settings, and the credit model's bounds.
ALTER TABLE facilities
    ADD COLUMN penalty_rate         numeric(12,8),
    ADD COLUMN interest_period      text          NOT NULL DEFAULT 'at_repayment',
    ADD COLUMN interest_collection  text          NOT NULL DEFAULT 'from_payments',
    ADD COLUMN max_days_past_due    integer       NOT NULL DEFAULT 90,
    ADD COLUMN max_tenor_days       integer       NOT NULL DEFAULT 365,
    ADD COLUMN cross_age_percent    numeric(12,8) NOT NULL DEFAULT 0.5,
    ADD COLUMN concentration_limit  numeric(18,2),
    ADD COLUMN auto_apply           jsonb;

-- Pools: money on hold (confirmed by the splitter / decided, not yet posted), the last
-- business day closed, what the last position said (for the auditor), the first slip's day.
ALTER TABLE pools
    ADD COLUMN held            numeric(18,2) NOT NULL DEFAULT 0 CHECK (held >= 0),
    ADD COLUMN held_pending    numeric(18,2) NOT NULL DEFAULT 0 CHECK (held_pending >= 0),
    ADD COLUMN closed_through  date,
    ADD COLUMN eligible_level  numeric(18,2),
    ADD COLUMN first_slip_on   date;

-- A loan takes the terms of the request the funder accepted (not the facility's at the time
-- the money arrives).
ALTER TABLE applications
    ADD COLUMN annual_interest_rate  numeric(12,8),
    ADD COLUMN tenor_days            integer,
    ADD COLUMN day_count             text,
    ADD COLUMN penalty_rate          numeric(12,8),
    ADD COLUMN requested_on          date;

ALTER TABLE loans
    ADD COLUMN penalty_rate   numeric(12,8) NOT NULL DEFAULT 0,
    ADD COLUMN interest_from  date,
    ADD COLUMN interest_due   numeric(18,2) NOT NULL DEFAULT 0 CHECK (interest_due >= 0),
    ADD COLUMN penalty_due    numeric(18,2) NOT NULL DEFAULT 0 CHECK (penalty_due >= 0),
    ADD COLUMN fees_due       numeric(18,2) NOT NULL DEFAULT 0 CHECK (fees_due >= 0),
    ADD COLUMN accrued        numeric(18,2) NOT NULL DEFAULT 0,
    ADD COLUMN overdue        boolean       NOT NULL DEFAULT false;
CREATE INDEX loans_open ON loans (pool_id) WHERE outstanding > 0 OR penalty_due > 0
    OR interest_due > 0;

ALTER TABLE repayments
    ADD COLUMN held       numeric(18,2) NOT NULL DEFAULT 0,
    ADD COLUMN from_held  numeric(18,2) NOT NULL DEFAULT 0,
    ADD COLUMN kind       text          NOT NULL DEFAULT 'payment';

-- Credit's view of each slip, for eligibility: what is open on it, its dates, its dispute.
CREATE TABLE receivables (
    pool_id        text          NOT NULL,
    receivable_id  text          NOT NULL,
    open_amount    numeric(18,2) NOT NULL CHECK (open_amount >= 0),
    issued_on      date,
    due_on         date,
    tenor_days     integer,
    disputed       boolean       NOT NULL DEFAULT false,
    PRIMARY KEY (pool_id, receivable_id)
);
-- Each kind of slip that may not count is found through an index of its own, so a batch
-- reads only the flagged slips of its pools, however many are open.
CREATE INDEX receivables_disputed ON receivables (pool_id) WHERE disputed AND open_amount > 0;
CREATE INDEX receivables_by_due ON receivables (pool_id, due_on) WHERE open_amount > 0;
CREATE INDEX receivables_by_tenor ON receivables (pool_id, tenor_days) WHERE open_amount > 0;

-- The loan ledger: every servicing step and repayment of every loan, in order, replayable.
CREATE TABLE loan_entries (
    id             bigserial     PRIMARY KEY,
    pool_id        text          NOT NULL,
    loan_id        text          NOT NULL,
    business_date  date          NOT NULL,
    kind           text          NOT NULL,
    amount         numeric(18,2) NOT NULL,
    reference      text,
    recorded_at    timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX loan_entries_by_loan ON loan_entries (loan_id, id);

-- Trade history per pool and month: the credit model's input.
CREATE TABLE trade_months (
    pool_id       text          NOT NULL,
    month         date          NOT NULL,
    slips         numeric(20,2) NOT NULL DEFAULT 0,
    paid          numeric(20,2) NOT NULL DEFAULT 0,
    paid_late     numeric(20,2) NOT NULL DEFAULT 0,
    diluted       numeric(20,2) NOT NULL DEFAULT 0,
    overdue_days  integer       NOT NULL DEFAULT 0,
    PRIMARY KEY (pool_id, month)
);

CREATE TABLE suggestions (
    suggestion_id  text        PRIMARY KEY,
    pool_id        text        NOT NULL,
    credit_line    numeric(18,2) NOT NULL,
    discount_rate  numeric(12,8) NOT NULL,
    grade          text        NOT NULL,
    state          text        NOT NULL CHECK (state IN ('pending', 'applied', 'rejected')),
    body           jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX suggestions_by_pool ON suggestions (pool_id, created_at);

-- Every position credit published, as published: the borrowing-base certificate as of any
-- instant is the one in force then.
CREATE TABLE positions (
    event_id     text        PRIMARY KEY,
    pool_id      text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    body         jsonb       NOT NULL
);
CREATE INDEX positions_by_pool ON positions (pool_id, occurred_at);
