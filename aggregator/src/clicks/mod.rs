//! Clicks: copies dropped ([`copies`]), final verdicts ([`verdicts`], in memory per
//! partition), then Postgres (`linkClicked` and progress, one transaction), then
//! ClickHouse (raw clicks, whose INSERT also feeds the rollups and the ClickHouse
//! progress through materialized views). One file because those steps share the batch
//! and its positions; splitting them would pass both through every call.

pub mod copies;
pub mod verdicts;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use clickhouse::Client;
use reftrack_events::{ClickEvent, ClickMethod, ClickVerdict};
use sqlx::PgPool;
use uuid::Uuid;

use crate::consume::Record;
use crate::metrics as m;
use crate::parked;
use crate::pipeline::{ApplyError, BatchSink};
use crate::positions::{self, FromMessage, Positions, Sink};
use copies::Copies;
use verdicts::{Candidate, Verdicts};

/// Every how many clicks one's freshness is recorded.
const FRESHNESS_SAMPLE: usize = 8;
/// ClickHouse's verdict for a message that could not be decoded (it is parked in Postgres).
const INVALID: i8 = 7;

pub struct ClickSink {
    pub pool: PgPool,
    pub clickhouse: Client,
    /// Taken out while a batch is prepared (one batch at a time), put back after.
    pub verdicts: Mutex<Verdicts>,
    pub copies: Mutex<Copies>,
    pub topic: String,
    /// Whether this instance alone writes its partitions (see [`ClickSink::write`]).
    pub exclusive: bool,
}

/// A click ready to be written: the message, its event (`None` when undecodable) and
/// its final verdict; a copy of a click already applied is written nowhere.
pub struct PreparedClick {
    record: Record,
    event: Option<ClickEvent<'static>>,
    verdict: ClickVerdict,
    copy: bool,
}

impl FromMessage for PreparedClick {
    fn record(&self) -> &Record {
        &self.record
    }
}

impl BatchSink for ClickSink {
    type Prepared = Vec<PreparedClick>;

    fn stores(&self) -> (&PgPool, &Client, &str) {
        (&self.pool, &self.clickhouse, &self.topic)
    }

    async fn load_positions(&self, positions: &mut Positions) -> anyhow::Result<()> {
        if !positions.is_loaded() {
            self.copies.lock().expect("copies lock").clear();
        }
        // Verdict state is not cleared here: it is rebuilt whenever a partition's
        // records do not continue where its state ends (see `decide_verdicts`).
        positions
            .load(&self.pool, &self.clickhouse, &self.topic)
            .await
    }

    async fn prepare(
        &self,
        records: Vec<Record>,
        positions: &Positions,
    ) -> anyhow::Result<Vec<PreparedClick>> {
        let mut clicks: Vec<PreparedClick> = records
            .into_iter()
            .map(|record| {
                let event = ClickEvent::decode(&record.payload)
                    .ok()
                    .map(ClickEvent::into_owned);
                PreparedClick {
                    verdict: event.as_ref().map_or(ClickVerdict::Valid, |e| e.verdict),
                    event,
                    record,
                    copy: false,
                }
            })
            .collect();
        self.mark_copies(&mut clicks, positions).await?;
        self.decide_verdicts(&mut clicks).await?;
        Ok(clicks)
    }

    /// Holding its partitions alone (static assignment: a Postgres advisory lock per
    /// partition), the sink writes both stores at once: nobody else can move their
    /// progress. Otherwise (group assignment, where a rebalance may briefly overlap two
    /// members) ClickHouse is written only once Postgres's compare-and-set accepted the
    /// batch, which fences a stale member out of both.
    async fn write(
        &self,
        clicks: &Vec<PreparedClick>,
        positions: &mut Positions,
    ) -> Result<(), ApplyError> {
        let (moved, ends) = if self.exclusive {
            let (moved, ends) = tokio::join!(
                self.write_postgres(clicks, positions),
                self.write_clickhouse(clicks, positions)
            );
            (moved?, ends?)
        } else {
            let moved = self.write_postgres(clicks, positions).await?;
            (moved, self.write_clickhouse(clicks, positions).await?)
        };
        for applied in &moved {
            positions.set_postgres(applied);
        }
        for (partition, next) in ends {
            positions.set_clickhouse(partition, next);
        }
        Ok(())
    }
}

