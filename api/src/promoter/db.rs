//! The promoter API's Postgres queries. A promoter is the affiliate row linked to the
//! caller's user id; everything here is scoped by it, so no promoter reaches another's data.

use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng;
use reftrack_common::input::Paging;
use reftrack_domain::{
    AffiliateStatus, CommissionStage, CommissionStatus, InvitationMethod, Money, PaymentMethod,
    PayoutStatus, Rate, ReferralStatus,
};
use reftrack_store::affiliates::EFFECTIVE_RATE;
use reftrack_store::ledger::{Balances, held_sql};
use sqlx::PgPool;

use crate::auth::Promoter;
use crate::error::ApiError;
use crate::state::Settings;

#[derive(Debug, sqlx::FromRow)]
pub struct PromoterRow {
    pub id: i64,
    pub user_id: i64,
    pub referral_code: String,
    pub status: AffiliateStatus,
    pub active: bool,
    pub commission_rate: Rate,
    pub min_withdrawal_balance: Money,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub link_clicked: i64,
    pub earned: Money,
    pub reversed: Money,
    pub paid: Money,
    pub pending_payouts: Money,
    /// Commission still in its holding period at the moment asked about.
    pub held: Money,
    pub method: Option<PaymentMethod>,
    pub address: Option<String>,
    pub address_changed_at: Option<DateTime<Utc>>,
}

impl PromoterRow {
    pub fn balances(&self) -> Balances {
        Balances {
            earned: self.earned,
            reversed: self.reversed,
            paid: self.paid,
            pending_payouts: self.pending_payouts,
            held: self.held,
        }
    }
}

/// The caller's promoter at `$2` (the api's clock).
fn promoter_query() -> String {
    format!(
        "SELECT a.id, a.user_id, a.referral_code, a.status, a.active, {EFFECTIVE_RATE} AS commission_rate,
                a.min_withdrawal_balance, a.created_at, a.updated_at,
                t.link_clicked, t.earned, t.reversed, t.paid, t.pending_payouts, {held} AS held,
                m.method, m.address, m.address_changed_at
         FROM affiliates a
         JOIN affiliate_totals t ON t.affiliate_id = a.id
         LEFT JOIN payout_methods m ON m.affiliate_id = a.id AND m.is_active
         WHERE a.user_id = $1 AND a.deleted_at IS NULL",
        held = held_sql("a.id", "$2")
    )
}

pub async fn find(
    pool: &PgPool,
    user_id: i64,
    now: DateTime<Utc>,
) -> sqlx::Result<Option<PromoterRow>> {
    sqlx::query_as(&promoter_query())
        .bind(user_id)
        .bind(now)
        .fetch_optional(pool)
        .await
}

