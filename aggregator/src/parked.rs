//! Messages that cannot be applied are parked in Postgres with the reason, counted, and
//! passed over, so they never block their partition.

use sqlx::{Postgres, Transaction};

use crate::consume::Record;
use crate::metrics as m;

pub struct Parked<'a> {
    pub partition: i32,
    pub offset: i64,
    pub reason: &'static str,
    pub event_id: Option<String>,
    pub payload: &'a [u8],
}

impl<'a> Parked<'a> {
    pub fn undecodable(record: &'a Record) -> Self {
        Self {
            partition: record.partition,
            offset: record.offset,
            reason: crate::conversions::ledger::UNDECODABLE,
            event_id: None,
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
    let reasons: Vec<&str> = parked.iter().map(|p| p.reason).collect();
    let event_ids: Vec<Option<&str>> = parked.iter().map(|p| p.event_id.as_deref()).collect();
    let payloads: Vec<&[u8]> = parked.iter().map(|p| p.payload).collect();
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO parked_events (topic, kafka_partition, kafka_offset, reason, event_id, payload)
         SELECT $1, * FROM unnest($2::int[], $3::bigint[], $4::text[], $5::text[], $6::bytea[])
         ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING
         RETURNING reason",
    )
    .bind(topic)
    .bind(&partitions)
    .bind(&offsets)
    .bind(&reasons)
    .bind(&event_ids)
    .bind(&payloads)
    .fetch_all(&mut **tx)
    .await?;
    for reason in inserted {
        metrics::counter!(m::PARKED, "topic" => stream, "reason" => reason).increment(1);
    }
    Ok(())
}
