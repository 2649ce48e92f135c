//! The promoter API's Postgres queries. A promoter is the affiliate row linked to the
//! caller's user id; everything here is scoped by it, so no promoter reaches another's data.

use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng;
use reftrack_common::input::Paging;
use reftrack_domain::{
    CommissionStatus, InvitationMethod, Money, PaymentMethod, Rate, ReferralStatus,
};
use sqlx::PgPool;

use crate::error::ApiError;
use crate::state::Settings;

#[derive(Debug, sqlx::FromRow)]
pub struct PromoterRow {
    pub id: i64,
    pub user_id: i64,
    pub referral_code: String,
    pub commission_rate: Rate,
    pub min_withdrawal_balance: Money,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub link_clicked: i64,
    pub earned: Money,
    pub reversed: Money,
    pub paid: Money,
    pub pending_payouts: Money,
    pub method: Option<PaymentMethod>,
    pub address: Option<String>,
}

impl PromoterRow {
    /// What can be withdrawn: earned, less clawbacks, payouts made and payouts pending.
    pub fn balance(&self) -> Money {
        self.earned - self.reversed - self.paid - self.pending_payouts
    }
}

const PROMOTER: &str = "
SELECT a.id, a.user_id, a.referral_code, a.commission_rate, a.min_withdrawal_balance, a.created_at, a.updated_at,
       t.link_clicked, t.earned, t.reversed, t.paid, t.pending_payouts, m.method, m.address
FROM affiliates a
JOIN affiliate_totals t ON t.affiliate_id = a.id
LEFT JOIN payout_methods m ON m.affiliate_id = a.id AND m.is_active
WHERE a.user_id = $1 AND a.deleted_at IS NULL";

pub async fn find(pool: &PgPool, user_id: i64) -> sqlx::Result<Option<PromoterRow>> {
    sqlx::query_as(PROMOTER)
        .bind(user_id)
        .fetch_optional(pool)
        .await
}

/// The caller's promoter; the first call creates it, with an unguessable code.
pub async fn get_or_create(
    pool: &PgPool,
    user_id: i64,
    settings: &Settings,
) -> Result<PromoterRow, ApiError> {
    if let Some(row) = find(pool, user_id).await? {
        return Ok(row);
    }
    for _ in 0..5 {
        let inserted = sqlx::query(
            "INSERT INTO affiliates (user_id, referral_code, status, commission_rate, min_withdrawal_balance, approved_at)
             VALUES ($1, $2, 'approved', $3, $4, now())
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(referral_code())
        .bind(settings.promoter_commission_rate)
        .bind(settings.promoter_min_withdrawal)
        .execute(pool)
        .await;
        match inserted {
            Ok(_) => break,
            // Another code already has this token (or a concurrent request raced us):
            // draw again.
            Err(sqlx::Error::Database(e))
                if e.constraint() == Some("affiliates_referral_code_key") => {}
            Err(e) => return Err(e.into()),
        }
    }
    // `None` here means the user's promoter was deleted by an admin.
    find(pool, user_id).await?.ok_or(ApiError::NotFound)
}

/// Ten characters from `A-Z0-9`, from the thread's CSPRNG: about 52 bits.
fn referral_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..10)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Makes `method` the active payout method, with `address`.
pub async fn set_payout_method(
    pool: &PgPool,
    affiliate_id: i64,
    method: PaymentMethod,
    address: &str,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE payout_methods SET is_active = false, updated_at = now() WHERE affiliate_id = $1 AND is_active AND method <> $2")
        .bind(affiliate_id)
        .bind(method)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO payout_methods (affiliate_id, method, address, is_active) VALUES ($1, $2, $3, true)
         ON CONFLICT (affiliate_id, method) DO UPDATE
         SET address = EXCLUDED.address, is_active = true, verified = payout_methods.address = EXCLUDED.address AND payout_methods.verified,
             updated_at = now()",
    )
    .bind(affiliate_id)
    .bind(method)
    .bind(address)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE affiliates SET updated_at = now() WHERE id = $1")
        .bind(affiliate_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

pub async fn set_min_withdrawal(
    pool: &PgPool,
    affiliate_id: i64,
    amount: Money,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE affiliates SET min_withdrawal_balance = $2, updated_at = now() WHERE id = $1",
    )
    .bind(affiliate_id)
    .bind(amount)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Commission earned per UTC day since `from`.
pub async fn earnings_by_day(
    pool: &PgPool,
    affiliate_id: i64,
    from: NaiveDate,
) -> sqlx::Result<Vec<(NaiveDate, Money)>> {
    sqlx::query_as(
        "SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, sum(amount)
         FROM ledger_entries
         WHERE affiliate_id = $1 AND kind = 'earned' AND occurred_at >= $2::date::timestamp AT TIME ZONE 'UTC'
         GROUP BY day",
    )
    .bind(affiliate_id)
    .bind(from)
    .fetch_all(pool)
    .await
}

#[derive(Debug, sqlx::FromRow)]
pub struct ReferralRow {
    pub user_id: i64,
    pub email: Option<String>,
    pub status: ReferralStatus,
    pub invitation_method: InvitationMethod,
    pub commission_rate: Rate,
    pub commission_amount: Money,
    pub commission_status: Option<CommissionStatus>,
}

/// One page of the promoter's referrals, newest first, and how many there are.
pub async fn referrals(
    pool: &PgPool,
    affiliate_id: i64,
    paging: Paging,
) -> sqlx::Result<(i64, Vec<ReferralRow>)> {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM referrals WHERE affiliate_id = $1")
        .bind(affiliate_id)
        .fetch_one(pool)
        .await?;
    let rows = sqlx::query_as(
        "SELECT user_id, email, status, invitation_method, commission_rate, commission_amount, commission_status
         FROM referrals WHERE affiliate_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
    )
    .bind(affiliate_id)
    .bind(paging.size)
    .bind(paging.offset())
    .fetch_all(pool)
    .await?;
    Ok((count, rows))
}

#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct PayoutRow {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub amount: Money,
}

