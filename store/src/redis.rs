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

    /// A CA certificate (PEM file) a rediss:// server's certificate is checked against,
    /// instead of the system's roots (a private CA).
    #[arg(id = "redis_ca_cert", long = "redis-ca-cert", env = "REDIS_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
}

impl RedisConfig {
    /// One multiplexed connection that reconnects by itself.
    /// TLS when the URL is rediss://, checked against REDIS_CA_CERT when given.
    pub async fn connect(&self) -> anyhow::Result<ConnectionManager> {
        let client = match &self.ca_cert {
            Some(path) => {
                let root_cert = std::fs::read(path)
                    .with_context(|| format!("read REDIS_CA_CERT {}", path.display()))?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(self.url.expose(), certificates)
            }
            None => redis::Client::open(self.url.expose()),
        }
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
