//! Rows tests start from, written once.

use sqlx::PgPool;

/// An approved, active affiliate with `code` and `rate` percent (minimum withdrawal 20);
/// returns its id.
pub async fn affiliate(pool: &PgPool, code: &str, rate: &str) -> i64 {
    affiliate_with_status(pool, code, rate, "approved").await
}

/// An affiliate with `code`, `rate` percent and `status`; returns its id.
pub async fn affiliate_with_status(pool: &PgPool, code: &str, rate: &str, status: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO affiliates (referral_code, status, commission_rate, min_withdrawal_balance)
         VALUES ($1, $2, $3::numeric, 20) RETURNING id",
    )
    .bind(code)
    .bind(status)
    .bind(rate)
    .fetch_one(pool)
    .await
    .expect("insert a test affiliate")
}
