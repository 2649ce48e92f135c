use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use reftrack_common::config::{CommonConfig, ConfigError, Validate};

/// How the partitions of each topic are shared among aggregator instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Assignment {
    /// Instance `i` of `n` takes the partitions `p` with `p % n == i`, itself: no group
    /// coordinator is involved, so a restarted instance drains at once, however many of
    /// its predecessors were killed (tansu 0.6 left the last live group member without
    /// partitions after kill -9 storms).
    Static,
    /// The Kafka consumer group shares them out and moves them when instances come and
    /// go (Apache Kafka).
    Group,
}

/// aggregator's configuration, from the environment (or the matching flags).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "aggregator",
    about = "reftrack aggregator: Kafka to ClickHouse rollups and the Postgres ledger"
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonConfig,

    #[command(flatten)]
    pub http: reftrack_common::server::HttpConfig,

    #[command(flatten)]
    pub postgres: reftrack_store::postgres::PostgresConfig,

    #[command(flatten)]
    pub clickhouse: reftrack_store::clickhouse::ClickHouseConfig,

    #[command(flatten)]
    pub kafka: reftrack_events::kafka::KafkaConfig,

    /// Address to serve health and metrics on.
    #[arg(
        long = "addr",
        env = "AGGREGATOR_ADDR",
        default_value = "127.0.0.1:8090"
    )]
    pub addr: SocketAddr,

    /// How partitions are shared among instances: static (this instance takes its share
    /// itself) or group (the Kafka consumer group hands them out).
    #[arg(long = "assignment", env = "AGGREGATOR_ASSIGNMENT", value_enum, default_value_t = Assignment::Static)]
    pub assignment: Assignment,

    /// With static assignment: which instance this is, from 0.
    #[arg(long = "instance", env = "AGGREGATOR_INSTANCE", default_value_t = 0)]
    pub instance: u32,

    /// With static assignment: how many instances share the partitions.
    #[arg(long = "instances", env = "AGGREGATOR_INSTANCES", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub instances: u32,

    /// Kafka consumer group (suffixed per topic). Progress lives in the sinks, so renaming it replays nothing.
    #[arg(
        long = "group",
        env = "AGGREGATOR_GROUP",
        default_value = "reftrack-aggregator"
    )]
    pub group: String,

    /// Most events in one batch.
    #[arg(long = "batch-max-events", env = "BATCH_MAX_EVENTS", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch_max_events: u32,

    /// Longest wait, in milliseconds, for a batch to fill before it is written anyway.
    #[arg(long = "batch-max-wait-ms", env = "BATCH_MAX_WAIT_MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub batch_max_wait_ms: u64,

    /// A click by the same visitor on the same code within this many seconds of the
    /// first one is a duplicate.
    #[arg(long = "dedupe-window-secs", env = "DEDUPE_WINDOW_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub dedupe_window_secs: u64,

    /// Clicks one visitor may make in a minute (across codes) before the rest are rate-limited.
    #[arg(long = "rate-limit-per-minute", env = "RATE_LIMIT_PER_MINUTE", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate_limit_per_minute: u32,

    /// Clicks remembered per partition to drop copies (the same event id written twice by
    /// a producer retry or re-send); about 64 bytes each.
    #[arg(long = "click-copy-window", env = "CLICK_COPY_WINDOW", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub click_copy_window: u32,

    /// Consumer group session timeout: how soon a crashed instance's partitions move on.
    #[arg(long = "session-timeout-ms", env = "KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1_000..=300_000))]
    pub session_timeout_ms: u32,

    /// Days raw clicks are kept in ClickHouse (the rollups stay); unset: kept for good.
    /// At least 7, beyond the windows the click verdicts are rebuilt from.
    #[arg(long = "clicks-retention-days", env = "CLICKS_RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(7..=3650))]
    pub clicks_retention_days: Option<u32>,

    /// An operator command instead of running the service.
    #[command(subcommand)]
    pub command: Option<crate::cli::Command>,
}

impl Config {
    pub fn batch_max_wait(&self) -> Duration {
        Duration::from_millis(self.batch_max_wait_ms)
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        if self.group.is_empty() {
            return Err(ConfigError::new("AGGREGATOR_GROUP", "must not be empty"));
        }
        if self.assignment == Assignment::Static && self.instance >= self.instances {
            return Err(ConfigError::new(
                "AGGREGATOR_INSTANCE",
                format!(
                    "must be below AGGREGATOR_INSTANCES ({}): instances are numbered from 0",
                    self.instances
                ),
            ));
        }
        Ok(())
    }
}
