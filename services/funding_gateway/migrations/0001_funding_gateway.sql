-- funding-gateway owns the requests sent to funders and their answers.

CREATE TABLE funding_requests (
    request_id   text          PRIMARY KEY,
    pool_id      text          NOT NULL,
    funder_id    text          NOT NULL,
    supplier_id  text          NOT NULL,
    amount       numeric(18,2) NOT NULL,
    state        text          NOT NULL
        CHECK (state IN ('sent', 'approved', 'rejected', 'disbursed')),
    sent_at      timestamptz   NOT NULL DEFAULT now(),
    updated_at   timestamptz   NOT NULL DEFAULT now()
);

CREATE TABLE funder_responses (
    event_id     text          PRIMARY KEY,
    request_id   text          NOT NULL REFERENCES funding_requests,
    decision     text          NOT NULL,
    amount       numeric(18,2),
    received_at  timestamptz   NOT NULL DEFAULT now()
);
