//! The state every handler shares, built once from the configuration.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use reftrack_store::stats::{self, Stats};
use sqlx::PgPool;

use crate::auth::Tokens;
pub use crate::config::Settings;
use crate::error::ApiError;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub pool: PgPool,
    pub clock: reftrack_common::clock::Clock,
    pub clickhouse: clickhouse::Client,
    pub tokens: Tokens,
    pub limits: RateLimits,
    pub cache: StatsCache,
    pub settings: Settings,
    pub webhooks: crate::webhooks::WebhookConfig,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

/// Fixed one-minute windows per caller in Redis. When Redis is unreachable the limit is
/// not enforced (an outage of the cache must not take the APIs down) and a warning is logged.
pub struct RateLimits {
    pub redis: ConnectionManager,
    pub prefix: String,
    pub per_minute: u32,
}

impl RateLimits {
    pub async fn check(&self, caller: &str) -> Result<(), ApiError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let key = format!("{}api:{caller}:{}", self.prefix, now / 60);
        let mut redis = self.redis.clone();
        let counted: Result<(u64, bool), redis::RedisError> = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .expire(&key, 61)
            .query_async(&mut redis)
            .await;
        match counted {
            Ok((count, _)) if count > u64::from(self.per_minute) => {
                Err(ApiError::RateLimited(60 - now % 60))
            }
            Ok(_) => Ok(()),
            Err(err) => {
                tracing::warn!(%err, "rate limit not checked: Redis unavailable");
                Ok(())
            }
        }
    }
}

/// Short-lived caching of stats answers (computed from ClickHouse), in this process:
/// a hit costs no round trip, and every instance warms its own within seconds. Lifetime
/// figures are cached per affiliate, so that every page, filter and detail shares them.
pub struct StatsCache {
    entries: quick_cache::sync::Cache<String, (Instant, Arc<dyn Any + Send + Sync>)>,
    pub ttl: Duration,
}

impl StatsCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(100_000),
            ttl,
        }
    }

    fn get<T: Clone + Send + Sync + 'static>(&self, key: &str) -> Option<T> {
        let (at, value) = self.entries.get(key)?;
        let value = (at.elapsed() < self.ttl)
            .then(|| value.downcast_ref::<T>().cloned())
            .flatten();
        crate::metrics::stats_cache(value.is_some());
        value
    }

    fn put<T: Send + Sync + 'static>(&self, key: String, value: T) {
        self.entries.insert(key, (Instant::now(), Arc::new(value)));
    }

    /// The cached value under `key`, or `compute`'s, then cached.
    pub async fn get_or_compute<T, F>(&self, key: &str, compute: F) -> Result<T, ApiError>
    where
        T: Clone + Send + Sync + 'static,
        F: std::future::Future<Output = Result<T, ApiError>>,
    {
        if self.ttl.is_zero() {
            return compute.await;
        }
        if let Some(value) = self.get(key) {
            return Ok(value);
        }
        let value = compute.await?;
        self.put(key.to_string(), value.clone());
        Ok(value)
    }

    /// The lifetime figures of `ids`: those cached, and the others in one query.
    pub async fn lifetime(
        &self,
        clickhouse: &clickhouse::Client,
        ids: &[i64],
    ) -> Result<HashMap<i64, Stats>, ApiError> {
        let key = |id: i64| format!("lifetime:{id}");
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for &id in ids {
            match (!self.ttl.is_zero())
                .then(|| self.get::<Stats>(&key(id)))
                .flatten()
            {
                Some(stats) => {
                    found.insert(id, stats);
                }
                None => missing.push(id),
            }
        }
        if !missing.is_empty() {
            let mut fetched = stats::lifetime(clickhouse, &missing).await?;
            for id in missing {
                let stats = fetched.remove(&id).unwrap_or_default();
                if !self.ttl.is_zero() {
                    self.put(key(id), stats);
                }
                found.insert(id, stats);
            }
        }
        Ok(found)
    }
}
