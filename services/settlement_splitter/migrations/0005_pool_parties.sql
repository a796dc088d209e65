-- Issue 9: whose pool it is (from intake's PoolOpened): only the pool's supplier prepays
-- from its free balance.
CREATE TABLE pool_parties (
    pool_id             text PRIMARY KEY,
    core_enterprise_id  text NOT NULL,
    supplier_id         text NOT NULL
);
