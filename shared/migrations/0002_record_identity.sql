-- Dead letters are keyed by the record's identity, not by its coordinates: offsets restart at
-- 0 after a broker or topic reset, and a new bad record at an old offset must get its own
-- dead letter (issue 6, defect 4). A record read again after a crash has the same identity.
ALTER TABLE dead_letters ADD COLUMN record_id text;
UPDATE dead_letters
   SET record_id = 'coordinates:' || source_topic || ':' || source_partition || ':' || source_offset;
ALTER TABLE dead_letters ALTER COLUMN record_id SET NOT NULL;
ALTER TABLE dead_letters
    DROP CONSTRAINT dead_letters_source_topic_source_partition_source_offset_key;
CREATE UNIQUE INDEX dead_letters_by_record ON dead_letters (record_id);
CREATE INDEX dead_letters_by_source ON dead_letters (source_topic, source_partition, source_offset);
