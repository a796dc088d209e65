-- Issue 11: investor platforms. A request to a platform opens a raise: the platform reports
-- each investor's commitment; the raise closes when fully committed (`raised`, then the
-- platform may disburse) or expires at its deadline (`expired`: the application is refused).
ALTER TABLE funding_requests ADD COLUMN raise_deadline timestamptz;
-- A raise that closed at its deadline short, when its agreement allows: what was raised.
ALTER TABLE funding_requests ADD COLUMN raised_amount numeric(18,2) CHECK (raised_amount > 0);
ALTER TABLE funding_requests DROP CONSTRAINT funding_requests_state_check;
ALTER TABLE funding_requests ADD CONSTRAINT funding_requests_state_check
    CHECK (state IN ('awaiting_supplier', 'sent', 'raising', 'raised', 'expired', 'approved',
                     'rejected', 'disbursed'));
CREATE INDEX funding_requests_raising ON funding_requests (raise_deadline) WHERE state = 'raising';

CREATE TABLE investor_commitments (
    request_id    text          NOT NULL REFERENCES funding_requests,
    investor_id   text          NOT NULL,
    amount        numeric(18,2) NOT NULL CHECK (amount > 0),
    committed_at  timestamptz   NOT NULL,
    event_id      text          NOT NULL,
    PRIMARY KEY (request_id, investor_id)
);

-- Each investor's share has its own contract, signed by the investor and the supplier; the
-- platform disburses only once every contract of the raise carries both signatures.
CREATE TABLE investor_contracts (
    request_id          text          NOT NULL REFERENCES funding_requests,
    investor_id         text          NOT NULL,
    amount              numeric(18,2) NOT NULL CHECK (amount > 0),
    contract            text          NOT NULL,
    contract_hash       text          NOT NULL,
    supplier_signature  jsonb,
    investor_signature  jsonb,
    PRIMARY KEY (request_id, investor_id)
);
