//! Payout batches (an addition to the admin API document): the payable balances of one
//! payment method, gathered into payouts an admin pays in one go through the provider.
//!
//! - `payable/` lists who would be in a batch: approved, active affiliates whose payable
//!   balance is positive and at least their minimum withdrawal balance, with that method
//!   set, and whose address has not changed within the review window.
//! - Creating a batch makes a pending payout of each such balance (as a withdrawal would)
//!   and takes in the pending payouts promoters requested with that method.
//! - `export/` writes the lines still to pay as a PayPal Payouts or Wise batch file, or
//!   the whole batch as JSON.
//! - `results/` marks lines paid (a `paid` ledger entry) or failed (the amount returns to
//!   the balance), in one transaction; repeating a result already recorded changes nothing.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use reftrack_common::envelope::{Envelope, FieldErrors};
use reftrack_common::input::{Fields, Paging, Plain, Problem, query_object};
use reftrack_domain::{Money, PaymentMethod, PayoutStatus};
use reftrack_store::ledger::payable_sql;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::payouts::{Outcome, settle_in};
use super::views::{Pagination, rfc3339_seconds};
use super::{Answer, id, ok};
use crate::auth::Admin;
use crate::error::{AdminError, ApiError};
use crate::input::json_object;
use crate::state::AppState;

const PATH: &str = "/api/v1/affiliate/payout-batches/";
const PAYABLE_PATH: &str = "/api/v1/affiliate/payout-batches/payable/";

/// Lines in one batch: a Wise batch file takes at most 1,000 (PayPal's 5,000). Balances
/// beyond it wait for the next batch.
pub const MAX_LINES: usize = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(payable))
        .routes(routes!(show))
        .routes(routes!(export))
        .routes(routes!(record_results))
}

// ---- what it reads

/// A new batch.
#[derive(Debug, ToSchema)]
pub struct NewBatch {
    /// The payment method whose payable balances it gathers.
    pub method: PaymentMethod,
    /// Only these affiliates (default: every one with a payable balance).
    pub affiliate_ids: Option<Vec<i64>>,
}

impl NewBatch {
    fn parse(body: &Map<String, Value>) -> Result<Self, FieldErrors> {
        let mut f = Fields::body(body, &["method", "affiliate_ids"], &Plain);
        let method = f.required_choice("method");
        let affiliate_ids = f.list("affiliate_ids", MAX_LINES, |f, name, item| {
            let id = item.as_i64().filter(|id| *id > 0);
            if id.is_none() {
                f.fail(&name, Problem::Said("must be an affiliate id".into()));
            }
            id
        });
        let new = method.map(|method| NewBatch {
            method,
            affiliate_ids,
        });
        f.finish(new)
            .map(|new| new.expect("method is required: absent, it failed"))
    }
}

/// What the provider did with some lines of a batch.
#[derive(Debug, ToSchema)]
pub struct BatchResults {
    /// At most 1,000, each payout once.
    pub lines: Vec<LineResult>,
}

#[derive(Debug, ToSchema)]
pub struct LineResult {
    pub payout_id: i64,
    /// `paid` or `failed`.
    pub status: String,
    /// Why it failed; required when failed.
    pub reason: Option<String>,
}

const LINE_KEYS: &[&str] = &["payout_id", "status", "reason"];

impl BatchResults {
    fn parse(body: &Map<String, Value>) -> Result<Vec<(i64, Outcome)>, FieldErrors> {
        let mut f = Fields::body(body, &["lines"], &Plain);
        f.require("lines");
        let mut seen = HashSet::new();
        let lines = f.list("lines", MAX_LINES, |f, name, item| {
            let line = f.item(&name, item, LINE_KEYS, |g| {
                let payout = g.required_integer("payout_id", 1..=i64::MAX);
                let status = g.one_of("status", &["paid", "failed"]);
                g.require("status");
                let reason = g.text("reason", 500);
                let outcome = match (status.as_deref(), reason) {
                    (Some("paid"), _) => Some(Outcome::Paid),
                    (Some(_), Some(reason)) => Some(Outcome::Failed(reason)),
                    (Some(_), None) => {
                        g.fail(
                            "reason",
                            Problem::Said("Say why the payment failed.".into()),
                        );
                        None
                    }
                    (None, _) => None,
                };
                payout.zip(outcome)
            })??;
            if !seen.insert(line.0) {
                f.fail(
                    &format!("{name}.payout_id"),
                    Problem::Said(format!("Payout {} is given twice.", line.0)),
                );
            }
            Some(line)
        });
        f.finish(lines.unwrap_or_default())
    }
}

