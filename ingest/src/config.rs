use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::http::HeaderName;
use clap::Parser;
use reftrack_common::config::{
    CommonConfig, ConfigError, Validate, parse_http_url, parse_secret, require_secret,
};
use secrecy::SecretString;
use url::Url;

/// Which click keeps the attribution when a visitor follows several referral links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttributionPolicy {
    /// The latest click wins: every click sets the cookie.
    LastClick,
    /// The first click wins: a visitor who already carries the cookie keeps it.
    FirstClick,
}

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
    pub http: reftrack_common::server::HttpConfig,

    #[command(flatten)]
    pub postgres: reftrack_store::postgres::PostgresConfig,

    #[command(flatten)]
    pub kafka: reftrack_events::kafka::KafkaConfig,

    /// Address to serve redirects, conversions, health and metrics on.
    #[arg(long = "addr", env = "INGEST_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Key of the visitor hash (IP + user agent, salted daily). Required in production.
    #[arg(long = "visitor-hash-secret", env = "VISITOR_HASH_SECRET", value_parser = parse_secret, hide_env_values = true)]
    pub visitor_hash_secret: Option<SecretString>,

    /// Where a referral link lands, unless the affiliate has its own landing URL.
    #[arg(long = "landing-url", env = "LANDING_URL", default_value = "http://localhost:8081/", value_parser = parse_http_url)]
    pub landing_url: Url,

    /// Hosts a `to=` deep link may point at, comma separated (the landing hosts always may).
    #[arg(
        long = "redirect-allowed-hosts",
        env = "REDIRECT_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub redirect_allowed_hosts: Vec<String>,

    /// How long a click attributes later conversions (the cookie's Max-Age), in days.
    #[arg(long = "attribution-window-days", env = "ATTRIBUTION_WINDOW_DAYS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=400))]
    pub attribution_window_days: u32,

    /// last-click or first-click.
    #[arg(
        long = "attribution-policy",
        env = "ATTRIBUTION_POLICY",
        value_enum,
        default_value = "last-click"
    )]
    pub attribution_policy: AttributionPolicy,

    /// Name of the attribution cookie (value: `CODE.CLICK_ID`).
    #[arg(long = "cookie-name", env = "COOKIE_NAME", default_value = "rt_ref")]
    pub cookie_name: String,

    /// Query parameter the redirect adds to the landing URL with the click id
    /// (`CODE.CLICK_ID`, as the cookie holds it), for products on another domain that
    /// cannot read the cookie; empty: not added.
    #[arg(
        long = "click-id-param",
        env = "CLICK_ID_PARAM",
        default_value = "rt_click"
    )]
    pub click_id_param: String,

    /// Domain attribute of the cookie, so the product's other hosts can read it.
    #[arg(long = "cookie-domain", env = "COOKIE_DOMAIN")]
    pub cookie_domain: Option<String>,

    /// Mark the cookie Secure (HTTPS only).
    #[arg(long = "cookie-secure", env = "COOKIE_SECURE", default_value_t = true, action = clap::ArgAction::Set)]
    pub cookie_secure: bool,

    /// Load balancers and proxies whose forwarding header is believed: comma-separated
    /// networks (10.0.0.0/8) or addresses. Empty: the connection's address is the client's.
    #[arg(long = "trusted-proxies", env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_network)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// The forwarding header trusted proxies set: x-forwarded-for, or forwarded (RFC 7239).
    /// The client is its rightmost address that is not a trusted proxy.
    #[arg(long = "client-ip-header", env = "CLIENT_IP_HEADER", default_value = "x-forwarded-for", value_parser = parse_header_name)]
    pub client_ip_header: HeaderName,

    /// Header set by a trusted proxy with the visitor's ISO country code.
    #[arg(
        long = "country-header",
        env = "COUNTRY_HEADER",
        default_value = "cf-ipcountry",
        value_parser = parse_header_name
    )]
    pub country_header: HeaderName,

    /// Seconds between full reloads of the referral codes and API keys (changes also arrive at once by NOTIFY).
    #[arg(long = "directory-refresh-secs", env = "DIRECTORY_REFRESH_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub directory_refresh_secs: u64,

    /// Clicks the producer queue may hold before new ones are spilled to disk.
    #[arg(long = "click-queue-max-messages", env = "CLICK_QUEUE_MAX_MESSAGES", default_value_t = 200_000, value_parser = clap::value_parser!(u32).range(1000..=10_000_000))]
    pub click_queue_max_messages: u32,

    /// Kilobytes the producer queue may hold before new clicks are spilled to disk.
    #[arg(long = "click-queue-max-kbytes", env = "CLICK_QUEUE_MAX_KBYTES", default_value_t = 32_768, value_parser = clap::value_parser!(u32).range(1024..=2_097_151))]
    pub click_queue_max_kbytes: u32,

    /// A click the broker has not acknowledged after this many milliseconds is spilled to disk.
    #[arg(long = "spill-after-ms", env = "SPILL_AFTER_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(500..=600_000))]
    pub spill_after_ms: u64,

    /// Folder of the spill files (clicks waiting for the broker).
    #[arg(long = "spill-dir", env = "SPILL_DIR", default_value = "spill")]
    pub spill_dir: PathBuf,

    /// Cap of the spill files; beyond it clicks are dropped and counted.
    #[arg(long = "spill-max-bytes", env = "SPILL_MAX_BYTES", default_value_t = 1 << 30)]
    pub spill_max_bytes: u64,

    /// Free space the spill leaves on its disk; below it clicks are dropped and counted
    /// rather than fill the disk.
    #[arg(long = "spill-min-free-bytes", env = "SPILL_MIN_FREE_BYTES", default_value_t = 256 << 20)]
    pub spill_min_free_bytes: u64,

    /// How long a conversion may wait for the broker's acknowledgement before a 503.
    #[arg(long = "conversion-ack-timeout-ms", env = "CONVERSION_ACK_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub conversion_ack_timeout_ms: u64,

    /// The one currency purchases and refunds are accepted in (ISO 4217).
    #[arg(
        long = "settlement-currency",
        env = "SETTLEMENT_CURRENCY",
        default_value = "USD"
    )]
    pub settlement_currency: String,
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

    pub fn spill_after(&self) -> Duration {
        Duration::from_millis(self.spill_after_ms)
    }

    pub fn conversion_ack_timeout(&self) -> Duration {
        Duration::from_millis(self.conversion_ack_timeout_ms)
    }

    pub fn directory_refresh(&self) -> Duration {
        Duration::from_secs(self.directory_refresh_secs)
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        require_secret(
            self.common.profile,
            "VISITOR_HASH_SECRET",
            self.visitor_hash_secret.as_ref(),
            DEV_VISITOR_HASH_SECRET,
        )?;
        if self.settlement_currency.len() != 3
            || !self
                .settlement_currency
                .bytes()
                .all(|b| b.is_ascii_uppercase())
        {
            return Err(ConfigError::new(
                "SETTLEMENT_CURRENCY",
                "must be a three-letter ISO 4217 code such as USD",
            ));
        }
        if self.cookie_name.is_empty() || !is_token(&self.cookie_name) {
            return Err(ConfigError::new(
                "COOKIE_NAME",
                "must be letters, digits, '_' or '-'",
            ));
        }
        if !is_token(&self.click_id_param) {
            return Err(ConfigError::new(
                "CLICK_ID_PARAM",
                "must be letters, digits, '_' or '-' (empty: no parameter)",
            ));
        }
        for host in self.redirect_allowed_hosts.iter().filter(|h| !h.is_empty()) {
            if url::Host::parse(host).is_err() {
                return Err(ConfigError::new(
                    "REDIRECT_ALLOWED_HOSTS",
                    format!("'{host}' is not a host name"),
                ));
            }
        }
        Ok(())
    }
}

/// Letters, digits, '_' and '-' only: safe as a cookie name and in a URL unescaped.
fn is_token(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A header name, lower-cased (clap value parser).
/// A network in CIDR notation, or one address (a /32 or /128).
fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| "not a network (10.0.0.0/8) or an address".to_string())
}

fn parse_header_name(s: &str) -> Result<HeaderName, String> {
    HeaderName::try_from(s.trim().to_ascii_lowercase()).map_err(|_| "not a header name".to_string())
}
