-- API keys, consumer progress, parked events, and change notifications.

-- Admin and server-to-server keys (`sk_live_...`). Only a SHA-256 hash is stored; the
-- prefix finds the row, then the hashes are compared in constant time.
CREATE TABLE api_keys (
    id           BIGSERIAL PRIMARY KEY,
    prefix       TEXT NOT NULL UNIQUE,
    key_hash     BYTEA NOT NULL,
    owner_email  TEXT NOT NULL,
    scopes       TEXT[] NOT NULL CHECK (scopes <@ ARRAY['admin', 'events']::TEXT[] AND cardinality(scopes) > 0),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at   TIMESTAMPTZ
);

-- The aggregator's progress per partition, committed in the same transaction as the
-- rows it covers. Updates compare the expected offset, which fences a stale owner. It
-- belongs to this sink and the topic, not to a Kafka consumer group: renaming the group
-- must not replay anything.
CREATE TABLE consumer_offsets (
    topic            TEXT NOT NULL,
    kafka_partition  INTEGER NOT NULL,
    next_offset      BIGINT NOT NULL CHECK (next_offset >= 0),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition)
);

-- Messages the aggregator could not apply (undecodable, unattributable): kept with the
-- reason, counted, and never allowed to block their partition.
CREATE TABLE parked_events (
    topic            TEXT NOT NULL,
    kafka_partition  INTEGER NOT NULL,
    kafka_offset     BIGINT NOT NULL,
    reason           TEXT NOT NULL,
    event_id         TEXT,
    payload          BYTEA NOT NULL,
    parked_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);

-- ingest keeps referral codes and API keys in memory; tell it promptly when they change.
-- The channel carries the schema so that tests in separate schemas do not wake each other.
CREATE FUNCTION notify_directory_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('reftrack_directory_' || current_schema(), TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER affiliates_directory_change
    AFTER INSERT OR UPDATE OR DELETE ON affiliates
    FOR EACH STATEMENT EXECUTE FUNCTION notify_directory_change();

CREATE TRIGGER api_keys_directory_change
    AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION notify_directory_change();
