use std::net::SocketAddr;

use clap::Parser;
use reftrack_common::config::{
    ClickHouseConfig, CommonConfig, ConfigError, PostgresConfig, RedisConfig, Validate,
};

/// api's configuration, from the environment (or the matching flags).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "api",
    about = "reftrack api: the promoter API and the admin affiliate API"
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonConfig,

    #[command(flatten)]
    pub postgres: PostgresConfig,

    #[command(flatten)]
    pub clickhouse: ClickHouseConfig,

    #[command(flatten)]
    pub redis: RedisConfig,

    /// Address to serve the APIs, health and metrics on.
    #[arg(long = "addr", env = "API_ADDR", default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
