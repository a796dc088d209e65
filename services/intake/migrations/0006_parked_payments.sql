-- A buyer's payment naming a slip intake has not seen yet waits for it, a bounded time
-- (POOLFIN_UNSEEN_SLIP_WAIT_S), instead of being dead-lettered at once: the ERP may publish
-- the payment a moment before the slip. Booking the slip takes the payment, in the same
-- transaction; past its deadline the parking watch dead-letters it (services/intake/parking.py).
CREATE TABLE parked_payments (
    event_id            text        PRIMARY KEY,
    payment_id          text        NOT NULL,
    pool_id             text        NOT NULL,
    core_enterprise_id  text        NOT NULL,
    missing             text[]      NOT NULL,  -- the receivables it names not seen yet
    -- The record as read: dead-lettered with its raw bytes, key and headers if need be.
    source_topic        text        NOT NULL,
    source_partition    integer     NOT NULL,
    source_offset       bigint      NOT NULL,
    source_timestamp    bigint      NOT NULL,
    source_key          bytea,
    source_headers      jsonb       NOT NULL DEFAULT '[]',  -- [[name, base64 | null]]
    raw_payload         bytea       NOT NULL,
    parked_at           timestamptz NOT NULL,
    deadline            timestamptz NOT NULL,
    -- Set when its slips came and the payment was refused all the same: the watch
    -- dead-letters it with this reason at its next round.
    reason              text,
    detail              text
);
-- One payment id waits once; the pool's waiting payments are found when a slip is booked.
CREATE UNIQUE INDEX parked_payments_waiting ON parked_payments (payment_id) WHERE reason IS NULL;
CREATE INDEX parked_payments_by_pool ON parked_payments (pool_id) WHERE reason IS NULL;
CREATE INDEX parked_payments_by_deadline ON parked_payments (deadline);
