-- The raw archive is keyed by the record's identity, not by its coordinates: after a broker
-- or topic reset offsets restart at 0 and the new records must be archived too (issue 6,
-- defect 4). A record read again after a crash has the same identity and is archived once.
ALTER TABLE raw_events DROP CONSTRAINT raw_events_pkey;
ALTER TABLE raw_events ADD COLUMN id bigserial PRIMARY KEY;
ALTER TABLE raw_events ADD COLUMN record_id text;
ALTER TABLE raw_events ADD COLUMN "timestamp" bigint;
UPDATE raw_events
   SET record_id = 'coordinates:' || topic || ':' || "partition" || ':' || "offset";
ALTER TABLE raw_events ALTER COLUMN record_id SET NOT NULL;
CREATE UNIQUE INDEX raw_events_by_record ON raw_events (record_id);
CREATE INDEX raw_events_by_source ON raw_events (topic, "partition", "offset");
