-- Parked events that wait or are sent again.
--
-- A refund read before its purchase (another partition, or a purchase retried after a 503)
-- is parked as waiting for that purchase, named in original_event_id; the batch that
-- applies the purchase applies it too and marks it resolved ('applied'). An operator
-- re-drives other parked events once their cause is fixed (`aggregator parked redrive`):
-- they are published again and marked resolved ('redriven'); a copy that still cannot be
-- applied is parked again at its new position.
ALTER TABLE parked_events
    ADD COLUMN original_event_id TEXT,
    ADD COLUMN resolved_at       TIMESTAMPTZ,
    ADD COLUMN resolution        TEXT CHECK (resolution IN ('applied', 'redriven')),
    ADD CHECK ((resolved_at IS NULL) = (resolution IS NULL));

CREATE INDEX parked_waiting_refunds ON parked_events (original_event_id)
    WHERE original_event_id IS NOT NULL AND resolved_at IS NULL;
CREATE INDEX parked_open ON parked_events (parked_at) WHERE resolved_at IS NULL;

-- A held refund is recorded at the position of the purchase that released it, so that
-- ClickHouse's rows for that position (derived from Postgres) include it.
CREATE INDEX conversions_released_refunds ON conversions (kafka_partition, kafka_offset)
    WHERE kind = 'refund';
