//! `POST /v1/conversions` and `POST /v1/conversions/batch`: signups, purchases and
//! refunds reported server-to-server by the product's backend.
//!
//! A conversion carries money, so it is answered 202 only after the broker acknowledged
//! it, and 503 (with Retry-After) otherwise; the sender retries with the same `event_id`,
//! which the aggregator counts once.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures::future::join_all;
use reftrack_common::envelope::{Envelope, FieldErrors, error_response};
use reftrack_common::money::{AmountError, parse_amount};
use reftrack_events::click::parse_click_id;
use reftrack_events::{ConversionEvent, ConversionKind, InvitationMethod, ReferralCode};
use reftrack_store::api_keys::Scope;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::directory::Directory;
use crate::metrics as m;
use crate::producer::ConversionProducer;

/// Most conversions in one batch request.
pub const MAX_BATCH: usize = 500;
/// Largest purchase or refund accepted.
const MAX_AMOUNT: i64 = 1_000_000_000;
/// How far in the future `occurred_at` may be (clock skew).
const MAX_CLOCK_SKEW_MINUTES: i64 = 5;
const FIELDS: &[&str] = &[
    "event_id",
    "type",
    "user_id",
    "email",
    "referral_code",
    "click_id",
    "amount",
    "currency",
    "original_event_id",
    "method",
    "occurred_at",
];

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
    let event = parse_json(&body)
        .and_then(|v| validate(&v, Utc::now(), &state.settlement_currency))
        .map_err(IntakeError::Invalid)?;
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
    let events = parse_json(&body)
        .and_then(|v| validate_batch(&v, Utc::now(), &state.settlement_currency))
        .map_err(IntakeError::Invalid)?;
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

fn parse_json(body: &[u8]) -> Result<Value, FieldErrors> {
    serde_json::from_slice(body).map_err(|err| one("body", format!("is not valid JSON: {err}")))
}

fn one(field: &str, message: impl Into<String>) -> FieldErrors {
    FieldErrors::from([(field.to_string(), vec![message.into()])])
}

