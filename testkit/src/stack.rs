use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use reftrack_common::config::{
    ClickHouseCompression, ClickHouseConfig, CommonConfig, KafkaConfig, PostgresConfig, Profile,
    RedisConfig, SecretUrl,
};
use reftrack_common::telemetry::LogFormat;
use sqlx::PgPool;

/// One test's isolated slice of the real stack. Names are unique per test (`t_<hex>`),
/// so nothing a test writes is seen by another.
pub struct TestStack {
    pub id: String,
    pub postgres: PostgresConfig,
    pub clickhouse: ClickHouseConfig,
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub pool: PgPool,
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

impl TestStack {
    /// Creates the schema (migrated), the ClickHouse database (with its tables), and the
    /// topics (3 partitions each).
    pub async fn new() -> anyhow::Result<Self> {
        crate::init_logging();
        let id = format!("t_{}", uuid::Uuid::new_v4().simple());
        let postgres = PostgresConfig {
            url: env_or(
                "TEST_DATABASE_URL",
                "postgres://reftrack:reftrack@127.0.0.1:5432/reftrack_test",
            )
            .parse::<SecretUrl>()
            .map_err(anyhow::Error::msg)
            .context("TEST_DATABASE_URL")?,
            schema: Some(id.clone()),
            max_connections: 20,
        };
        let clickhouse = ClickHouseConfig {
            url: env_or("CLICKHOUSE_URL", "http://127.0.0.1:8123")
                .parse()
                .context("CLICKHOUSE_URL")?,
            database: id.clone(),
            user: env_or("CLICKHOUSE_USER", "default"),
            password: None,
            compression: ClickHouseCompression::None,
        };
        let kafka = KafkaConfig {
            brokers: env_or("KAFKA_BROKERS", "127.0.0.1:9092"),
            clicks_topic: format!("{id}_clicks"),
            conversions_topic: format!("{id}_conversions"),
            partitions: 3,
            compression: "lz4".to_string(),
            replication_factor: 1,
            idempotence: env_or("KAFKA_IDEMPOTENCE", "true") == "true",
        };
        let redis = RedisConfig {
            url: env_or("REDIS_URL", "redis://127.0.0.1:6379/0")
                .parse::<SecretUrl>()
                .map_err(anyhow::Error::msg)
                .context("REDIS_URL")?,
            key_prefix: format!("{id}:"),
        };

        let pool = create_schema(&postgres, &id).await?;
        reftrack_store::clickhouse::ensure_schema(&clickhouse).await?;
        reftrack_events::kafka::ensure_topics(
            &kafka,
            &[&kafka.clicks_topic, &kafka.conversions_topic],
        )
        .await?;
        Ok(Self {
            id,
            postgres,
            clickhouse,
            kafka,
            redis,
            pool,
        })
    }

    /// The common settings of a service under test.
    pub fn common(&self) -> CommonConfig {
        CommonConfig {
            profile: Profile::Test,
            log_format: LogFormat::Text,
        }
    }

    /// The environment a service binary needs to run against this stack (stores, topics,
    /// key prefix), as the variables the services read.
    pub fn service_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("REFTRACK_ENV", "test".into()),
            ("DATABASE_URL", self.postgres.url.expose().to_string()),
            ("DATABASE_SCHEMA", self.id.clone()),
            ("CLICKHOUSE_URL", self.clickhouse.url.as_str().to_string()),
            ("CLICKHOUSE_DATABASE", self.clickhouse.database.clone()),
            ("KAFKA_BROKERS", self.kafka.brokers.clone()),
            ("KAFKA_CLICKS_TOPIC", self.kafka.clicks_topic.clone()),
            (
                "KAFKA_CONVERSIONS_TOPIC",
                self.kafka.conversions_topic.clone(),
            ),
            ("KAFKA_TOPIC_PARTITIONS", self.kafka.partitions.to_string()),
            ("KAFKA_IDEMPOTENCE", self.kafka.idempotence.to_string()),
            ("REDIS_URL", self.redis.url.expose().to_string()),
            ("REDIS_KEY_PREFIX", self.redis.key_prefix.clone()),
        ]
    }

    pub fn clickhouse_client(&self) -> clickhouse::Client {
        reftrack_store::clickhouse::client(&self.clickhouse)
    }

    pub async fn redis_connection(&self) -> anyhow::Result<redis::aio::ConnectionManager> {
        reftrack_store::redis::connect(&self.redis).await
    }

    /// A plain rdkafka client configuration for this stack's broker.
    pub fn kafka_client_config(&self) -> ClientConfig {
        reftrack_events::kafka::client_config(&self.kafka.brokers)
    }
}

/// Creates the test's schema and applies the migrations inside it.
async fn create_schema(postgres: &PostgresConfig, schema: &str) -> anyhow::Result<PgPool> {
    let admin = reftrack_store::postgres::connect(&PostgresConfig {
        schema: None,
        max_connections: 1,
        ..postgres.clone()
    })
    .await?;
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&admin)
        .await
        .context("create test schema")?;
    admin.close().await;
    let pool = tokio::time::timeout(
        Duration::from_secs(30),
        reftrack_store::postgres::connect(postgres),
    )
    .await
    .context("connect to the test schema")??;
    reftrack_store::postgres::migrate(&pool).await?;
    Ok(pool)
}
