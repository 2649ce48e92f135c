//! Where each sink stands in each partition: the next offset it has not applied.
//!
//! Postgres keeps it in `consumer_offsets`, moved in the same transaction as the rows of
//! the batch with a compare-and-set (an instance whose view is stale is fenced and
//! rolls back). ClickHouse keeps it in `sink_offsets`, filled by materialized views from
//! the very INSERT that writes the raw rows. A message is applied to the sinks whose
//! position it has not passed, and skipped when both have it.

use std::collections::{BTreeMap, HashMap};

use clickhouse::Client;
use sqlx::{PgPool, Postgres, Transaction};

use crate::consume::Record;

/// Which sinks still need a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub postgres: bool,
    pub clickhouse: bool,
}

impl Needs {
    pub fn any(self) -> bool {
        self.postgres || self.clickhouse
    }
}

/// Cached positions of both sinks for one topic.
#[derive(Debug, Default)]
pub struct Positions {
    postgres: HashMap<i32, i64>,
    clickhouse: HashMap<i32, i64>,
    /// Where a partition's data now starts, when retention deleted messages the sinks
    /// never got (the gap is logged and counted, and accepted).
    floor: HashMap<i32, i64>,
    /// How far before the expected offset the next rewind of a partition goes.
    rewind_depth: HashMap<i32, i64>,
    loaded: bool,
}

impl Positions {
    /// Forgets the cached positions, so the next batch reads the sinks again (after a
    /// rebalance or a fence: another instance may have moved on).
    pub fn invalidate(&mut self) {
        self.postgres.clear();
        self.clickhouse.clear();
        self.floor.clear();
        self.loaded = false;
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

    pub fn needs(&self, partition: i32, offset: i64) -> Needs {
        Needs {
            postgres: offset >= self.postgres_next(partition),
            clickhouse: offset >= self.clickhouse_next(partition),
        }
    }

    pub fn set_postgres(&mut self, partition: i32, next: i64) {
        self.postgres.insert(partition, next);
    }

    pub fn set_clickhouse(&mut self, partition: i32, next: i64) {
        let entry = self.clickhouse.entry(partition).or_default();
        *entry = (*entry).max(next);
    }

    /// The first offset some sink still needs in `partition`.
    pub fn first_needed(&self, partition: i32) -> i64 {
        let next = self
            .postgres_next(partition)
            .min(self.clickhouse_next(partition));
        next.max(self.floor.get(&partition).copied().unwrap_or(0))
    }

    /// How far back to rewind `partition` this time: a broker may answer a fetch inside
    /// a record batch with the *next* batch (tansu 0.6 does), so each retry goes deeper
    /// (512, 4096, 32768, ... messages) until a fetch starts at or before the offset.
    pub fn next_rewind_depth(&mut self, partition: i32) -> i64 {
        let depth = self.rewind_depth.entry(partition).or_insert(0);
        *depth = if *depth == 0 {
            512
        } else {
            depth.saturating_mul(8)
        };
        *depth
    }

    /// `partition` continued where expected: the next gap starts shallow again.
    pub fn continued(&mut self, partition: i32) {
        self.rewind_depth.remove(&partition);
    }

    /// Accepts that `partition`'s messages before `offset` are gone for good.
    pub fn set_floor(&mut self, partition: i32, offset: i64) {
        self.floor.insert(partition, offset);
    }

    /// Splits a batch into the records the sinks need, in order, and the partitions
    /// whose records do not continue where the sinks stand (first offset expected).
    /// Fetching may restart anywhere after a crash or a rebalance; the sinks' positions,
    /// not the consumer's, decide what is applied, and nothing is ever jumped over.
    pub fn continuous<'b>(&self, batch: &'b [Record]) -> (Vec<&'b Record>, BTreeMap<i32, i64>) {
        let mut next: HashMap<i32, i64> = HashMap::new();
        let mut gaps: BTreeMap<i32, i64> = BTreeMap::new();
        let mut records = Vec::with_capacity(batch.len());
        for record in batch {
            if gaps.contains_key(&record.partition) {
                continue;
            }
            let expected = next
                .entry(record.partition)
                .or_insert_with(|| self.first_needed(record.partition));
            if record.offset < *expected {
                continue;
            }
            if record.offset > *expected {
                gaps.insert(record.partition, *expected);
                continue;
            }
            *expected += 1;
            records.push(record);
        }
        (records, gaps)
    }

    /// Partitions and next offsets that both sinks hold (for the Kafka commit hint).
    pub fn both(&self) -> Vec<(i32, i64)> {
        self.postgres
            .iter()
            .map(|(p, pg)| (*p, (*pg).min(self.clickhouse_next(*p))))
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
