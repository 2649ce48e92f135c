//! Conversions: the commission rules ([`ledger`]) applied in one Postgres transaction
//! per batch (referrals, conversions, ledger entries, parked messages, totals and
//! progress), then ClickHouse rows derived from what Postgres recorded, so both sinks
//! agree even when one of them is replayed alone after a crash.

pub mod ledger;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use clickhouse::Client;
use reftrack_domain::Money;
use reftrack_events::{ConversionEvent, ConversionKind};
use sqlx::PgPool;

use crate::consume::Record;
use crate::metrics as m;
use crate::parked::{self, Parked};
use crate::pipeline::{ApplyError, BatchSink};
use crate::positions::{self, FromMessage, Positions, Sink};
use ledger::Position;

pub struct ConversionSink {
    pub pool: PgPool,
    pub clickhouse: Client,
    pub topic: String,
}

/// A conversion message ready to be written, with its event (`None` when undecodable).
pub struct PreparedConversion {
    record: Record,
    event: Option<ConversionEvent>,
}

impl FromMessage for PreparedConversion {
    fn record(&self) -> &Record {
        &self.record
    }
}

impl BatchSink for ConversionSink {
    type Prepared = Vec<PreparedConversion>;

    fn stores(&self) -> (&PgPool, &Client, &str) {
        (&self.pool, &self.clickhouse, &self.topic)
    }

    async fn load_positions(&self, positions: &mut Positions) -> anyhow::Result<()> {
        positions
            .load(&self.pool, &self.clickhouse, &self.topic)
            .await
    }

    async fn prepare(
        &self,
        records: Vec<Record>,
        _: &Positions,
    ) -> anyhow::Result<Vec<PreparedConversion>> {
        Ok(records
            .into_iter()
            .map(|record| PreparedConversion {
                event: ConversionEvent::decode(&record.payload).ok(),
                record,
            })
            .collect())
    }

    async fn write(
        &self,
        batch: &Vec<PreparedConversion>,
        positions: &mut Positions,
    ) -> Result<(), ApplyError> {
        match self.write_postgres(batch, positions).await {
            Err(ApplyError::Failed(err)) if rejected_data(&err) => {
                tracing::warn!(
                    topic = %self.topic,
                    "Postgres rejects a message of the batch; applying it one message at a time: {err:#}"
                );
                self.write_postgres_one_by_one(batch, positions).await?;
            }
            outcome => outcome?,
        }
        self.write_clickhouse(batch, positions).await?;
        Ok(())
    }
}

/// Whether Postgres refused the data itself (out of range, a check failed), which no
/// retry changes, rather than failing to take it (connection, lock, fence).
fn rejected_data(err: &anyhow::Error) -> bool {
    let Some(sqlx::Error::Database(db)) = err.downcast_ref::<sqlx::Error>() else {
        return false;
    };
    db.code()
        .is_some_and(|code| code.starts_with("22") || code == "23502" || code == "23514")
}

impl ConversionSink {
    /// Each message in a transaction of its own: one whose data Postgres rejects is
    /// parked with that reason, and the ones after it are applied.
    async fn write_postgres_one_by_one(
        &self,
        batch: &[PreparedConversion],
        positions: &mut Positions,
    ) -> Result<(), ApplyError> {
        for conversion in batch {
            match self
                .write_postgres(std::slice::from_ref(conversion), positions)
                .await
            {
                Err(ApplyError::Failed(err)) if rejected_data(&err) => {
                    tracing::error!(
                        topic = %self.topic,
                        partition = conversion.record.partition,
                        offset = conversion.record.offset,
                        "Postgres rejects this message; parked: {err:#}"
                    );
                    self.park_rejected(conversion, positions).await?;
                }
                outcome => outcome?,
            }
        }
        Ok(())
    }

    async fn park_rejected(
        &self,
        conversion: &PreparedConversion,
        positions: &mut Positions,
    ) -> Result<(), ApplyError> {
        let needed = positions.missing_from(Sink::Postgres, std::slice::from_ref(conversion));
        let moves = positions.postgres_moves(needed.iter().map(|c| &c.record));
        if moves.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        if !positions::advance_postgres(&mut tx, &self.topic, &moves).await? {
            return Err(ApplyError::Fenced);
        }
        let parked = Parked {
            reason: reftrack_domain::ParkReason::Rejected,
            event_id: conversion.event.as_ref().map(|e| e.event_id.clone()),
            ..Parked::undecodable(&conversion.record)
        };
        parked::insert(&mut tx, &self.topic, "conversions", &[parked]).await?;
        tx.commit().await?;
        for applied in &moves {
            positions.set_postgres(applied);
        }
        Ok(())
    }

