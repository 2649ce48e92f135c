//! Rules about affiliates that more than one service applies.

/// Whether an affiliate may earn: approved, active and not deleted. ingest redirects and
/// attributes only such affiliates' codes; the aggregator credits only them. An SQL
/// condition over the `affiliates` table (unqualified columns).
pub const MAY_EARN: &str = "(status = 'approved' AND active AND deleted_at IS NULL)";

/// SQL: the rate an affiliate (alias `a`) earns now: its own, else its tier's current
/// default.
pub const EFFECTIVE_RATE: &str = "COALESCE(a.commission_rate, (SELECT r.rate FROM tier_rates r
     WHERE r.tier = a.tier AND r.valid_from <= now() ORDER BY r.valid_from DESC LIMIT 1))";
