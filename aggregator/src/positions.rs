//! Where each sink stands in each partition: the next offset it has not applied.
//!
//! Postgres keeps it in `consumer_offsets`, moved in the same transaction as the rows of
//! the batch with a compare-and-set (an instance whose view is stale is fenced and
//! rolls back). ClickHouse keeps it in `sink_offsets`, filled by materialized views from
//! the very INSERT that writes the raw rows. A message is applied to the sinks whose
//! position it has not passed, and skipped when both have it.
//!
//! Offsets here are logical: the Kafka offset plus the partition's epoch base. The base
//! is 0 until the log a partition's positions came from is found gone (the topic was
//! re-created, or the broker came back empty); [`begin_epoch`] then moves it past every
//! position held, so the new log's offsets, which start at 0 again, are never mistaken
//! for records already applied. Postgres keeps the base and the last record it applied,
//! which is what the aggregator compares with the broker's log.

use std::collections::HashMap;

use clickhouse::Client;
use sqlx::{PgPool, Postgres, Transaction};

use crate::consume::Record;

/// One of the two sinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Postgres,
    ClickHouse,
}

/// What was made of one Kafka message.
pub trait FromMessage {
    fn record(&self) -> &Record;
}

/// Postgres's position in one partition.
#[derive(Debug, Default, Clone)]
struct Stored {
    next: i64,
    base: i64,
    /// The payload of the record at `next - 1`, when known.
    last: Option<Vec<u8>>,
}

/// The last record Postgres applied in a partition: where the broker should still hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub kafka_offset: i64,
    pub payload: Vec<u8>,
}

/// Cached positions of both sinks for one topic.
#[derive(Debug, Default, Clone)]
pub struct Positions {
    postgres: HashMap<i32, Stored>,
    clickhouse: HashMap<i32, i64>,
    loaded: bool,
}

impl Positions {
    /// Forgets the cache, so the next write reads the sinks again (after a rebalance
    /// or a fence: another instance may have moved on).
    pub fn invalidate(&mut self) {
        *self = Self::default();
    }