    async fn write_postgres(
        &self,
        batch: &[PreparedConversion],
        positions: &mut Positions,
    ) -> Result<(), ApplyError> {
        let needed = positions.missing_from(Sink::Postgres, batch);
        let moves = positions.postgres_moves(needed.iter().map(|c| &c.record));
        if moves.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        if !positions::advance_postgres(&mut tx, &self.topic, &moves).await? {
            return Err(ApplyError::Fenced);
        }
        let events: Vec<(Position, ConversionEvent)> = needed
            .iter()
            .filter_map(|c| {
                let position = Position {
                    partition: c.record.partition,
                    offset: c.record.offset,
                };
                c.event.as_ref().map(|e| (position, e.clone()))
            })
            .collect();
        let wants = ledger::wants(&events);
        store::order_against_waiting_refunds(&mut tx, &wants).await?;
        let mut state = store::load_state(&mut tx, &self.topic, &wants).await?;
        let plan = ledger::plan(&mut state, &events);
        store::write_plan(&mut tx, &plan).await?;
        parked::release(&mut tx, &self.topic, &plan.released).await?;

        let payloads: HashMap<(i32, i64), &[u8]> = needed
            .iter()
            .map(|c| ((c.record.partition, c.record.offset), &c.record.payload[..]))
            .collect();
        let mut parked: Vec<Parked<'_>> = needed
            .iter()
            .filter(|c| c.event.is_none())
            .map(|c| Parked::undecodable(&c.record))
            .collect();
        parked.extend(plan.parked.iter().map(|p| Parked {
            partition: p.position.partition,
            offset: p.position.offset,
            reason: p.reason,
            event_id: p.event_id.clone(),
            waits_for: p.waits_for.clone(),
            payload: payloads[&(p.position.partition, p.position.offset)],
        }));
        parked::insert(&mut tx, &self.topic, "conversions", &parked).await?;
        tx.commit().await?;

        m::sink_write(
            "postgres",
            "conversions",
            started,
            plan.conversions.len() + plan.ledger.len(),
        );
        for conversion in &plan.conversions {
            metrics::counter!(m::CONVERSIONS, "type" => conversion.kind.as_str()).increment(1);
        }
        for delta in plan.totals.values() {
            metrics::counter!(m::COMMISSION_EARNED).increment(delta.earned.cents().max(0) as u64);
            metrics::counter!(m::COMMISSION_REVERSED)
                .increment(delta.reversed.cents().max(0) as u64);
        }
        for applied in &moves {
            positions.set_postgres(applied);
        }
        Ok(())
    }

    /// ClickHouse rows, from what Postgres recorded for these messages.
    async fn write_clickhouse(
        &self,
        batch: &[PreparedConversion],
        positions: &mut Positions,
    ) -> Result<(), ApplyError> {
        let needed = positions.missing_from(Sink::ClickHouse, batch);
        if needed.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = needed
            .iter()
            .filter_map(|c| c.event.as_ref().map(|e| e.event_id.clone()))
            .collect();
        let recorded = store::recorded(&self.pool, &ids).await?;
        let purchases: Vec<(i32, i64)> = needed
            .iter()
            .filter(|c| {
                c.event
                    .as_ref()
                    .is_some_and(|e| e.kind == ConversionKind::Purchase)
            })
            .map(|c| (c.record.partition, c.record.offset))
            .collect();
        let released = store::refunds_recorded_at(&self.pool, &purchases).await?;
        let started = Instant::now();
        let now = chrono::Utc::now();
        let mut insert = self
            .clickhouse
            .insert::<ConversionRow<'_>>("conversions_raw")
            .await?;
        for c in &needed {
            let row = ConversionRow::new(&self.topic, &c.record, c.event.as_ref(), &recorded);
            if let Some(event) = &c.event {
                let age = (now - event.received_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::histogram!(m::FRESHNESS, "topic" => "conversions").record(age);
            }
            insert.write(&row).await?;
            let here = (c.record.partition, c.record.offset);
            for refund in released.iter().filter(|r| {
                (r.kafka_partition, r.kafka_offset) == here && Some(&r.event_id) != row_id(c)
            }) {
                insert
                    .write(&ConversionRow::released(&self.topic, refund))
                    .await?;
            }
        }
        insert.end().await?;
        m::sink_write("clickhouse", "conversions", started, needed.len());
        for c in needed {
            positions.set_clickhouse(c.record.partition, c.record.offset + 1);
        }
        Ok(())
    }
}

#[derive(clickhouse::Row, serde::Serialize)]
struct ConversionRow<'a> {
    event_id: &'a str,
    kafka_topic: &'a str,
    kafka_partition: u16,
    kafka_offset: u64,
    kind: i8,
    verdict: i8,
    affiliate_id: u64,
    code: &'a str,
    user_id: i64,
    amount_cents: i64,
    commission_amount_cents: i64,
    occurred_at: u32,
    received_at: u32,
}

