use anyhow::Context;
use rdkafka::ClientConfig;
use reftrack_common::config::{CommonConfig, Profile, SecretUrl};
use reftrack_common::telemetry::LogFormat;
use reftrack_events::kafka::KafkaConfig;
use reftrack_store::clickhouse::{ClickHouseCompression, ClickHouseConfig};
use reftrack_store::postgres::PostgresConfig;
use reftrack_store::redis::RedisConfig;
use sqlx::PgPool;

use crate::stores::Stores;

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
            schema: None,
            max_connections: 20,
        };
        let clickhouse = ClickHouseConfig {
            url: env_or("CLICKHOUSE_URL", "http://127.0.0.1:8123")
                .parse()
                .context("CLICKHOUSE_URL")?,
            database: String::new(),
            user: env_or("CLICKHOUSE_USER", "default"),
            password: None,
            compression: ClickHouseCompression::None,
        };
        let kafka = KafkaConfig {
            brokers: env_or("KAFKA_BROKERS", "127.0.0.1:9092"),
            clicks_topic: String::new(),
            conversions_topic: String::new(),
            partitions: 3,
            compression: "lz4".to_string(),
            replication_factor: 1,
            idempotence: env_or("KAFKA_IDEMPOTENCE", "true") == "true",
            security_protocol: "plaintext".to_string(),
            sasl_mechanism: "SCRAM-SHA-512".to_string(),
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
        };
        let redis = RedisConfig {
            url: env_or("REDIS_URL", "redis://127.0.0.1:6379/0")
                .parse::<SecretUrl>()
                .map_err(anyhow::Error::msg)
                .context("REDIS_URL")?,
            key_prefix: String::new(),
            ca_cert: None,
        };

        let stores = Stores {
            postgres,
            clickhouse,
            kafka,
            redis,
        }
        .within(&id);
        let pool = stores.create_schema().await?;
        let Stores {
            postgres,
            clickhouse,
            kafka,
            redis,
        } = stores;
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
        let stores = Stores {
            postgres: self.postgres.clone(),
            clickhouse: self.clickhouse.clone(),
            kafka: self.kafka.clone(),
            redis: self.redis.clone(),
        };
        let mut env = vec![("REFTRACK_ENV", "test".to_string())];
        env.extend(stores.env());
        env
    }

    pub fn clickhouse_client(&self) -> clickhouse::Client {
        self.clickhouse.client()
    }

    pub async fn redis_connection(&self) -> anyhow::Result<redis::aio::ConnectionManager> {
        self.redis.connect().await
    }

    /// A plain rdkafka client configuration for this stack's broker.
    pub fn kafka_client_config(&self) -> ClientConfig {
        reftrack_events::kafka::client_config(&self.kafka.brokers)
    }
}
