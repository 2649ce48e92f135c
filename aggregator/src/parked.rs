//! Messages that cannot be applied are parked in Postgres with the reason, counted, and
//! passed over, so they never block their partition.

use reftrack_domain::ParkReason;
use sqlx::{Postgres, Transaction};

use crate::consume::Record;
use crate::conversions::ledger::Released;
use crate::metrics as m;

pub struct Parked<'a> {
    pub partition: i32,
    pub offset: i64,
    pub reason: ParkReason,
    pub event_id: Option<String>,
    /// The purchase a waiting refund waits for.
    pub waits_for: Option<String>,
    pub payload: &'a [u8],
}

impl<'a> Parked<'a> {
    pub fn undecodable(record: &'a Record) -> Self {
        Self {
            partition: record.partition,
            offset: record.offset,
            reason: ParkReason::Undecodable,
            event_id: None,
            waits_for: None,
            payload: &record.payload,
        }
    }
}

/// Inserts in one statement; a replayed message is already there and is not counted again.
pub async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    topic: &str,
    stream: &'static str,
    parked: &[Parked<'_>],
) -> sqlx::Result<()> {
    if parked.is_empty() {
        return Ok(());
    }
    let partitions: Vec<i32> = parked.iter().map(|p| p.partition).collect();
    let offsets: Vec<i64> = parked.iter().map(|p| p.offset).collect();
    let reasons: Vec<&str> = parked.iter().map(|p| p.reason.as_str()).collect();
    let event_ids: Vec<Option<&str>> = parked.iter().map(|p| p.event_id.as_deref()).collect();
    let payloads: Vec<&[u8]> = parked.iter().map(|p| p.payload).collect();
    let waits_for: Vec<Option<&str>> = parked.iter().map(|p| p.waits_for.as_deref()).collect();
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO parked_events (topic, kafka_partition, kafka_offset, reason, event_id, payload, original_event_id)
         SELECT $1, * FROM unnest($2::int[], $3::bigint[], $4::text[], $5::text[], $6::bytea[], $7::text[])
         ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING
         RETURNING reason",
    )
    .bind(topic)
    .bind(&partitions)
    .bind(&offsets)
    .bind(&reasons)
    .bind(&event_ids)
    .bind(&payloads)
    .bind(&waits_for)
    .fetch_all(&mut **tx)
    .await?;
    for reason in inserted {
        metrics::counter!(m::PARKED, "topic" => stream, "reason" => reason).increment(1);
    }
    Ok(())
}

/// Marks the waiting refunds a batch released: resolved when applied, else parked for the
/// reason they still cannot be applied (no longer waiting).
pub async fn release(
    tx: &mut Transaction<'_, Postgres>,
    topic: &str,
    released: &[Released],
) -> sqlx::Result<()> {
    if released.is_empty() {
        return Ok(());
    }
    let partitions: Vec<i32> = released.iter().map(|r| r.position.partition).collect();
    let offsets: Vec<i64> = released.iter().map(|r| r.position.offset).collect();
    let reasons: Vec<Option<&str>> = released
        .iter()
        .map(|r| r.reason.map(ParkReason::as_str))
        .collect();
    sqlx::query(
        "UPDATE parked_events AS p
         SET resolved_at = CASE WHEN v.reason IS NULL THEN now() END,
             resolution = CASE WHEN v.reason IS NULL THEN 'applied' END,
             reason = coalesce(v.reason, p.reason),
             original_event_id = NULL
         FROM unnest($2::int[], $3::bigint[], $4::text[]) AS v(kafka_partition, kafka_offset, reason)
         WHERE p.topic = $1 AND p.kafka_partition = v.kafka_partition AND p.kafka_offset = v.kafka_offset",
    )
    .bind(topic)
    .bind(&partitions)
    .bind(&offsets)
    .bind(&reasons)
    .execute(&mut **tx)
    .await?;
    for r in released {
        let outcome = if r.reason.is_none() {
            "applied"
        } else {
            "reparked"
        };
        metrics::counter!(m::RELEASED, "outcome" => outcome).increment(1);
    }
    Ok(())
}
