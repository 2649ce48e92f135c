//! The ClickHouse client and schema.

use anyhow::Context;
use clickhouse::{Client, Compression};
use futures::future::BoxFuture;
use reftrack_common::config::{parse_secret, reveal};
use secrecy::SecretString;
use url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClickHouseCompression {
    None,
    Lz4,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ClickHouseConfig {
    /// ClickHouse HTTP endpoint.
    #[arg(id = "clickhouse_url", long = "clickhouse-url", env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123", value_parser = reftrack_common::config::parse_http_url)]
    pub url: Url,

    /// ClickHouse database holding reftrack's tables.
    #[arg(
        id = "clickhouse_database",
        long = "clickhouse-database",
        env = "CLICKHOUSE_DATABASE",
        default_value = "reftrack"
    )]
    pub database: String,

    /// ClickHouse user.
    #[arg(
        id = "clickhouse_user",
        long = "clickhouse-user",
        env = "CLICKHOUSE_USER",
        default_value = "default"
    )]
    pub user: String,

    /// ClickHouse password (empty for the local stack).
    #[arg(id = "clickhouse_password", long = "clickhouse-password", env = "CLICKHOUSE_PASSWORD", value_parser = parse_secret)]
    pub password: Option<SecretString>,

    /// HTTP body compression: none (Debian's 18.16 rejects the crate's LZ4) or lz4.
    #[arg(
        id = "clickhouse_compression",
        long = "clickhouse-compression",
        env = "CLICKHOUSE_COMPRESSION",
        value_enum,
        default_value = "none"
    )]
    pub compression: ClickHouseCompression,
}

const SCHEMA: &str = include_str!("../clickhouse/schema.sql");

impl ClickHouseConfig {
    /// A client of the configured database.
    pub fn client(&self) -> Client {
        self.server_client().with_database(&self.database)
    }

    /// Applies the schema (idempotently), then gives a client of the database.
    pub async fn connect_and_migrate(&self) -> anyhow::Result<Client> {
        ensure_schema(self).await?;
        Ok(self.client())
    }

    /// A client with no database selected (for `CREATE DATABASE`).
    fn server_client(&self) -> Client {
        let mut client = Client::default()
            .with_url(self.url.as_str())
            .with_user(&self.user)
            .with_validation(false)
            .with_compression(match self.compression {
                ClickHouseCompression::None => Compression::None,
                ClickHouseCompression::Lz4 => Compression::Lz4,
            });
        if let Some(password) = &self.password {
            client = client.with_password(reveal(password));
        }
        client
    }
}

/// The schema's statements for `database`, in order.
pub fn schema_statements(database: &str) -> Vec<String> {
    let without_comments: String = SCHEMA
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("{db}", database))
        .collect()
}

/// Creates the database, tables and views that are missing. Idempotent.
pub async fn ensure_schema(config: &ClickHouseConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.database.is_empty()
            && config
                .database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "CLICKHOUSE_DATABASE must be letters, digits and underscores, got {:?}",
        config.database
    );
    let client = config.server_client();
    for statement in schema_statements(&config.database) {
        client
            .query(&statement)
            .execute()
            .await
            .with_context(|| format!("apply ClickHouse schema at {}: {statement}", config.url))?;
    }
    Ok(())
}

/// The readiness probe of `client`: `SELECT 1`.
pub fn probe(
    client: &Client,
) -> impl Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static {
    let client = client.clone();
    move || {
        let client = client.clone();
        Box::pin(async move {
            client
                .query("SELECT 1")
                .fetch_one::<u8>()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_names_the_configured_database() {
        let statements = schema_statements("rt_x");
        assert!(statements.len() >= 10, "{statements:#?}");
        for s in &statements {
            assert!(!s.contains("{db}"), "{s}");
            assert!(s.contains("rt_x"), "{s}");
        }
    }
}
