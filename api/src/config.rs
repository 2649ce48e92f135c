use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use reftrack_common::config::{
    CommonConfig, ConfigError, Profile, Validate, parse_http_url, parse_secret, require_secret,
};
use reftrack_domain::{Money, Rate};
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
    pub http: reftrack_common::server::HttpConfig,

    #[command(flatten)]
    pub postgres: reftrack_store::postgres::PostgresConfig,

    #[command(flatten)]
    pub clickhouse: reftrack_store::clickhouse::ClickHouseConfig,

    #[command(flatten)]
    pub redis: reftrack_store::redis::RedisConfig,

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

    #[command(flatten)]
    pub promoters: Settings,

    #[command(flatten)]
    pub webhooks: crate::webhooks::WebhookConfig,

    /// Origins whose pages may call the promoter API from a browser (CORS), comma-separated
    /// (https://app.product.example); empty: none.
    #[arg(long = "cors-allowed-origins", env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_allowed_origins: Vec<axum::http::HeaderValue>,

    /// Requests one API key or one promoter may make per minute.
    #[arg(long = "rate-limit-per-minute", env = "API_RATE_LIMIT_PER_MINUTE", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit_per_minute: u32,

    /// Seconds a stats response stays cached in Redis.
    #[arg(long = "stats-cache-secs", env = "STATS_CACHE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub stats_cache_secs: u64,

    /// Tests only: the api's clock runs this many seconds ahead (production refuses it).
    #[arg(
        long = "clock-offset-secs",
        env = "CLOCK_OFFSET_SECS",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub clock_offset_secs: i64,

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

/// An amount of money that is not negative (clap value parser).
fn parse_amount(s: &str) -> Result<Money, String> {
    s.parse::<Money>()
        .and_then(Money::non_negative)
        .map_err(|err| err.to_string())
}

/// A browser origin: scheme, host and port, nothing more.
fn parse_origin(s: &str) -> Result<axum::http::HeaderValue, String> {
    let url = parse_http_url(s.trim())?;
    let origin = url.origin().ascii_serialization();
    if s.trim().trim_end_matches('/') != origin {
        return Err(format!(
            "an origin is scheme://host[:port] only, such as {origin}"
        ));
    }
    axum::http::HeaderValue::from_str(&origin).map_err(|e| e.to_string())
}

/// An ISO 4217 code: three capital letters.
fn parse_currency(s: &str) -> Result<String, String> {
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a currency code (three capital letters, such as USD)"
        ))
    }
}

/// The promoter API's business settings; handlers read them from the state.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Where referral links point (ingest's public address); the link is BASE?ref=CODE.
    #[arg(long = "public-link-base", env = "PUBLIC_LINK_BASE", default_value = "http://127.0.0.1:8080/", value_parser = parse_http_url)]
    pub link_base: Url,

    /// Commission rate, in percent, of a promoter created through the promoter API.
    #[arg(
        long = "promoter-commission-rate",
        env = "PROMOTER_COMMISSION_RATE",
        default_value = "15.00"
    )]
    pub promoter_commission_rate: Rate,

    /// Minimum withdrawal balance of a new promoter.
    #[arg(long = "promoter-min-withdrawal", env = "PROMOTER_MIN_WITHDRAWAL", default_value = "20.00", value_parser = parse_amount)]
    pub promoter_min_withdrawal: Money,

    /// Lowest minimum withdrawal balance a promoter may choose.
    #[arg(long = "min-withdrawal-lower", env = "MIN_WITHDRAWAL_LOWER", default_value = "1.00", value_parser = parse_amount)]
    pub min_withdrawal_lower: Money,

    /// Highest minimum withdrawal balance a promoter may choose.
    #[arg(long = "min-withdrawal-upper", env = "MIN_WITHDRAWAL_UPPER", default_value = "10000.00", value_parser = parse_amount)]
    pub min_withdrawal_upper: Money,

    /// Hours after a payout address changes during which a withdrawal to it is held for
    /// an admin's review.
    #[arg(long = "payout-review-hours", env = "PAYOUT_REVIEW_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u32).range(0..=720))]
    pub payout_review_hours: u32,

    /// The currency commissions are paid in (payout batches name it to the provider).
    #[arg(long = "payout-currency", env = "PAYOUT_CURRENCY", default_value = "USD", value_parser = parse_currency)]
    pub payout_currency: String,

    /// Mark the console's and portal's session cookies Secure (HTTPS only); off only for
    /// plain-HTTP development.
    #[arg(long = "web-cookie-secure", env = "WEB_COOKIE_SECURE", default_value_t = true, action = clap::ArgAction::Set)]
    pub web_cookie_secure: bool,

    /// Referrals per page of GET /referrals/.
    #[arg(long = "promoter-page-size", env = "PROMOTER_PAGE_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub promoter_page_size: u32,
}

impl Settings {
    /// `BASE?ref=CODE`, the link format of the promoter API document.
    pub fn referral_link(&self, code: &str) -> String {
        let mut link = self.link_base.clone();
        link.set_query(Some(&format!("ref={code}")));
        link.into()
    }
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
        if self.clock_offset_secs != 0 && self.common.profile == Profile::Production {
            return Err(ConfigError::new(
                "CLOCK_OFFSET_SECS",
                "is for tests and must not be set when REFTRACK_ENV=production",
            ));
        }
        if self.promoters.min_withdrawal_lower > self.promoters.min_withdrawal_upper {
            return Err(ConfigError::new(
                "MIN_WITHDRAWAL_LOWER",
                "must not exceed MIN_WITHDRAWAL_UPPER",
            ));
        }
        Ok(())
    }
}
