//! Personal data kept no longer than needed.
//!
//! - Raw clicks (user agent, referer, country, visitor hash) expire after
//!   `CLICKS_RETENTION_DAYS`: whole monthly partitions past the cutoff are dropped, and the
//!   rows of the month the cutoff falls in are deleted. This works on every ClickHouse
//!   reftrack supports (18.16 has no TTL). The rollups the stats read are kept: they hold
//!   counts, not people.
//! - `aggregator erase-user` erases what reftrack holds about one referred user of the
//!   product: the email on the referral, in the webhook events that carried it, and in
//!   parked conversions. The user's numeric id (the product's own pseudonymous key) stays
//!   on the referral and in the commission ledger, which are financial records.

use anyhow::Context;
use chrono::{DateTime, Datelike, Utc};
use reftrack_events::ConversionEvent;
use sqlx::PgPool;

/// Raw clicks kept `days`, purged daily by the running aggregator (at start, then every 24 hours).
pub struct Retention {
    pub client: clickhouse::Client,
    pub database: String,
    pub days: u32,
}

impl Retention {
    pub async fn run(self, cancel: tokio_util::sync::CancellationToken) {
        loop {
            let cutoff = Utc::now() - chrono::Duration::days(self.days.into());
            match purge_clicks(&self.client, &self.database, cutoff).await {
                Ok(purged) if !purged.partitions.is_empty() || purged.deleted_in_cutoff_month => {
                    tracing::info!(?purged, %cutoff, "purged expired raw clicks");
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "purging raw clicks failed; retrying tomorrow");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(86_400)) => {}
            }
        }
    }
}

/// What a purge removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Monthly partitions dropped whole (YYYYMM).
    pub partitions: Vec<String>,
    /// Whether rows of the cutoff's month were deleted too.
    pub deleted_in_cutoff_month: bool,
}

/// Removes the raw clicks received before `cutoff`.
pub async fn purge_clicks(
    client: &clickhouse::Client,
    database: &str,
    cutoff: DateTime<Utc>,
) -> anyhow::Result<Purged> {
    let cutoff_month = cutoff.year() * 100 + cutoff.month() as i32;
    let partitions: Vec<String> = client
        .query(
            "SELECT DISTINCT partition FROM system.parts
             WHERE database = ? AND table = 'clicks_raw' AND active ORDER BY partition",
        )
        .bind(database)
        .fetch_all()
        .await
        .context("list the partitions of clicks_raw")?;
    let mut purged = Purged::default();
    for partition in partitions {
        let month: i32 = partition.parse().context("a monthly partition id")?;
        if month < cutoff_month {
            client
                .query(&format!("ALTER TABLE clicks_raw DROP PARTITION {month}"))
                .execute()
                .await
                .with_context(|| format!("drop partition {month} of clicks_raw"))?;
            purged.partitions.push(partition);
        }
    }
    let cutoff_text = cutoff.format("%Y-%m-%d %H:%M:%S").to_string();
    let older: u64 = client
        .query("SELECT count() FROM clicks_raw WHERE received_at < toDateTime(?, 'UTC')")
        .bind(&cutoff_text)
        .fetch_one()
        .await?;
    if older > 0 {
        // A mutation: ClickHouse rewrites the month's parts in the background.
        client
            .query("ALTER TABLE clicks_raw DELETE WHERE received_at < toDateTime(?, 'UTC')")
            .bind(&cutoff_text)
            .execute()
            .await
            .context("delete the expired clicks of the cutoff's month")?;
        purged.deleted_in_cutoff_month = true;
    }
    Ok(purged)
}

/// What an erasure changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Erased {
    pub referrals: u64,
    pub webhook_events: u64,
    pub parked_events: u64,
}

/// Erases the email of referred user `user_id` wherever reftrack keeps it, in one
/// transaction.
pub async fn erase_user(pool: &PgPool, user_id: i64) -> anyhow::Result<Erased> {
    let mut tx = pool.begin().await?;
    let referrals = sqlx::query(
        "UPDATE referrals SET email = NULL, updated_at = now() WHERE user_id = $1 AND email IS NOT NULL",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let webhook_events = sqlx::query(
        "UPDATE webhook_events SET data = data - 'email'
         WHERE type = 'referral.created' AND data->>'user_id' = $1::text AND data ? 'email'",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // Parked payloads are the events as ingest wrote them: rewritten without the email.
    let parked: Vec<(String, i32, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT topic, kafka_partition, kafka_offset, payload FROM parked_events FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut parked_events = 0;
    for (topic, partition, offset, payload) in parked {
        let Ok(mut event) = ConversionEvent::decode(&payload) else {
            continue;
        };
        if event.user_id != user_id || event.email.is_none() {
            continue;
        }
        event.email = None;
        sqlx::query(
            "UPDATE parked_events SET payload = $4 WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset = $3",
        )
        .bind(topic)
        .bind(partition)
        .bind(offset)
        .bind(event.encode())
        .execute(&mut *tx)
        .await?;
        parked_events += 1;
    }
    tx.commit().await?;
    Ok(Erased {
        referrals,
        webhook_events,
        parked_events,
    })
}