/// The payable listing's query string.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PayableQuery {
    /// Page number, from 1 (default 1).
    pub page: Option<i64>,
    /// Results per page, 1 to 100 (default 20).
    pub page_size: Option<i64>,
    /// Only balances paid by this method.
    pub method: Option<PaymentMethod>,
}

/// The batch listing's query string.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BatchQuery {
    /// Page number, from 1 (default 1).
    pub page: Option<i64>,
    /// Results per page, 1 to 100 (default 20).
    pub page_size: Option<i64>,
}

/// The export's query string.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `paypal` (PayPal Payouts, for a paypal batch), `wise` (Wise, for a wise or bank
    /// batch) or `json` (any batch).
    pub format: String,
}

const FORMATS: &[&str] = &["paypal", "wise", "json"];

// ---- what it answers

/// A payable balance: what a batch of its method would pay.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct PayableBalance {
    pub affiliate_id: i64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub method: PaymentMethod,
    pub address: String,
    /// Whether an admin verified the payment method.
    pub verified: bool,
    pub payable: Money,
    pub min_withdrawal_balance: Money,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PayableList {
    pub results: Vec<PayableBalance>,
    pub pagination: Pagination,
}

/// A batch and its lines (the lines in the answers about one batch only).
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    pub id: i64,
    pub method: PaymentMethod,
    pub currency: String,
    /// `open` while a line is still to pay, then `completed`.
    pub status: String,
    pub created_at: String,
    pub created_by: String,
    pub line_count: i64,
    pub total_amount: Money,
    pub paid_amount: Money,
    /// Failed or cancelled: back in the balances.
    pub unpaid_amount: Money,
    pub open_amount: Money,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<LineView>>,
}

/// A line of a batch: one payout.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct LineView {
    pub payout_id: i64,
    pub affiliate_id: i64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub amount: Money,
    pub method: PaymentMethod,
    pub address: String,
    pub status: PayoutStatus,
    /// What the payment files carry to tell the payment apart: `RT-<payout id>`.
    pub reference: String,
    pub failure_reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchList {
    pub results: Vec<BatchView>,
    pub pagination: Pagination,
}

#[derive(sqlx::FromRow)]
struct BatchRow {
    id: i64,
    method: PaymentMethod,
    currency: String,
    created_at: DateTime<Utc>,
    created_by: String,
    line_count: i64,
    open_count: i64,
    total_amount: Money,
    paid_amount: Money,
    unpaid_amount: Money,
    open_amount: Money,
}

impl BatchRow {
    fn view(self, lines: Option<Vec<LineView>>) -> BatchView {
        BatchView {
            id: self.id,
            method: self.method,
            currency: self.currency,
            status: if self.open_count > 0 {
                "open"
            } else {
                "completed"
            }
            .into(),
            created_at: rfc3339_seconds(self.created_at),
            created_by: self.created_by,
            line_count: self.line_count,
            total_amount: self.total_amount,
            paid_amount: self.paid_amount,
            unpaid_amount: self.unpaid_amount,
            open_amount: self.open_amount,
            lines,
        }
    }
}

// ---- queries

/// Balances a batch would pay, at `$1` (now), of method `$2` (NULL: any), among
/// affiliates `$3` (NULL: all), outside the review window of `$4` hours.
fn payable_query() -> String {
    format!(
        "SELECT a.id AS affiliate_id, a.name, a.email, m.method, m.address, m.verified,
                {payable} AS payable, a.min_withdrawal_balance
         FROM affiliates a
         JOIN affiliate_totals t ON t.affiliate_id = a.id
         JOIN payout_methods m ON m.affiliate_id = a.id AND m.is_active
         WHERE a.deleted_at IS NULL AND a.status = 'approved' AND a.active
           AND ($2::text IS NULL OR m.method = $2)
           AND ($3::bigint[] IS NULL OR a.id = ANY($3))
           AND m.address_changed_at <= $1 - make_interval(hours => $4)
           AND {payable} > 0 AND {payable} >= a.min_withdrawal_balance",
        payable = payable_sql("t", "$1")
    )
}

