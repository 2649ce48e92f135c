//! The promoter API (`docs/api/promoter-api.txt`), for a product's users: their promoter (created on first
//! use), payout method, minimum withdrawal, recent earnings, referrals, payouts, and
//! withdrawal requests. Every route acts on the caller's own promoter only.

pub mod db;
pub mod input;
pub mod views;

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{Datelike, Days};
use reftrack_common::input::query_object;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Promoter;
use crate::error::{ApiError, PromoterError};
use crate::input::json_object;
use crate::state::{AppState, Settings};
use db::PromoterRow;
use input::{PageQuery, SetMinWithdrawal, SetPayoutMethod};
use views::{
    DayEarnings, PayoutMethodView, PayoutView, PromoterView, ReferralPage, ReferralView,
    rfc3339_auto,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(promoter))
        .routes(routes!(set_payout_method))
        .routes(routes!(recent_earnings))
        .routes(routes!(referrals))
        .routes(routes!(payouts))
        .routes(routes!(set_min_withdrawal_balance))
        .routes(routes!(withdraw))
}

pub(crate) fn view(settings: &Settings, row: &PromoterRow) -> PromoterView {
    let balances = row.balances();
    PromoterView {
        id: row.id,
        user: row.user_id,
        referral_token: row.referral_code.clone(),
        referral_link: settings.referral_link(&row.referral_code),
        active_payout_method: row
            .method
            .zip(row.address.as_ref())
            .map(|(method, address)| PayoutMethodView {
                method,
                payment_address: address.clone(),
            }),
        current_balance: balances.withdrawable(),
        total_earned: balances.total_earned(),
        total_paid: row.paid,
        created: rfc3339_auto(row.created_at),
        updated: rfc3339_auto(row.updated_at),
        link_clicked: row.link_clicked,
        min_withdrawal_balance: row.min_withdrawal_balance.to_string(),
        commission_rate: row.commission_rate,
    }
}

/// The caller's promoter as of the api's clock, created on first use.
pub(crate) async fn promoter_row(
    state: &AppState,
    caller: &Promoter,
) -> Result<PromoterRow, ApiError> {
    db::get_or_create(&state.pool, caller, &state.settings, state.clock.now()).await
}

/// Retrieves the caller's promoter, creating it on first use.
#[utoipa::path(get, path = "/referrals/promoter", tag = "promoter", security(("promoter_jwt" = [])),
    responses((status = 200, body = PromoterView), (status = 401, description = "No valid access token")))]
#[tracing::instrument(skip_all, fields(user_id = caller.user_id))]
pub async fn promoter(
    State(state): State<AppState>,
    caller: Promoter,
) -> Result<Json<PromoterView>, PromoterError> {
    let row = promoter_row(&state, &caller).await?;
    Ok(Json(view(&state.settings, &row)))
}

/// Sets the payout method: wise or paypal (an email), crypto (a wallet), bank (an IBAN).
#[utoipa::path(patch, path = "/referrals/set-payout-method/", tag = "promoter", security(("promoter_jwt" = [])),
    request_body = SetPayoutMethod,
    responses((status = 200, body = PromoterView), (status = 400, description = "Field errors")))]
#[tracing::instrument(skip_all, fields(user_id = caller.user_id))]
pub async fn set_payout_method(
    State(state): State<AppState>,
    caller: Promoter,
    body: Bytes,
) -> Result<Json<PromoterView>, PromoterError> {
    let set = SetPayoutMethod::parse(&json_object(&body)?).map_err(ApiError::Invalid)?;
    let row = promoter_row(&state, &caller).await?;
    db::set_payout_method(&state.pool, row.id, set.method, &set.payment_address).await?;
    promoter(State(state), caller).await
}

/// Sets the minimum balance before a payout can be requested.
#[utoipa::path(patch, path = "/referrals/set-min-withdrawal-balance/", tag = "promoter", security(("promoter_jwt" = [])),
    request_body = SetMinWithdrawal,
    responses((status = 200, body = PromoterView), (status = 400, description = "Field errors")))]
#[tracing::instrument(skip_all, fields(user_id = caller.user_id))]
pub async fn set_min_withdrawal_balance(
    State(state): State<AppState>,
    caller: Promoter,
    body: Bytes,
) -> Result<Json<PromoterView>, PromoterError> {
    let settings = &state.settings;
    let set = SetMinWithdrawal::parse(
        &json_object(&body)?,
        settings.min_withdrawal_lower,
        settings.min_withdrawal_upper,
    )
    .map_err(ApiError::Invalid)?;
    let row = promoter_row(&state, &caller).await?;
    db::set_min_withdrawal(&state.pool, row.id, set.min_withdrawal_balance).await?;
    promoter(State(state), caller).await
}

