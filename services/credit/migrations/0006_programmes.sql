-- Issue 11: programmes. A core enterprise's funders with their agreements, the routing rule
-- and the intercreditor rule. The row is also the lock under which an application of any of
-- the core enterprise's pools is routed: funders' limits hold across pools and partitions.
CREATE TABLE programmes (
    core_enterprise_id  text        PRIMARY KEY,
    routing             text        NOT NULL CHECK (routing IN ('cheapest', 'named')),
    intercreditor       text        NOT NULL CHECK (intercreditor IN ('pro_rata', 'maturity_then_age')),
    funders             jsonb       NOT NULL,
    event_id            text        NOT NULL,
    set_at              timestamptz NOT NULL DEFAULT now()
);

-- The funder an application names, if any (routing).
ALTER TABLE applications ADD COLUMN named_funder text;

-- Exposure by funder and core enterprise: loans and requests in flight, found by funder.
CREATE INDEX loans_by_funder ON loans (funder_id) WHERE outstanding > 0;
CREATE INDEX applications_requested_by_funder ON applications (funder_id) WHERE state = 'requested';
