//! The admin affiliate API (`docs/api/admin-affiliate-api.txt`), under `/api/v1/affiliate/`,
//! for the product's staff, by resource: [`affiliates`] (list, create, read, update,
//! approve, reject, deactivate, reactivate, delete), their [`performance`], [`payouts`]
//! (and balances, payment method verification), [`payout_batches`], [`coupons`], the [`program`]'s
//! rules, and [`webhooks`] endpoints. Answers are in the `{success, data, message, timestamp, api_version}` envelope.
//!
//! [`input`] reads requests, [`views`] writes answers, [`db`] holds the queries.

pub mod affiliates;
pub mod coupons;
pub mod db;
pub mod input;
pub mod payout_batches;
pub mod payouts;
pub mod performance;
pub mod program;
pub mod views;
pub mod webhooks;

use axum::Json;
use reftrack_common::envelope::{Envelope, FieldErrors};
use utoipa_axum::router::OpenApiRouter;

use crate::error::{AdminError, ApiError};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    affiliates::router()
        .merge(performance::router())
        .merge(payouts::router())
        .merge(payout_batches::router())
        .merge(coupons::router())
        .merge(program::router())
        .merge(webhooks::router())
}

type Answer<T> = Result<Json<Envelope<T>>, AdminError>;

fn ok<T: serde::Serialize>(data: T, message: &str) -> Answer<T> {
    Ok(Json(Envelope::new(data, message)))
}

/// A body that may be left out (an action with nothing to add): the default when empty.
fn optional_body<T: Default>(
    body: &[u8],
    parse: fn(&serde_json::Map<String, serde_json::Value>) -> Result<T, FieldErrors>,
) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    parse(&crate::input::json_object(body)?).map_err(ApiError::Invalid)
}

/// A path id; anything but a positive integer is simply not found.
fn id(raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(ApiError::NotFound)
}
