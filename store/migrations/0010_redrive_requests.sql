-- Re-drive from the console: an admin marks parked conversions, and the aggregator (which
-- has the Kafka producer) publishes them again within seconds, as `aggregator parked
-- redrive` does, and resolves them.
ALTER TABLE parked_events
    ADD COLUMN redrive_requested_at TIMESTAMPTZ,
    ADD COLUMN redrive_requested_by TEXT;
CREATE INDEX parked_redrive_requested ON parked_events (redrive_requested_at)
    WHERE redrive_requested_at IS NOT NULL AND resolved_at IS NULL;
