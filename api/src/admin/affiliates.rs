//! Affiliates: list (with the lifetime figures of each), create, read, update, approve,
//! reject, deactivate and delete.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use reftrack_common::envelope::Envelope;
use reftrack_common::input::query_object;
use reftrack_store::stats::Stats;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::db::{self, AffiliateRow};
use super::input::{AddressInput, AffiliateChanges, Approval, ListQuery, NewAffiliate, Rejection};
use super::views::{
    AddressView, AffiliateAnswer, AffiliateList, ApprovalRecord, Approved, Created, Deleted,
    Detail, DetailMetrics, ListItem, ListMetrics, NothingMore, Pagination, PaymentMethodView,
    Rejected, RejectionRecord, StatusView, Updated, rfc3339_seconds,
};
use super::{Answer, id, ok, optional_body};
use crate::auth::Admin;
use crate::error::{AdminError, ApiError};
use crate::input::json_object;
use crate::state::AppState;

const LIST_PATH: &str = "/api/v1/affiliate/affiliates/";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(detail, update, remove))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(deactivate))
        .routes(routes!(reactivate))
}

fn list_metrics(s: &Stats) -> ListMetrics {
    ListMetrics {
        total_sales: s.net_sales(),
        total_commissions: s.net_commission(),
        conversion_rate: s.conversion_rate(),
        total_clicks: s.raw_clicks,
    }
}

/// Lists affiliates, newest first, with their lifetime figures.
#[utoipa::path(get, path = "/api/v1/affiliate/affiliates/", tag = "admin", security(("admin_key" = [])),
    params(ListQuery),
    responses((status = 200, body = inline(Envelope<AffiliateList>)), (status = 400, description = "Invalid parameters")))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<AffiliateList> {
    let query = query_object(&query);
    let (paging, filters) = ListQuery::parse(&query).map_err(ApiError::Invalid)?;
    let (total, rows) = db::list(&state.pool, &filters, paging).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let stats = state.cache.lifetime(&state.clickhouse, &ids).await?;
    let results = rows
        .into_iter()
        .map(|row| ListItem {
            performance_metrics: list_metrics(&stats.get(&row.id).copied().unwrap_or_default()),
            id: row.id,
            name: row.name,
            email: row.email,
            status: StatusView::of(row.status),
            tier: row.tier,
            commission_rate: row.commission_rate,
            join_date: rfc3339_seconds(row.created_at),
            active: row.active,
        })
        .collect();
    let pagination = Pagination::new(LIST_PATH, &query, paging, total);
    ok(
        AffiliateList {
            results,
            pagination,
        },
        "Affiliates retrieved successfully",
    )
}

/// Checks that the address's country and state exist and belong together.
async fn check_place(state: &AppState, address: Option<&AddressInput>) -> Result<(), ApiError> {
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

/// Creates a pending affiliate.
#[utoipa::path(post, path = "/api/v1/affiliate/affiliates/", tag = "admin", security(("admin_key" = [])),
    request_body = NewAffiliate,
    responses((status = 201, body = inline(Envelope<Created>)), (status = 400, description = "Field errors")))]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<AppState>,
    _admin: Admin,
    body: Bytes,
) -> Result<(StatusCode, Json<Envelope<Created>>), AdminError> {
    let new = NewAffiliate::parse(&json_object(&body)?).map_err(ApiError::Invalid)?;
    check_place(&state, new.address.as_ref()).await?;
    // No rate of its own: its tier's (tier 1 earns 10.0, as the admin API document shows).
    let id = db::create(&state.pool, &new, None).await?;
    let row = db::find(&state.pool, id).await?;
    let created = answer(row, NothingMore {});
    Ok((
        StatusCode::CREATED,
        Json(Envelope::new(created, "Affiliate created successfully")),
    ))
}

/// One affiliate, with its payment methods and lifetime figures.
#[utoipa::path(get, path = "/api/v1/affiliate/affiliates/{id}/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<Detail>)), (status = 404, description = "No such affiliate")))]
#[tracing::instrument(skip(state, _admin))]
pub async fn detail(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
) -> Answer<Detail> {
    let id = id(&raw)?;
    let row = db::find(&state.pool, id).await?;
    let methods = db::payment_methods(&state.pool, id).await?;
    let metrics = lifetime_metrics(&state, id).await?;
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
                let key = m.method.address_key();
                let address = |k: &str| (key == k).then(|| m.address.clone());
                PaymentMethodView {
                    email: address("email"),
                    iban: address("iban"),
                    address: address("address"),
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
        status: StatusView::of(row.status),
        tier: row.tier,
        commission_rate: row.commission_rate,
        join_date: rfc3339_seconds(row.created_at),
        active: row.active,
        affiliate_code: row.referral_code,
    };
    ok(detail, "Affiliate details retrieved successfully")
}

async fn lifetime_metrics(state: &AppState, id: i64) -> Result<DetailMetrics, ApiError> {
    let s = state
        .cache
        .lifetime(&state.clickhouse, &[id])
        .await?
        .remove(&id)
        .unwrap_or_default();
    let customers = db::paying_customers(&state.pool, id).await?;
    let list = list_metrics(&s);
    Ok(DetailMetrics {
        lifetime_value: list.total_sales.per(customers as u64),
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
        status: StatusView::of(row.status),
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
        status: StatusView::of(row.status),
        tier: row.tier,
        commission_rate: row.commission_rate,
        join_date: rfc3339_seconds(row.created_at),
        updated_date: rfc3339_seconds(row.updated_at),
        active: row.active,
        affiliate_code: row.referral_code,
    }
}

/// Changes the fields given, and only those.
#[utoipa::path(put, path = "/api/v1/affiliate/affiliates/{id}/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    request_body = AffiliateChanges,
    responses((status = 200, body = inline(Envelope<Updated>)), (status = 400, description = "Field errors"), (status = 404, description = "No such affiliate")))]
