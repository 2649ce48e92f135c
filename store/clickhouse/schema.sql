-- reftrack's ClickHouse schema. `{db}` is replaced by the configured database.
-- Runs on Debian's clickhouse-server 18.16 and on current releases: plain MergeTree
-- families and materialized views only (no DateTime64, TTL or LowCardinality), each view
-- reading the raw table (18.16 does not cascade views).
-- Money is kept in integer cents so sums stay exact.

CREATE DATABASE IF NOT EXISTS {db};

-- Every click with its verdict, so every count can be audited ('invalid': an undecodable
-- message, parked in Postgres). Never read on a request path.
CREATE TABLE IF NOT EXISTS {db}.clicks_raw (
    event_id         UUID,
    kafka_topic      String,
    kafka_partition  UInt16,
    kafka_offset     UInt64,
    received_at      DateTime,
    received_at_ms   UInt64,
    affiliate_id     UInt64,
    code             String,
    visitor          UInt64,
    user_agent       String,
    referer          String,
    method           Enum8('GET' = 1, 'HEAD' = 2),
    country          String,
    verdict          Enum8('valid' = 1, 'bot' = 2, 'prefetch' = 3, 'duplicate' = 4, 'unknown_code' = 5, 'rate_limited' = 6, 'invalid' = 7),
    inserted_at      DateTime DEFAULT now()
) ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (affiliate_id, received_at);

