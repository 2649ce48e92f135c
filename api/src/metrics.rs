//! Every metric api exports besides the HTTP ones (`reftrack_common::telemetry`), named
//! and described in one place. Labels never carry a referral code, a user or an
//! affiliate id.

use reftrack_domain::Money;

pub const PAYOUTS: &str = "api_payouts_total";
pub const PAYOUT_AMOUNT: &str = "api_payout_amount_cents_total";
pub const STATS_CACHE: &str = "api_stats_cache_total";
pub const WEBHOOK_ATTEMPTS: &str = "api_webhook_attempts_total";
pub const WEBHOOK_ENDPOINTS_DISABLED: &str = "api_webhook_endpoints_disabled_total";

/// What happens to a payout: a promoter requests it, staff pay or cancel it.
pub const PAYOUT_EVENTS: [&str; 4] = ["requested", "paid", "cancelled", "failed"];

/// Describes every metric and starts the counters at zero, so dashboards and alerts see
/// 0 rather than nothing before the first event.
pub fn register() {
    use metrics::{counter, describe_counter};
    describe_counter!(PAYOUTS, "Payouts, by event (requested, paid, cancelled).");
    describe_counter!(
        PAYOUT_AMOUNT,
        "Payout amounts, in cents of the settlement currency, by event."
    );
    describe_counter!(
        STATS_CACHE,
        "Stats answers, by result: hit (from the Redis cache) or miss (computed)."
    );
    for event in PAYOUT_EVENTS {
        counter!(PAYOUTS, "event" => event).increment(0);
        counter!(PAYOUT_AMOUNT, "event" => event).increment(0);
    }
    for result in ["hit", "miss"] {
        counter!(STATS_CACHE, "result" => result).increment(0);
    }
    describe_counter!(
        WEBHOOK_ATTEMPTS,
        "Webhook delivery attempts, by outcome: delivered, failed (retried later), given_up (retries ran out)."
    );
    describe_counter!(
        WEBHOOK_ENDPOINTS_DISABLED,
        "Webhook endpoints disabled after failing repeatedly."
    );
    for outcome in ["delivered", "failed", "given_up"] {
        counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(0);
    }
    counter!(WEBHOOK_ENDPOINTS_DISABLED).increment(0);
}

/// One payout `event` (one of [`PAYOUT_EVENTS`]) of `amount`.
pub fn payout(event: &'static str, amount: Money) {
    metrics::counter!(PAYOUTS, "event" => event).increment(1);
    let cents = amount.cents().max(0) as u64;
    metrics::counter!(PAYOUT_AMOUNT, "event" => event).increment(cents);
}

pub fn stats_cache(hit: bool) {
    metrics::counter!(STATS_CACHE, "result" => if hit { "hit" } else { "miss" }).increment(1);
}

/// One webhook delivery attempt that came to `outcome`.
pub fn webhook_attempt(outcome: &'static str) {
    metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
}

pub fn webhook_endpoint_disabled() {
    metrics::counter!(WEBHOOK_ENDPOINTS_DISABLED).increment(1);
}
