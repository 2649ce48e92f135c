//! The Postgres pool and the embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use reftrack_common::config::SecretUrl;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct PostgresConfig {
    /// Postgres connection URL.
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "postgres://reftrack:reftrack@127.0.0.1:5432/reftrack"
    )]
    pub url: SecretUrl,

    /// Postgres schema to use instead of `public` (tests give each run its own).
    #[arg(
        id = "database_schema",
        long = "database-schema",
        env = "DATABASE_SCHEMA"
    )]
    pub schema: Option<String>,

    /// Largest number of pooled Postgres connections.
    #[arg(
        id = "database_max_connections",
        long = "database-max-connections",
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub max_connections: u32,
}

/// Migrations embedded at build time and applied at start-up. `sqlx` takes an advisory
/// lock, so several services starting at once apply them exactly once.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl PostgresConfig {
    /// Connection options, pinned to `schema` when one is set.
    pub fn connect_options(&self) -> anyhow::Result<PgConnectOptions> {
        let options = PgConnectOptions::from_str(self.url.expose())
            .with_context(|| format!("parse DATABASE_URL {}", self.url))?;
        Ok(match &self.schema {
            Some(schema) => options.options([("search_path", schema.as_str())]),
            None => options,
        })
    }

    /// Opens a pool. Fails fast (5 s) when Postgres does not answer, naming the URL.
    pub async fn connect(&self) -> anyhow::Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(self.connect_options()?)
            .await
            .with_context(|| format!("connect to Postgres at {}", self.url))
    }

    /// Opens a pool and applies the migrations not yet applied: what a service needs
    /// before it serves.
    pub async fn connect_and_migrate(&self) -> anyhow::Result<PgPool> {
        let pool = self.connect().await?;
        migrate(&pool).await?;
        Ok(pool)
    }
}

/// Applies the migrations that are not yet applied.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("apply Postgres migrations")
}

/// The readiness probe of `pool`: `SELECT 1`.
pub fn probe(
    pool: &PgPool,
) -> impl Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static {
    let pool = pool.clone();
    move || {
        let pool = pool.clone();
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
