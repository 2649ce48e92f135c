use std::net::SocketAddr;

use clap::Parser;
use reftrack_common::config::{CommonConfig, ConfigError, KafkaConfig, PostgresConfig, Validate};

/// ingest's configuration, from the environment (or the matching flags).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ingest",
    about = "reftrack ingest: referral-link redirects and conversion intake"
)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonConfig,

    #[command(flatten)]
    pub postgres: PostgresConfig,

    #[command(flatten)]
    pub kafka: KafkaConfig,

    /// Address to serve redirects, conversions, health and metrics on.
    #[arg(long = "addr", env = "INGEST_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
