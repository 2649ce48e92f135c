//! The aggregator binary's operator commands: list parked events, and re-drive them once
//! their cause is fixed (an affiliate reactivated, a code created, a column widened);
//! purge expired raw clicks; erase a referred user's personal data ([`crate::privacy`]).
//!
//! Re-driving publishes the parked message again, keyed as ingest keys it, so it goes
//! through the pipeline like any event: exactly once in effect (a conversion's event id
//! is applied once, however often it is sent), and parked again at its new position if
//! its cause is not fixed.

// A command-line interface: printing is its output.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reftrack_events::ConversionEvent;
use sqlx::PgPool;

use crate::Config;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// List or re-drive parked events.
    #[command(subcommand)]
    Parked(ParkedCommand),
    /// Remove the raw clicks older than --days (default CLICKS_RETENTION_DAYS); the stats
    /// rollups stay. The running aggregator does this daily when the setting is given.
    PurgeClicks {
        #[arg(long, value_parser = clap::value_parser!(u32).range(7..=3650))]
        days: Option<u32>,
    },
    /// Erase what reftrack holds of a referred user's personal data (their email on the
    /// referral, in webhook events, in parked conversions); the ledger keeps the numeric id.
    EraseUser {
        #[arg(long)]
        user_id: i64,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ParkedCommand {
    /// Parked events not yet resolved, oldest first, one per line (tab-separated):
    /// topic, partition, offset, parked at, event id, reason.
    List {
        /// Only those parked for this reason.
        #[arg(long)]
        reason: Option<String>,
        /// Resolved ones too (applied when their purchase came, or re-driven).
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Publish parked conversions again, and mark them re-driven.
    Redrive {
        /// Those parked for this reason (e.g. "affiliate not active").
        #[arg(
            long,
            conflicts_with = "event_id",
            required_unless_present = "event_id"
        )]
        reason: Option<String>,
        /// These events, by event id.
        #[arg(long, value_delimiter = ',')]
        event_id: Vec<String>,
        /// Show what would be re-driven, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(command: Command, config: &Config) -> anyhow::Result<()> {
    let pool = config.postgres.connect().await?;
    reftrack_store::postgres::migrate(&pool).await?;
    let command = match command {
        Command::Parked(command) => command,
        Command::PurgeClicks { days } => {
            let days = days
                .or(config.clicks_retention_days)
                .context("give --days or set CLICKS_RETENTION_DAYS")?;
            let cutoff = Utc::now() - chrono::Duration::days(days.into());
            let client = config.clickhouse.client();
            let purged =
                crate::privacy::purge_clicks(&client, &config.clickhouse.database, cutoff).await?;
            println!(
                "clicks before {cutoff}: dropped partitions {:?}{}",
                purged.partitions,
                if purged.deleted_in_cutoff_month {
                    ", and deleting the older rows of the cutoff's month"
                } else {
                    ""
                }
            );
            return Ok(());
        }
        Command::EraseUser { user_id } => {
            let erased = crate::privacy::erase_user(&pool, user_id).await?;
            println!(
                "user {user_id}: email erased from {} referrals, {} webhook events, {} parked events",
                erased.referrals, erased.webhook_events, erased.parked_events
            );
            return Ok(());
        }
    };
    match command {
        ParkedCommand::List { reason, all, limit } => {
            for row in list(&pool, reason.as_deref(), all, limit).await? {
                println!("{row}");
            }
        }
        ParkedCommand::Redrive {
            reason,
            event_id,
            dry_run,
        } => {
            let topic = &config.kafka.conversions_topic;
            let rows = redrivable(&pool, topic, reason.as_deref(), &event_id).await?;
            if dry_run {
                for row in &rows {
                    println!("would re-drive {row}");
                }
                println!("{} to re-drive (dry run: nothing changed)", rows.len());
                return Ok(());
            }
            let producer: FutureProducer = reftrack_events::kafka::producer_config(&config.kafka)
                .create()
                .context("create the Kafka producer")?;
            let sent = redrive(&pool, &producer, topic, &rows).await?;
            println!("re-drove {sent} parked events to {topic}");
        }
    }
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct ParkedRow {
    pub topic: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    pub parked_at: DateTime<Utc>,
    pub event_id: Option<String>,
    pub reason: String,
    pub resolution: Option<String>,
    pub payload: Vec<u8>,
}

impl std::fmt::Display for ParkedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\t{}\t{}\t{}\t{}\t{}",
            self.topic,
            self.kafka_partition,
            self.kafka_offset,
            self.parked_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.event_id.as_deref().unwrap_or("-"),
            self.reason,
        )?;
        match &self.resolution {
            Some(resolution) => write!(f, "\t({resolution})"),
            None => Ok(()),
        }
    }
}

