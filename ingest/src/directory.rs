//! The in-memory directory of referral codes, coupon codes and API keys. The click path reads it with
//! one atomic load and no network call; a background task reloads it from Postgres on a
//! timer and as soon as a NOTIFY says something changed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use reftrack_store::api_keys::{self, StoredKey};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::redirect::Landing;

/// What the click path needs to know about an attributable referral code.
#[derive(Debug, Clone)]
pub struct Affiliate {
    pub id: i64,
    /// The affiliate's own landing page, when it has one.
    pub landing: Option<Arc<Landing>>,
}

#[derive(Debug, Default)]
pub struct Snapshot {
    codes: HashMap<Box<str>, Affiliate>,
    /// Live coupon codes → their affiliate's referral code (any affiliate: a coupon of one
    /// who may not earn is parked by the aggregator, with the reason).
    coupons: HashMap<Box<str>, Box<str>>,
    /// Active API keys by lookup prefix.
    keys: HashMap<String, StoredKey>,
}

impl Snapshot {
    pub fn affiliate(&self, code: &str) -> Option<&Affiliate> {
        self.codes.get(code)
    }

    /// The referral code a live coupon code stands for.
    pub fn coupon(&self, code: &str) -> Option<&str> {
        self.coupons.get(code).map(AsRef::as_ref)
    }

    /// The active key `presented` is, if any.
    pub fn api_key(&self, presented: &str) -> Option<&StoredKey> {
        let prefix = api_keys::lookup_prefix(presented)?;
        self.keys.get(prefix).filter(|k| k.matches(presented))
    }

    pub fn code_count(&self) -> usize {
        self.codes.len()
    }
}

/// A shared, atomically replaced [`Snapshot`].
#[derive(Clone)]
pub struct Directory {
    current: Arc<ArcSwap<Snapshot>>,
    pool: PgPool,
}

impl Directory {
    /// Loads the first snapshot; start-up fails if Postgres cannot provide it, because
    /// serving clicks without the codes would mislabel every one as unknown. Listens for
    /// changes *before* reading, so none made meanwhile is missed.
    pub async fn load(pool: PgPool) -> anyhow::Result<(Self, Refresher)> {
        let listener = match listen(&pool).await {
            Ok(listener) => Some(listener),
            Err(err) => {
                tracing::warn!(%err, "cannot LISTEN for directory changes; reloading on the timer only");
                None
            }
        };
        let snapshot = fetch(&pool)
            .await
            .context("load referral codes and API keys")?;
        let directory = Self {
            current: Arc::new(ArcSwap::from_pointee(snapshot)),
            pool,
        };
        let refresher = Refresher {
            directory: directory.clone(),
            listener,
        };
        Ok((directory, refresher))
    }

    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Reloads now; on failure the previous snapshot stays in service.
    pub async fn reload(&self) {
        match fetch(&self.pool).await {
            Ok(snapshot) => {
                metrics::gauge!(crate::metrics::DIRECTORY_CODES).set(snapshot.code_count() as f64);
                self.current.store(Arc::new(snapshot));
            }
            Err(err) => tracing::warn!(%err, "directory reload failed; keeping the previous one"),
        }
    }
}

/// Keeps a [`Directory`] fresh: reloads on a timer and whenever Postgres notifies a change.
pub struct Refresher {
    directory: Directory,
    listener: Option<PgListener>,
}

impl Refresher {
    pub async fn run(mut self, interval: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
                notification = recv(&mut self.listener) => {
                    if let Err(err) = notification {
                        tracing::warn!(%err, "directory change listener failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            self.directory.reload().await;
        }
    }
}

async fn listen(pool: &PgPool) -> anyhow::Result<PgListener> {
    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pool)
        .await?;
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen(&format!("reftrack_directory_{schema}"))
        .await?;
    Ok(listener)
}

async fn recv(listener: &mut Option<PgListener>) -> Result<(), sqlx::Error> {
    match listener {
        // PgListener reconnects by itself on the next recv after a lost connection.
        Some(listener) => listener.recv().await.map(|_| ()),
        None => std::future::pending().await,
    }
}

#[derive(sqlx::FromRow)]
struct CodeRow {
    id: i64,
    referral_code: String,
    landing_url: Option<String>,
}

/// Attributable codes: those of affiliates who may earn.
async fn fetch(pool: &PgPool) -> anyhow::Result<Snapshot> {
    let rows = sqlx::query_as::<_, CodeRow>(&format!(
        "SELECT id, referral_code, landing_url FROM affiliates WHERE {}",
        reftrack_store::affiliates::MAY_EARN
    ))
    .fetch_all(pool)
    .await?;
    let codes = rows
        .into_iter()
        .map(|row| {
            let landing = row.landing_url.as_deref().and_then(|url| match Landing::parse(url) {
                Ok(landing) => Some(Arc::new(landing)),
                Err(err) => {
                    tracing::warn!(affiliate = row.id, %err, "ignoring an unusable landing URL");
                    None
                }
            });
            (
                row.referral_code.into_boxed_str(),
                Affiliate {
                    id: row.id,
                    landing,
                },
            )
        })
        .collect();
    let keys = api_keys::load_active(pool)
        .await?
        .into_iter()
        .map(|key| (key.prefix.clone(), key))
        .collect();
    let coupons: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.code, a.referral_code FROM coupons c JOIN affiliates a ON a.id = c.affiliate_id
         WHERE c.disabled_at IS NULL AND a.deleted_at IS NULL",
    )
    .fetch_all(pool)
    .await?;
    let coupons = coupons
        .into_iter()
        .map(|(coupon, code)| (coupon.into_boxed_str(), code.into_boxed_str()))
        .collect();
    Ok(Snapshot {
        codes,
        coupons,
        keys,
    })
}
