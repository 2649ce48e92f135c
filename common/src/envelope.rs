//! The JSON envelope of reftrack's server-to-server and admin APIs (`docs/api/admin-affiliate-api.txt`):
//! `{success, data, message, timestamp, api_version}` on success and
//! `{success: false, error: {code, message, details}}` on failure.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const API_VERSION: &str = "1.0";

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Envelope<T> {
    pub success: bool,
    pub data: T,
    pub message: String,
    pub timestamp: i64,
    pub api_version: &'static str,
}

impl<T: Serialize> Envelope<T> {
    pub fn new(data: T, message: impl Into<String>) -> Self {
        Self {
            success: true,
            data,
            message: message.into(),
            timestamp: chrono::Utc::now().timestamp(),
            api_version: API_VERSION,
        }
    }
}

/// Field name → what is wrong with it. A `BTreeMap` so that messages come out sorted.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
    pub details: FieldErrors,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub success: bool,
    pub error: ErrorBody,
}

/// An error response in the envelope.
pub fn error_response(
    status: StatusCode,
    code: &'static str,
    message: impl Into<String>,
    details: FieldErrors,
) -> Response {
    let body = ErrorEnvelope {
        success: false,
        error: ErrorBody {
            code,
            message: message.into(),
            details,
        },
    };
    (status, Json(body)).into_response()
}
