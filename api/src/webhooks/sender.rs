//! The webhook sender: a loop that fans new outbox events out to the endpoints that want
//! them, announces commissions whose holding period ended, and delivers what is due.
//!
//! Delivery is at least once. A delivery is claimed by moving its next attempt past the
//! request's timeout (a lease) in the claiming transaction; the result is written after
//! the request. A sender killed in between leaves the lease to expire, and the delivery
//! is sent again with the same `webhook-id`, which receivers use to drop a repeat.
//! Failures are retried with exponential backoff and jitter until `WEBHOOK_RETRY_HOURS`
//! after the event; an endpoint failing `WEBHOOK_DISABLE_AFTER_FAILURES` times in a row
//! is disabled.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::join_all;
use rand::Rng;
use reftrack_domain::WebhookEventType;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{WebhookConfig, target};
use crate::metrics as m;

/// Deliveries claimed per round (and sent concurrently).
const CLAIM: i64 = 32;
/// Events fanned out per round.
const FAN_OUT: i64 = 500;
/// The longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How long the loop rests when there was nothing to do.
const IDLE: Duration = Duration::from_millis(250);
/// How often the commissions that became payable are looked for (each look locks the
/// cursor that the ledger's inserts read).
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

pub struct Sender {
    pool: PgPool,
    http: reqwest::Client,
    config: WebhookConfig,
}

/// A claimed delivery, with what it takes to send it.
#[derive(sqlx::FromRow)]
struct Due {
    id: i64,
    attempts: i32,
    event_id: i64,
    event_type: WebhookEventType,
    data: Value,
    event_at: DateTime<Utc>,
    endpoint_id: i64,
    url: String,
    secret: String,
    previous_secret: Option<String>,
}

/// What one attempt came to.
struct Outcome {
    status_code: Option<i32>,
    error: Option<String>,
    took: Duration,
}

impl Sender {
    pub fn new(pool: PgPool, config: &WebhookConfig) -> Self {
        Self {
            pool,
            http: target::client(config),
            config: config.clone(),
        }
    }