impl ClickSink {
    async fn mark_copies(
        &self,
        clicks: &mut [PreparedClick],
        positions: &Positions,
    ) -> anyhow::Result<()> {
        let mut copies = std::mem::take(&mut *self.copies.lock().expect("copies lock"));
        let outcome = async {
            for click in clicks.iter_mut() {
                let partition = click.record.partition;
                if !copies.knows(partition) {
                    let next = positions.clickhouse_next(partition);
                    copies
                        .seed(&self.clickhouse, &self.topic, partition, next)
                        .await?;
                }
                if let Some(event) = &click.event {
                    click.copy = copies.is_copy(partition, event.event_id, click.record.offset);
                }
            }
            anyhow::Ok(())
        }
        .await;
        // Seeded partitions are kept even when a later seed failed.
        *self.copies.lock().expect("copies lock") = copies;
        outcome?;
        self.mark_resent_copies(clicks).await?;
        let n = clicks.iter().filter(|c| c.copy).count();
        if n > 0 {
            tracing::warn!(topic = %self.topic, copies = n, "dropped clicks already applied (same event id at another offset)");
            metrics::counter!(m::CLICK_COPIES).increment(n as u64);
        }
        Ok(())
    }

    /// Clicks ingest found valid may still be duplicates or rate-limited. The verdict
    /// memo keeps everything from the first offset a sink still needs (which includes a
    /// batch in flight), so a replay after a crash finds its verdicts there.
    /// Re-sent clicks whose first write ClickHouse holds at another offset.
    async fn mark_resent_copies(&self, clicks: &mut [PreparedClick]) -> anyhow::Result<()> {
        let resent: Vec<copies::Resent> = clicks
            .iter()
            .filter(|c| c.record.resent && !c.copy)
            .filter_map(|c| c.event.as_ref())
            .map(|e| copies::Resent {
                event_id: e.event_id,
                affiliate_id: e.affiliate_id.unwrap_or(0) as u64,
                received_at: (e.received_at_ms / 1000) as u32,
            })
            .collect();
        if resent.is_empty() {
            return Ok(());
        }
        let held = copies::offsets_in_clickhouse(&self.clickhouse, &self.topic, &resent).await?;
        for click in clicks.iter_mut().filter(|c| c.record.resent) {
            if let Some(event) = &click.event
                && held
                    .get(&event.event_id)
                    .is_some_and(|&offset| offset != click.record.offset)
            {
                click.copy = true;
            }
        }
        Ok(())
    }

    /// Clicks ingest found valid may still be duplicates or rate-limited. Each record
    /// moves its partition's state, candidate or not, in offset order.
    async fn decide_verdicts(&self, clicks: &mut [PreparedClick]) -> anyhow::Result<()> {
        let mut verdicts = std::mem::replace(
            &mut *self.verdicts.lock().expect("verdicts lock"),
            Verdicts::new(0, 0),
        );
        let outcome = async {
            for click in clicks.iter_mut() {
                let (partition, offset) = (click.record.partition, click.record.offset);
                if !verdicts.continues(partition, offset) {
                    let started = Instant::now();
                    verdicts
                        .rebuild(&self.clickhouse, &self.topic, partition, offset)
                        .await?;
                    tracing::info!(topic = %self.topic, partition, offset, elapsed = ?started.elapsed(), "click verdict state rebuilt from ClickHouse");
                }
                let candidate = click.event.as_ref().filter(|e| {
                    e.verdict == ClickVerdict::Valid && !click.copy
                });
                let candidate = candidate.map(|e| Candidate {
                    code: &e.code,
                    visitor: e.visitor,
                    received_at_ms: e.received_at_ms,
                });
                if let Some(verdict) = verdicts.decide(partition, offset, candidate) {
                    click.verdict = verdict;
                }
            }
            anyhow::Ok(())
        }
        .await;
        let (visitors, bytes) = verdicts.footprint();
        metrics::gauge!(m::VERDICT_VISITORS).set(visitors as f64);
        metrics::gauge!(m::VERDICT_BYTES).set(bytes as f64);
        *self.verdicts.lock().expect("verdicts lock") = verdicts;
        outcome
    }

    /// `linkClicked` (valid clicks) per affiliate in one statement, the undecodable
    /// messages parked, and the progress moved: one transaction.
    async fn write_postgres(
        &self,
        clicks: &[PreparedClick],
        positions: &Positions,
    ) -> Result<Vec<positions::Move>, ApplyError> {
        let needed = positions.missing_from(Sink::Postgres, clicks);
        let moves = positions.postgres_moves(needed.iter().map(|c| &c.record));
        if moves.is_empty() {
            return Ok(moves);
        }
        let mut valid: BTreeMap<i64, i64> = BTreeMap::new();
        let mut undecodable = Vec::new();
        for click in &needed {
            match &click.event {
                Some(_) if click.copy => {}
                Some(event) if click.verdict == ClickVerdict::Valid => {
                    if let Some(affiliate) = event.affiliate_id {
                        *valid.entry(affiliate).or_default() += 1;
                    }
                }
                Some(_) => {}
                None => undecodable.push(parked::Parked::undecodable(&click.record)),
            }
        }
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        if !positions::advance_postgres(&mut tx, &self.topic, &moves).await? {
            return Err(ApplyError::Fenced);
        }
        let (ids, counts): (Vec<i64>, Vec<i64>) = valid.into_iter().unzip();
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
        m::sink_write("postgres", "clicks", started, moves.len());
        Ok(moves)
    }