const BATCH_SUMMARY: &str = "SELECT b.id, b.method, b.currency, b.created_at, b.created_by,
        count(p.id) AS line_count,
        count(p.id) FILTER (WHERE p.status IN ('pending', 'review')) AS open_count,
        COALESCE(sum(p.amount), 0) AS total_amount,
        COALESCE(sum(p.amount) FILTER (WHERE p.status = 'paid'), 0) AS paid_amount,
        COALESCE(sum(p.amount) FILTER (WHERE p.status IN ('failed', 'cancelled')), 0) AS unpaid_amount,
        COALESCE(sum(p.amount) FILTER (WHERE p.status IN ('pending', 'review')), 0) AS open_amount
    FROM payout_batches b LEFT JOIN payouts p ON p.batch_id = b.id";

async fn find(db: &mut sqlx::PgConnection, id: i64) -> Result<BatchView, AdminError> {
    let row: BatchRow = sqlx::query_as(&format!("{BATCH_SUMMARY} WHERE b.id = $1 GROUP BY b.id"))
        .bind(id)
        .fetch_optional(&mut *db)
        .await?
        .ok_or(ApiError::NotFound)?;
    let lines: Vec<LineView> = sqlx::query_as(
        "SELECT p.id AS payout_id, p.affiliate_id, a.name, a.email, p.amount, p.method, p.address,
                p.status, 'RT-' || p.id AS reference, p.failure_reason
         FROM payouts p JOIN affiliates a ON a.id = p.affiliate_id
         WHERE p.batch_id = $1 ORDER BY p.id",
    )
    .bind(id)
    .fetch_all(&mut *db)
    .await?;
    Ok(row.view(Some(lines)))
}

fn review_hours(state: &AppState) -> i32 {
    state.settings.payout_review_hours as i32
}

// ---- handlers

/// Payable balances at or above each affiliate's minimum, largest first.
#[utoipa::path(get, path = "/api/v1/affiliate/payout-batches/payable/", tag = "admin", security(("admin_key" = [])),
    params(PayableQuery),
    responses((status = 200, body = inline(Envelope<PayableList>)), (status = 400, description = "Invalid parameters")))]
#[tracing::instrument(skip_all)]
pub async fn payable(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<PayableList> {
    let query = query_object(&query);
    let mut f = Fields::query(&query, &Plain);
    let paging = Paging::read(&mut f, 20, 100);
    let method: Option<PaymentMethod> = f.choice("method");
    f.finish(()).map_err(ApiError::Invalid)?;
    let now = state.clock.now();
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM ({}) c", payable_query()))
        .bind(now)
        .bind(method)
        .bind(None::<Vec<i64>>)
        .bind(review_hours(&state))
        .fetch_one(&state.pool)
        .await?;
    let results = sqlx::query_as(&format!(
        "{} ORDER BY payable DESC, affiliate_id LIMIT $5 OFFSET $6",
        payable_query()
    ))
    .bind(now)
    .bind(method)
    .bind(None::<Vec<i64>>)
    .bind(review_hours(&state))
    .bind(paging.size)
    .bind(paging.offset())
    .fetch_all(&state.pool)
    .await?;
    ok(
        PayableList {
            results,
            pagination: Pagination::new(PAYABLE_PATH, &query, paging, total),
        },
        "Payable balances retrieved successfully",
    )
}

/// Creates a batch of one method: a pending payout of each payable balance (at most
/// 1,000 lines), and the pending payouts promoters requested by that method.
#[utoipa::path(post, path = "/api/v1/affiliate/payout-batches/", tag = "admin", security(("admin_key" = [])),
    request_body = NewBatch,
    responses((status = 201, body = inline(Envelope<BatchView>)), (status = 400, description = "Field errors, or nothing to pay")))]