/// The caller's promoter; the first call creates it, with an unguessable code, and the
/// name and email its token carries.
pub async fn get_or_create(
    pool: &PgPool,
    caller: &Promoter,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<PromoterRow, ApiError> {
    if let Some(row) = find(pool, caller.user_id, now).await? {
        return Ok(row);
    }
    for _ in 0..5 {
        let inserted = sqlx::query(
            "INSERT INTO affiliates (user_id, referral_code, status, commission_rate, min_withdrawal_balance, approved_at, name, email)
             VALUES ($1, $2, 'approved', $3, $4, now(), $5, $6)
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(caller.user_id)
        .bind(referral_code())
        .bind(settings.promoter_commission_rate)
        .bind(settings.promoter_min_withdrawal)
        .bind(caller.name.as_deref())
        .bind(caller.email.as_deref())
        .execute(pool)
        .await;
        match inserted {
            Ok(_) => break,
            // Another code already has this token (or a concurrent request raced us), or
            // another live affiliate has this email: draw again, or go without the email.
            Err(sqlx::Error::Database(e))
                if e.constraint() == Some("affiliates_referral_code_key") => {}
            Err(sqlx::Error::Database(e)) if e.constraint() == Some("affiliates_email_key") => {
                let without_email = Promoter {
                    email: None,
                    ..caller.clone()
                };
                return Box::pin(get_or_create(pool, &without_email, settings, now)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    // `None` here means the user's promoter was deleted by an admin.
    find(pool, caller.user_id, now)
        .await?
        .ok_or(ApiError::NotFound)
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
    // A new address is unverified, and its change is dated: a withdrawal soon after is
    // held for review.
    sqlx::query(
        "INSERT INTO payout_methods (affiliate_id, method, address, is_active) VALUES ($1, $2, $3, true)
         ON CONFLICT (affiliate_id, method) DO UPDATE
         SET is_active = true,
             verified = payout_methods.address = EXCLUDED.address AND payout_methods.verified,
             address_changed_at = CASE WHEN payout_methods.address = EXCLUDED.address
                                       THEN payout_methods.address_changed_at ELSE now() END,
             address = EXCLUDED.address, updated_at = now()",
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
    /// When the last of its commissions ends its holding period.
    pub last_available: Option<DateTime<Utc>>,
    /// Earned, net of clawbacks, of every commission of the affiliate available by then:
    /// payouts pay the oldest first, so the referral's is paid once this is.
    pub covered_by: Money,
}

impl ReferralRow {
    /// Where its commission stands at `now`, for an affiliate that was paid `paid`.
    pub fn stage(&self, now: DateTime<Utc>, paid: Money) -> Option<CommissionStage> {
        Some(match self.commission_status? {
            CommissionStatus::Reversed => CommissionStage::Reversed,
            CommissionStatus::Earned => match self.last_available {
                Some(at) if at > now => CommissionStage::Pending,
                _ if self.covered_by <= paid => CommissionStage::Paid,
                _ => CommissionStage::Payable,
            },
        })
    }
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
        "SELECT r.user_id, r.email, r.status, r.invitation_method, r.commission_rate, r.commission_amount,
                r.commission_status, x.last_available,
                (SELECT COALESCE(sum(CASE l.kind WHEN 'earned' THEN l.amount ELSE -l.amount END), 0)
                 FROM ledger_entries l
                 WHERE l.affiliate_id = r.affiliate_id AND l.available_at <= x.last_available) AS covered_by
         FROM referrals r
         LEFT JOIN LATERAL (
             SELECT max(l.available_at) AS last_available
             FROM conversions c JOIN ledger_entries l ON l.conversion_event_id = c.event_id
             WHERE c.referral_id = r.id AND l.kind = 'earned'
         ) x ON true
         WHERE r.affiliate_id = $1 ORDER BY r.created_at DESC, r.id DESC LIMIT $2 OFFSET $3",
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
    pub status: PayoutStatus,
}

/// Payouts requested or made (not cancelled), newest first.
pub async fn payouts(pool: &PgPool, affiliate_id: i64) -> sqlx::Result<Vec<PayoutRow>> {
    sqlx::query_as(
        "SELECT id, created_at, amount, status FROM payouts WHERE affiliate_id = $1 AND status <> 'cancelled'
         ORDER BY created_at DESC, id DESC",
    )
    .bind(affiliate_id)
    .fetch_all(pool)
    .await
}

/// What a withdrawal needs to know besides the promoter.
pub struct WithdrawalRules {
    pub now: DateTime<Utc>,
    /// A payout address changed more recently than this is held for review.
    pub review_window: chrono::Duration,
}

/// Requests a payout of the whole withdrawable balance. The promoter's totals row is
/// locked for the decision, so concurrent requests are served one after the other and
/// only one can take the balance; a repeated idempotency key finds the payout it made.
/// Promoters that are not approved and active cannot withdraw; a withdrawal to an address
/// changed within the review window is made, but held for an admin's review.
pub async fn withdraw(
    pool: &PgPool,
    user_id: i64,
    idempotency_key: Option<&str>,
    rules: &WithdrawalRules,
) -> Result<PayoutRow, ApiError> {
    let mut tx = pool.begin().await?;
    // Lock the totals, then read them with what is held in a statement started after the
    // lock, which sees every ledger entry committed with the totals (one statement would
    // see the latest totals but the ledger as it was before waiting for the lock).
    sqlx::query(
        "SELECT 1 FROM affiliate_totals t JOIN affiliates a ON a.id = t.affiliate_id
         WHERE a.user_id = $1 AND a.deleted_at IS NULL FOR UPDATE OF t",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    let promoter: PromoterRow = sqlx::query_as(&promoter_query())
        .bind(user_id)
        .bind(rules.now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ApiError::NotFound)?;
    if let Some(key) = idempotency_key {
        let earlier: Option<PayoutRow> = sqlx::query_as(
            "SELECT id, created_at, amount, status FROM payouts WHERE affiliate_id = $1 AND idempotency_key = $2",
        )
        .bind(promoter.id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(earlier) = earlier {
            return Ok(earlier);
        }
    }
    if promoter.status != AffiliateStatus::Approved || !promoter.active {
        return Err(ApiError::field(
            "non_field_errors",
            "Withdrawals are not available: your account is not active.",
        ));
    }
    let (Some(method), Some(address)) = (&promoter.method, &promoter.address) else {
        return Err(ApiError::field(
            "non_field_errors",
            "Set a payout method before requesting a withdrawal.",
        ));
    };
    let balance = promoter.balances().withdrawable();
    if !balance.is_positive() || balance < promoter.min_withdrawal_balance {
        return Err(ApiError::field(
            "non_field_errors",
            format!(
                "Your balance of {} is below your minimum withdrawal balance of {}.",
                balance, promoter.min_withdrawal_balance
            ),
        ));
    }
    let status = match promoter.address_changed_at {
        Some(changed) if changed > rules.now - rules.review_window => PayoutStatus::Review,
        _ => PayoutStatus::Pending,
    };
    let payout: PayoutRow = sqlx::query_as(
        "INSERT INTO payouts (affiliate_id, amount, method, address, idempotency_key, status)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, created_at, amount, status",
    )
    .bind(promoter.id)
    .bind(balance)
    .bind(method)
    .bind(address)
    .bind(idempotency_key)
    .bind(status)
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
