//! `POST /v1/conversions` and `POST /v1/conversions/batch`: signups, purchases and
//! refunds reported server-to-server by the product's backend.
//!
//! A conversion carries money, so it is answered 202 only after the broker acknowledged
//! it, and 503 (with Retry-After) otherwise; the sender retries with the same `event_id`,
//! which the aggregator counts once.

pub mod input;
pub mod openapi;

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::future::join_all;
use reftrack_common::envelope::{Envelope, ErrorEnvelope, FieldErrors, error_response};
use reftrack_events::ConversionEvent;
use reftrack_store::api_keys::Scope;
use serde::Serialize;
use serde_json::Value;

use crate::directory::Directory;
use crate::metrics as m;
use crate::producer::ConversionProducer;

#[derive(Clone)]
pub struct ConversionState {
    pub directory: Directory,
    pub producer: ConversionProducer,
    pub settlement_currency: Arc<str>,
    /// Seconds a client should wait before retrying after a 503.
    pub retry_after_secs: u64,
}

/// A conversion the broker acknowledged.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub event_id: String,
    /// Always `accepted`.
    pub status: &'static str,
}

/// A batch the broker acknowledged, every event of it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BatchAccepted {
    pub accepted: usize,
    pub event_ids: Vec<String>,
}

/// Why a conversion request was refused; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("A valid API key is required: Authorization: Bearer sk_live_...")]
    Unauthorized,
    #[error("This API key lacks the events scope")]
    Forbidden,
    #[error("The request has invalid fields")]
    Invalid(FieldErrors),
    #[error(
        "The event store did not acknowledge the conversion in time; retry with the same event_id"
    )]
    Unavailable { retry_after_secs: u64 },
}

impl IntoResponse for IntakeError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            IntakeError::Unauthorized => {
                let mut response = error_response(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    message,
                    FieldErrors::new(),
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                response
            }
            IntakeError::Forbidden => error_response(
                StatusCode::FORBIDDEN,
                "forbidden",
                message,
                FieldErrors::new(),
            ),
            IntakeError::Invalid(details) => {
                metrics::counter!(m::CONVERSIONS, "type" => "unknown", "outcome" => "invalid")
                    .increment(1);
                error_response(
                    StatusCode::BAD_REQUEST,
                    "validation_error",
                    message,
                    details,
                )
            }
            IntakeError::Unavailable { retry_after_secs } => {
                let mut response = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "broker_unavailable",
                    message,
                    FieldErrors::new(),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, retry_after_secs.into());
                response
            }
        }
    }
}