#[tracing::instrument(skip(state, admin, body))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    body: Bytes,
) -> Result<(StatusCode, Json<Envelope<BatchView>>), AdminError> {
    let new = NewBatch::parse(&json_object(&body)?).map_err(ApiError::Invalid)?;
    let mut tx = state.pool.begin().await?;
    let batch: i64 = sqlx::query_scalar(
        "INSERT INTO payout_batches (method, currency, created_by) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(new.method)
    .bind(&state.settings.payout_currency)
    .bind(&admin.email)
    .fetch_one(&mut *tx)
    .await?;
    // Payouts before totals, as settling a payout locks them, so the two never wait on
    // each other in opposite orders.
    let requested: Vec<Money> = sqlx::query_scalar(
        "UPDATE payouts SET batch_id = $1
         WHERE id IN (SELECT id FROM payouts
                      WHERE status = 'pending' AND batch_id IS NULL AND method = $2
                        AND ($3::bigint[] IS NULL OR affiliate_id = ANY($3))
                      ORDER BY id LIMIT $4 FOR UPDATE)
         RETURNING amount",
    )
    .bind(batch)
    .bind(new.method)
    .bind(&new.affiliate_ids)
    .bind(MAX_LINES as i64)
    .fetch_all(&mut *tx)
    .await?;
    let now = state.clock.now();
    let candidates: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT affiliate_id FROM ({}) c ORDER BY affiliate_id LIMIT $5",
        payable_query()
    ))
    .bind(now)
    .bind(new.method)
    .bind(&new.affiliate_ids)
    .bind(review_hours(&state))
    .bind((MAX_LINES - requested.len()) as i64)
    .fetch_all(&mut *tx)
    .await?;
    // Lock their totals, then read the balances again: a statement started after the
    // locks sees every ledger entry committed with the totals it locked.
    sqlx::query("SELECT 1 FROM affiliate_totals WHERE affiliate_id = ANY($1) ORDER BY affiliate_id FOR UPDATE")
        .bind(&candidates)
        .execute(&mut *tx)
        .await?;
    let balances: Vec<PayableBalance> =
        sqlx::query_as(&format!("{} ORDER BY a.id", payable_query()))
            .bind(now)
            .bind(new.method)
            .bind(&candidates)
            .bind(review_hours(&state))
            .fetch_all(&mut *tx)
            .await?;
    if requested.is_empty() && balances.is_empty() {
        return Err(ApiError::field(
            "non_field_errors",
            format!("Nothing is payable by {}: no balance at or above its minimum, and no payout requested.", new.method),
        )
        .into());
    }
    for balance in &balances {
        pay_out(&mut tx, batch, balance).await?;
    }
    let view = find(&mut tx, batch).await?;
    tx.commit().await?;
    for balance in &balances {
        crate::metrics::payout("requested", balance.payable);
    }
    Ok((
        StatusCode::CREATED,
        Json(Envelope::new(view, "Payout batch created")),
    ))
}

/// A pending payout of `balance` in `batch`, moved into the affiliate's pending total.
async fn pay_out(
    tx: &mut sqlx::PgConnection,
    batch: i64,
    balance: &PayableBalance,
) -> Result<(), AdminError> {
    sqlx::query(
        "INSERT INTO payouts (affiliate_id, amount, method, address, status, batch_id)
         VALUES ($1, $2, $3, $4, 'pending', $5)",
    )
    .bind(balance.affiliate_id)
    .bind(balance.payable)
    .bind(balance.method)
    .bind(&balance.address)
    .bind(batch)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE affiliate_totals SET pending_payouts = pending_payouts + $2, updated_at = now() WHERE affiliate_id = $1",
    )
    .bind(balance.affiliate_id)
    .bind(balance.payable)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Batches, newest first, with their totals.
#[utoipa::path(get, path = "/api/v1/affiliate/payout-batches/", tag = "admin", security(("admin_key" = [])),
    params(BatchQuery),
    responses((status = 200, body = inline(Envelope<BatchList>)), (status = 400, description = "Invalid parameters")))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<BatchList> {
    let query = query_object(&query);
    let mut f = Fields::query(&query, &Plain);
    let paging = Paging::read(&mut f, 20, 100);
    f.finish(()).map_err(ApiError::Invalid)?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM payout_batches")
        .fetch_one(&state.pool)
        .await?;
    let rows: Vec<BatchRow> = sqlx::query_as(&format!(
        "{BATCH_SUMMARY} GROUP BY b.id ORDER BY b.id DESC LIMIT $1 OFFSET $2"
    ))
    .bind(paging.size)
    .bind(paging.offset())
    .fetch_all(&state.pool)
    .await?;
    ok(
        BatchList {
            results: rows.into_iter().map(|row| row.view(None)).collect(),
            pagination: Pagination::new(PATH, &query, paging, total),
        },
        "Payout batches retrieved successfully",
    )
}

