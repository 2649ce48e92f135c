//! Payouts, for the staff who pay them: list by status, mark paid (a `paid` entry in the
//! ledger, moved from pending to paid in the totals), or cancel (the amount returns to
//! the balance). Each runs in one transaction, with the payout row locked.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use reftrack_common::envelope::Envelope;
use rust_decimal::Decimal;

use super::views::{Pagination, PayoutList, PayoutView, rfc3339_seconds};
use super::{Answer, id, ok};
use crate::auth::Admin;
use crate::error::{AdminError, ApiError};
use crate::state::AppState;

const PATH: &str = "/api/v1/affiliate/payouts/";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/affiliate/payouts/", get(list))
        .route("/api/v1/affiliate/payouts/{id}/mark-paid/", post(mark_paid))
        .route("/api/v1/affiliate/payouts/{id}/cancel/", post(cancel))
}

#[derive(Debug, sqlx::FromRow)]
struct PayoutRow {
    id: i64,
    affiliate_id: i64,
    amount: Decimal,
    status: String,
    method: String,
    address: String,
    created_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    paid_by: Option<String>,
    cancelled_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, affiliate_id, amount, status, method, address, created_at, paid_at, paid_by, cancelled_at";

fn view(row: PayoutRow) -> PayoutView {
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
    }
}

#[utoipa::path(get, path = "/api/v1/affiliate/payouts/", tag = "admin", security(("admin_key" = [])),
    params(
        ("status" = Option<String>, Query, description = "pending, paid or cancelled"),
        ("page" = Option<u32>, Query), ("page_size" = Option<u32>, Query, description = "max 100, default 20"),
    ),
    responses((status = 200, body = inline(Envelope<PayoutList>))))]
pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<PayoutList> {
    let status = match query.get("status").map(String::as_str) {
        None => None,
        Some(s @ ("pending" | "paid" | "cancelled")) => Some(s),
        Some(_) => {
            return Err(
                ApiError::field("status", "must be one of pending, paid, cancelled").into(),
            );
        }
    };
    let number = |field: &str, default: i64, max: i64| -> Result<i64, ApiError> {
        match query.get(field) {
            None => Ok(default),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::field(field, format!("must be an integer from 1 to {max}"))
                }),
        }
    };
    let page = number("page", 1, i64::MAX)?;
    let page_size = number("page_size", 20, 100)?;
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payouts WHERE $1::text IS NULL OR status = $1")
            .bind(status)
            .fetch_one(&state.pool)
            .await?;
    let rows: Vec<PayoutRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM payouts WHERE $1::text IS NULL OR status = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(status)
    .bind(page_size)
    .bind((page - 1) * page_size)
    .fetch_all(&state.pool)
    .await?;
    let results = rows.into_iter().map(view).collect();
    ok(
        PayoutList {
            results,
            pagination: Pagination::new(PATH, page, page_size, total),
        },
        "Payouts retrieved successfully",
    )
}

#[utoipa::path(post, path = "/api/v1/affiliate/payouts/{id}/mark-paid/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<PayoutView>)), (status = 409, description = "Not pending")))]
pub async fn mark_paid(
    State(state): State<AppState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Answer<PayoutView> {
    let payout = settle(&state, id(&raw)?, "paid", &admin.email).await?;
    ok(payout, "Payout marked as paid")
}

#[utoipa::path(post, path = "/api/v1/affiliate/payouts/{id}/cancel/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<PayoutView>)), (status = 409, description = "Not pending")))]
pub async fn cancel(
    State(state): State<AppState>,
    admin: Admin,
    Path(raw): Path<String>,
) -> Answer<PayoutView> {
    let payout = settle(&state, id(&raw)?, "cancelled", &admin.email).await?;
    ok(payout, "Payout cancelled")
}

/// Moves a pending payout to `outcome` (paid or cancelled) and its amount out of the
/// affiliate's pending total (into paid, with a ledger entry, when paid).
async fn settle(
    state: &AppState,
    id: i64,
    outcome: &'static str,
    by: &str,
) -> Result<PayoutView, AdminError> {
    let mut tx = state.pool.begin().await?;
    let row: PayoutRow = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM payouts WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound)?;
    if row.status != "pending" {
        return Err(ApiError::Conflict(format!("This payout is already {}", row.status)).into());
    }
    let paid = outcome == "paid";
    sqlx::query(
        "UPDATE payouts SET status = $2,
             paid_at = CASE WHEN $3 THEN now() END, paid_by = CASE WHEN $3 THEN $4 END,
             cancelled_at = CASE WHEN $3 THEN NULL ELSE now() END, cancelled_by = CASE WHEN $3 THEN NULL ELSE $4 END
         WHERE id = $1",
    )
    .bind(id)
    .bind(outcome)
    .bind(paid)
    .bind(by)
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
    let row: PayoutRow = sqlx::query_as(&format!("SELECT {COLUMNS} FROM payouts WHERE id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    crate::metrics::payout(outcome, row.amount);
    Ok(view(row))
}