/// Validates `{"events": [...]}`; errors are named `events[i].field`.
pub fn validate_batch(
    body: &Value,
    now: DateTime<Utc>,
    currency: &str,
) -> Result<Vec<ConversionEvent>, FieldErrors> {
    let Some(items) = body.get("events").and_then(Value::as_array) else {
        return Err(one("events", "is required: an array of conversions"));
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(one(
            "events",
            format!("must hold 1 to {MAX_BATCH} conversions"),
        ));
    }
    let mut errors = FieldErrors::new();
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match validate(item, now, currency) {
            Ok(event) => events.push(event),
            Err(item_errors) => {
                for (field, messages) in item_errors {
                    errors.insert(format!("events[{i}].{field}"), messages);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(errors)
    }
}

/// Validates one conversion, reporting every bad field at once.
pub fn validate(
    body: &Value,
    now: DateTime<Utc>,
    currency: &str,
) -> Result<ConversionEvent, FieldErrors> {
    let Some(obj) = body.as_object() else {
        return Err(one("body", "must be a JSON object"));
    };
    let mut errors = FieldErrors::new();
    let mut fail = |field: &str, message: String| {
        errors.entry(field.to_string()).or_default().push(message);
    };
    for key in obj.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        fail(key, "is not a known field".into());
    }

    let event_id = required_text(obj, "event_id", 128)
        .map_err(|e| fail("event_id", e))
        .ok();
    let kind = match obj.get("type") {
        Some(Value::String(s)) => match s.as_str() {
            "signup" => Some(ConversionKind::Signup),
            "purchase" => Some(ConversionKind::Purchase),
            "refund" => Some(ConversionKind::Refund),
            _ => {
                fail("type", "must be one of signup, purchase, refund".into());
                None
            }
        },
        _ => {
            fail("type", "is required: signup, purchase or refund".into());
            None
        }
    };
    let user_id = match obj.get("user_id").and_then(Value::as_i64) {
        Some(id) if id > 0 => Some(id),
        _ => {
            fail(
                "user_id",
                "is required: the referred user's id, a positive integer".into(),
            );
            None
        }
    };
    let email = match obj.get("email") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if email_address::EmailAddress::is_valid(s) && s.len() <= 254 => {
            Some(s.clone())
        }
        Some(_) => {
            fail("email", "must be a valid email address".into());
            None
        }
    };
    let code = referral_code(obj).map_err(|(field, e)| fail(field, e)).ok();
    let click_id = obj
        .get("click_id")
        .and_then(Value::as_str)
        .and_then(parse_click_id)
        .map(|(_, id)| id);

    let (amount, currency_field) = match kind {
        Some(ConversionKind::Purchase | ConversionKind::Refund) => {
            let amount = match obj.get("amount") {
                None | Some(Value::Null) => {
                    fail("amount", "is required for purchases and refunds".into());
                    None
                }
                Some(v) => parse_money(v).map_err(|e| fail("amount", e)).ok(),
            };
            let cur = match obj.get("currency").and_then(Value::as_str) {
                Some(c) if c == currency => Some(c.to_string()),
                Some(c) => {
                    fail(
                        "currency",
                        format!("must be {currency}, the settlement currency (got {c})"),
                    );
                    None
                }
                None => {
                    fail(
                        "currency",
                        format!("is required with an amount: {currency}"),
                    );
                    None
                }
            };
            (amount, cur)
        }
        _ => {
            for field in ["amount", "currency"] {
                if obj.get(field).is_some_and(|v| !v.is_null()) {
                    fail(field, "is only accepted on purchases and refunds".into());
                }
            }
            (None, None)
        }
    };
    let original_event_id = match (kind, obj.get("original_event_id")) {
        (Some(ConversionKind::Refund), _) => required_text(obj, "original_event_id", 128)
            .map_err(|e| fail("original_event_id", e))
            .ok(),
        (_, Some(v)) if !v.is_null() => {
            fail("original_event_id", "is only accepted on refunds".into());
            None
        }
        _ => None,
    };
    let method = match obj.get("method") {
        None | Some(Value::Null) => Some(InvitationMethod::Link),
        Some(Value::String(s)) => match s.as_str() {
            "link" => Some(InvitationMethod::Link),
            "email" => Some(InvitationMethod::Email),
            "coupon" => Some(InvitationMethod::Coupon),
            _ => {
                fail("method", "must be one of link, email, coupon".into());
                None
            }
        },
        Some(_) => {
            fail("method", "must be one of link, email, coupon".into());
            None
        }
    };
    let occurred_at = match obj.get("occurred_at") {
        None | Some(Value::Null) => Some(now),
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t)
                if t.with_timezone(&Utc)
                    > now + ChronoDuration::minutes(MAX_CLOCK_SKEW_MINUTES) =>
            {
                fail("occurred_at", "must not be in the future".into());
                None
            }
            Ok(t) if t.timestamp() < 946_684_800 => {
                fail("occurred_at", "must not be before 2000-01-01".into());
                None
            }
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                fail(
                    "occurred_at",
                    "must be an RFC 3339 timestamp such as 2024-08-24T12:12:03Z".into(),
                );
                None
            }
        },
        Some(_) => {
            fail(
                "occurred_at",
                "must be an RFC 3339 timestamp such as 2024-08-24T12:12:03Z".into(),
            );
            None
        }
    };

    match (event_id, kind, user_id, code, method, occurred_at) {
        (
            Some(event_id),
            Some(kind),
            Some(user_id),
            Some(code),
            Some(method),
            Some(occurred_at),
        ) if errors.is_empty() => Ok(ConversionEvent {
            event_id,
            kind,
            user_id,
            email,
            referral_code: code.into_string(),
            click_id,
            amount,
            currency: currency_field,
            original_event_id,
            method,
            occurred_at,
            received_at: now,
        }),
        _ => Err(errors),
    }
}

fn required_text(obj: &Map<String, Value>, field: &str, max: usize) -> Result<String, String> {
    match obj.get(field).and_then(Value::as_str) {
        Some(s) if !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control) => {
            Ok(s.to_string())
        }
        Some(_) => Err(format!(
            "must be 1 to {max} characters without control characters"
        )),
        None => Err("is required".to_string()),
    }
}

/// The referral code, from `referral_code` or from the cookie's `click_id`; both must
/// agree when both are given.
fn referral_code(obj: &Map<String, Value>) -> Result<ReferralCode, (&'static str, String)> {
    let direct = match obj.get("referral_code") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_str().and_then(ReferralCode::parse).ok_or((
            "referral_code",
            "must be 1 to 64 letters, digits or underscores".to_string(),
        ))?),
    };
    let from_click = match obj.get("click_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(parse_click_id)
                .map(|(code, _)| code)
                .ok_or((
                    "click_id",
                    "must be the CODE.CLICK_ID value of the attribution cookie".to_string(),
                ))?,
        ),
    };
    match (direct, from_click) {
        (Some(a), Some(b)) if a != b => Err((
            "click_id",
            format!(
                "belongs to referral code {}, not {}",
                b.as_str(),
                a.as_str()
            ),
        )),
        (Some(code), _) | (None, Some(code)) => Ok(code),
        (None, None) => Err((
            "referral_code",
            "referral_code or click_id is required".to_string(),
        )),
    }
}

