//! Affiliates: list (with the lifetime figures of each), create, read, update, approve,
//! reject, deactivate and delete.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use reftrack_common::envelope::{Envelope, FieldErrors};
use reftrack_store::stats::{self, Stats};
use rust_decimal::Decimal;

use super::db::{self, AffiliateRow};
use super::views::{
    AddressView, AffiliateAnswer, AffiliateList, ApprovalRecord, Approved, Created, Deleted,
    Detail, DetailMetrics, ListItem, ListMetrics, NothingMore, Pagination, PaymentMethodView,
    Rejected, RejectionRecord, StatusView, Updated, rfc3339_seconds,
};
use super::{Answer, dollars, id, ok, percent, validate};
use crate::auth::Admin;
use crate::error::{AdminError, ApiError};
use crate::input::json_object;
use crate::state::AppState;

const LIST_PATH: &str = "/api/v1/affiliate/affiliates/";
/// Rate of a newly created affiliate, as the admin API document shows it.
const NEW_AFFILIATE_RATE: Decimal = Decimal::from_parts(100, 0, 0, false, 1);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/affiliate/affiliates/", get(list).post(create))
        .route(
            "/api/v1/affiliate/affiliates/{id}/",
            get(detail).put(update).delete(remove),
        )
        .route("/api/v1/affiliate/affiliates/{id}/approve/", post(approve))
        .route("/api/v1/affiliate/affiliates/{id}/reject/", post(reject))
        .route(
            "/api/v1/affiliate/affiliates/{id}/deactivate/",
            post(deactivate),
        )
}

/// Since the beginning, through tomorrow (clock skew).
fn lifetime() -> (DateTime<Utc>, DateTime<Utc>) {
    (DateTime::UNIX_EPOCH, Utc::now() + chrono::Duration::days(1))
}

fn list_metrics(s: &Stats) -> ListMetrics {
    ListMetrics {
        total_sales: dollars(s.net_sales_cents()),
        total_commissions: dollars(s.net_commission_cents()),
        conversion_rate: percent(s.purchases, s.unique_clicks),
        total_clicks: s.raw_clicks,
    }
}

#[utoipa::path(get, path = "/api/v1/affiliate/affiliates/", tag = "admin", security(("admin_key" = [])),
    params(
        ("page" = Option<u32>, Query, description = "Page number (default 1)"),
        ("page_size" = Option<u32>, Query, description = "Results per page (max 100, default 20)"),
        ("status" = Option<String>, Query, description = "pending, approved or rejected"),
        ("tier" = Option<u8>, Query, description = "1 to 5"),
        ("search" = Option<String>, Query, description = "In name or email"),
        ("active" = Option<bool>, Query, description = "Active or not"),
    ),
    responses((status = 200, body = inline(Envelope<AffiliateList>)), (status = 400, description = "Invalid parameters")))]
pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<AffiliateList> {
    let (page, page_size, filters) = list_query(&query)?;
    let (total, rows) = db::list(&state.pool, &filters, page_size, (page - 1) * page_size).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let (from, to) = lifetime();
    let stats = stats::affiliates(&state.clickhouse, &ids, from, to).await?;
    let results = rows
        .into_iter()
        .map(|row| ListItem {
            performance_metrics: list_metrics(&stats.get(&row.id).copied().unwrap_or_default()),
            id: row.id,
            name: row.name,
            email: row.email,
            status: StatusView::of(&row.status),
            tier: row.tier,
            commission_rate: row.commission_rate,
            join_date: rfc3339_seconds(row.created_at),
            active: row.active,
        })
        .collect();
    let pagination = Pagination::new(LIST_PATH, page, page_size, total);
    ok(
        AffiliateList {
            results,
            pagination,
        },
        "Affiliates retrieved successfully",
    )
}

/// `page`, `page_size` and the filters of a listing, each checked.
fn list_query(query: &HashMap<String, String>) -> Result<(i64, i64, db::Filters), ApiError> {
    let mut errors = FieldErrors::new();
    let mut fail =
        |field: &str, message: &str| errors.insert(field.to_string(), vec![message.to_string()]);
    let int = |field: &str| query.get(field).map(|v| v.trim().parse::<i64>());
    let page = match int("page") {
        None => 1,
        Some(Ok(p)) if p >= 1 => p,
        Some(_) => {
            fail("page", "must be a positive integer");
            1
        }
    };
    let page_size = match int("page_size") {
        None => 20,
        Some(Ok(s)) if (1..=100).contains(&s) => s,
        Some(_) => {
            fail("page_size", "must be an integer from 1 to 100");
            20
        }
    };
    let mut filters = db::Filters::default();
    match query.get("status").map(String::as_str) {
        None => {}
        Some(s @ ("pending" | "approved" | "rejected")) => filters.status = Some(s.to_string()),
        Some(_) => {
            fail("status", "must be one of pending, approved, rejected");
        }
    }
    match int("tier") {
        None => {}
        Some(Ok(t)) if (1..=5).contains(&t) => filters.tier = Some(t as i16),
        Some(_) => {
            fail("tier", "must be an integer from 1 to 5");
        }
    }
    match query.get("active").map(|a| a.to_ascii_lowercase()) {
        None => {}
        Some(a) if a == "true" || a == "1" => filters.active = Some(true),
        Some(a) if a == "false" || a == "0" => filters.active = Some(false),
        Some(_) => {
            fail("active", "must be true or false");
        }
    }
    match query.get("search").map(|s| s.trim()) {
        None | Some("") => {}
        Some(s) if s.chars().count() <= 100 => filters.search = Some(s.to_string()),
        Some(_) => {
            fail("search", "must be at most 100 characters");
        }
    }
    if errors.is_empty() {
        Ok((page, page_size, filters))
    } else {
        Err(ApiError::Invalid(errors))
    }
}