/// Commission earned on each of the last 7 days (UTC), oldest first, ending today.
#[utoipa::path(get, path = "/referrals/promoter-recent-earnings", tag = "promoter", security(("promoter_jwt" = [])),
    responses((status = 200, body = [DayEarnings])))]
#[tracing::instrument(skip_all, fields(user_id = caller.user_id))]
pub async fn recent_earnings(
    State(state): State<AppState>,
    caller: Promoter,
) -> Result<Json<Vec<DayEarnings>>, PromoterError> {
    let row = promoter_row(&state, &caller).await?;
    let today = state.clock.now().date_naive();
    let first = today - Days::new(6);
    let earned = db::earnings_by_day(&state.pool, row.id, first).await?;
    let days = first
        .iter_days()
        .take(7)
        .map(|day| DayEarnings {
            day: day.weekday().to_string(),
            value: earned
                .iter()
                .find(|(d, _)| *d == day)
                .map(|(_, v)| *v)
                .unwrap_or_default(),
        })
        .collect();
    Ok(Json(days))
}

/// The users the caller referred, newest first, a page at a time (`?page=`).
#[utoipa::path(get, path = "/referrals/", tag = "promoter", security(("promoter_jwt" = [])),
    params(PageQuery),
    responses((status = 200, body = ReferralPage), (status = 404, description = "Invalid page")))]
#[tracing::instrument(skip_all, fields(user_id = caller.user_id))]
pub async fn referrals(
    State(state): State<AppState>,
    caller: Promoter,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<ReferralPage>, PromoterError> {
    let size = i64::from(state.settings.promoter_page_size);
    let paging = PageQuery::parse(&query_object(&query), size).map_err(ApiError::Invalid)?;
    let row = promoter_row(&state, &caller).await?;
    let (count, rows) = db::referrals(&state.pool, row.id, paging).await?;
    let pages = paging.pages(count);
    if paging.page > pages {
        return Err(ApiError::NotFound.into());
    }
    let now = state.clock.now();
    let results = rows
        .into_iter()
        .map(|r| ReferralView {
            commission_status: r.stage(now, row.paid),
            user_id: r.user_id,
            email: r.email,
            status: r.status,
            invitation_method: r.invitation_method,
            commission_rate: r.commission_rate.to_string(),
            commission_amount: r.commission_amount,
        })
        .collect();
    Ok(Json(ReferralPage {
        count,
        pages,
        results,
    }))
}

fn payout_view(p: db::PayoutRow) -> PayoutView {
    PayoutView {
        id: p.id,
        created: rfc3339_auto(p.created_at),
        amount: p.amount,
        status: p.status,
    }
}

/// The caller's payouts, requested or made, newest first.
#[utoipa::path(get, path = "/referrals/payouts", tag = "promoter", security(("promoter_jwt" = [])),
    responses((status = 200, body = [PayoutView])))]
#[tracing::instrument(skip_all, fields(user_id = caller.user_id))]
pub async fn payouts(
    State(state): State<AppState>,
    caller: Promoter,
) -> Result<Json<Vec<PayoutView>>, PromoterError> {
    let row = promoter_row(&state, &caller).await?;
    let payouts = db::payouts(&state.pool, row.id).await?;
    Ok(Json(payouts.into_iter().map(payout_view).collect()))
}

/// Requests a payout of the whole balance, once it reaches the minimum withdrawal and a
/// payout method is set. Send an `Idempotency-Key` header to retry safely: the same key
/// answers with the payout it made.
#[utoipa::path(post, path = "/referrals/withdraw/", tag = "promoter", security(("promoter_jwt" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = PayoutView), (status = 400, description = "No payout method, or balance below the minimum")))]
#[tracing::instrument(skip_all, fields(user_id = caller.user_id))]
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Promoter,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<PayoutView>), PromoterError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::field("Idempotency-Key", "Must be 1 to 255 visible characters.")
                })?,
        ),
    };
    promoter_row(&state, &caller).await?;
    let rules = db::WithdrawalRules {
        now: state.clock.now(),
        review_window: chrono::Duration::hours(i64::from(state.settings.payout_review_hours)),
    };
    let payout = db::withdraw(&state.pool, caller.user_id, key, &rules).await?;
    Ok((StatusCode::CREATED, Json(payout_view(payout))))
}
