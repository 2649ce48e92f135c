-- Topic epochs. A partition that was deleted and re-created, or a broker that came back
-- empty, starts again at offset 0, below the positions the sinks hold. The sinks keep
-- logical offsets: the Kafka offset plus the partition's epoch base. When the aggregator
-- finds that the log no longer holds the last record it applied (last_record, compared
-- with what the broker has at that offset), it starts a new epoch whose base is past every
-- position held, so the new log is applied from its first record and nothing is skipped.
ALTER TABLE consumer_offsets
    ADD COLUMN epoch_base  BIGINT NOT NULL DEFAULT 0 CHECK (epoch_base >= 0),
    ADD COLUMN epochs      INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN last_record BYTEA;