#[tracing::instrument(skip(state, _admin, body))]
pub async fn update(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
    body: Bytes,
) -> Answer<Updated> {
    let id = id(&raw)?;
    let changes = AffiliateChanges::parse(&json_object(&body)?).map_err(ApiError::Invalid)?;
    check_place(&state, changes.address.as_ref()).await?;
    db::update(&state.pool, id, &changes).await?;
    ok(
        updated(db::find(&state.pool, id).await?),
        "Affiliate updated successfully",
    )
}

/// Approves a pending or rejected affiliate; what the body does not give (tier, rate)
/// stays as it is.
#[utoipa::path(post, path = "/api/v1/affiliate/affiliates/{id}/approve/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    request_body = Approval,
    responses((status = 200, body = inline(Envelope<Approved>)), (status = 409, description = "Already approved")))]
#[tracing::instrument(skip(state, admin, body))]
pub async fn approve(
    State(state): State<AppState>,
    admin: Admin,
    Path(raw): Path<String>,
    body: Bytes,
) -> Answer<Approved> {
    let id = id(&raw)?;
    let approval = optional_body(&body, Approval::parse)?;
    db::approve(&state.pool, id, &approval, &admin.email).await?;
    let mut row = db::find(&state.pool, id).await?;
    let approval = ApprovalRecord {
        approved_date: row.approved_at.map(rfc3339_seconds),
        approved_by: row.approved_by.take(),
        approval_note: row.approval_note.take(),
    };
    let approved = answer(row, approval);
    ok(approved, "Affiliate approved successfully")
}

/// Rejects a pending or approved affiliate; its links stop attributing.
#[utoipa::path(post, path = "/api/v1/affiliate/affiliates/{id}/reject/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    request_body = Rejection,
    responses((status = 200, body = inline(Envelope<Rejected>)), (status = 409, description = "Already rejected")))]
#[tracing::instrument(skip(state, admin, body))]
pub async fn reject(
    State(state): State<AppState>,
    admin: Admin,
    Path(raw): Path<String>,
    body: Bytes,
) -> Answer<Rejected> {
    let id = id(&raw)?;
    let rejection = optional_body(&body, Rejection::parse)?;
    db::reject(&state.pool, id, rejection.reason.as_deref(), &admin.email).await?;
    let mut row = db::find(&state.pool, id).await?;
    let rejection = RejectionRecord {
        rejected_date: row.rejected_at.map(rfc3339_seconds),
        rejected_by: row.rejected_by.take(),
        rejection_reason: row.rejection_reason.take(),
    };
    let rejected = answer(row, rejection);
    ok(rejected, "Affiliate rejected successfully")
}

/// Deactivates an affiliate: its links stop attributing until it is active again.
#[utoipa::path(post, path = "/api/v1/affiliate/affiliates/{id}/deactivate/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<Updated>)), (status = 404, description = "No such affiliate")))]
#[tracing::instrument(skip(state, _admin))]
pub async fn deactivate(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
) -> Answer<Updated> {
    set_active(&state, &raw, false, "Affiliate deactivated successfully").await
}

/// Reactivates a deactivated affiliate: its links attribute again.
#[utoipa::path(post, path = "/api/v1/affiliate/affiliates/{id}/reactivate/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<Updated>)), (status = 404, description = "No such affiliate")))]
#[tracing::instrument(skip(state, _admin))]
pub async fn reactivate(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
) -> Answer<Updated> {
    set_active(&state, &raw, true, "Affiliate reactivated successfully").await
}

async fn set_active(state: &AppState, raw: &str, active: bool, message: &str) -> Answer<Updated> {
    let id = id(raw)?;
    db::set_active(&state.pool, id, active).await?;
    ok(updated(db::find(&state.pool, id).await?), message)
}

/// Deletes an affiliate softly: the ledger keeps referring to it.
#[utoipa::path(delete, path = "/api/v1/affiliate/affiliates/{id}/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<Deleted>)), (status = 404, description = "No such affiliate")))]
#[tracing::instrument(skip(state, _admin))]
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

    use reftrack_common::input::Paging;

    #[test]
    fn pagination_links_carry_the_page_and_the_other_parameters() {
        let query = query_object(&HashMap::new());
        let p = Pagination::new(LIST_PATH, &query, Paging { page: 1, size: 20 }, 95);
        assert_eq!(
            (p.total_pages, p.has_next, p.has_previous),
            (5, true, false)
        );
        assert_eq!(
            p.next_url.as_deref(),
            Some("/api/v1/affiliate/affiliates/?page=2")
        );
        assert_eq!(p.previous_url, None);

        let query = query_object(&HashMap::from([
            ("page".into(), "2".into()),
            ("page_size".into(), "10".into()),
            ("status".into(), "approved".into()),
            ("search".into(), "Jane D&o".into()),
        ]));
        let p = Pagination::new(LIST_PATH, &query, Paging { page: 2, size: 10 }, 95);
        assert_eq!(
            p.next_url.as_deref(),
            Some(
                "/api/v1/affiliate/affiliates/?page=3&page_size=10&search=Jane+D%26o&status=approved"
            )
        );
        assert_eq!(
            p.previous_url.as_deref(),
            Some(
                "/api/v1/affiliate/affiliates/?page=1&page_size=10&search=Jane+D%26o&status=approved"
            )
        );
    }
}