/// Checks that the address's country and state exist and belong together.
async fn check_place(
    state: &AppState,
    address: Option<&validate::AddressInput>,
) -> Result<(), ApiError> {
    let Some(country_id) = address.and_then(|a| a.country_id) else {
        return Ok(());
    };
    let state_id = address.and_then(|a| a.state_id);
    let (country, place) = db::place_exists(&state.pool, country_id, state_id).await?;
    if !country {
        return Err(ApiError::field(
            "address.country_id",
            format!("{country_id} is not a known country"),
        ));
    }
    if !place {
        return Err(ApiError::field(
            "address.state_id",
            format!(
                "{} is not a known state of country {country_id}",
                state_id.unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/affiliate/affiliates/", tag = "admin", security(("admin_key" = [])),
    request_body(content = inline(serde_json::Value), description = "name, email, phone, website, address, payment_methods, marketing_channels, audience_size, experience_level"),
    responses((status = 201, body = inline(Envelope<Created>)), (status = 400, description = "Field errors")))]
pub async fn create(
    State(state): State<AppState>,
    _admin: Admin,
    body: Bytes,
) -> Result<(StatusCode, Json<Envelope<Created>>), AdminError> {
    let new = validate::new_affiliate(&json_object(&body)?).map_err(ApiError::Invalid)?;
    check_place(&state, new.address.as_ref()).await?;
    let id = db::create(&state.pool, &new, NEW_AFFILIATE_RATE).await?;
    let row = db::find(&state.pool, id).await?;
    let created = answer(row, NothingMore {});
    Ok((
        StatusCode::CREATED,
        Json(Envelope::new(created, "Affiliate created successfully")),
    ))
}

#[utoipa::path(get, path = "/api/v1/affiliate/affiliates/{id}/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<Detail>)), (status = 404, description = "No such affiliate")))]
pub async fn detail(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
) -> Answer<Detail> {
    let id = id(&raw)?;
    let row = db::find(&state.pool, id).await?;
    let methods = db::payment_methods(&state.pool, id).await?;
    let metrics = state
        .cache
        .get_or_compute(&format!("detail:{id}"), lifetime_metrics(&state, id))
        .await?;
    let detail = Detail {
        address: row.has_address().then(|| AddressView {
            street: row.address_street.clone(),
            city: row.address_city.clone(),
            state: row.state_name.clone(),
            country: row.country_name.clone(),
            zip: row.address_zip.clone(),
        }),
        payment_methods: methods
            .into_iter()
            .map(|m| {
                let address = Some(m.address);
                PaymentMethodView {
                    email: address
                        .clone()
                        .filter(|_| matches!(m.method.as_str(), "wise" | "paypal")),
                    iban: address.clone().filter(|_| m.method == "bank"),
                    address: address.filter(|_| m.method == "crypto"),
                    kind: m.method,
                    verified: m.verified,
                }
            })
            .collect(),
        performance_metrics: metrics,
        id: row.id,
        name: row.name,
        email: row.email,
        phone: row.phone,
        website: row.website,
        status: StatusView::of(&row.status),
        tier: row.tier,
        commission_rate: row.commission_rate,
        join_date: rfc3339_seconds(row.created_at),
        active: row.active,
        affiliate_code: row.referral_code,
    };
    ok(detail, "Affiliate details retrieved successfully")
}

async fn lifetime_metrics(state: &AppState, id: i64) -> Result<DetailMetrics, ApiError> {
    let (from, to) = lifetime();
    let s = stats::affiliate(&state.clickhouse, id, from, to).await?;
    let customers = db::paying_customers(&state.pool, id).await?;
    let list = list_metrics(&s);
    Ok(DetailMetrics {
        lifetime_value: if customers == 0 {
            Decimal::ZERO
        } else {
            (list.total_sales / Decimal::from(customers)).round_dp(2)
        },
        total_sales: list.total_sales,
        total_commissions: list.total_commissions,
        conversion_rate: list.conversion_rate,
        total_clicks: list.total_clicks,
    })
}

/// The affiliate in `row`, with what an action `recorded`.
fn answer<R>(row: AffiliateRow, recorded: R) -> AffiliateAnswer<R> {
    AffiliateAnswer {
        id: row.id,
        name: row.name,
        email: row.email,
        status: StatusView::of(&row.status),
        tier: row.tier,
        commission_rate: row.commission_rate,
        join_date: rfc3339_seconds(row.created_at),
        recorded,
        active: row.active,
        affiliate_code: row.referral_code,
    }
}

fn updated(row: AffiliateRow) -> Updated {
    Updated {
        id: row.id,
        name: row.name,
        email: row.email,
        phone: row.phone,
        website: row.website,
        status: StatusView::of(&row.status),
        tier: row.tier,
        commission_rate: row.commission_rate,
        join_date: rfc3339_seconds(row.created_at),
        updated_date: rfc3339_seconds(row.updated_at),
        active: row.active,
        affiliate_code: row.referral_code,
    }
}

#[utoipa::path(put, path = "/api/v1/affiliate/affiliates/{id}/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    request_body(content = inline(serde_json::Value), description = "Any of the create fields, tier and commission_rate"),
    responses((status = 200, body = inline(Envelope<Updated>)), (status = 400, description = "Field errors"), (status = 404, description = "No such affiliate")))]
pub async fn update(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
    body: Bytes,
) -> Answer<Updated> {
    let id = id(&raw)?;
    let changes = validate::changes(&json_object(&body)?).map_err(ApiError::Invalid)?;
    check_place(&state, changes.address.as_ref()).await?;
    db::update(&state.pool, id, &changes).await?;
    ok(
        updated(db::find(&state.pool, id).await?),
        "Affiliate updated successfully",
    )
}

#[utoipa::path(post, path = "/api/v1/affiliate/affiliates/{id}/approve/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    request_body(content = inline(serde_json::Value), description = "tier, commission_rate, approval_note"),
    responses((status = 200, body = inline(Envelope<Approved>)), (status = 409, description = "Already approved")))]
