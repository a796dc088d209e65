-- A pool's open total (its water level as intake sees it), kept with the pool so the limit
-- check costs nothing per slip however many receivables the pool holds (issue 7: flat cost).
ALTER TABLE pools ADD COLUMN open_total numeric(20,2) NOT NULL DEFAULT 0;
UPDATE pools SET open_total = coalesce(
    (SELECT sum(amount) FROM receivables r WHERE r.pool_id = pools.pool_id AND r.state = 'open'),
    0);
