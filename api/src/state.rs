//! The state every handler shares, built once from the configuration.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::auth::Tokens;
pub use crate::config::Settings;
use crate::error::ApiError;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub pool: PgPool,
    pub clickhouse: clickhouse::Client,
    pub tokens: Tokens,
    pub limits: RateLimits,
    pub cache: StatsCache,
    pub settings: Settings,
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

/// Short-lived caching of stats responses (computed from ClickHouse) in Redis.
pub struct StatsCache {
    pub redis: ConnectionManager,
    pub prefix: String,
    pub ttl: Duration,
}

impl StatsCache {
    /// The cached value under `key`, or `compute`'s, then cached. Redis trouble only
    /// costs the cache, never the answer.
    pub async fn get_or_compute<T, F>(&self, key: &str, compute: F) -> Result<T, ApiError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: std::future::Future<Output = Result<T, ApiError>>,
    {
        if self.ttl.is_zero() {
            return compute.await;
        }
        let key = format!("{}cache:{key}", self.prefix);
        let mut redis = self.redis.clone();
        let cached: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap_or(None);
        if let Some(value) = cached.and_then(|s| serde_json::from_str(&s).ok()) {
            crate::metrics::stats_cache(true);
            return Ok(value);
        }
        crate::metrics::stats_cache(false);
        let value = compute.await?;
        if let Ok(json) = serde_json::to_string(&value) {
            let stored: Result<(), _> = redis::cmd("SET")
                .arg(&key)
                .arg(json)
                .arg("EX")
                .arg(self.ttl.as_secs().max(1))
                .query_async(&mut redis)
                .await;
            if let Err(err) = stored {
                tracing::debug!(%err, "stats not cached");
            }
        }
        Ok(value)
    }
}
