-- Trust (issue 9), in every service's schema.

-- Which record an event id was taken from: the same record read again (a redelivery) is a
-- duplicate; another record with an external event id already taken is a replay.
ALTER TABLE processed ADD COLUMN record_id text;

-- The registry of parties' keys registered on admin.parties.v1 (maker-checker); the genesis
-- keys are in the deployment's trust file.
CREATE TABLE key_changes (
    change_id    text        PRIMARY KEY,
    action       text        NOT NULL CHECK (action IN ('register', 'revoke')),
    party_id     text        NOT NULL,
    role         text        NOT NULL,
    key_id       text        NOT NULL,
    scheme       text        NOT NULL,
    public_key   bytea,
    valid_from   timestamptz,
    valid_to     timestamptz,
    proposed_by  text        NOT NULL,
    state        text        NOT NULL CHECK (state IN ('proposed', 'approved', 'rejected')),
    decided_by   text,
    decided_at   timestamptz,
    proposed_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (decided_by IS NULL OR decided_by <> proposed_by)
);

CREATE TABLE party_keys (
    key_id       text        PRIMARY KEY,
    party_id     text        NOT NULL,
    role         text        NOT NULL,
    scheme       text        NOT NULL,
    public_key   bytea       NOT NULL,
    valid_from   timestamptz NOT NULL,
    valid_to     timestamptz,
    change_id    text        NOT NULL REFERENCES key_changes (change_id),
    approved_by  text        NOT NULL
);
CREATE INDEX party_keys_by_party ON party_keys (party_id);

CREATE TABLE key_revocations (
    key_id       text        PRIMARY KEY,
    revoked_at   timestamptz NOT NULL,
    change_id    text        NOT NULL REFERENCES key_changes (change_id)
);
