use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use reftrack_common::config::{
    ClickHouseConfig, CommonConfig, ConfigError, PostgresConfig, RedisConfig, Validate,
    parse_http_url, parse_secret, require_secret,
};
use rust_decimal::Decimal;
use secrecy::SecretString;
use url::Url;

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

    /// Clock skew tolerated on a JWT's exp and iat, in seconds.
    #[arg(long = "jwt-leeway-secs", env = "JWT_LEEWAY_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub jwt_leeway_secs: u64,

    /// Where referral links point (ingest's public address); the link is BASE?ref=CODE.
    #[arg(long = "public-link-base", env = "PUBLIC_LINK_BASE", default_value = "http://127.0.0.1:8080/", value_parser = parse_http_url)]
    pub public_link_base: Url,

    /// Commission rate, in percent, of a promoter created through the promoter API.
    #[arg(
        long = "promoter-commission-rate",
        env = "PROMOTER_COMMISSION_RATE",
        default_value = "15.00"
    )]
    pub promoter_commission_rate: Decimal,

    /// Minimum withdrawal balance of a new promoter.
    #[arg(
        long = "promoter-min-withdrawal",
        env = "PROMOTER_MIN_WITHDRAWAL",
        default_value = "20.00"
    )]
    pub promoter_min_withdrawal: Decimal,

    /// Lowest minimum withdrawal balance a promoter may choose.
    #[arg(
        long = "min-withdrawal-lower",
        env = "MIN_WITHDRAWAL_LOWER",
        default_value = "1.00"
    )]
    pub min_withdrawal_lower: Decimal,

    /// Highest minimum withdrawal balance a promoter may choose.
    #[arg(
        long = "min-withdrawal-upper",
        env = "MIN_WITHDRAWAL_UPPER",
        default_value = "10000.00"
    )]
    pub min_withdrawal_upper: Decimal,

    /// Referrals per page of GET /referrals/.
    #[arg(long = "promoter-page-size", env = "PROMOTER_PAGE_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub promoter_page_size: u32,

    /// Requests one API key or one promoter may make per minute.
    #[arg(long = "rate-limit-per-minute", env = "API_RATE_LIMIT_PER_MINUTE", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit_per_minute: u32,

    /// Seconds a stats response stays cached in Redis.
    #[arg(long = "stats-cache-secs", env = "STATS_CACHE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub stats_cache_secs: u64,

    #[command(subcommand)]
    pub command: Option<crate::cli::Command>,
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

    pub fn stats_cache(&self) -> Duration {
        Duration::from_secs(self.stats_cache_secs)
    }
}

fn money(var: &str, value: Decimal) -> Result<(), ConfigError> {
    if value.is_sign_negative() || value.normalize().scale() > 2 {
        return Err(ConfigError::new(
            var,
            "must be a non-negative amount with at most 2 decimals",
        ));
    }
    Ok(())
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        // Key commands run without the server and need no signing key.
        if !matches!(self.command, Some(crate::cli::Command::Keys(_))) {
            require_secret(
                self.common.profile,
                "JWT_SIGNING_KEY",
                self.jwt_signing_key.as_ref(),
                DEV_JWT_SIGNING_KEY,
            )?;
        }
        money("PROMOTER_MIN_WITHDRAWAL", self.promoter_min_withdrawal)?;
        money("MIN_WITHDRAWAL_LOWER", self.min_withdrawal_lower)?;
        money("MIN_WITHDRAWAL_UPPER", self.min_withdrawal_upper)?;
        if self.min_withdrawal_lower > self.min_withdrawal_upper {
            return Err(ConfigError::new(
                "MIN_WITHDRAWAL_LOWER",
                "must not exceed MIN_WITHDRAWAL_UPPER",
            ));
        }
        if self.promoter_commission_rate.is_sign_negative()
            || self.promoter_commission_rate > Decimal::ONE_HUNDRED
        {
            return Err(ConfigError::new(
                "PROMOTER_COMMISSION_RATE",
                "must be a percentage between 0 and 100",
            ));
        }
        Ok(())
    }
}
