//! The Postgres pool and the embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use reftrack_common::config::PostgresConfig;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Migrations embedded at build time and applied at start-up. `sqlx` takes an advisory
/// lock, so several services starting at once apply them exactly once.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connection options for `config`, pinned to `config.schema` when one is set.
pub fn connect_options(config: &PostgresConfig) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(config.url.expose())
        .with_context(|| format!("parse DATABASE_URL {}", config.url))?;
    Ok(match &config.schema {
        Some(schema) => options.options([("search_path", schema.as_str())]),
        None => options,
    })
}

/// Opens a pool. Fails fast (5 s) when Postgres does not answer, naming the URL.
pub async fn connect(config: &PostgresConfig) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(connect_options(config)?)
        .await
        .with_context(|| format!("connect to Postgres at {}", config.url))
}

/// Applies the migrations that are not yet applied.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("apply Postgres migrations")
}

/// Readiness probe.
pub async fn ping(pool: &PgPool) -> Result<(), String> {
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
