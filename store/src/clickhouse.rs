//! The ClickHouse client and schema.

use anyhow::Context;
use clickhouse::{Client, Compression};
use reftrack_common::config::{ClickHouseCompression, ClickHouseConfig, reveal};

const SCHEMA: &str = include_str!("../clickhouse/schema.sql");

/// A client bound to the configured database. Row validation is off because it needs
/// `RowBinaryWithNamesAndTypes`, which Debian's ClickHouse 18.16 lacks.
pub fn client(config: &ClickHouseConfig) -> Client {
    server_client(config).with_database(&config.database)
}

/// A client with no database selected (for `CREATE DATABASE`).
fn server_client(config: &ClickHouseConfig) -> Client {
    let mut client = Client::default()
        .with_url(config.url.as_str())
        .with_user(&config.user)
        .with_validation(false)
        .with_compression(match config.compression {
            ClickHouseCompression::None => Compression::None,
            ClickHouseCompression::Lz4 => Compression::Lz4,
        });
    if let Some(password) = &config.password {
        client = client.with_password(reveal(password));
    }
    client
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
    let client = server_client(config);
    for statement in schema_statements(&config.database) {
        client
            .query(&statement)
            .execute()
            .await
            .with_context(|| format!("apply ClickHouse schema at {}: {statement}", config.url))?;
    }
    Ok(())
}

/// Readiness probe.
pub async fn ping(client: &Client) -> Result<(), String> {
    client
        .query("SELECT 1")
        .fetch_one::<u8>()
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
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
