-- credit owns facilities, pool positions, applications, loans and repayments.

CREATE TABLE pools (
    pool_id             text          PRIMARY KEY,
    core_enterprise_id  text,
    supplier_id         text,
    water_level         numeric(18,2) NOT NULL DEFAULT 0 CHECK (water_level >= 0)
);

CREATE TABLE facilities (
    pool_id               text          PRIMARY KEY,
    credit_line           numeric(18,2) NOT NULL,
    discount_rate         numeric(12,8) NOT NULL,
    annual_interest_rate  numeric(12,8) NOT NULL,
    funder_id             text          NOT NULL,
    funder_kind           text          NOT NULL,
    day_count             text          NOT NULL,
    tenor_days            integer       NOT NULL,
    set_by_event          text          NOT NULL,
    updated_at            timestamptz   NOT NULL DEFAULT now()
);

CREATE TABLE applications (
    application_id  text          PRIMARY KEY,
    pool_id         text          NOT NULL,
    amount          numeric(18,2) NOT NULL,
    state           text          NOT NULL
        CHECK (state IN ('awaiting_buyer', 'requested', 'funded', 'refused')),
    reason          text,
    funder_id       text,
    updated_at      timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX applications_in_flight ON applications (pool_id)
    WHERE state IN ('awaiting_buyer', 'requested');

CREATE TABLE loans (
    loan_id               text          PRIMARY KEY,
    pool_id               text          NOT NULL,
    funder_id             text          NOT NULL,
    principal             numeric(18,2) NOT NULL,
    outstanding           numeric(18,2) NOT NULL CHECK (outstanding >= 0),
    annual_interest_rate  numeric(12,8) NOT NULL,
    day_count             text          NOT NULL,
    disbursed_on          date          NOT NULL,
    maturity_on           date          NOT NULL
);
CREATE INDEX loans_open_by_pool ON loans (pool_id) WHERE outstanding > 0;

CREATE TABLE repayments (
    payment_id         text          PRIMARY KEY,
    pool_id            text          NOT NULL,
    amount             numeric(18,2) NOT NULL,
    principal          numeric(18,2) NOT NULL,
    interest           numeric(18,2) NOT NULL,
    state              text          NOT NULL CHECK (state IN ('reserved', 'confirmed')),
    instruction        jsonb         NOT NULL,
    created_at         timestamptz   NOT NULL DEFAULT now()
);
