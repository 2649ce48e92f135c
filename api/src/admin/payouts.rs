//! Payouts, for the staff who pay them: list by status, mark paid (a `paid` entry in the
//! ledger, moved from pending to paid in the totals), or cancel (the amount returns to
//! the balance). Each runs in one transaction, with the payout row locked.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use reftrack_common::envelope::Envelope;
use reftrack_common::input::query_object;
use reftrack_domain::{Money, PaymentMethod, PayoutStatus};
use reftrack_store::ledger::{Balances, held_sql};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::input::PayoutQuery;
use super::views::{Pagination, PayoutList, PayoutView, rfc3339_seconds};
use super::{Answer, id, ok};
use crate::auth::Admin;
use crate::error::{AdminError, ApiError};
use crate::state::AppState;

const PATH: &str = "/api/v1/affiliate/payouts/";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(mark_paid))
        .routes(routes!(cancel))
        .routes(routes!(balance))
        .routes(routes!(verify_payment_method))
}

/// An affiliate's money at the api's clock: what is held, payable and paid.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BalanceView {
    pub affiliate_id: i64,
    /// Earned, net of clawbacks.
    pub total_earned: Money,
    /// Still in its holding period.
    pub pending: Money,
    /// Past its holding period and not yet paid or requested; below zero while a refund
    /// of paid money is not covered by later earnings.
    pub payable: Money,
    /// What can be withdrawn now.
    pub withdrawable: Money,
    /// Requested, not yet paid.
    pub pending_payouts: Money,
    pub total_paid: Money,
}

/// An affiliate's balances: pending, payable and paid (an addition to the admin API
/// document).
#[utoipa::path(get, path = "/api/v1/affiliate/affiliates/{id}/balance/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<BalanceView>)), (status = 404, description = "No such affiliate")))]
#[tracing::instrument(skip(state, _admin))]
pub async fn balance(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
) -> Answer<BalanceView> {
    let id = id(&raw)?;
    let row: Option<(Money, Money, Money, Money, Money)> = sqlx::query_as(&format!(
        "SELECT t.earned, t.reversed, t.paid, t.pending_payouts, {held}
         FROM affiliates a JOIN affiliate_totals t ON t.affiliate_id = a.id
         WHERE a.id = $1 AND a.deleted_at IS NULL",
        held = held_sql("a.id", "$2")
    ))
    .bind(id)
    .bind(state.clock.now())
    .fetch_optional(&state.pool)
    .await?;
    let (earned, reversed, paid, pending_payouts, held) = row.ok_or(ApiError::NotFound)?;
    let b = Balances {
        earned,
        reversed,
        paid,
        pending_payouts,
        held,
    };
    ok(
        BalanceView {
            affiliate_id: id,
            total_earned: b.total_earned(),
            pending: held,
            payable: b.payable(),
            withdrawable: b.withdrawable(),
            pending_payouts,
            total_paid: paid,
        },
        "Balance retrieved successfully",
    )
}

/// Marks an affiliate's payment method verified (an addition to the admin API document).
#[utoipa::path(post, path = "/api/v1/affiliate/affiliates/{id}/payment-methods/{method}/verify/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path), ("method" = PaymentMethod, Path)),
    responses((status = 200, body = inline(Envelope<VerifiedMethod>)), (status = 404, description = "No such affiliate or method")))]
#[tracing::instrument(skip(state, admin))]
pub async fn verify_payment_method(
    State(state): State<AppState>,
    admin: Admin,
    Path((raw, method)): Path<(String, String)>,
) -> Answer<VerifiedMethod> {
    let id = id(&raw)?;
    let method: PaymentMethod = method.parse().map_err(|_| ApiError::NotFound)?;
    let verified: Option<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "UPDATE payout_methods SET verified = true, verified_at = now(), verified_by = $3, updated_at = now()
         WHERE affiliate_id = $1 AND method = $2
           AND EXISTS (SELECT 1 FROM affiliates a WHERE a.id = $1 AND a.deleted_at IS NULL)
         RETURNING address, verified_at",
    )
    .bind(id)
    .bind(method)
    .bind(&admin.email)
    .fetch_optional(&state.pool)
    .await?;
    let (address, verified_at) = verified.ok_or(ApiError::NotFound)?;
    ok(
        VerifiedMethod {
            affiliate_id: id,
            method,
            address,
            verified: true,
            verified_at: verified_at.map(rfc3339_seconds),
            verified_by: admin.email,
        },
        "Payment method verified",
    )
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct VerifiedMethod {
    pub affiliate_id: i64,
    #[serde(rename = "type")]
    pub method: PaymentMethod,
    pub address: String,
    pub verified: bool,
    pub verified_at: Option<String>,
    pub verified_by: String,
}

#[derive(Debug, sqlx::FromRow)]
pub struct PayoutRow {
    id: i64,
    affiliate_id: i64,
    pub amount: Money,
    status: PayoutStatus,
    method: PaymentMethod,
    address: String,
    created_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    paid_by: Option<String>,
    cancelled_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
    failure_reason: Option<String>,
    batch_id: Option<i64>,
}

const COLUMNS: &str = "id, affiliate_id, amount, status, method, address, created_at, paid_at, \
    paid_by, cancelled_at, failed_at, failure_reason, batch_id";