const COLUMNS: &str =
    "topic, kafka_partition, kafka_offset, parked_at, event_id, reason, resolution, payload";

pub async fn list(
    pool: &PgPool,
    reason: Option<&str>,
    all: bool,
    limit: i64,
) -> sqlx::Result<Vec<ParkedRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM parked_events
         WHERE ($1::text IS NULL OR reason = $1) AND ($2 OR resolved_at IS NULL)
         ORDER BY parked_at, topic, kafka_partition, kafka_offset LIMIT $3"
    ))
    .bind(reason)
    .bind(all)
    .bind(limit.max(0))
    .fetch_all(pool)
    .await
}

/// Unresolved conversions that can be sent again: those that decode (an undecodable
/// payload would only be parked again).
pub async fn redrivable(
    pool: &PgPool,
    topic: &str,
    reason: Option<&str>,
    event_ids: &[String],
) -> sqlx::Result<Vec<ParkedRow>> {
    open_conversions(pool, topic, reason, event_ids, false).await
}

/// Those of `reason`, those of `event_ids`, and (when `requested`) those an admin asked
/// the console to re-drive.
async fn open_conversions(
    pool: &PgPool,
    topic: &str,
    reason: Option<&str>,
    event_ids: &[String],
    requested: bool,
) -> sqlx::Result<Vec<ParkedRow>> {
    let rows: Vec<ParkedRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM parked_events
         WHERE topic = $1 AND resolved_at IS NULL AND event_id IS NOT NULL
           AND (($2::text IS NOT NULL AND reason = $2) OR event_id = ANY($3)
                OR ($4 AND redrive_requested_at IS NOT NULL))
         ORDER BY kafka_partition, kafka_offset"
    ))
    .bind(topic)
    .bind(reason)
    .bind(event_ids)
    .bind(requested)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|row| ConversionEvent::decode(&row.payload).is_ok())
        .collect())
}

/// Re-drives what the console asked for, every two seconds, until `cancel`.
pub async fn redrive_requested(
    pool: PgPool,
    producer: FutureProducer,
    topic: String,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        match open_conversions(&pool, &topic, None, &[], true).await {
            Ok(rows) if !rows.is_empty() => match redrive(&pool, &producer, &topic, &rows).await {
                Ok(sent) => tracing::info!(sent, "re-drove parked events the console asked for"),
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "re-driving parked events failed; retrying");
                }
            },
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "reading re-drive requests failed; retrying"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Publishes each row's message again (acknowledged by the broker), then marks it
/// re-driven. Interrupted between the two, a second run sends it again: harmless, its
/// event id is applied once.
pub async fn redrive(
    pool: &PgPool,
    producer: &FutureProducer,
    topic: &str,
    rows: &[ParkedRow],
) -> anyhow::Result<usize> {
    for row in rows {
        let event = ConversionEvent::decode(&row.payload).context("decode a parked event")?;
        producer
            .send(
                FutureRecord::to(topic)
                    .key(&event.referral_code)
                    .payload(&row.payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(err, _)| err)
            .with_context(|| format!("publish {} again", event.event_id))?;
        sqlx::query(
            "UPDATE parked_events SET resolved_at = now(), resolution = 'redriven'
             WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset = $3 AND resolved_at IS NULL",
        )
        .bind(&row.topic)
        .bind(row.kafka_partition)
        .bind(row.kafka_offset)
        .execute(pool)
        .await?;
    }
    Ok(rows.len())
}
