-- Issue 8: a slip stays open until paid in full, credited in full or cancelled with a reason;
-- a payment pays each named slip up to what is open on it. Disputes keep the slip open.
ALTER TABLE receivables ADD COLUMN open_amount numeric(18,2);
UPDATE receivables SET open_amount = CASE WHEN state = 'open' THEN amount ELSE 0 END;
ALTER TABLE receivables ALTER COLUMN open_amount SET NOT NULL;
ALTER TABLE receivables ADD CONSTRAINT receivables_open_amount_check
    CHECK (open_amount >= 0 AND open_amount <= amount);
ALTER TABLE receivables DROP CONSTRAINT receivables_state_check;
ALTER TABLE receivables ADD CONSTRAINT receivables_state_check
    CHECK (state IN ('open', 'paid', 'credited', 'cancelled'));
ALTER TABLE receivables ADD COLUMN disputed boolean NOT NULL DEFAULT false;
ALTER TABLE receivables ADD COLUMN dispute_id text;

-- The dilution record: every credit note, cancellation, amendment and dispute, with its
-- reason, per pool.
CREATE TABLE adjustments (
    id                  bigserial     PRIMARY KEY,
    core_enterprise_id  text          NOT NULL,
    receivable_id       text          NOT NULL,
    pool_id             text          NOT NULL REFERENCES pools,
    kind                text          NOT NULL,
    change              numeric(18,2) NOT NULL,
    open_after          numeric(18,2) NOT NULL,
    reason              text          NOT NULL,
    reference           text,
    event_id            text          NOT NULL,
    recorded_at         timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX adjustments_by_pool ON adjustments (pool_id, id);
-- A credit note id is unique per core enterprise.
CREATE UNIQUE INDEX adjustments_credit_note ON adjustments (core_enterprise_id, reference)
    WHERE kind = 'credit_note';
