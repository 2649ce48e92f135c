//! The admin affiliate API (`docs/api/admin-affiliate-api.txt`), under `/api/v1/affiliate/`,
//! for the product's staff, by resource: [`affiliates`] (list, create, read, update,
//! approve, reject, deactivate, delete), their [`performance`], and [`payouts`]. Answers
//! are in the `{success, data, message, timestamp, api_version}` envelope.

pub mod affiliates;
pub mod db;
pub mod payouts;
pub mod performance;
pub mod validate;
pub mod views;

use axum::{Json, Router};
use reftrack_common::envelope::Envelope;
use rust_decimal::Decimal;

use crate::error::{AdminError, ApiError};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    affiliates::router()
        .merge(performance::router())
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
    reftrack_domain::Money::from_cents(cents).amount()
}

/// `part` per 100 of `whole`, to two decimals.
fn percent(part: u64, whole: u64) -> Decimal {
    if whole == 0 {
        return Decimal::ZERO;
    }
    (Decimal::from(part) * Decimal::ONE_HUNDRED / Decimal::from(whole)).round_dp(2)
}
