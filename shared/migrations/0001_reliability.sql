-- The reliability mechanics every service shares, created in the service's own schema.

-- Inbox: one row per event this service has taken an effect for (or dead-lettered).
CREATE TABLE processed (
    consumer      text        NOT NULL,
    event_id      text        NOT NULL,
    payload_hash  text        NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Transactional outbox: written in the business transaction, published by the relay.
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    key         bytea,
    value       bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Dead letters kept for operators; unique by source coordinates so a re-read record is not
-- dead-lettered twice.
CREATE TABLE dead_letters (
    id             bigserial   PRIMARY KEY,
    source_topic   text        NOT NULL,
    source_partition integer   NOT NULL,
    source_offset  bigint      NOT NULL,
    event_id       text,
    pool_id        text,
    reason         text        NOT NULL,
    detail         text        NOT NULL,
    raw_payload    bytea       NOT NULL,
    rejected_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_topic, source_partition, source_offset)
);