    /// Writes the rows ClickHouse still needs; where its progress now stands, per
    /// partition.
    async fn write_clickhouse(
        &self,
        clicks: &[PreparedClick],
        positions: &Positions,
    ) -> Result<Vec<(i32, i64)>, ApplyError> {
        let rows = positions.missing_from(Sink::ClickHouse, clicks);
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let mut insert = self.clickhouse.insert::<ClickRow<'_>>("clicks_raw").await?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let freshness = metrics::histogram!(m::FRESHNESS, "topic" => "clicks");
        let mut verdicts: HashMap<ClickVerdict, u64> = HashMap::new();
        for (i, click) in rows.iter().filter(|c| !c.copy).enumerate() {
            let row = ClickRow::new(&self.topic, click);
            if let Some(event) = &click.event {
                *verdicts.entry(click.verdict).or_default() += 1;
                // One click in eight is enough for the quantiles, at an eighth of the cost.
                if i % FRESHNESS_SAMPLE == 0 {
                    freshness.record((now_ms - event.received_at_ms).max(0) as f64 / 1000.0);
                }
            }
            insert.write(&row).await?;
        }
        insert.end().await?;
        m::sink_write("clickhouse", "clicks", started, rows.len());
        for (verdict, n) in verdicts {
            metrics::counter!(m::CLICKS, "verdict" => verdict.as_str()).increment(n);
        }
        // ClickHouse's progress comes from the rows; past copies that end a partition's
        // part of the batch, it is moved on by itself.
        let mut ends: BTreeMap<i32, (i64, bool)> = BTreeMap::new();
        for click in &rows {
            ends.insert(
                click.record.partition,
                (click.record.offset + 1, click.copy),
            );
        }
        let mut moved = Vec::with_capacity(ends.len());
        for (partition, (next, copy)) in ends {
            if copy {
                positions::advance_clickhouse(&self.clickhouse, &self.topic, partition, next)
                    .await?;
            }
            moved.push((partition, next));
        }
        Ok(moved)
    }
}

/// A row of `clicks_raw`. Public so that benchmarks insert exactly what the aggregator
/// writes.
#[derive(clickhouse::Row, serde::Serialize)]
pub struct ClickRow<'a> {
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
    fn new(topic: &'a str, click: &'a PreparedClick) -> Self {
        let (partition, offset) = (click.record.partition, click.record.offset);
        match &click.event {
            Some(event) => Self::from_event(topic, partition, offset, event, click.verdict),
            None => Self::undecodable(topic, partition, offset),
        }
    }

    pub fn from_event(
        topic: &'a str,
        partition: i32,
        offset: i64,
        e: &'a ClickEvent<'a>,
        verdict: ClickVerdict,
    ) -> Self {
        Self {
            event_id: e.event_id,
            kafka_topic: topic,
            kafka_partition: partition as u16,
            kafka_offset: offset as u64,
            received_at: (e.received_at_ms / 1000) as u32,
            received_at_ms: e.received_at_ms as u64,
            affiliate_id: e.affiliate_id.unwrap_or(0) as u64,
            code: &e.code,
            visitor: e.visitor,
            user_agent: &e.user_agent,
            referer: e.referer.as_deref().unwrap_or_default(),
            method: if e.method == ClickMethod::Head { 2 } else { 1 },
            country: e.country.as_deref().unwrap_or_default(),
            verdict: verdict as i8,
        }
    }

    /// Kept so ClickHouse's progress passes the message; its payload is parked in Postgres.
    fn undecodable(topic: &'a str, partition: i32, offset: i64) -> Self {
        let now = chrono::Utc::now();
        Self {
            event_id: Uuid::nil(),
            kafka_topic: topic,
            kafka_partition: partition as u16,
            kafka_offset: offset as u64,
            received_at: now.timestamp() as u32,
            received_at_ms: now.timestamp_millis() as u64,
            affiliate_id: 0,
            code: "",
            visitor: 0,
            user_agent: "",
            referer: "",
            method: 1,
            country: "",
            verdict: INVALID,
        }
    }
}
