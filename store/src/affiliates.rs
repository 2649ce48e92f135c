//! Rules about affiliates that more than one service applies.

/// Whether an affiliate may earn: approved, active and not deleted. ingest redirects and
/// attributes only such affiliates' codes; the aggregator credits only them. An SQL
/// condition over the `affiliates` table (unqualified columns).
pub const MAY_EARN: &str = "(status = 'approved' AND active AND deleted_at IS NULL)";