/// Payouts requested or made (not cancelled), newest first.
pub async fn payouts(pool: &PgPool, affiliate_id: i64) -> sqlx::Result<Vec<PayoutRow>> {
    sqlx::query_as(
        "SELECT id, created_at, amount FROM payouts WHERE affiliate_id = $1 AND status <> 'cancelled'
         ORDER BY created_at DESC, id DESC",
    )
    .bind(affiliate_id)
    .fetch_all(pool)
    .await
}

/// Requests a payout of the whole balance. The promoter's totals row is locked for the
/// decision, so concurrent requests are served one after the other and only one can
/// take the balance; a repeated idempotency key finds the payout it made.
pub async fn withdraw(
    pool: &PgPool,
    user_id: i64,
    idempotency_key: Option<&str>,
) -> Result<PayoutRow, ApiError> {
    let mut tx = pool.begin().await?;
    let promoter: PromoterRow = sqlx::query_as(&format!("{PROMOTER} FOR UPDATE OF t"))
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ApiError::NotFound)?;
    if let Some(key) = idempotency_key {
        let earlier: Option<PayoutRow> =
            sqlx::query_as("SELECT id, created_at, amount FROM payouts WHERE affiliate_id = $1 AND idempotency_key = $2")
                .bind(promoter.id)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(earlier) = earlier {
            return Ok(earlier);
        }
    }
    let (Some(method), Some(address)) = (&promoter.method, &promoter.address) else {
        return Err(ApiError::field(
            "non_field_errors",
            "Set a payout method before requesting a withdrawal.",
        ));
    };
    let balance = promoter.balance();
    if !balance.is_positive() || balance < promoter.min_withdrawal_balance {
        return Err(ApiError::field(
            "non_field_errors",
            format!(
                "Your balance of {} is below your minimum withdrawal balance of {}.",
                balance, promoter.min_withdrawal_balance
            ),
        ));
    }
    let payout: PayoutRow = sqlx::query_as(
        "INSERT INTO payouts (affiliate_id, amount, method, address, idempotency_key) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, created_at, amount",
    )
    .bind(promoter.id)
    .bind(balance)
    .bind(method)
    .bind(address)
    .bind(idempotency_key)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("UPDATE affiliate_totals SET pending_payouts = pending_payouts + $2, updated_at = now() WHERE affiliate_id = $1")
        .bind(promoter.id)
        .bind(balance)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    crate::metrics::payout("requested", balance);
    Ok(payout)
}
