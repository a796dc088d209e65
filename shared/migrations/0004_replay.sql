-- Replaying dead letters (`poolfin dead-letters replay`), in every service's schema.

-- The refused record's key and headers, kept so that a replay re-publishes it as it was sent:
-- same key (same partition, so the pool's order holds), same headers (internal topics carry
-- their `poolfin-mac` header). source_headers is a JSON list of [name, base64 value or null]
-- pairs in the producer's order; NULL (with source_key NULL) on dead letters recorded before
-- this migration, whose key and headers were not kept.
ALTER TABLE dead_letters ADD COLUMN source_key bytea;
ALTER TABLE dead_letters ADD COLUMN source_headers jsonb;

-- One row per replay: who replayed which dead letter, when, and where the copy went. A dead
-- letter is replayed at most once (there is no --force): a replayed record refused again is a
-- new record, hence a new dead letter, which can be replayed in its turn.
CREATE TABLE dead_letter_replays (
    id                bigserial   PRIMARY KEY,
    dead_letter_id    bigint      NOT NULL REFERENCES dead_letters (id),
    replayed_by       text        NOT NULL,
    replayed_at       timestamptz NOT NULL DEFAULT now(),
    target_topic      text        NOT NULL,
    target_partition  integer,
    target_offset     bigint,
    note              text,
    UNIQUE (dead_letter_id)
);
