//! The admin affiliate API (`docs/api/admin-affiliate-api.txt`), under `/api/v1/affiliate/`, for the product's
//! staff: list, create, read, update, approve, reject, deactivate and delete affiliates,
//! their performance, and payouts. Answers are in the `{success, data, message,
//! timestamp, api_version}` envelope.

pub mod db;
pub mod payouts;
pub mod validate;
pub mod views;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Days, NaiveDate, Utc};
use reftrack_common::envelope::{Envelope, FieldErrors};
use reftrack_store::stats::{self, Stats};
use rust_decimal::Decimal;

use crate::auth::Admin;
use crate::error::{AdminError, ApiError};
use crate::input::json_object;
use crate::state::AppState;
use db::AffiliateRow;
use views::{
    AddressView, AffiliateAnswer, AffiliateList, ApprovalRecord, Approved, Created, Deleted,
    Detail, DetailMetrics, ListItem, ListMetrics, NothingMore, Pagination, PaymentMethodView,
    Performance, PerformanceEnvelope, Period, PeriodMetrics, Rejected, RejectionRecord, StatusView,
    Trending, Updated, timestamp,
};

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
        .route(
            "/api/v1/affiliate/affiliates/{id}/performance/",
            get(performance),
        )
        .merge(payouts::router())
}

type Answer<T> = Result<Json<Envelope<T>>, AdminError>;

fn ok<T: serde::Serialize>(data: T, message: &str) -> Answer<T> {
    Ok(Json(Envelope::new(data, message)))
}

/// A path id; anything but a positive integer is simply not found.
fn id(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(ApiError::NotFound)
}

fn dollars(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

/// `part` per 100 of `whole`, to two decimals.
fn percent(part: u64, whole: u64) -> Decimal {
    if whole == 0 {
        return Decimal::ZERO;
    }
    (Decimal::from(part) * Decimal::ONE_HUNDRED / Decimal::from(whole)).round_dp(2)
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
            join_date: timestamp(row.created_at),
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
        join_date: timestamp(row.created_at),
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
        join_date: timestamp(row.created_at),
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
        join_date: timestamp(row.created_at),
        updated_date: timestamp(row.updated_at),
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
        approved_date: row.approved_at.map(timestamp),
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
        rejected_date: row.rejected_at.map(timestamp),
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

#[derive(serde::Deserialize)]
pub struct PeriodQuery {
    date_from: Option<String>,
    date_to: Option<String>,
}

/// The range asked for: `[date_from, date_to]` in whole UTC days, 30 days to today by default.
fn period(query: &PeriodQuery) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let date = |field: &str, raw: &Option<String>| -> Result<Option<NaiveDate>, ApiError> {
        raw.as_deref()
            .map(|d| {
                NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| ApiError::field(field, "must be a date in ISO format: YYYY-MM-DD"))
            })
            .transpose()
    };
    let to = date("date_to", &query.date_to)?.unwrap_or_else(|| Utc::now().date_naive());
    let from = date("date_from", &query.date_from)?.unwrap_or(to - Days::new(29));
    if from > to {
        return Err(ApiError::field("date_from", "must not be after date_to"));
    }
    if (to - from).num_days() > 366 {
        return Err(ApiError::field(
            "date_from",
            "the period must not exceed 367 days",
        ));
    }
    Ok((from, to))
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// Signed whole percentage change: "+15%", "-8%". From nothing to something is "+100%".
fn trend(current: Decimal, previous: Decimal) -> String {
    let change = if previous.is_zero() {
        if current.is_zero() {
            Decimal::ZERO
        } else {
            Decimal::ONE_HUNDRED
        }
    } else {
        (current - previous) * Decimal::ONE_HUNDRED / previous.abs()
    };
    let rounded =
        change.round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    if rounded.is_sign_negative() && !rounded.is_zero() {
        format!("{rounded}%")
    } else {
        format!("+{}%", rounded.abs())
    }
}

fn period_metrics(s: &Stats) -> PeriodMetrics {
    let total_sales = dollars(s.net_sales_cents());
    PeriodMetrics {
        total_clicks: s.raw_clicks,
        unique_clicks: s.unique_clicks,
        conversions: s.purchases,
        conversion_rate: percent(s.purchases, s.unique_clicks),
        total_sales,
        total_commissions: dollars(s.net_commission_cents()),
        average_order_value: if s.purchases == 0 {
            Decimal::ZERO
        } else {
            (total_sales / Decimal::from(s.purchases)).round_dp(2)
        },
    }
}

#[utoipa::path(get, path = "/api/v1/affiliate/affiliates/{id}/performance/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path),
        ("date_from" = Option<String>, Query, description = "YYYY-MM-DD (default: 29 days before date_to)"),
        ("date_to" = Option<String>, Query, description = "YYYY-MM-DD (default: today)")),
    responses((status = 200, body = PerformanceEnvelope), (status = 400, description = "Invalid dates"), (status = 404, description = "No such affiliate")))]
pub async fn performance(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
    Query(query): Query<PeriodQuery>,
) -> Result<Json<PerformanceEnvelope>, AdminError> {
    let id = id(&raw)?;
    let (from, to) = period(&query)?;
    db::find(&state.pool, id).await?;
    let key = format!("performance:{id}:{from}:{to}");
    let data = state
        .cache
        .get_or_compute(&key, compute_performance(&state, id, from, to))
        .await?;
    Ok(Json(PerformanceEnvelope {
        success: true,
        data,
    }))
}

async fn compute_performance(
    state: &AppState,
    id: i64,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Performance, ApiError> {
    let days = (to - from).num_days() + 1;
    let end = day_start(to) + chrono::Duration::days(1);
    let start = day_start(from);
    let before = start - chrono::Duration::days(days);
    let (current, previous) = tokio::try_join!(
        stats::affiliate(&state.clickhouse, id, start, end),
        stats::affiliate(&state.clickhouse, id, before, start),
    )?;
    let metrics = period_metrics(&current);
    let earlier = period_metrics(&previous);
    Ok(Performance {
        affiliate_id: id,
        period: Period {
            start_date: from.to_string(),
            end_date: to.to_string(),
        },
        trending: Trending {
            clicks_trend: trend(metrics.total_clicks.into(), earlier.total_clicks.into()),
            conversion_trend: trend(metrics.conversions.into(), earlier.conversions.into()),
            commission_trend: trend(metrics.total_commissions, earlier.total_commissions),
        },
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn trends_are_signed_whole_percentages() {
        assert_eq!(trend(dec!(115), dec!(100)), "+15%");
        assert_eq!(trend(dec!(92), dec!(100)), "-8%");
        assert_eq!(trend(dec!(100), dec!(100)), "+0%");
        assert_eq!(trend(dec!(5), dec!(0)), "+100%");
        assert_eq!(trend(dec!(0), dec!(0)), "+0%");
        assert_eq!(trend(dec!(1), dec!(3)), "-67%");
        assert_eq!(trend(dec!(1068), dec!(875.41)), "+22%");
    }

    #[test]
    fn the_seed_example_metrics_follow_from_the_rollup() {
        let s = Stats {
            raw_clicks: 1250,
            unique_clicks: 890,
            purchases: 67,
            sales_cents: 890_000,
            commission_cents: 106_800,
            ..Stats::default()
        };
        let m = period_metrics(&s);
        assert_eq!(
            (m.conversion_rate, m.average_order_value),
            (dec!(7.53), dec!(132.84))
        );
    }

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
