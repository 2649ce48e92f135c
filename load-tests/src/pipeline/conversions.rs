//! The product's backend: reports each signed-up visitor's signup, purchase and refund to
//! ingest, in order, retrying on 503 (after Retry-After) and on lost connections with the
//! same event id, as the conversion API asks of its clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::model::Journey;

/// How long one event may keep failing before the run gives up on it.
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    /// Attempts answered 503 or lost, then retried.
    pub retried: AtomicU64,
    /// Events sent a second time on purpose (a resent journey).
    pub resent: AtomicU64,
}

#[derive(Clone)]
pub struct Reporter {
    http: reqwest::Client,
    url: String,
    key: String,
    /// Referral codes by index.
    codes: Arc<Vec<String>>,
    /// Makes event ids unique to the run.
    run: String,
    pub counters: Arc<Counters>,
}

impl Reporter {
    pub fn new(
        ingest: std::net::SocketAddr,
        key: String,
        codes: Arc<Vec<String>>,
        run: String,
    ) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: format!("http://{ingest}/v1/conversions"),
            key,
            codes,
            run,
            counters: Arc::default(),
        }
    }

    /// Sends the journey's events one after the other (a refund must follow its purchase).
    pub async fn report(&self, j: &Journey) -> anyhow::Result<()> {
        let events = self.events(j);
        for event in &events {
            self.deliver(event).await?;
        }
        if j.resend {
            for event in &events {
                self.deliver(event).await?;
                self.counters.resent.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn events(&self, j: &Journey) -> Vec<Value> {
        let (run, n) = (&self.run, j.number);
        let code = &self.codes[j.code];
        let mut events = vec![json!({
            "event_id": format!("{run}-s-{n}"), "type": "signup", "user_id": j.user_id,
            "referral_code": code, "method": "link",
        })];
        if let Some(cents) = j.purchase_cents {
            events.push(json!({
                "event_id": format!("{run}-p-{n}"), "type": "purchase", "user_id": j.user_id,
                "referral_code": code, "amount": money(cents), "currency": "USD",
            }));
        }
        if let Some(cents) = j.refund_cents {
            events.push(json!({
                "event_id": format!("{run}-r-{n}"), "type": "refund", "user_id": j.user_id,
                "referral_code": code, "amount": money(cents), "currency": "USD",
                "original_event_id": format!("{run}-p-{n}"),
            }));
        }
        events
    }

    async fn deliver(&self, event: &Value) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let wait = match self
                .http
                .post(&self.url)
                .bearer_auth(&self.key)
                .json(event)
                .timeout(Duration::from_secs(30))
                .send()
                .await
            {
                Ok(r) if r.status() == 202 => {
                    self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Ok(r) if r.status() == 503 => r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs),
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    bail!("conversion {event} refused: {status} {body}");
                }
                Err(_) => Duration::from_millis(500),
            };
            if started.elapsed() > GIVE_UP_AFTER {
                return Err(anyhow::anyhow!("ingest kept refusing it"))
                    .with_context(|| format!("conversion {event} not delivered"));
            }
            self.counters.retried.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}
