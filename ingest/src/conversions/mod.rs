//! `POST /v1/conversions` and `POST /v1/conversions/batch`: signups, purchases and
//! refunds reported server-to-server by the product's backend.
//!
//! A conversion carries money, so it is answered 202 only after the broker acknowledged
//! it, and 503 (with Retry-After) otherwise; the sender retries with the same `event_id`,
//! which the aggregator counts once.

pub mod input;

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures::future::join_all;
use reftrack_common::envelope::{Envelope, FieldErrors, error_response};
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

#[derive(Serialize)]
struct Accepted {
    event_id: String,
    status: &'static str,
}

#[derive(Serialize)]
struct BatchAccepted {
    accepted: usize,
    event_ids: Vec<String>,
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