/// One batch, with its lines.
#[utoipa::path(get, path = "/api/v1/affiliate/payout-batches/{id}/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<BatchView>)), (status = 404, description = "No such batch")))]
#[tracing::instrument(skip(state, _admin))]
pub async fn show(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
) -> Answer<BatchView> {
    let mut db = state.pool.acquire().await?;
    ok(
        find(&mut db, id(&raw)?).await?,
        "Payout batch retrieved successfully",
    )
}

/// The batch as a file: its lines still to pay in the PayPal Payouts format (no header:
/// recipient, amount, currency, reference, note, wallet) or the Wise format (a header;
/// the email template for wise, the IBAN one for bank); or the whole batch as JSON.
/// Lines already paid or failed are never in a payment file, so that exporting again
/// cannot pay twice.
#[utoipa::path(get, path = "/api/v1/affiliate/payout-batches/{id}/export/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path), ExportQuery),
    responses((status = 200, description = "The file: text/csv or application/json, as an attachment"),
              (status = 400, description = "Unknown format, or one the batch's method cannot use"),
              (status = 404, description = "No such batch")))]
#[tracing::instrument(skip(state, _admin))]
pub async fn export(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, AdminError> {
    let batch_id = id(&raw)?;
    let query = query_object(&query);
    let mut f = Fields::query(&query, &Plain);
    f.require("format");
    let format = f.one_of("format", FORMATS);
    f.finish(()).map_err(ApiError::Invalid)?;
    let format = format.expect("required and checked");
    let mut db = state.pool.acquire().await?;
    let batch = find(&mut db, batch_id).await?;
    let body = match (format.as_str(), batch.method) {
        ("json", _) => serde_json::to_vec_pretty(&batch).map_err(anyhow::Error::from)?,
        ("paypal", PaymentMethod::Paypal) => files::paypal(&batch)?,
        ("wise", PaymentMethod::Wise | PaymentMethod::Bank) => files::wise(&batch)?,
        (format, method) => {
            return Err(ApiError::field(
                "format",
                format!(
                    "A {method} batch cannot be exported as {format}: use json{}.",
                    files::suggestion(method)
                ),
            )
            .into());
        }
    };
    let (kind, extension) = match format.as_str() {
        "json" => ("application/json", "json"),
        _ => ("text/csv; charset=utf-8", "csv"),
    };
    let filename =
        format!("attachment; filename=\"reftrack-batch-{batch_id}-{format}.{extension}\"");
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_string()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        body,
    )
        .into_response())
}

/// Records what the provider did with lines of the batch: `paid` or `failed` (with a
/// reason), all or none. A line already at the given status is left as it is.
#[utoipa::path(post, path = "/api/v1/affiliate/payout-batches/{id}/results/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    request_body = BatchResults,
    responses((status = 200, body = inline(Envelope<BatchView>)),
              (status = 400, description = "Field errors, or a payout not in this batch"),
              (status = 404, description = "No such batch"),
              (status = 409, description = "A line already has another outcome")))]