    /// Runs until the task is dropped (what is in flight then is sent again later).
    pub async fn run(self) {
        let mut announced = Instant::now() - ANNOUNCE_EVERY;
        loop {
            if announced.elapsed() >= ANNOUNCE_EVERY {
                match announce_payable(&self.pool).await {
                    Ok(()) => announced = Instant::now(),
                    Err(err) => {
                        tracing::warn!(error = %err, "announcing payable commissions failed; retrying");
                    }
                }
            }
            match self.round().await {
                Ok(true) => {}
                Ok(false) => tokio::time::sleep(IDLE).await,
                Err(err) => {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "webhook sender round failed; retrying in 1 s"
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// One round; whether it found work.
    async fn round(&self) -> anyhow::Result<bool> {
        let fanned = fan_out(&self.pool)
            .await
            .context("fan out webhook events")?;
        announce_payable(&self.pool)
            .await
            .context("announce payable commissions")?;
        let due = self.claim().await.context("claim due webhook deliveries")?;
        let sent = due.len();
        let outcomes = join_all(due.iter().map(|d| self.send(d))).await;
        for (delivery, outcome) in due.iter().zip(outcomes) {
            self.record(delivery, outcome)
                .await
                .context("record a webhook attempt")?;
        }
        Ok(fanned > 0 || sent > 0)
    }

    async fn claim(&self) -> Result<Vec<Due>, sqlx::Error> {
        let lease_secs = (self.config.timeout() + Duration::from_secs(30)).as_secs_f64();
        sqlx::query_as(
            "WITH due AS (
                 SELECT d.id FROM webhook_deliveries d
                 JOIN webhook_endpoints e ON e.id = d.endpoint_id
                 WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                   AND e.enabled AND e.deleted_at IS NULL
                 ORDER BY d.next_attempt_at LIMIT $1
                 FOR UPDATE OF d SKIP LOCKED)
             UPDATE webhook_deliveries d
             SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
             FROM due, webhook_events ev, webhook_endpoints en
             WHERE d.id = due.id AND ev.id = d.event_id AND en.id = d.endpoint_id
             RETURNING d.id, d.attempts, ev.id AS event_id, ev.type AS event_type, ev.data,
                       ev.created_at AS event_at, en.id AS endpoint_id, en.url, en.secret,
                       CASE WHEN en.previous_secret_expires_at > now() THEN en.previous_secret END
                           AS previous_secret",
        )
        .bind(CLAIM)
        .bind(lease_secs)
        .fetch_all(&self.pool)
        .await
    }

    /// POSTs the message, signed by each live secret.
    async fn send(&self, due: &Due) -> Outcome {
        let started = Instant::now();
        let failed = |error: String| Outcome {
            status_code: None,
            error: Some(error),
            took: started.elapsed(),
        };
        let url = match due.url.parse::<url::Url>() {
            Ok(url) => url,
            Err(err) => return failed(format!("invalid URL: {err}")),
        };
        if let Err(problem) = target::check(&url, self.config.allow_private) {
            return failed(format!("refused: the URL {problem}"));
        }
        let message_id = format!("msg_{}", due.event_id);
        let body = json!({
            "type": due.event_type,
            "timestamp": due.event_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": due.data,
        })
        .to_string();
        let timestamp = Utc::now().timestamp();
        let signature = match sign(due, &message_id, timestamp, body.as_bytes()) {
            Ok(signature) => signature,
            Err(err) => return failed(format!("cannot sign: {err}")),
        };
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        match response {
            Ok(response) => {
                let status = response.status();
                Outcome {
                    status_code: Some(i32::from(status.as_u16())),
                    error: (!status.is_success()).then(|| format!("answered {status}")),
                    took: started.elapsed(),
                }
            }
            Err(err) => failed(describe(err)),
        }
    }

    /// Writes the attempt, and what follows from it, in one transaction.
    async fn record(&self, due: &Due, outcome: Outcome) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, status_code, error, duration_ms)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(due.id)
        .bind(outcome.status_code)
        .bind(&outcome.error)
        .bind(outcome.took.as_millis().min(i32::MAX as u128) as i32)
        .execute(&mut *tx)
        .await?;
        let Some(error) = &outcome.error else {
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now() WHERE id = $1",
            )
            .bind(due.id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE webhook_endpoints SET consecutive_failures = 0
                 WHERE id = $1 AND consecutive_failures <> 0",
            )
            .bind(due.endpoint_id)
            .execute(&mut *tx)
            .await?;
            m::webhook_attempt("delivered");
            return tx.commit().await;
        };
        let backoff = backoff(self.config.retry_base_ms, due.attempts);
        let gave_up: bool = sqlx::query_scalar(
            "UPDATE webhook_deliveries d
             SET next_attempt_at = now() + make_interval(secs => $2),
                 status = CASE WHEN now() + make_interval(secs => $2) > ev.created_at + make_interval(hours => $3)
                               THEN 'failed' ELSE 'pending' END
             FROM webhook_events ev WHERE d.id = $1 AND ev.id = d.event_id
             RETURNING d.status = 'failed'",
        )
        .bind(due.id)
        .bind(backoff.as_secs_f64())
        .bind(self.config.retry_hours as i32)
        .fetch_one(&mut *tx)
        .await?;
        let (failures, just_disabled): (i32, bool) = sqlx::query_as(
            "WITH before AS (SELECT enabled FROM webhook_endpoints WHERE id = $1)
             UPDATE webhook_endpoints e
             SET consecutive_failures = e.consecutive_failures + 1,
                 enabled = e.enabled AND e.consecutive_failures + 1 < $2,
                 disabled_reason = CASE WHEN e.enabled AND e.consecutive_failures + 1 >= $2
                     THEN format('%s failed attempts in a row; the last: %s', e.consecutive_failures + 1, $3::text)
                     ELSE e.disabled_reason END
             FROM before WHERE e.id = $1
             RETURNING e.consecutive_failures, before.enabled AND NOT e.enabled",
        )
        .bind(due.endpoint_id)
        .bind(self.config.disable_after_failures as i32)
        .bind(error)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        m::webhook_attempt(if gave_up { "given_up" } else { "failed" });
        if just_disabled {
            m::webhook_endpoint_disabled();
            tracing::error!(
                endpoint = due.endpoint_id,
                failures,
                error,
                "webhook endpoint disabled after failing repeatedly"
            );
        }
        tracing::warn!(
            endpoint = due.endpoint_id,
            delivery = due.id,
            attempt = due.attempts,
            error,
            retry_in_secs = backoff.as_secs(),
            gave_up,
            "webhook delivery failed"
        );
        Ok(())
    }
}