-- The rollups are shaped for the questions the api asks: per affiliate and UTC day
-- (performance over whole days, daily charts) and per affiliate for all time (the
-- lifetime figures of listings and details). Affiliate 0 collects unknown codes.
-- Unique visitors are kept as exact sets, merged across the days asked for.
CREATE TABLE IF NOT EXISTS {db}.clicks_daily (
    affiliate_id         UInt64,
    day                  Date,
    raw_clicks           AggregateFunction(sum, UInt64),
    valid_clicks         AggregateFunction(sum, UInt64),
    bot_clicks           AggregateFunction(sum, UInt64),
    prefetch_clicks      AggregateFunction(sum, UInt64),
    duplicate_clicks     AggregateFunction(sum, UInt64),
    unknown_code_clicks  AggregateFunction(sum, UInt64),
    rate_limited_clicks  AggregateFunction(sum, UInt64),
    unique_visitors      AggregateFunction(uniqExactIf, UInt64, UInt8)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (affiliate_id, day)
-- Each row holds a set of visitors: small granules, so a query reads the rows it asks for.
SETTINGS index_granularity = 128;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.clicks_daily_mv TO {db}.clicks_daily AS
SELECT
    affiliate_id,
    toDate(received_at) AS day,
    sumState(toUInt64(1)) AS raw_clicks,
    sumState(toUInt64(verdict = 'valid')) AS valid_clicks,
    sumState(toUInt64(verdict = 'bot')) AS bot_clicks,
    sumState(toUInt64(verdict = 'prefetch')) AS prefetch_clicks,
    sumState(toUInt64(verdict = 'duplicate')) AS duplicate_clicks,
    sumState(toUInt64(verdict = 'unknown_code')) AS unknown_code_clicks,
    sumState(toUInt64(verdict = 'rate_limited')) AS rate_limited_clicks,
    uniqExactIfState(visitor, verdict = 'valid') AS unique_visitors
FROM {db}.clicks_raw
GROUP BY affiliate_id, day;

CREATE TABLE IF NOT EXISTS {db}.clicks_lifetime (
    affiliate_id         UInt64,
    raw_clicks           AggregateFunction(sum, UInt64),
    valid_clicks         AggregateFunction(sum, UInt64),
    unique_visitors      AggregateFunction(uniqExactIf, UInt64, UInt8)
) ENGINE = AggregatingMergeTree
ORDER BY affiliate_id
SETTINGS index_granularity = 16;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.clicks_lifetime_mv TO {db}.clicks_lifetime AS
SELECT
    affiliate_id,
    sumState(toUInt64(1)) AS raw_clicks,
    sumState(toUInt64(verdict = 'valid')) AS valid_clicks,
    uniqExactIfState(visitor, verdict = 'valid') AS unique_visitors
FROM {db}.clicks_raw
GROUP BY affiliate_id;

-- Every conversion message with its verdict: valid (counted), duplicate (a repeated
-- event id), unattributed (parked in Postgres with the reason), invalid (undecodable, parked).
CREATE TABLE IF NOT EXISTS {db}.conversions_raw (
    event_id           String,
    kafka_topic        String,
    kafka_partition    UInt16,
    kafka_offset       UInt64,
    kind               Enum8('signup' = 1, 'purchase' = 2, 'refund' = 3),
    verdict            Enum8('valid' = 1, 'duplicate' = 2, 'unattributed' = 3, 'invalid' = 4),
    affiliate_id       UInt64,
    code               String,
    user_id            Int64,
    amount_cents       Int64,
    commission_amount_cents  Int64,
    occurred_at        DateTime,
    received_at        DateTime,
    inserted_at        DateTime DEFAULT now()
) ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (affiliate_id, occurred_at);

-- Conversions per affiliate and UTC day of occurrence, and for all time; only valid
-- ones count.
CREATE TABLE IF NOT EXISTS {db}.conversions_daily (
    affiliate_id          UInt64,
    day                   Date,
    signups               UInt64,
    purchases             UInt64,
    refunds               UInt64,
    sales_cents           Int64,
    refunded_cents        Int64,
    commission_cents      Int64,
    reversed_cents        Int64
) ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (affiliate_id, day)
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.conversions_daily_mv TO {db}.conversions_daily AS
SELECT
    affiliate_id,
    toDate(occurred_at) AS day,
    sum(toUInt64(kind = 'signup')) AS signups,
    sum(toUInt64(kind = 'purchase')) AS purchases,
    sum(toUInt64(kind = 'refund')) AS refunds,
    sum(if(kind = 'purchase', amount_cents, 0)) AS sales_cents,
    sum(if(kind = 'refund', amount_cents, 0)) AS refunded_cents,
    sum(if(kind IN ('signup', 'purchase'), commission_amount_cents, 0)) AS commission_cents,
    sum(if(kind = 'refund', commission_amount_cents, 0)) AS reversed_cents
FROM {db}.conversions_raw
WHERE verdict = 'valid'
GROUP BY affiliate_id, day;

CREATE TABLE IF NOT EXISTS {db}.conversions_lifetime (
    affiliate_id          UInt64,
    signups               UInt64,
    purchases             UInt64,
    refunds               UInt64,
    sales_cents           Int64,
    refunded_cents        Int64,
    commission_cents      Int64,
    reversed_cents        Int64
) ENGINE = SummingMergeTree
ORDER BY affiliate_id
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.conversions_lifetime_mv TO {db}.conversions_lifetime AS
SELECT
    affiliate_id,
    sum(toUInt64(kind = 'signup')) AS signups,
    sum(toUInt64(kind = 'purchase')) AS purchases,
    sum(toUInt64(kind = 'refund')) AS refunds,
    sum(if(kind = 'purchase', amount_cents, 0)) AS sales_cents,
    sum(if(kind = 'refund', amount_cents, 0)) AS refunded_cents,
    sum(if(kind IN ('signup', 'purchase'), commission_amount_cents, 0)) AS commission_cents,
    sum(if(kind = 'refund', commission_amount_cents, 0)) AS reversed_cents
FROM {db}.conversions_raw
WHERE verdict = 'valid'
GROUP BY affiliate_id;

-- The aggregator's progress in ClickHouse: the next offset per topic partition, written
-- by the same INSERT as the raw rows it covers (through these views).
CREATE TABLE IF NOT EXISTS {db}.sink_offsets (
    topic            String,
    kafka_partition  UInt16,
    next_offset      AggregateFunction(max, UInt64)
) ENGINE = AggregatingMergeTree
ORDER BY (topic, kafka_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.clicks_offsets_mv TO {db}.sink_offsets AS
SELECT kafka_topic AS topic, kafka_partition, maxState(kafka_offset + 1) AS next_offset
FROM {db}.clicks_raw
GROUP BY kafka_topic, kafka_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.conversions_offsets_mv TO {db}.sink_offsets AS
SELECT kafka_topic AS topic, kafka_partition, maxState(kafka_offset + 1) AS next_offset
FROM {db}.conversions_raw
GROUP BY kafka_topic, kafka_partition;

-- The hourly rollups of earlier versions, replaced by the daily and lifetime ones: no
-- longer fed or read. (A stack made before them keeps its raw rows; its new rollups
-- count from the upgrade on.)
DROP TABLE IF EXISTS {db}.clicks_hourly_mv;
DROP TABLE IF EXISTS {db}.conversions_hourly_mv;
DROP TABLE IF EXISTS {db}.clicks_hourly;
DROP TABLE IF EXISTS {db}.conversions_hourly;
