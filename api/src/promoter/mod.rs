//! The promoter API (`docs/api/promoter-api.txt`), for a product's users: their promoter (created on first
//! use), payout method, minimum withdrawal, recent earnings, referrals, payouts, and
//! withdrawal requests. Every route acts on the caller's own promoter only.

pub mod db;
pub mod views;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::{Datelike, Days, Utc};
use reftrack_common::money::{AmountError, parse_amount};
use serde::Deserialize;

use crate::auth::Promoter;
use crate::error::{ApiError, PromoterError};
use crate::input::json_object;
use crate::payout;
use crate::state::{AppState, Settings};
use db::PromoterRow;
use views::{
    DayEarnings, PayoutMethodView, PayoutView, PromoterView, ReferralPage, ReferralView,
    rfc3339_auto, two_decimals,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/referrals/promoter", get(promoter))
        .route("/referrals/set-payout-method/", patch(set_payout_method))
        .route("/referrals/promoter-recent-earnings", get(recent_earnings))
        .route("/referrals/", get(referrals))
        .route("/referrals/payouts", get(payouts))
        .route(
            "/referrals/set-min-withdrawal-balance/",
            patch(set_min_withdrawal_balance),
        )
        .route("/referrals/withdraw/", post(withdraw))
}

fn view(settings: &Settings, row: &PromoterRow) -> PromoterView {
    PromoterView {
        id: row.id,
        user: row.user_id,
        referral_token: row.referral_code.clone(),
        referral_link: settings.referral_link(&row.referral_code),
        active_payout_method: row.method.as_ref().zip(row.address.as_ref()).map(
            |(method, address)| PayoutMethodView {
                method: method.clone(),
                payment_address: address.clone(),
            },
        ),
        current_balance: row.balance(),
        total_earned: row.earned - row.reversed,
        total_paid: row.paid,
        created: rfc3339_auto(row.created_at),
        updated: rfc3339_auto(row.updated_at),
        link_clicked: row.link_clicked,
        min_withdrawal_balance: two_decimals(row.min_withdrawal_balance),
        commission_rate: row.commission_rate,
    }
}

/// Retrieves the caller's promoter, creating it on first use.
#[utoipa::path(get, path = "/referrals/promoter", tag = "promoter", security(("promoter_jwt" = [])),
    responses((status = 200, body = PromoterView), (status = 401, description = "No valid access token")))]
pub async fn promoter(
    State(state): State<AppState>,
    caller: Promoter,
) -> Result<Json<PromoterView>, PromoterError> {
    let row = db::get_or_create(&state.pool, caller.user_id, &state.settings).await?;
    Ok(Json(view(&state.settings, &row)))
}

/// Sets the payout method: wise or paypal (an email), crypto (a wallet), bank (an IBAN).
#[utoipa::path(patch, path = "/referrals/set-payout-method/", tag = "promoter", security(("promoter_jwt" = [])),
    request_body(content = inline(SetPayoutMethod), description = "method and payment_address"),
    responses((status = 200, body = PromoterView), (status = 400, description = "Field errors")))]
pub async fn set_payout_method(
    State(state): State<AppState>,
    caller: Promoter,
    body: Bytes,
) -> Result<Json<PromoterView>, PromoterError> {
    let body = json_object(&body)?;
    let method = match body.get("method").and_then(|v| v.as_str()) {
        Some(m) if payout::METHODS.contains(&m) => m,
        Some(m) => {
            return Err(
                ApiError::field("method", format!("\"{m}\" is not a valid choice.")).into(),
            );
        }
        None => return Err(ApiError::field("method", "This field is required.").into()),
    };
    let address = body
        .get("payment_address")
        .and_then(|v| v.as_str())
        .ok_or_else(|| ApiError::field("payment_address", "This field is required."))?;
    let address = payout::check_address(method, address)
        .map_err(|m| ApiError::field("payment_address", m))?;
    let row = db::get_or_create(&state.pool, caller.user_id, &state.settings).await?;
    db::set_payout_method(&state.pool, row.id, method, &address).await?;
    promoter(State(state), caller).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SetPayoutMethod {
    method: String,
    payment_address: String,
}

/// Sets the minimum balance before a payout can be requested.
#[utoipa::path(patch, path = "/referrals/set-min-withdrawal-balance/", tag = "promoter", security(("promoter_jwt" = [])),
    request_body(content = inline(SetMinWithdrawal), description = "min_withdrawal_balance, a decimal"),
    responses((status = 200, body = PromoterView), (status = 400, description = "Field errors")))]
