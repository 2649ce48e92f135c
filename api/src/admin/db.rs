//! The admin API's Postgres queries. Deleted affiliates are invisible here. Long because
//! it is only queries, one small function each, kept together so the SQL reads as a whole.

use chrono::{DateTime, Utc};
use reftrack_common::input::Paging;
use reftrack_domain::{AffiliateStatus, PaymentMethod, Rate};
use reftrack_store::affiliates::EFFECTIVE_RATE;
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};

use super::input::{AffiliateChanges, Approval, ListQuery, NewAffiliate, PaymentMethodInput};
use crate::error::ApiError;

#[derive(Debug, sqlx::FromRow)]
pub struct AffiliateRow {
    pub id: i64,
    pub referral_code: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub address_street: Option<String>,
    pub address_city: Option<String>,
    pub address_zip: Option<String>,
    pub state_name: Option<String>,
    pub country_name: Option<String>,
    pub status: AffiliateStatus,
    pub tier: i16,
    pub commission_rate: Rate,
    pub approved_at: Option<DateTime<Utc>>,
    pub approved_by: Option<String>,
    pub approval_note: Option<String>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub rejected_by: Option<String>,
    pub rejection_reason: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AffiliateRow {
    pub fn has_address(&self) -> bool {
        self.address_street.is_some()
            || self.address_city.is_some()
            || self.address_zip.is_some()
            || self.state_name.is_some()
            || self.country_name.is_some()
    }
}

/// An affiliate with its place names and the rate it earns now.
fn affiliate_select() -> String {
    format!(
        "
SELECT a.id, a.referral_code, a.name, a.email, a.phone, a.website, a.address_street, a.address_city, a.address_zip,
       s.name AS state_name, c.name AS country_name, a.status, a.tier, {EFFECTIVE_RATE} AS commission_rate,
       a.approved_at, a.approved_by, a.approval_note, a.rejected_at, a.rejected_by, a.rejection_reason,
       a.active, a.created_at, a.updated_at
FROM affiliates a
LEFT JOIN states s ON s.id = a.address_state_id
LEFT JOIN countries c ON c.id = a.address_country_id"
    )
}

pub async fn find(pool: &PgPool, id: i64) -> Result<AffiliateRow, ApiError> {
    sqlx::query_as(&format!(
        "{} WHERE a.id = $1 AND a.deleted_at IS NULL",
        affiliate_select()
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(ApiError::NotFound)
}

fn push_filters<'a>(query: &mut QueryBuilder<'a, Postgres>, filters: &'a ListQuery) {
    query.push(" WHERE a.deleted_at IS NULL");
    if let Some(status) = &filters.status {
        query.push(" AND a.status = ").push_bind(status);
    }
    if let Some(tier) = filters.tier {
        query.push(" AND a.tier = ").push_bind(tier);
    }
    if let Some(active) = filters.active {
        query.push(" AND a.active = ").push_bind(active);
    }
    if let Some(search) = &filters.search {
        let pattern = format!(
            "%{}%",
            search
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        query
            .push(" AND (a.name ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR a.email ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
}

/// A row of a listing, with how many rows the whole listing has.
#[derive(sqlx::FromRow)]
struct Counted {
    #[sqlx(flatten)]
    row: AffiliateRow,
    total_count: i64,
}

/// One page of affiliates matching `filters`, newest first, and how many match: one
/// query (a second one only for a page past the end, which has no row to carry the count).
pub async fn list(
    pool: &PgPool,
    filters: &ListQuery,
    paging: Paging,
) -> sqlx::Result<(i64, Vec<AffiliateRow>)> {
    let mut page = QueryBuilder::new(affiliate_select().replacen(
        "SELECT a.id,",
        "SELECT count(*) OVER () AS total_count, a.id,",
        1,
    ));
    push_filters(&mut page, filters);
    page.push(" ORDER BY a.created_at DESC, a.id DESC LIMIT ")
        .push_bind(paging.size)
        .push(" OFFSET ")
        .push_bind(paging.offset());
    let rows: Vec<Counted> = page.build_query_as().fetch_all(pool).await?;
    let total = match rows.first() {
        Some(first) => first.total_count,
        None if paging.page > 1 => {
            let mut count = QueryBuilder::new("SELECT count(*) FROM affiliates a");
            push_filters(&mut count, filters);
            count.build_query_scalar().fetch_one(pool).await?
        }
        None => 0,
    };
    Ok((total, rows.into_iter().map(|c| c.row).collect()))
}

fn email_taken(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.constraint() == Some("affiliates_email_key"))
}

fn taken() -> ApiError {
    ApiError::field("email", "An affiliate with this email already exists.")
}

/// Creates a pending affiliate (tier 1, rate `rate`), its code `NAME_ID`, and its
/// payment methods.
pub async fn create(
    pool: &PgPool,
    new: &NewAffiliate,
    rate: Option<Rate>,
) -> Result<i64, ApiError> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query_scalar(
        "WITH next AS (SELECT nextval(pg_get_serial_sequence('affiliates', 'id')) AS id)
         INSERT INTO affiliates (id, referral_code, name, email, phone, website, address_street, address_city,
                                 address_state_id, address_country_id, address_zip, marketing_channels, audience_size,
                                 experience_level, status, tier, commission_rate, min_withdrawal_balance)
         SELECT next.id, $1 || '_' || next.id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'pending', 1, $14, 20
         FROM next
         RETURNING id",
    )
    .bind(code_stem(&new.name))
    .bind(&new.name)
    .bind(&new.email)
    .bind(&new.phone)
    .bind(&new.website)
    .bind(new.address.as_ref().and_then(|a| a.street.clone()))
    .bind(new.address.as_ref().and_then(|a| a.city.clone()))
    .bind(new.address.as_ref().and_then(|a| a.state_id))
    .bind(new.address.as_ref().and_then(|a| a.country_id))
    .bind(new.address.as_ref().and_then(|a| a.zip.clone()))
    .bind(&new.marketing_channels)
    .bind(new.audience_size)
    .bind(&new.experience_level)
    .bind(rate)
    .fetch_one(&mut *tx)
    .await;
    let id: i64 = match inserted {
        Ok(id) => id,
        Err(e) if email_taken(&e) => return Err(taken()),
        Err(e) => return Err(e.into()),
    };
    replace_payment_methods(&mut tx, id, &new.payment_methods).await?;
    tx.commit().await?;
    Ok(id)
}

/// `Jane Doe` → `JANE_DOE`: letters and digits upper-cased, the rest as `_`.
fn code_stem(name: &str) -> String {
    let mut stem = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            stem.push(c.to_ascii_uppercase());
        } else if !stem.ends_with('_') && !stem.is_empty() {
            stem.push('_');
        }
    }
    let stem: String = stem.trim_end_matches('_').chars().take(40).collect();
    if stem.is_empty() {
        "AFFILIATE".to_string()
    } else {
        stem
    }
}

async fn replace_payment_methods(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    methods: &[PaymentMethodInput],
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM payout_methods WHERE affiliate_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    for (i, m) in methods.iter().enumerate() {
        sqlx::query("INSERT INTO payout_methods (affiliate_id, method, address, is_active) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(m.method)
            .bind(&m.address)
            // The first method is the one payouts use.
            .bind(i == 0)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Applies the fields given, and only those.
pub async fn update(pool: &PgPool, id: i64, changes: &AffiliateChanges) -> Result<(), ApiError> {
    let mut tx = pool.begin().await?;
    let mut query = QueryBuilder::<Postgres>::new("UPDATE affiliates SET updated_at = now()");
    macro_rules! set {
        ($column:literal, $value:expr) => {
            if let Some(value) = $value {
                query.push(concat!(", ", $column, " = ")).push_bind(value);
            }
        };
    }
    set!("name", &changes.name);
    set!("email", &changes.email);
    set!("phone", &changes.phone);
    set!("website", &changes.website);
    set!("tier", changes.tier);
    set!("commission_rate", changes.commission_rate);
    set!("holding_days", changes.holding_days);
    set!("marketing_channels", &changes.marketing_channels);
    set!("audience_size", changes.audience_size);
    set!("experience_level", &changes.experience_level);
    if let Some(address) = &changes.address {
        set!("address_street", &address.street);
        set!("address_city", &address.city);
        set!("address_zip", &address.zip);
        set!("address_state_id", address.state_id);
        set!("address_country_id", address.country_id);
    }
    query
        .push(" WHERE id = ")
        .push_bind(id)
        .push(" AND deleted_at IS NULL");
    let updated = match query.build().execute(&mut *tx).await {
        Ok(result) => result.rows_affected(),
        Err(e) if email_taken(&e) => return Err(taken()),
        Err(e) => return Err(e.into()),
    };
    if updated == 0 {
        return Err(ApiError::NotFound);
    }
    if let Some(methods) = &changes.payment_methods {
        replace_payment_methods(&mut tx, id, methods).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Approves a pending or rejected affiliate, keeping its tier and rate unless the
/// approval sets them.
pub async fn approve(
    pool: &PgPool,
    id: i64,
    approval: &Approval,
    by: &str,
) -> Result<(), ApiError> {
    transition(
        pool,
        id,
        &[AffiliateStatus::Pending, AffiliateStatus::Rejected],
        AffiliateStatus::Approved,
        sqlx::query(
            "UPDATE affiliates SET status = 'approved', tier = COALESCE($2, tier), commission_rate = COALESCE($3, commission_rate),
                    approval_note = $4, approved_by = $5, approved_at = now(), updated_at = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(approval.tier)
        .bind(approval.commission_rate)
        .bind(approval.approval_note.as_deref())
        .bind(by),
    )
    .await
}

/// Rejects a pending or approved affiliate (its links stop attributing).
pub async fn reject(
    pool: &PgPool,
    id: i64,
    reason: Option<&str>,
    by: &str,
) -> Result<(), ApiError> {
    transition(
        pool,
        id,
        &[AffiliateStatus::Pending, AffiliateStatus::Approved],
        AffiliateStatus::Rejected,
        sqlx::query(
            "UPDATE affiliates SET status = 'rejected', rejection_reason = $2, rejected_by = $3, rejected_at = now(),
                    updated_at = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(reason)
        .bind(by),
    )
    .await
}

/// Runs `update` if the affiliate's status is one of `from`, under a row lock.
async fn transition(
    pool: &PgPool,
    id: i64,
    from: &[AffiliateStatus],
    to: AffiliateStatus,
    update: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
) -> Result<(), ApiError> {
    let mut tx = pool.begin().await?;
    let status: AffiliateStatus = sqlx::query_scalar(
        "SELECT status FROM affiliates WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound)?;
    if !from.contains(&status) {
        return Err(ApiError::Conflict(format!(
            "An affiliate that is {status} cannot become {to}"
        )));
    }
    update.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Deactivates (its links stop attributing, it cannot withdraw) or reactivates.
pub async fn set_active(pool: &PgPool, id: i64, active: bool) -> Result<(), ApiError> {
    let result = sqlx::query("UPDATE affiliates SET active = $2, updated_at = now() WHERE id = $1 AND deleted_at IS NULL")
        .bind(id)
        .bind(active)
        .execute(pool)
        .await?;
    if result.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(())
}

/// Deletes softly: the ledger keeps referring to it, its code stops attributing, and its
/// email is free again.
pub async fn delete(pool: &PgPool, id: i64) -> Result<(), ApiError> {
    let result = sqlx::query(
        "UPDATE affiliates SET deleted_at = now(), active = false, updated_at = now() WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .execute(pool)
    .await?;
    if result.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct PaymentMethodRow {
    pub method: PaymentMethod,
    pub address: String,
    pub verified: bool,
}

pub async fn payment_methods(pool: &PgPool, id: i64) -> sqlx::Result<Vec<PaymentMethodRow>> {
    sqlx::query_as("SELECT method, address, verified FROM payout_methods WHERE affiliate_id = $1 ORDER BY is_active DESC, id")
        .bind(id)
        .fetch_all(pool)
        .await
}

/// Referred users who bought.
pub async fn paying_customers(pool: &PgPool, id: i64) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM referrals WHERE affiliate_id = $1 AND status = 'converted'",
    )
    .bind(id)
    .fetch_one(pool)
    .await
}

/// Whether `state_id` belongs to `country_id` (or the country exists, without a state).
pub async fn place_exists(
    pool: &PgPool,
    country_id: i32,
    state_id: Option<i32>,
) -> sqlx::Result<(bool, bool)> {
    sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM countries WHERE id = $1),
                $2::int IS NULL OR EXISTS (SELECT 1 FROM states WHERE id = $2 AND country_id = $1)",
    )
    .bind(country_id)
    .bind(state_id)
    .fetch_one(pool)
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_are_made_from_names() {
        assert_eq!(super::code_stem("Jane Doe"), "JANE_DOE");
        assert_eq!(super::code_stem("  Zoë  O'Neil-Smith!"), "ZO_O_NEIL_SMITH");
        assert_eq!(super::code_stem("李"), "AFFILIATE");
    }
}