pub fn view(row: PayoutRow) -> PayoutView {
    PayoutView {
        id: row.id,
        affiliate_id: row.affiliate_id,
        amount: row.amount,
        status: row.status,
        method: row.method,
        address: row.address,
        created_at: rfc3339_seconds(row.created_at),
        paid_at: row.paid_at.map(rfc3339_seconds),
        paid_by: row.paid_by,
        cancelled_at: row.cancelled_at.map(rfc3339_seconds),
        failed_at: row.failed_at.map(rfc3339_seconds),
        failure_reason: row.failure_reason,
        batch_id: row.batch_id,
    }
}

/// Lists payouts, newest first, by status.
#[utoipa::path(get, path = "/api/v1/affiliate/payouts/", tag = "admin", security(("admin_key" = [])),
    params(PayoutQuery),
    responses((status = 200, body = inline(Envelope<PayoutList>)), (status = 400, description = "Invalid parameters")))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<PayoutList> {
    let query = query_object(&query);
    let (paging, PayoutQuery { status, .. }) =
        PayoutQuery::parse(&query).map_err(ApiError::Invalid)?;
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payouts WHERE $1::text IS NULL OR status = $1")
            .bind(status)
            .fetch_one(&state.pool)
            .await?;
    let rows: Vec<PayoutRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM payouts WHERE $1::text IS NULL OR status = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(status)
    .bind(paging.size)
    .bind(paging.offset())
    .fetch_all(&state.pool)
    .await?;
    let results = rows.into_iter().map(view).collect();
    ok(
        PayoutList {
            results,
            pagination: Pagination::new(PATH, &query, paging, total),
        },
        "Payouts retrieved successfully",
    )
}

/// Marks a pending payout (or one held for review) paid: a `paid` entry in the ledger.
#[utoipa::path(post, path = "/api/v1/affiliate/payouts/{id}/mark-paid/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<PayoutView>)), (status = 409, description = "Not pending")))]
#[tracing::instrument(skip(state, admin))]
pub async fn mark_paid(
    State(state): State<AppState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Answer<PayoutView> {
    let payout = settle(&state, id(&raw)?, Outcome::Paid, &admin.email).await?;
    ok(payout, "Payout marked as paid")
}

/// Cancels a pending payout: its amount returns to the balance.
#[utoipa::path(post, path = "/api/v1/affiliate/payouts/{id}/cancel/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<PayoutView>)), (status = 409, description = "Not pending")))]
#[tracing::instrument(skip(state, admin))]
pub async fn cancel(
    State(state): State<AppState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Answer<PayoutView> {
    let payout = settle(&state, id(&raw)?, Outcome::Cancelled, &admin.email).await?;
    ok(payout, "Payout cancelled")
}

/// How a pending payout ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Paid: a `paid` ledger entry, moved from pending to paid in the totals.
    Paid,
    /// Cancelled by staff: the amount returns to the balance.
    Cancelled,
    /// The provider could not pay it, for this reason: the amount returns to the balance.
    Failed(String),
}

impl Outcome {
    pub fn status(&self) -> PayoutStatus {
        match self {
            Outcome::Paid => PayoutStatus::Paid,
            Outcome::Cancelled => PayoutStatus::Cancelled,
            Outcome::Failed(_) => PayoutStatus::Failed,
        }
    }
}

async fn settle(
    state: &AppState,
    id: i64,
    outcome: Outcome,
    by: &str,
) -> Result<PayoutView, AdminError> {
    let mut tx = state.pool.begin().await?;
    let row = settle_in(&mut tx, id, &outcome, by).await?;
    tx.commit().await?;
    crate::metrics::payout(outcome.status().as_str(), row.amount);
    Ok(view(row))
}

/// Moves a pending payout (or one held for review) to `outcome`, and its amount out of
/// the affiliate's pending total (into paid, with a ledger entry, when paid); in `tx`,
/// with the payout row locked. Anything but a pending payout is a conflict.
pub async fn settle_in(
    tx: &mut sqlx::PgConnection,
    id: i64,
    outcome: &Outcome,
    by: &str,
) -> Result<PayoutRow, AdminError> {
    let row: PayoutRow = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM payouts WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound)?;
    if !matches!(row.status, PayoutStatus::Pending | PayoutStatus::Review) {
        return Err(ApiError::Conflict(format!("This payout is already {}", row.status)).into());
    }
    let paid = *outcome == Outcome::Paid;
    let reason = match outcome {
        Outcome::Failed(reason) => Some(reason.as_str()),
        _ => None,
    };
    sqlx::query(
        "UPDATE payouts SET status = $2,
             paid_at = CASE WHEN $2 = 'paid' THEN now() END, paid_by = CASE WHEN $2 = 'paid' THEN $3 END,
             cancelled_at = CASE WHEN $2 = 'cancelled' THEN now() END, cancelled_by = CASE WHEN $2 = 'cancelled' THEN $3 END,
             failed_at = CASE WHEN $2 = 'failed' THEN now() END, failed_by = CASE WHEN $2 = 'failed' THEN $3 END,
             failure_reason = $4
         WHERE id = $1",
    )
    .bind(id)
    .bind(outcome.status())
    .bind(by)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    if paid {
        sqlx::query(
            "INSERT INTO ledger_entries (affiliate_id, kind, amount, payout_id, occurred_at) VALUES ($1, 'paid', $2, $3, now())",
        )
        .bind(row.affiliate_id)
        .bind(row.amount)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE affiliate_totals SET pending_payouts = pending_payouts - $2,
             paid = paid + CASE WHEN $3 THEN $2 ELSE 0 END, updated_at = now()
         WHERE affiliate_id = $1",
    )
    .bind(row.affiliate_id)
    .bind(row.amount)
    .bind(paid)
    .execute(&mut *tx)
    .await?;
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM payouts WHERE id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?,
    )
}
