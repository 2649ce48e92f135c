use std::net::SocketAddr;

use clap::Parser;
use reftrack_common::config::{
    ClickHouseConfig, CommonConfig, ConfigError, KafkaConfig, PostgresConfig, RedisConfig, Validate,
};

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
    pub postgres: PostgresConfig,

    #[command(flatten)]
    pub clickhouse: ClickHouseConfig,

    #[command(flatten)]
    pub kafka: KafkaConfig,

    #[command(flatten)]
    pub redis: RedisConfig,

    /// Address to serve health and metrics on.
    #[arg(
        long = "addr",
        env = "AGGREGATOR_ADDR",
        default_value = "127.0.0.1:8090"
    )]
    pub addr: SocketAddr,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