    /// Reads both sinks' positions for `topic`, unless already cached.
    pub async fn load(
        &mut self,
        pool: &PgPool,
        clickhouse: &Client,
        topic: &str,
    ) -> anyhow::Result<()> {
        if self.loaded {
            return Ok(());
        }
        self.postgres = postgres_positions(pool, topic).await?;
        self.clickhouse = clickhouse_positions(clickhouse, topic).await?;
        self.loaded = true;
        tracing::info!(topic, postgres = ?self.postgres, clickhouse = ?self.clickhouse, "sink positions loaded");
        Ok(())
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    pub fn postgres_next(&self, partition: i32) -> i64 {
        self.postgres.get(&partition).map_or(0, |s| s.next)
    }

    /// What is added to a Kafka offset of `partition` to make it logical.
    pub fn base(&self, partition: i32) -> i64 {
        self.postgres.get(&partition).map_or(0, |s| s.base)
    }

    /// Turns the Kafka offsets of fetched records into logical ones.
    pub fn to_logical(&self, records: &mut [Record]) {
        for record in records {
            record.offset += self.base(record.partition);
        }
    }

    /// The Kafka offset of a logical one (negative: before this epoch's log).
    pub fn to_kafka(&self, partition: i32, logical: i64) -> i64 {
        logical - self.base(partition)
    }

    /// The last record Postgres applied in `partition` in this epoch, if any.
    pub fn anchor(&self, partition: i32) -> Option<Anchor> {
        let stored = self.postgres.get(&partition)?;
        let kafka_offset = stored.next - 1 - stored.base;
        let payload = stored.last.clone()?;
        (kafka_offset >= 0).then_some(Anchor {
            kafka_offset,
            payload,
        })
    }

    pub fn clickhouse_next(&self, partition: i32) -> i64 {
        self.clickhouse.get(&partition).copied().unwrap_or(0)
    }

    /// The first offset some sink still needs in `partition`.
    pub fn first_needed(&self, partition: i32) -> i64 {
        self.postgres_next(partition)
            .min(self.clickhouse_next(partition))
    }

    /// The items of `batch` that `sink` has not applied yet, in order.
    pub fn missing_from<'a, T: FromMessage>(&self, sink: Sink, batch: &'a [T]) -> Vec<&'a T> {
        // A batch holds long runs of one partition: its position is looked up once a run.
        let mut run: Option<(i32, i64)> = None;
        batch
            .iter()
            .filter(|item| {
                let record = item.record();
                let next = match run {
                    Some((partition, next)) if partition == record.partition => next,
                    _ => {
                        let next = match sink {
                            Sink::Postgres => self.postgres_next(record.partition),
                            Sink::ClickHouse => self.clickhouse_next(record.partition),
                        };
                        run = Some((record.partition, next));
                        next
                    }
                };
                record.offset >= next
            })
            .collect()
    }

    /// Records a move Postgres committed.
    pub fn set_postgres(&mut self, applied: &Move) {
        let stored = self.postgres.entry(applied.partition).or_default();
        stored.next = applied.next;
        stored.last = Some(applied.last_record.clone());
    }

    pub fn set_clickhouse(&mut self, partition: i32, next: i64) {
        let entry = self.clickhouse.entry(partition).or_default();
        *entry = (*entry).max(next);
    }

    /// Partitions and next Kafka offsets that both sinks hold (for the Kafka commit hint).
    pub fn both(&self) -> Vec<(i32, i64)> {
        self.postgres
            .keys()
            .map(|p| (*p, self.to_kafka(*p, self.first_needed(*p))))
            .filter(|(_, next)| *next > 0)
            .collect()
    }

    /// Progress moves for the partitions of `records` (the ones Postgres still needs):
    /// from Postgres's position to just past the last offset seen.
    pub fn postgres_moves<'a>(&self, records: impl Iterator<Item = &'a Record>) -> Vec<Move> {
        let mut last: std::collections::BTreeMap<i32, &Record> = std::collections::BTreeMap::new();
        for record in records {
            let entry = last.entry(record.partition).or_insert(record);
            if record.offset > entry.offset {
                *entry = record;
            }
        }
        last.into_values()
            .map(|record| Move {
                partition: record.partition,
                expected: self.postgres_next(record.partition),
                base: self.base(record.partition),
                next: record.offset + 1,
                last_record: record.payload.to_vec(),
            })
            .collect()
    }
}

async fn postgres_positions(pool: &PgPool, topic: &str) -> anyhow::Result<HashMap<i32, Stored>> {
    let rows: Vec<(i32, i64, i64, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT kafka_partition, next_offset, epoch_base, last_record
         FROM consumer_offsets WHERE topic = $1",
    )
    .bind(topic)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(partition, next, base, last)| (partition, Stored { next, base, last }))
        .collect())
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct SinkOffset {
    kafka_partition: u16,
    next_offset: u64,
}

async fn clickhouse_positions(client: &Client, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    let rows = client
        .query(
            "SELECT kafka_partition, maxMerge(next_offset) AS next_offset FROM sink_offsets
             WHERE topic = ? GROUP BY kafka_partition",
        )
        .bind(topic)
        .fetch_all::<SinkOffset>()
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (i32::from(r.kafka_partition), r.next_offset as i64))
        .collect())
}

/// One partition's move: from `expected` (what this instance believes) to `next`, in the
/// epoch of `base`; `last_record` is the payload at `next - 1`.
#[derive(Debug, Clone)]
pub struct Move {
    pub partition: i32,
    pub expected: i64,
    pub base: i64,
    pub next: i64,
    pub last_record: Vec<u8>,
}