pub async fn set_min_withdrawal_balance(
    State(state): State<AppState>,
    caller: Promoter,
    body: Bytes,
) -> Result<Json<PromoterView>, PromoterError> {
    const FIELD: &str = "min_withdrawal_balance";
    let body = json_object(&body)?;
    let value = body
        .get(FIELD)
        .ok_or_else(|| ApiError::field(FIELD, "This field is required."))?;
    let amount = parse_amount(value).map_err(|err| {
        ApiError::field(
            FIELD,
            match err {
                AmountError::NotANumber => "A valid number is required.".to_string(),
                AmountError::TooManyDecimals => {
                    "Ensure that there are no more than 2 decimal places.".to_string()
                }
                AmountError::Negative => format!(
                    "Ensure this value is greater than or equal to {}.",
                    two_decimals(state.settings.min_withdrawal_lower)
                ),
            },
        )
    })?;
    let settings = &state.settings;
    if amount < settings.min_withdrawal_lower {
        let bound = two_decimals(settings.min_withdrawal_lower);
        return Err(ApiError::field(
            FIELD,
            format!("Ensure this value is greater than or equal to {bound}."),
        )
        .into());
    }
    if amount > settings.min_withdrawal_upper {
        let bound = two_decimals(settings.min_withdrawal_upper);
        return Err(ApiError::field(
            FIELD,
            format!("Ensure this value is less than or equal to {bound}."),
        )
        .into());
    }
    let row = db::get_or_create(&state.pool, caller.user_id, settings).await?;
    db::set_min_withdrawal(&state.pool, row.id, amount).await?;
    promoter(State(state), caller).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SetMinWithdrawal {
    #[schema(value_type = f64)]
    min_withdrawal_balance: f64,
}

/// Commission earned on each of the last 7 days (UTC), oldest first, ending today.
#[utoipa::path(get, path = "/referrals/promoter-recent-earnings", tag = "promoter", security(("promoter_jwt" = [])),
    responses((status = 200, body = [DayEarnings])))]
pub async fn recent_earnings(
    State(state): State<AppState>,
    caller: Promoter,
) -> Result<Json<Vec<DayEarnings>>, PromoterError> {
    let row = db::get_or_create(&state.pool, caller.user_id, &state.settings).await?;
    let today = Utc::now().date_naive();
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

#[derive(Deserialize)]
pub struct PageQuery {
    page: Option<String>,
}

/// The users the caller referred, newest first, a page at a time (`?page=`).
#[utoipa::path(get, path = "/referrals/", tag = "promoter", security(("promoter_jwt" = [])),
    params(("page" = Option<u32>, Query, description = "Page number, from 1")),
    responses((status = 200, body = ReferralPage), (status = 404, description = "Invalid page")))]
pub async fn referrals(
    State(state): State<AppState>,
    caller: Promoter,
    Query(query): Query<PageQuery>,
) -> Result<Json<ReferralPage>, PromoterError> {
    let page: i64 = match query.page.as_deref() {
        None => 1,
        Some(p) => p
            .parse()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| ApiError::field("page", "A valid positive integer is required."))?,
    };
    let row = db::get_or_create(&state.pool, caller.user_id, &state.settings).await?;
    let size = i64::from(state.settings.promoter_page_size);
    let (count, rows) = db::referrals(&state.pool, row.id, size, (page - 1) * size).await?;
    let pages = ((count + size - 1) / size).max(1);
    if page > pages {
        return Err(ApiError::NotFound.into());
    }
    let results = rows
        .into_iter()
        .map(|r| ReferralView {
            user_id: r.user_id,
            email: r.email,
            status: r.status,
            invitation_method: r.invitation_method,
            commission_rate: two_decimals(r.commission_rate),
            commission_amount: r.commission_amount,
            commission_status: r.commission_status,
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
    }
}

/// The caller's payouts, requested or made, newest first.
#[utoipa::path(get, path = "/referrals/payouts", tag = "promoter", security(("promoter_jwt" = [])),
    responses((status = 200, body = [PayoutView])))]
pub async fn payouts(
    State(state): State<AppState>,
    caller: Promoter,
) -> Result<Json<Vec<PayoutView>>, PromoterError> {
    let row = db::get_or_create(&state.pool, caller.user_id, &state.settings).await?;
    let payouts = db::payouts(&state.pool, row.id).await?;
    Ok(Json(payouts.into_iter().map(payout_view).collect()))
}

/// Requests a payout of the whole balance, once it reaches the minimum withdrawal and a
/// payout method is set. Send an `Idempotency-Key` header to retry safely: the same key
/// answers with the payout it made.
#[utoipa::path(post, path = "/referrals/withdraw/", tag = "promoter", security(("promoter_jwt" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = PayoutView), (status = 400, description = "No payout method, or balance below the minimum")))]
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
    db::get_or_create(&state.pool, caller.user_id, &state.settings).await?;
    let payout = db::withdraw(&state.pool, caller.user_id, key).await?;
    Ok((StatusCode::CREATED, Json(payout_view(payout))))
}