#[tracing::instrument(skip(state, admin, body))]
pub async fn record_results(
    State(state): State<AppState>,
    admin: Admin,
    Path(raw): Path<String>,
    body: Bytes,
) -> Answer<BatchView> {
    let batch_id = id(&raw)?;
    let mut lines = BatchResults::parse(&json_object(&body)?).map_err(ApiError::Invalid)?;
    lines.sort_by_key(|(payout, _)| *payout);
    let mut tx = state.pool.begin().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM payout_batches WHERE id = $1)")
            .bind(batch_id)
            .fetch_one(&mut *tx)
            .await?;
    if !exists {
        return Err(ApiError::NotFound.into());
    }
    let ids: Vec<i64> = lines.iter().map(|(payout, _)| *payout).collect();
    let statuses: HashMap<i64, PayoutStatus> = sqlx::query_as(
        "SELECT id, status FROM payouts WHERE batch_id = $1 AND id = ANY($2) ORDER BY id FOR UPDATE",
    )
    .bind(batch_id)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let mut settled = Vec::new();
    for (payout, outcome) in &lines {
        match statuses.get(payout) {
            None => {
                return Err(ApiError::field(
                    "lines",
                    format!("Payout {payout} is not a line of batch {batch_id}."),
                )
                .into());
            }
            Some(status) if *status == outcome.status() => {}
            Some(_) => {
                let row = settle_in(&mut tx, *payout, outcome, &admin.email).await?;
                settled.push((outcome.status(), row.amount));
            }
        }
    }
    let view = find(&mut tx, batch_id).await?;
    tx.commit().await?;
    for (status, amount) in settled {
        crate::metrics::payout(status.as_str(), amount);
    }
    ok(view, "Payout batch results recorded")
}

/// The provider's batch file formats.
mod files {
    use super::*;

    /// What to say instead of a format a method cannot use.
    pub fn suggestion(method: PaymentMethod) -> &'static str {
        match method {
            PaymentMethod::Paypal => " or paypal",
            PaymentMethod::Wise | PaymentMethod::Bank => " or wise",
            PaymentMethod::Crypto => "",
        }
    }

    fn open_lines(batch: &BatchView) -> impl Iterator<Item = &LineView> {
        batch
            .lines
            .iter()
            .flatten()
            .filter(|line| matches!(line.status, PayoutStatus::Pending))
    }

    fn note(batch: &BatchView) -> String {
        format!("Affiliate commission, batch {}", batch.id)
    }

    /// PayPal Payouts (Payouts Web): no header; recipient, amount, currency, customer id
    /// (at most 30 characters, no spaces), note to recipient, recipient wallet.
    pub fn paypal(batch: &BatchView) -> Result<Vec<u8>, AdminError> {
        let mut out = csv::Writer::from_writer(Vec::new());
        for line in open_lines(batch) {
            out.write_record([
                line.address.as_str(),
                &line.amount.to_string(),
                &batch.currency,
                &line.reference,
                &note(batch),
                "PAYPAL",
            ])
            .map_err(anyhow::Error::from)?;
        }
        Ok(out.into_inner().map_err(|err| anyhow::anyhow!("{err}"))?)
    }

    /// Wise batch payments: the "send by email" template for a wise batch, the IBAN one
    /// for a bank batch; fixed target amounts in the batch's currency.
    pub fn wise(batch: &BatchView) -> Result<Vec<u8>, AdminError> {
        let by_iban = batch.method == PaymentMethod::Bank;
        let mut header = vec![
            "name",
            "recipientEmail",
            "paymentReference",
            "receiverType",
            "amountCurrency",
            "amount",
            "sourceCurrency",
            "targetCurrency",
        ];
        if by_iban {
            header.push("IBAN");
        }
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record(&header).map_err(anyhow::Error::from)?;
        for line in open_lines(batch) {
            let email = if by_iban {
                line.email.clone().unwrap_or_default()
            } else {
                line.address.clone()
            };
            let name = line.name.clone().unwrap_or_else(|| email.clone());
            let mut record = vec![
                spreadsheet_safe(&name),
                email,
                line.reference.clone(),
                "PERSON".into(),
                "target".into(),
                line.amount.to_string(),
                batch.currency.clone(),
                batch.currency.clone(),
            ];
            if by_iban {
                record.push(line.address.clone());
            }
            out.write_record(&record).map_err(anyhow::Error::from)?;
        }
        Ok(out.into_inner().map_err(|err| anyhow::anyhow!("{err}"))?)
    }

    /// A name as a cell a spreadsheet will not run as a formula (these files are opened
    /// in one before they are uploaded).
    pub fn spreadsheet_safe(text: &str) -> String {
        if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{text}")
        } else {
            text.to_string()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::spreadsheet_safe;

        #[test]
        fn names_that_look_like_formulas_are_quoted() {
            assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
            assert_eq!(spreadsheet_safe("@sum"), "'@sum");
            assert_eq!(spreadsheet_safe("Ana-Maria"), "Ana-Maria");
        }
    }
}
