use std::net::SocketAddr;

use clap::Parser;
use reftrack_common::config::{
    ClickHouseConfig, CommonConfig, ConfigError, PostgresConfig, RedisConfig, Validate,
    parse_secret, require_secret,
};
use secrecy::SecretString;

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

    /// HS256 key of the promoter JWTs (the Django product's SIMPLE_JWT SIGNING_KEY).
    /// Required in production.
    #[arg(long = "jwt-signing-key", env = "JWT_SIGNING_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub jwt_signing_key: Option<SecretString>,
}

/// Development JWT key; production must set its own.
pub const DEV_JWT_SIGNING_KEY: &str = "reftrack-dev-jwt-signing-key";

impl Config {
    pub fn jwt_signing_key(&self) -> SecretString {
        require_secret(
            self.common.profile,
            "JWT_SIGNING_KEY",
            self.jwt_signing_key.as_ref(),
            DEV_JWT_SIGNING_KEY,
        )
        .expect("validated at start-up")
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        require_secret(
            self.common.profile,
            "JWT_SIGNING_KEY",
            self.jwt_signing_key.as_ref(),
            DEV_JWT_SIGNING_KEY,
        )?;
        Ok(())
    }
}