pub async fn approve(
    State(state): State<AppState>,
    admin: Admin,
    Path(raw): Path<String>,
    body: Bytes,
) -> Answer<Approved> {
    let id = id(&raw)?;
    let approval = validate::approval(&json_object(&body)?).map_err(ApiError::Invalid)?;
    db::approve(
        &state.pool,
        id,
        approval.tier,
        approval.commission_rate,
        approval.approval_note.as_deref(),
        &admin.email,
    )
    .await?;
    let mut row = db::find(&state.pool, id).await?;
    let approval = ApprovalRecord {
        approved_date: row.approved_at.map(rfc3339_seconds),
        approved_by: row.approved_by.take(),
        approval_note: row.approval_note.take(),
    };
    let approved = answer(row, approval);
    ok(approved, "Affiliate approved successfully")
}

#[utoipa::path(post, path = "/api/v1/affiliate/affiliates/{id}/reject/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    request_body(content = inline(serde_json::Value), description = "reason (optional)"),
    responses((status = 200, body = inline(Envelope<Rejected>)), (status = 409, description = "Already rejected")))]
pub async fn reject(
    State(state): State<AppState>,
    admin: Admin,
    Path(raw): Path<String>,
    body: Bytes,
) -> Answer<Rejected> {
    let id = id(&raw)?;
    let reason = if body.is_empty() {
        None
    } else {
        validate::rejection(&json_object(&body)?).map_err(ApiError::Invalid)?
    };
    db::reject(&state.pool, id, reason.as_deref(), &admin.email).await?;
    let mut row = db::find(&state.pool, id).await?;
    let rejection = RejectionRecord {
        rejected_date: row.rejected_at.map(rfc3339_seconds),
        rejected_by: row.rejected_by.take(),
        rejection_reason: row.rejection_reason.take(),
    };
    let rejected = answer(row, rejection);
    ok(rejected, "Affiliate rejected successfully")
}

#[utoipa::path(post, path = "/api/v1/affiliate/affiliates/{id}/deactivate/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<Updated>)), (status = 404, description = "No such affiliate")))]
pub async fn deactivate(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
) -> Answer<Updated> {
    let id = id(&raw)?;
    db::deactivate(&state.pool, id).await?;
    ok(
        updated(db::find(&state.pool, id).await?),
        "Affiliate deactivated successfully",
    )
}

#[utoipa::path(delete, path = "/api/v1/affiliate/affiliates/{id}/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<Deleted>)), (status = 404, description = "No such affiliate")))]
pub async fn remove(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
) -> Answer<Deleted> {
    let id = id(&raw)?;
    db::delete(&state.pool, id).await?;
    ok(
        Deleted { id, deleted: true },
        "Affiliate deleted successfully",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_links_carry_the_page() {
        let p = Pagination::new(LIST_PATH, 1, 20, 95);
        assert_eq!(
            (p.total_pages, p.has_next, p.has_previous),
            (5, true, false)
        );
        assert_eq!(
            p.next_url.as_deref(),
            Some("/api/v1/affiliate/affiliates/?page=2")
        );
        assert_eq!(p.previous_url, None);
    }
}