/// A positive amount with at most two decimals, from a JSON number or string.
fn parse_money(value: &Value) -> Result<Decimal, String> {
    let amount = parse_amount(value).map_err(|err| match err {
        AmountError::NotANumber => "must be a decimal number such as 19.99".to_string(),
        AmountError::Negative => "must be greater than zero".to_string(),
        AmountError::TooManyDecimals => "must have at most 2 decimal places".to_string(),
    })?;
    if amount.is_zero() {
        return Err("must be greater than zero".to_string());
    }
    if amount > Decimal::from(MAX_AMOUNT) {
        return Err(format!("must not exceed {MAX_AMOUNT}"));
    }
    Ok(amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2024-09-08T09:00:00Z".parse().unwrap()
    }

    fn purchase() -> Value {
        json!({"event_id": "o-1", "type": "purchase", "user_id": 7, "referral_code": "ab12",
               "amount": 19.99, "currency": "USD", "occurred_at": "2024-09-08T08:59:00Z"})
    }

    #[test]
    fn a_valid_purchase_becomes_an_event() {
        let event = validate(&purchase(), now(), "USD").unwrap();
        assert_eq!(event.referral_code, "AB12");
        assert_eq!(event.amount, Some(dec!(19.99)));
        assert_eq!(event.method, InvitationMethod::Link);
        assert_eq!(event.received_at, now());
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (json!({"amount": -5}), "amount", "greater than zero"),
            (json!({"amount": "NaN"}), "amount", "decimal number"),
            (json!({"amount": 1.999}), "amount", "2 decimal places"),
            (json!({"amount": "12.345"}), "amount", "2 decimal places"),
            (
                json!({"currency": "EUR"}),
                "currency",
                "settlement currency",
            ),
            (json!({"type": "upgrade"}), "type", "one of"),
            (json!({"user_id": -1}), "user_id", "positive integer"),
            (json!({"user_id": "7"}), "user_id", "positive integer"),
            (json!({"email": "not-an-email"}), "email", "valid email"),
            (json!({"referral_code": "a-b"}), "referral_code", "letters"),
            (
                json!({"referral_code": null}),
                "referral_code",
                "or click_id",
            ),
            (json!({"click_id": "nope"}), "click_id", "CODE.CLICK_ID"),
            (json!({"method": "fax"}), "method", "one of"),
            (
                json!({"occurred_at": "yesterday"}),
                "occurred_at",
                "RFC 3339",
            ),
            (
                json!({"occurred_at": "2030-01-01T00:00:00Z"}),
                "occurred_at",
                "future",
            ),
            (
                json!({"original_event_id": "x"}),
                "original_event_id",
                "only accepted on refunds",
            ),
            (json!({"surprise": 1}), "surprise", "not a known field"),
        ];
        for (patch, field, needle) in cases {
            let mut body = purchase();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            let errors = validate(&body, now(), "USD").unwrap_err();
            let messages = errors
                .get(field)
                .unwrap_or_else(|| panic!("{field} not named in {errors:?}"));
            assert!(
                messages.iter().any(|m| m.contains(needle)),
                "{field}: {messages:?}"
            );
        }
    }

    #[test]
    fn refunds_need_their_purchase_and_signups_carry_no_money() {
        let refund = json!({"event_id": "r-1", "type": "refund", "user_id": 7, "referral_code": "AB12", "amount": "5.00", "currency": "USD"});
        assert!(
            validate(&refund, now(), "USD")
                .unwrap_err()
                .contains_key("original_event_id")
        );
        let signup = json!({"event_id": "s-1", "type": "signup", "user_id": 7, "referral_code": "AB12", "amount": 3});
        assert!(
            validate(&signup, now(), "USD")
                .unwrap_err()
                .contains_key("amount")
        );
    }

    #[test]
    fn the_click_id_gives_the_code_and_must_agree_with_it() {
        let click = uuid::Uuid::now_v7();
        let id = reftrack_events::click::format_click_id("AB12", click);
        let body = json!({"event_id": "s-1", "type": "signup", "user_id": 7, "click_id": id});
        let event = validate(&body, now(), "USD").unwrap();
        assert_eq!(
            (event.referral_code.as_str(), event.click_id),
            ("AB12", Some(click))
        );
        let body = json!({"event_id": "s-1", "type": "signup", "user_id": 7, "click_id": id, "referral_code": "ZZ"});
        assert!(
            validate(&body, now(), "USD")
                .unwrap_err()
                .contains_key("click_id")
        );
    }

    #[test]
    fn batch_errors_are_indexed() {
        let body = json!({"events": [purchase(), {"event_id": "x"}]});
        let errors = validate_batch(&body, now(), "USD").unwrap_err();
        assert!(errors.contains_key("events[1].type"), "{errors:?}");
        assert!(!errors.keys().any(|k| k.starts_with("events[0]")));
    }
}