/// The `webhook-signature` header: `v1,<base64>` by the secret, and by the previous one
/// while a rotation's overlap lasts, separated by a space.
fn sign(due: &Due, message_id: &str, timestamp: i64, body: &[u8]) -> anyhow::Result<String> {
    let mut signatures = Vec::with_capacity(2);
    for secret in std::iter::once(&due.secret).chain(due.previous_secret.as_ref()) {
        let webhook =
            standardwebhooks::Webhook::new(secret).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let signature = webhook
            .sign(message_id, timestamp, body)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        signatures.push(signature);
    }
    Ok(signatures.join(" "))
}

/// A transport error in a few words: what failed (timeouts and refusals named as such),
/// then its causes.
fn describe(err: reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{kind}: {:#}", anyhow::Error::new(err))
}

/// The wait before the next attempt after `attempts` failed ones: the base doubled each
/// time up to an hour, then between half of it and all of it (jitter, so that retries to
/// an endpoint that was down do not all arrive at once).
pub fn backoff(base_ms: u64, attempts: i32) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let full = Duration::from_millis(base_ms.saturating_mul(1u64 << doublings)).min(MAX_BACKOFF);
    let half = full / 2;
    half + full
        .saturating_sub(half)
        .mul_f64(rand::rng().random::<f64>())
}

/// Gives each new event a delivery for every enabled endpoint that wants its type.
async fn fan_out(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "WITH batch AS (
             SELECT id, type FROM webhook_events WHERE NOT fanned_out
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED),
         deliveries AS (
             INSERT INTO webhook_deliveries (event_id, endpoint_id)
             SELECT b.id, e.id FROM batch b JOIN webhook_endpoints e
               ON e.enabled AND e.deleted_at IS NULL
              AND (cardinality(e.event_types) = 0 OR b.type = ANY (e.event_types))
             ON CONFLICT DO NOTHING)
         UPDATE webhook_events SET fanned_out = true WHERE id IN (SELECT id FROM batch)",
    )
    .bind(FAN_OUT)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Announces the commissions whose holding period ended since the last look (see the
/// migration for why the cursor is locked).
async fn announce_payable(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT until FROM webhook_payable_cursor FOR UPDATE")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO webhook_events (type, data)
         SELECT 'commission.payable', webhook_commission(e)
         FROM ledger_entries e, webhook_payable_cursor c
         WHERE e.kind = 'earned' AND e.available_at > c.until AND e.available_at <= now()
         ORDER BY e.available_at, e.id",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE webhook_payable_cursor SET until = now()")
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_an_hour() {
        for _ in 0..100 {
            let first = backoff(5000, 1);
            assert!(first >= Duration::from_millis(2500) && first <= Duration::from_millis(5000));
            let fourth = backoff(5000, 4);
            assert!(fourth >= Duration::from_secs(20) && fourth <= Duration::from_secs(40));
            let late = backoff(5000, 40);
            assert!(late >= Duration::from_secs(1800) && late <= MAX_BACKOFF);
        }
    }
}
