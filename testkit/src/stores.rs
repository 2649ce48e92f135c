//! The four stores' settings of one run (a test, a benchmark), inside names of its own:
//! a Postgres schema, a ClickHouse database, topic names and a Redis key prefix, so that
//! runs share the servers without seeing each other's data.

use std::time::Duration;

use anyhow::Context;
use reftrack_events::kafka::KafkaConfig;
use reftrack_store::clickhouse::ClickHouseConfig;
use reftrack_store::postgres::PostgresConfig;
use reftrack_store::redis::RedisConfig;
use sqlx::PgPool;

#[derive(Debug, Clone, clap::Args)]
pub struct Stores {
    #[command(flatten)]
    pub postgres: PostgresConfig,
    #[command(flatten)]
    pub clickhouse: ClickHouseConfig,
    #[command(flatten)]
    pub kafka: KafkaConfig,
    #[command(flatten)]
    pub redis: RedisConfig,
}

impl Stores {
    /// These settings, with every name inside `name`.
    pub fn within(mut self, name: &str) -> Self {
        self.postgres.schema = Some(name.to_string());
        self.clickhouse.database = name.to_string();
        self.kafka.clicks_topic = format!("{name}_clicks");
        self.kafka.conversions_topic = format!("{name}_conversions");
        self.redis.key_prefix = format!("{name}:");
        self
    }

    /// Creates the Postgres schema (migrated) and gives a pool inside it.
    pub async fn create_schema(&self) -> anyhow::Result<PgPool> {
        let schema = self
            .postgres
            .schema
            .as_deref()
            .context("a schema of its own")?;
        let admin = PostgresConfig {
            schema: None,
            max_connections: 1,
            ..self.postgres.clone()
        }
        .connect()
        .await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .execute(&admin)
            .await
            .with_context(|| format!("create schema {schema}"))?;
        admin.close().await;
        let pool = tokio::time::timeout(Duration::from_secs(30), self.postgres.connect())
            .await
            .with_context(|| format!("connect to schema {schema}"))??;
        reftrack_store::postgres::migrate(&pool).await?;
        Ok(pool)
    }

    /// What a service started for this run must read to use its names (on top of the
    /// servers' addresses, which it inherits).
    pub fn names_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "DATABASE_SCHEMA",
                self.postgres.schema.clone().unwrap_or_default(),
            ),
            ("CLICKHOUSE_DATABASE", self.clickhouse.database.clone()),
            ("KAFKA_CLICKS_TOPIC", self.kafka.clicks_topic.clone()),
            (
                "KAFKA_CONVERSIONS_TOPIC",
                self.kafka.conversions_topic.clone(),
            ),
            ("REDIS_KEY_PREFIX", self.redis.key_prefix.clone()),
        ]
    }

    /// Everything a service needs to run against these stores.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("DATABASE_URL", self.postgres.url.expose().to_string()),
            ("CLICKHOUSE_URL", self.clickhouse.url.as_str().to_string()),
            ("KAFKA_BROKERS", self.kafka.brokers.clone()),
            ("KAFKA_TOPIC_PARTITIONS", self.kafka.partitions.to_string()),
            ("KAFKA_IDEMPOTENCE", self.kafka.idempotence.to_string()),
            ("REDIS_URL", self.redis.url.expose().to_string()),
        ];
        env.extend(self.names_env());
        env
    }
}