/// Reports one signup, purchase or refund.
#[utoipa::path(post, path = "/v1/conversions", tag = "conversions",
    security(("events_key" = [])),
    request_body(content = input::ConversionRequest, examples(
        ("signup" = (summary = "A signup through a referral link",
            value = json!({"event_id": "signup-42", "type": "signup", "user_id": 42, "email": "ada@example.com", "referral_code": "JANE_DOE_1", "method": "link"}))),
        ("purchase" = (summary = "A purchase by the referred user",
            value = json!({"event_id": "order-1001", "type": "purchase", "user_id": 42, "referral_code": "JANE_DOE_1", "amount": "99.00", "currency": "USD"}))),
        ("refund" = (summary = "A refund of that purchase",
            value = json!({"event_id": "refund-1001", "type": "refund", "user_id": 42, "referral_code": "JANE_DOE_1", "amount": "99.00", "currency": "USD", "original_event_id": "order-1001"}))),
        ("click id" = (summary = "Attributed by the click id from the landing URL or the cookie",
            value = json!({"event_id": "signup-43", "type": "signup", "user_id": 43, "click_id": "JANE_DOE_1.0193f0c2a1b27c3d8e4f5a6b7c8d9e0f"}))),
        ("coupon" = (summary = "Attributed by a coupon code",
            value = json!({"event_id": "order-1002", "type": "purchase", "user_id": 44, "coupon": "SPRING25", "amount": 49.5, "currency": "USD"}))),
        ("backfill" = (summary = "An earlier purchase, dated",
            value = json!({"event_id": "order-900", "type": "purchase", "user_id": 42, "referral_code": "JANE_DOE_1", "amount": "20.00", "currency": "USD", "occurred_at": "2026-11-02T10:15:00Z"}))),
    )),
    responses(
        (status = 202, description = "Acknowledged by the broker; counted once per event_id",
            body = inline(Envelope<Accepted>)),
        (status = 400, description = "Invalid fields, each named in error.details", body = ErrorEnvelope),
        (status = 401, description = "No valid API key", body = ErrorEnvelope),
        (status = 403, description = "The key lacks the events scope", body = ErrorEnvelope),
        (status = 503, description = "The broker did not acknowledge in time; retry with the same event_id",
            body = ErrorEnvelope, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn accept_one(
    State(state): State<ConversionState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, IntakeError> {
    authorize(&state.directory, &headers)?;
    let event = read(&state, &body, input::parse)?;
    produce(&state, std::slice::from_ref(&event)).await?;
    let data = Accepted {
        event_id: event.event_id,
        status: "accepted",
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(Envelope::new(data, "Conversion accepted")),
    )
        .into_response())
}

/// Reports up to 500 conversions (backfills), checked as a whole, then sent in order.
#[utoipa::path(post, path = "/v1/conversions/batch", tag = "conversions",
    security(("events_key" = [])),
    request_body(content = input::BatchRequest, examples(
        ("backfill" = (summary = "A signup and its purchase, dated",
            value = json!({"events": [ {"event_id": "signup-7", "type": "signup", "user_id": 7, "referral_code": "JANE_DOE_1", "occurred_at": "2026-11-01T09:00:00Z"}, {"event_id": "order-700", "type": "purchase", "user_id": 7, "referral_code": "JANE_DOE_1", "amount": "120.00", "currency": "USD", "occurred_at": "2026-11-01T09:30:00Z"}]}))),
    )),
    responses(
        (status = 202, description = "Every event acknowledged by the broker",
            body = inline(Envelope<BatchAccepted>)),
        (status = 400, description = "Invalid fields, named events[i].field; nothing was sent",
            body = ErrorEnvelope),
        (status = 401, description = "No valid API key", body = ErrorEnvelope),
        (status = 403, description = "The key lacks the events scope", body = ErrorEnvelope),
        (status = 503, description = "Not every event was acknowledged; retry the batch (event ids make it harmless)",
            body = ErrorEnvelope, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
pub async fn accept_batch(
    State(state): State<ConversionState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, IntakeError> {
    authorize(&state.directory, &headers)?;
    let events = read(&state, &body, input::parse_batch)?;
    produce(&state, &events).await?;
    let data = BatchAccepted {
        accepted: events.len(),
        event_ids: events.into_iter().map(|e| e.event_id).collect(),
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(Envelope::new(data, "Conversions accepted")),
    )
        .into_response())
}

/// Sends every event and waits for all acknowledgements; any failure is a 503 for the
/// whole request (re-sending acknowledged ones is harmless: event ids are idempotent).
async fn produce(state: &ConversionState, events: &[ConversionEvent]) -> Result<(), IntakeError> {
    let sends = events.iter().map(|event| {
        let payload = event.encode();
        async move { state.producer.send(&event.referral_code, &payload).await }
    });
    let outcomes = join_all(sends).await;
    let mut failed = false;
    for (event, outcome) in events.iter().zip(&outcomes) {
        let outcome_label = if outcome.is_ok() {
            "accepted"
        } else {
            "unavailable"
        };
        metrics::counter!(m::CONVERSIONS, "type" => event.kind.as_str(), "outcome" => outcome_label).increment(1);
        if let Err(err) = outcome {
            failed = true;
            tracing::warn!(event_id = %event.event_id, %err, "conversion not acknowledged by the broker");
        }
    }
    if failed {
        return Err(IntakeError::Unavailable {
            retry_after_secs: state.retry_after_secs,
        });
    }
    Ok(())
}

/// Requires `Authorization: Bearer sk_live_...` of an active key with the events scope.
fn authorize(directory: &Directory, headers: &HeaderMap) -> Result<(), IntakeError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let snapshot = directory.snapshot();
    match token.and_then(|t| snapshot.api_key(t)) {
        Some(key) if key.has_scope(Scope::Events) => Ok(()),
        Some(_) => Err(IntakeError::Forbidden),
        None => Err(IntakeError::Unauthorized),
    }
}

/// Reads `body` with what ingest knows now (the time, the settlement currency, the live
/// coupon codes).
fn read<T>(
    state: &ConversionState,
    body: &[u8],
    parse: impl FnOnce(&Value, &input::Context<'_>) -> Result<T, FieldErrors>,
) -> Result<T, IntakeError> {
    let snapshot = state.directory.snapshot();
    let coupon = |code: &str| snapshot.coupon(code).map(str::to_string);
    let context = input::Context {
        now: Utc::now(),
        currency: &state.settlement_currency,
        coupon: &coupon,
    };
    parse_json(body)
        .and_then(|value| parse(&value, &context))
        .map_err(IntakeError::Invalid)
}

fn parse_json(body: &[u8]) -> Result<Value, FieldErrors> {
    serde_json::from_slice(body).map_err(|err| {
        FieldErrors::from([(
            "body".to_string(),
            vec![format!("is not valid JSON: {err}")],
        )])
    })
}
