//! Where each sink stands in each partition: the next offset it has not applied.
//!
//! Postgres keeps it in `consumer_offsets`, moved in the same transaction as the rows of
//! the batch with a compare-and-set (an instance whose view is stale is fenced and
//! rolls back). ClickHouse keeps it in `sink_offsets`, filled by materialized views from
//! the very INSERT that writes the raw rows. A message is applied to the sinks whose
//! position it has not passed, and skipped when both have it.

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

/// Cached positions of both sinks for one topic.
#[derive(Debug, Default, Clone)]
pub struct Positions {
    postgres: HashMap<i32, i64>,
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

    pub fn postgres_next(&self, partition: i32) -> i64 {
        self.postgres.get(&partition).copied().unwrap_or(0)
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
        batch
            .iter()
            .filter(|item| {
                let record = item.record();
                let next = match sink {
                    Sink::Postgres => self.postgres_next(record.partition),
                    Sink::ClickHouse => self.clickhouse_next(record.partition),
                };
                record.offset >= next
            })
            .collect()
    }

    pub fn set_postgres(&mut self, partition: i32, next: i64) {
        self.postgres.insert(partition, next);
    }

    pub fn set_clickhouse(&mut self, partition: i32, next: i64) {
        let entry = self.clickhouse.entry(partition).or_default();
        *entry = (*entry).max(next);
    }

    /// Partitions and next offsets that both sinks hold (for the Kafka commit hint).
    pub fn both(&self) -> Vec<(i32, i64)> {
        self.postgres
            .keys()
            .map(|p| (*p, self.first_needed(*p)))
            .filter(|(_, next)| *next > 0)
            .collect()
    }
}

async fn postgres_positions(pool: &PgPool, topic: &str) -> anyhow::Result<HashMap<i32, i64>> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT kafka_partition, next_offset FROM consumer_offsets WHERE topic = $1",
    )
    .bind(topic)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
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

/// One partition's move: from `expected` (what this instance believes) to `next`.
#[derive(Debug, Clone, Copy)]
pub struct Move {
    pub partition: i32,
    pub expected: i64,
    pub next: i64,
}

/// Moves Postgres positions inside the batch's transaction, only where they still are
/// where this instance expects them. Returns `false` when fenced (the caller rolls back).
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
    let next: Vec<i64> = moves.iter().map(|m| m.next).collect();
    let result = sqlx::query(
        "WITH moves AS (
             SELECT * FROM unnest($2::int[], $3::bigint[], $4::bigint[]) AS m(kafka_partition, expected, next_offset)
         )
         INSERT INTO consumer_offsets AS o (topic, kafka_partition, next_offset)
         SELECT $1, kafka_partition, next_offset FROM moves
         ON CONFLICT (topic, kafka_partition) DO UPDATE
             SET next_offset = EXCLUDED.next_offset, updated_at = now()
             WHERE o.next_offset = (SELECT expected FROM moves WHERE moves.kafka_partition = EXCLUDED.kafka_partition)",
    )
    .bind(topic)
    .bind(&partitions)
    .bind(&expected)
    .bind(&next)
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() == moves.len() as u64)
}

/// Progress moves for the partitions of `records`: from the sink's position to just
/// past the last offset seen.
pub fn moves<'a>(
    records: impl Iterator<Item = &'a crate::consume::Record>,
    next: impl Fn(i32) -> i64,
) -> Vec<Move> {
    let mut last: std::collections::BTreeMap<i32, i64> = std::collections::BTreeMap::new();
    for record in records {
        let entry = last.entry(record.partition).or_insert(record.offset);
        *entry = (*entry).max(record.offset);
    }
    last.into_iter()
        .map(|(partition, offset)| Move {
            partition,
            expected: next(partition),
            next: offset + 1,
        })
        .collect()
}
