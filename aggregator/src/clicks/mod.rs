//! Clicks: final verdicts (Redis), then Postgres (`linkClicked` and progress, one
//! transaction), then ClickHouse (raw clicks, whose INSERT also feeds the hourly rollup
//! and the ClickHouse progress through materialized views).

pub mod verdicts;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use clickhouse::Client;
use redis::aio::ConnectionManager;
use reftrack_events::{ClickEvent, ClickMethod, ClickVerdict};
use sqlx::PgPool;
use uuid::Uuid;

use crate::consume::Record;
use crate::metrics as m;
use crate::pipeline::{ApplyError, BatchSink};
use crate::positions::{self, Move, Positions};
use crate::{parked, timed};
use verdicts::{Candidate, Verdicts};

/// ClickHouse's verdict for a message that could not be decoded (it is parked in Postgres).
const INVALID: i8 = 7;

pub struct ClickSink {
    pub pool: PgPool,
    pub clickhouse: Client,
    pub redis: ConnectionManager,
    pub verdicts: Verdicts,
    pub topic: String,
}

/// One message of the batch that some sink still needs.
struct Item<'a> {
    record: &'a Record,
    event: Option<ClickEvent<'a>>,
    verdict: ClickVerdict,
    needs_postgres: bool,
    needs_clickhouse: bool,
}

impl BatchSink for ClickSink {
    async fn load_positions(&self, positions: &mut Positions) -> anyhow::Result<()> {
        positions
            .load(&self.pool, &self.clickhouse, &self.topic)
            .await
    }

    async fn apply(&self, batch: &[&Record], positions: &mut Positions) -> Result<(), ApplyError> {
        let mut items = self.items(batch, positions);
        if items.is_empty() {
            return Ok(());
        }
        self.decide_verdicts(&mut items).await?;
        self.write_postgres(&items, positions).await?;
        self.write_clickhouse(&items, positions).await?;
        Ok(())
    }
}

