use std::net::SocketAddr;

use clap::Parser;
use reftrack_common::config::{
    CommonConfig, ConfigError, KafkaConfig, PostgresConfig, Validate, parse_secret, require_secret,
};
use secrecy::SecretString;

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

    /// Key of the visitor hash (IP + user agent, salted daily). Required in production.
    #[arg(long = "visitor-hash-secret", env = "VISITOR_HASH_SECRET", value_parser = parse_secret, hide_env_values = true)]
    pub visitor_hash_secret: Option<SecretString>,
}

/// Development key for the visitor hash; production must set its own.
const DEV_VISITOR_HASH_SECRET: &str = "reftrack-dev-visitor-hash-secret";

impl Config {
    pub fn visitor_hash_secret(&self) -> SecretString {
        require_secret(
            self.common.profile,
            "VISITOR_HASH_SECRET",
            self.visitor_hash_secret.as_ref(),
            DEV_VISITOR_HASH_SECRET,
        )
        .expect("validated at start-up")
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        require_secret(
            self.common.profile,
            "VISITOR_HASH_SECRET",
            self.visitor_hash_secret.as_ref(),
            DEV_VISITOR_HASH_SECRET,
        )?;
        Ok(())
    }
}
