//! The Redis connection: one multiplexed, auto-reconnecting connection per process.

use anyhow::Context;
use redis::aio::ConnectionManager;
use reftrack_common::config::RedisConfig;

pub async fn connect(config: &RedisConfig) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(config.url.expose())
        .with_context(|| format!("parse REDIS_URL {}", config.url))?;
    ConnectionManager::new(client)
        .await
        .with_context(|| format!("connect to Redis at {}", config.url))
}

/// Readiness probe.
pub async fn ping(connection: &ConnectionManager) -> Result<(), String> {
    let mut connection = connection.clone();
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