impl ClickSink {
    fn items<'a>(&self, batch: &[&'a Record], positions: &Positions) -> Vec<Item<'a>> {
        batch
            .iter()
            .filter_map(|&record| {
                let needs = positions.needs(record.partition, record.offset);
                if !needs.any() {
                    return None;
                }
                let event = ClickEvent::decode(&record.payload).ok();
                Some(Item {
                    verdict: event.as_ref().map_or(ClickVerdict::Valid, |e| e.verdict),
                    event,
                    record,
                    needs_postgres: needs.postgres,
                    needs_clickhouse: needs.clickhouse,
                })
            })
            .collect()
    }

    /// Clicks ingest found valid may still be duplicates or rate-limited.
    async fn decide_verdicts(&self, items: &mut [Item<'_>]) -> Result<(), ApplyError> {
        let mut trim: BTreeMap<i32, i64> = BTreeMap::new();
        for item in items.iter() {
            let first = trim
                .entry(item.record.partition)
                .or_insert(item.record.offset);
            *first = (*first).min(item.record.offset);
        }
        let (indexes, candidates): (Vec<usize>, Vec<Candidate<'_>>) = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let event = item.event.as_ref()?;
                (event.verdict == ClickVerdict::Valid).then(|| {
                    (
                        i,
                        Candidate {
                            partition: item.record.partition,
                            offset: item.record.offset,
                            code: &event.code,
                            visitor: event.visitor,
                            received_at_ms: event.received_at_ms,
                        },
                    )
                })
            })
            .unzip();
        if candidates.is_empty() {
            return Ok(());
        }
        let decided = timed(
            "redis",
            "clicks",
            self.verdicts
                .decide(&self.redis, &self.topic, &trim, &candidates),
        )
        .await
        .map_err(anyhow::Error::from)?;
        for (i, verdict) in indexes.into_iter().zip(decided) {
            items[i].verdict = verdict;
        }
        Ok(())
    }

    /// `linkClicked` (valid clicks) per affiliate in one statement, the undecodable
    /// messages parked, and the progress moved: one transaction.
    async fn write_postgres(
        &self,
        items: &[Item<'_>],
        positions: &mut Positions,
    ) -> Result<(), ApplyError> {
        let moves = moves(
            items.iter().filter(|i| i.needs_postgres).map(|i| i.record),
            |p| positions.postgres_next(p),
        );
        if moves.is_empty() {
            return Ok(());
        }
        let mut clicks: BTreeMap<i64, i64> = BTreeMap::new();
        let mut undecodable = Vec::new();
        for item in items.iter().filter(|i| i.needs_postgres) {
            match &item.event {
                Some(event) if item.verdict == ClickVerdict::Valid => {
                    if let Some(affiliate) = event.affiliate_id {
                        *clicks.entry(affiliate).or_default() += 1;
                    }
                }
                Some(_) => {}
                None => undecodable.push(parked::Parked::undecodable(item.record)),
            }
        }
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        if !positions::advance_postgres(&mut tx, &self.topic, &moves).await? {
            return Err(ApplyError::Fenced);
        }
        let (ids, counts): (Vec<i64>, Vec<i64>) = clicks.into_iter().unzip();
        sqlx::query(
            "UPDATE affiliate_totals AS t SET link_clicked = t.link_clicked + v.clicks, updated_at = now()
             FROM unnest($1::bigint[], $2::bigint[]) AS v(affiliate_id, clicks)
             WHERE t.affiliate_id = v.affiliate_id",
        )
        .bind(&ids)
        .bind(&counts)
        .execute(&mut *tx)
        .await?;
        parked::insert(&mut tx, &self.topic, "clicks", &undecodable).await?;
        tx.commit().await?;
        record_write("postgres", "clicks", started, moves.len());
        for m in moves {
            positions.set_postgres(m.partition, m.next);
        }
        Ok(())
    }

    async fn write_clickhouse(
        &self,
        items: &[Item<'_>],
        positions: &mut Positions,
    ) -> Result<(), ApplyError> {
        let rows: Vec<&Item<'_>> = items.iter().filter(|i| i.needs_clickhouse).collect();
        if rows.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut insert = self.clickhouse.insert::<ClickRow<'_>>("clicks_raw").await?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut verdicts: HashMap<ClickVerdict, u64> = HashMap::new();
        for item in &rows {
            let row = ClickRow::new(&self.topic, item);
            if let Some(event) = &item.event {
                *verdicts.entry(item.verdict).or_default() += 1;
                metrics::histogram!(m::FRESHNESS, "topic" => "clicks")
                    .record((now_ms - event.received_at_ms).max(0) as f64 / 1000.0);
            }
            insert.write(&row).await?;
        }
        insert.end().await?;
        record_write("clickhouse", "clicks", started, rows.len());
        for (verdict, n) in verdicts {
            metrics::counter!(m::CLICKS, "verdict" => verdict.as_str()).increment(n);
        }
        for item in rows {
            positions.set_clickhouse(item.record.partition, item.record.offset + 1);
        }
        Ok(())
    }
}

/// Progress moves for the partitions in `records`: from the sink's position to just
/// past the last offset seen.
pub(crate) fn moves<'a>(
    records: impl Iterator<Item = &'a Record>,
    next: impl Fn(i32) -> i64,
) -> Vec<Move> {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
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

pub(crate) fn record_write(
    sink: &'static str,
    stream: &'static str,
    started: Instant,
    rows: usize,
) {
    metrics::histogram!(m::SINK_WRITE, "sink" => sink, "topic" => stream)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(m::SINK_ROWS, "sink" => sink, "topic" => stream).increment(rows as u64);
}

#[derive(clickhouse::Row, serde::Serialize)]
struct ClickRow<'a> {
    #[serde(with = "clickhouse::serde::uuid")]
    event_id: Uuid,
    kafka_topic: &'a str,
    kafka_partition: u16,
    kafka_offset: u64,
    received_at: u32,
    received_at_ms: u64,
    affiliate_id: u64,
    code: &'a str,
    visitor: u64,
    user_agent: &'a str,
    referer: &'a str,
    method: i8,
    country: &'a str,
    verdict: i8,
}

impl<'a> ClickRow<'a> {
    fn new(topic: &'a str, item: &'a Item<'a>) -> Self {
        let partition = item.record.partition as u16;
        let offset = item.record.offset as u64;
        match &item.event {
            Some(e) => Self {
                event_id: e.event_id,
                kafka_topic: topic,
                kafka_partition: partition,
                kafka_offset: offset,
                received_at: (e.received_at_ms / 1000) as u32,
                received_at_ms: e.received_at_ms as u64,
                affiliate_id: e.affiliate_id.unwrap_or(0) as u64,
                code: &e.code,
                visitor: e.visitor,
                user_agent: &e.user_agent,
                referer: e.referer.as_deref().unwrap_or_default(),
                method: if e.method == ClickMethod::Head { 2 } else { 1 },
                country: e.country.as_deref().unwrap_or_default(),
                verdict: item.verdict as i8,
            },
            // Kept so ClickHouse's progress passes it; the payload is parked in Postgres.
            None => Self {
                event_id: Uuid::nil(),
                kafka_topic: topic,
                kafka_partition: partition,
                kafka_offset: offset,
                received_at: chrono::Utc::now().timestamp() as u32,
                received_at_ms: chrono::Utc::now().timestamp_millis() as u64,
                affiliate_id: 0,
                code: "",
                visitor: 0,
                user_agent: "",
                referer: "",
                method: 1,
                country: "",
                verdict: INVALID,
            },
        }
    }
}