/// Moves Postgres positions inside the batch's transaction, only where they still are
/// where this instance expects them, in the epoch it expects. Returns `false` when fenced
/// (the caller rolls back).
pub async fn advance_postgres(
    tx: &mut Transaction<'_, Postgres>,
    topic: &str,
    moves: &[Move],
) -> sqlx::Result<bool> {
    if moves.is_empty() {
        return Ok(true);
    }
    let partitions: Vec<i32> = moves.iter().map(|m| m.partition).collect();
    let expected: Vec<i64> = moves.iter().map(|m| m.expected).collect();
    let bases: Vec<i64> = moves.iter().map(|m| m.base).collect();
    let next: Vec<i64> = moves.iter().map(|m| m.next).collect();
    let last: Vec<&[u8]> = moves.iter().map(|m| m.last_record.as_slice()).collect();
    let result = sqlx::query(
        "WITH moves AS (
             SELECT * FROM unnest($2::int[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bytea[])
                 AS m(kafka_partition, expected, epoch_base, next_offset, last_record)
         )
         INSERT INTO consumer_offsets AS o (topic, kafka_partition, next_offset, epoch_base, last_record)
         SELECT $1, kafka_partition, next_offset, epoch_base, last_record FROM moves
         ON CONFLICT (topic, kafka_partition) DO UPDATE
             SET next_offset = EXCLUDED.next_offset, last_record = EXCLUDED.last_record, updated_at = now()
             WHERE (o.next_offset, o.epoch_base) = (
                 SELECT expected, epoch_base FROM moves WHERE moves.kafka_partition = EXCLUDED.kafka_partition)",
    )
    .bind(topic)
    .bind(&partitions)
    .bind(&expected)
    .bind(&bases)
    .bind(&next)
    .bind(&last)
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() == moves.len() as u64)
}

/// Starts a new epoch in `partition`: its log is not the one the positions came from.
/// The new base is the furthest position either sink holds, so that both sinks apply the
/// new log from its first record (Kafka offset 0). Records of the old log that ClickHouse
/// never got are gone with it; how many is returned. ClickHouse's position moves first:
/// a crash between the two steps repeats both with the same outcome.
/// `Ok(None)` when fenced (another instance moved the partition meanwhile).
/// Moves ClickHouse's position to `next` without rows (it only ever grows).
pub async fn advance_clickhouse(
    clickhouse: &Client,
    topic: &str,
    partition: i32,
    next: i64,
) -> clickhouse::error::Result<()> {
    clickhouse
        .query("INSERT INTO sink_offsets SELECT ?, toUInt16(?), maxState(toUInt64(?))")
        .bind(topic)
        .bind(partition)
        .bind(next)
        .execute()
        .await
}

pub async fn begin_epoch(
    pool: &PgPool,
    clickhouse: &Client,
    topic: &str,
    partition: i32,
    positions: &mut Positions,
) -> anyhow::Result<Option<i64>> {
    let (pg, ch) = (
        positions.postgres_next(partition),
        positions.clickhouse_next(partition),
    );
    let base = pg.max(ch);
    if ch < base {
        advance_clickhouse(clickhouse, topic, partition, base).await?;
    }
    let moved = sqlx::query(
        "INSERT INTO consumer_offsets AS o (topic, kafka_partition, next_offset, epoch_base, epochs)
         VALUES ($1, $2, $3, $3, 1)
         ON CONFLICT (topic, kafka_partition) DO UPDATE
             SET next_offset = $3, epoch_base = $3, epochs = o.epochs + 1, last_record = NULL,
                 updated_at = now()
             WHERE o.next_offset = $4 AND o.epoch_base = $5",
    )
    .bind(topic)
    .bind(partition)
    .bind(base)
    .bind(pg)
    .bind(positions.base(partition))
    .execute(pool)
    .await?;
    if moved.rows_affected() != 1 {
        return Ok(None);
    }
    positions.postgres.insert(
        partition,
        Stored {
            next: base,
            base,
            last: None,
        },
    );
    positions.set_clickhouse(partition, base);
    Ok(Some(base - ch))
}
