//! The api's errors: one enum, mapped exhaustively to HTTP statuses, rendered in the
//! style of each API. The promoter API answers like the Django REST framework product it
//! mirrors (`{"detail": ...}`, or `{"field": ["message"]}` for invalid input); the admin
//! API answers in its envelope (`{success: false, error: {code, message, details}}`).
//! Internal causes are logged, never sent to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use reftrack_common::envelope::{FieldErrors, error_response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Authentication credentials were not provided or are not valid.")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("Not found.")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("The request has invalid fields")]
    Invalid(FieldErrors),
    #[error("{0}")]
    Conflict(String),
    #[error("Request was throttled. Expected available in {0} seconds.")]
    RateLimited(u64),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// One invalid field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(FieldErrors::from([(
            field.to_string(),
            vec![message.into()],
        )]))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid(_) => "validation_error",
            ApiError::Conflict(_) => "conflict",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// Headers every rendering carries.
    fn decorate(&self, mut response: Response) -> Response {
        match self {
            ApiError::Unauthorized => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"api\""),
                );
            }
            ApiError::RateLimited(seconds) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, (*seconds).into());
            }
            ApiError::Internal(err) => tracing::error!("request failed: {err:#}"),
            _ => {}
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        ApiError::Internal(err.into())
    }
}

impl From<clickhouse::error::Error> for ApiError {
    fn from(err: clickhouse::error::Error) -> Self {
        ApiError::Internal(err.into())
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(err: redis::RedisError) -> Self {
        ApiError::Internal(err.into())
    }
}

/// An [`ApiError`] rendered for the promoter API (Django REST framework style).
#[derive(Debug)]
pub struct PromoterError(pub ApiError);

impl<E: Into<ApiError>> From<E> for PromoterError {
    fn from(err: E) -> Self {
        PromoterError(err.into())
    }
}

impl IntoResponse for PromoterError {
    fn into_response(self) -> Response {
        let error = self.0;
        let body = match &error {
            ApiError::Invalid(fields) => json!(fields),
            ApiError::Internal(_) => json!({ "detail": "A server error occurred." }),
            other => json!({ "detail": other.to_string() }),
        };
        error.decorate((error.status(), Json(body)).into_response())
    }
}

/// An [`ApiError`] rendered for the admin API (its envelope).
#[derive(Debug)]
pub struct AdminError(pub ApiError);

impl<E: Into<ApiError>> From<E> for AdminError {
    fn from(err: E) -> Self {
        AdminError(err.into())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let error = self.0;
        let (message, details) = match &error {
            ApiError::Invalid(fields) => (error.to_string(), fields.clone()),
            ApiError::Internal(_) => ("An internal error occurred".to_string(), FieldErrors::new()),
            other => (other.to_string(), FieldErrors::new()),
        };
        error.decorate(error_response(
            error.status(),
            error.code(),
            message,
            details,
        ))
    }
}