const VALID: i8 = 1;
const DUPLICATE: i8 = 2;
const UNATTRIBUTED: i8 = 3;
const INVALID: i8 = 4;

fn kind_code(kind: ConversionKind) -> i8 {
    match kind {
        ConversionKind::Signup => 1,
        ConversionKind::Purchase => 2,
        ConversionKind::Refund => 3,
    }
}

fn row_id(c: &PreparedConversion) -> Option<&String> {
    c.event.as_ref().map(|e| &e.event_id)
}

impl<'a> ConversionRow<'a> {
    /// A refund that waited for its purchase, at the purchase's position.
    fn released(topic: &'a str, r: &'a store::ReleasedRefund) -> Self {
        Self {
            event_id: &r.event_id,
            kafka_topic: topic,
            kafka_partition: r.kafka_partition as u16,
            kafka_offset: r.kafka_offset as u64,
            kind: kind_code(ConversionKind::Refund),
            verdict: VALID,
            affiliate_id: r.affiliate_id as u64,
            code: &r.code,
            user_id: r.user_id,
            amount_cents: r.amount.map_or(0, Money::cents),
            commission_amount_cents: r.commission.cents(),
            occurred_at: r.occurred_at.timestamp().max(0) as u32,
            received_at: r.received_at.timestamp().max(0) as u32,
        }
    }

    /// The verdict comes from Postgres: the conversion row recorded at this very Kafka
    /// position is the valid one; a row recorded elsewhere makes this a repeat; no row
    /// means the message was parked.
    fn new(
        topic: &'a str,
        record: &Record,
        event: Option<&'a ConversionEvent>,
        recorded: &BTreeMap<String, store::Recorded>,
    ) -> Self {
        let base = Self {
            event_id: "",
            kafka_topic: topic,
            kafka_partition: record.partition as u16,
            kafka_offset: record.offset as u64,
            kind: 1,
            verdict: INVALID,
            affiliate_id: 0,
            code: "",
            user_id: 0,
            amount_cents: 0,
            commission_amount_cents: 0,
            occurred_at: chrono::Utc::now().timestamp() as u32,
            received_at: chrono::Utc::now().timestamp() as u32,
        };
        let Some(event) = event else {
            return base;
        };
        let row = Self {
            event_id: &event.event_id,
            kind: kind_code(event.kind),
            code: &event.referral_code,
            user_id: event.user_id,
            amount_cents: event.amount.map_or(0, Money::cents),
            occurred_at: event.occurred_at.timestamp().max(0) as u32,
            received_at: event.received_at.timestamp().max(0) as u32,
            verdict: UNATTRIBUTED,
            ..base
        };
        match recorded.get(&event.event_id) {
            Some(r) if r.partition == record.partition && r.offset == record.offset => Self {
                verdict: VALID,
                affiliate_id: r.affiliate_id as u64,
                commission_amount_cents: r.commission.cents(),
                ..row
            },
            Some(r) => Self {
                verdict: DUPLICATE,
                affiliate_id: r.affiliate_id as u64,
                ..row
            },
            None => row,
        }
    }
}
