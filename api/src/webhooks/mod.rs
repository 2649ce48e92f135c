//! Webhooks: the admin API registers endpoints (`crate::admin::webhooks`); Postgres triggers write
//! each event to an outbox in the transaction of the change it reports
//! (`store/migrations/0008_webhooks.sql`); the [`sender`] fans events out to the endpoints
//! that want them and delivers each at least once, signed as Standard Webhooks specify,
//! retrying with backoff; [`target`] keeps deliveries off private networks.

pub mod sender;
pub mod target;

use std::time::Duration;

/// How webhooks are sent.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookConfig {
    /// Run the webhook sender in this api instance (any number may: deliveries are claimed
    /// with row locks).
    #[arg(long = "webhooks-send", env = "WEBHOOKS_SEND", default_value_t = true, action = clap::ArgAction::Set)]
    pub send: bool,

    /// Seconds a receiver has to answer a delivery.
    #[arg(long = "webhook-timeout-secs", env = "WEBHOOK_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub timeout_secs: u64,

    /// First retry after about this many milliseconds, doubling (with jitter) up to an hour.
    #[arg(long = "webhook-retry-base-ms", env = "WEBHOOK_RETRY_BASE_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub retry_base_ms: u64,

    /// Hours a delivery is retried before it is given up as failed.
    #[arg(long = "webhook-retry-hours", env = "WEBHOOK_RETRY_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=168))]
    pub retry_hours: u64,

    /// Failed attempts in a row after which an endpoint is disabled.
    #[arg(long = "webhook-disable-after-failures", env = "WEBHOOK_DISABLE_AFTER_FAILURES", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub disable_after_failures: u32,

    /// Allow endpoints on private, loopback and link-local addresses (off: such URLs are
    /// refused, also when a public name resolves to one).
    #[arg(long = "webhook-allow-private", env = "WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_private: bool,
}

impl WebhookConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}
