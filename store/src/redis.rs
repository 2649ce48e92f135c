//! The Redis connection: one multiplexed, auto-reconnecting connection per process.

use anyhow::Context;
use futures::future::BoxFuture;
use redis::aio::ConnectionManager;
use reftrack_common::config::SecretUrl;

#[derive(Debug, Clone, clap::Args)]
pub struct RedisConfig {
    /// Redis URL.
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/0"
    )]
    pub url: SecretUrl,

    /// Prefix of every key reftrack writes, so several deployments (or tests) share a server.
    #[arg(
        id = "redis_key_prefix",
        long = "redis-key-prefix",
        env = "REDIS_KEY_PREFIX",
        default_value = "rt:"
    )]
    pub key_prefix: String,
}

impl RedisConfig {
    /// One multiplexed connection that reconnects by itself.
    pub async fn connect(&self) -> anyhow::Result<ConnectionManager> {
        let client = redis::Client::open(self.url.expose())
            .with_context(|| format!("parse REDIS_URL {}", self.url))?;
        ConnectionManager::new(client)
            .await
            .with_context(|| format!("connect to Redis at {}", self.url))
    }
}

/// The readiness probe of `connection`: `PING`.
pub fn probe(
    connection: &ConnectionManager,
) -> impl Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static {
    let connection = connection.clone();
    move || {
        let mut connection = connection.clone();
        Box::pin(async move {
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
