//! Webhook endpoints (an addition to the admin API document): register, list, read,
//! change, delete, rotate the signing secret, read the delivery log, redeliver. What is
//! sent, and how, is in `crate::webhooks`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use reftrack_common::envelope::{Envelope, FieldErrors};
use reftrack_common::input::{Fields, Paging, Plain, Problem, query_object};
use reftrack_domain::{DeliveryStatus, WebhookEventType};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::{Pagination, rfc3339_seconds};
use super::{Answer, id, ok};
use crate::auth::Admin;
use crate::error::{AdminError, ApiError};
use crate::input::json_object;
use crate::state::AppState;
use crate::webhooks::target;

/// How long deliveries are still signed with the secret a rotation replaced.
const PREVIOUS_SECRET_HOURS: i32 = 24;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, change, remove))
        .routes(routes!(rotate_secret))
        .routes(routes!(deliveries))
        .routes(routes!(redeliver))
}

/// A new endpoint.
#[derive(Debug, ToSchema)]
pub struct NewEndpoint {
    /// Where deliveries are POSTed: http or https, on a public address.
    pub url: String,
    /// The event types it receives; empty or absent: every type.
    pub event_types: Vec<WebhookEventType>,
    pub description: Option<String>,
    /// Default true.
    pub enabled: bool,
}

/// A change of an endpoint: what it gives changes, the rest stays. Enabling an endpoint
/// clears its failures.
#[derive(Debug, Default, ToSchema)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub event_types: Option<Vec<WebhookEventType>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

const FIELDS: &[&str] = &["url", "event_types", "description", "enabled"];

/// Reads the fields of either form; `url` required when `new`.
fn read(
    body: &Map<String, Value>,
    new: bool,
    allow_private: bool,
) -> Result<EndpointChange, FieldErrors> {
    let mut f = Fields::body(body, FIELDS, &Plain);
    if new {
        f.require("url");
    }
    let url = f.url("url");
    if let Some(url) = &url
        && let Err(problem) = target::check(&url.parse().expect("checked as a URL"), allow_private)
    {
        f.fail("url", Problem::Said(problem));
    }
    let event_types = f.list(
        "event_types",
        WebhookEventType::ALL.len(),
        |f, name, item| {
            let parsed = item.as_str().and_then(|s| s.parse().ok());
            if parsed.is_none() {
                let names = WebhookEventType::NAMES.join(", ");
                f.fail(&name, Problem::Said(format!("must be one of {names}")));
            }
            parsed
        },
    );
    let change = EndpointChange {
        url,
        event_types,
        description: f.text("description", 500),
        enabled: f.boolean("enabled"),
    };
    f.finish(change)
}

/// An endpoint as the API shows it. `secret` only in the answers that make one.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Endpoint {
    pub id: i64,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<WebhookEventType>,
    pub enabled: bool,
    /// Why it was disabled by the sender, when it was.
    pub disabled_reason: Option<String>,
    /// Failed attempts in a row.
    pub consecutive_failures: i32,
    pub created_date: String,
    pub updated_date: String,
    /// The signing secret (whsec_...), shown when created and when rotated only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: i64,
    url: String,
    description: Option<String>,
    event_types: Vec<WebhookEventType>,
    enabled: bool,
    disabled_reason: Option<String>,
    consecutive_failures: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    secret: String,
}

const COLUMNS: &str = "id, url, description, event_types, enabled, disabled_reason, \
    consecutive_failures, created_at, updated_at, secret";

impl EndpointRow {
    fn view(self, show_secret: bool) -> Endpoint {
        Endpoint {
            id: self.id,
            url: self.url,
            description: self.description,
            event_types: self.event_types,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            consecutive_failures: self.consecutive_failures,
            created_date: rfc3339_seconds(self.created_at),
            updated_date: rfc3339_seconds(self.updated_at),
            secret: show_secret.then_some(self.secret),
        }
    }
}

/// A new Standard Webhooks secret: `whsec_` and base64 of 32 random bytes.
fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Registers an endpoint; the answer carries its signing secret.
#[utoipa::path(post, path = "/api/v1/affiliate/webhooks/", tag = "admin", security(("admin_key" = [])),
    request_body = NewEndpoint,
    responses((status = 201, body = inline(Envelope<Endpoint>)), (status = 400, description = "Field errors")))]
#[tracing::instrument(skip(state, _admin, body))]
pub async fn create(
    State(state): State<AppState>,
    _admin: Admin,
    body: Bytes,
) -> Result<(StatusCode, Json<Envelope<Endpoint>>), AdminError> {
    let new = read(&json_object(&body)?, true, state.webhooks.allow_private)
        .map_err(ApiError::Invalid)?;
    let row: EndpointRow = sqlx::query_as(&format!(
        "INSERT INTO webhook_endpoints (url, event_types, description, enabled, secret)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(new.url)
    .bind(new.event_types.unwrap_or_default())
    .bind(new.description)
    .bind(new.enabled.unwrap_or(true))
    .bind(new_secret())
    .fetch_one(&state.pool)
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Envelope::new(row.view(true), "Webhook endpoint created")),
    ))
}

/// Every endpoint, newest first.
#[utoipa::path(get, path = "/api/v1/affiliate/webhooks/", tag = "admin", security(("admin_key" = [])),
    responses((status = 200, body = inline(Envelope<Vec<Endpoint>>))))]
#[tracing::instrument(skip_all)]
pub async fn list(State(state): State<AppState>, _admin: Admin) -> Answer<Vec<Endpoint>> {
    let rows: Vec<EndpointRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE deleted_at IS NULL ORDER BY id DESC"
    ))
    .fetch_all(&state.pool)
    .await?;
    let endpoints = rows.into_iter().map(|r| r.view(false)).collect();
    ok(endpoints, "Webhook endpoints retrieved")
}

async fn find(state: &AppState, raw: &str) -> Result<EndpointRow, ApiError> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL"
    ))
    .bind(id(raw)?)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(ApiError::NotFound)
}

/// One endpoint.
#[utoipa::path(get, path = "/api/v1/affiliate/webhooks/{id}/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<Endpoint>)), (status = 404, description = "No such endpoint")))]
#[tracing::instrument(skip(state, _admin))]
pub async fn show(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
) -> Answer<Endpoint> {
    ok(
        find(&state, &raw).await?.view(false),
        "Webhook endpoint retrieved",
    )
}

/// Changes an endpoint's URL, event types, description or whether it is enabled.
#[utoipa::path(put, path = "/api/v1/affiliate/webhooks/{id}/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)), request_body = EndpointChange,
    responses((status = 200, body = inline(Envelope<Endpoint>)), (status = 400, description = "Field errors"),
               (status = 404, description = "No such endpoint")))]
#[tracing::instrument(skip(state, _admin, body))]
pub async fn change(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
    body: Bytes,
) -> Answer<Endpoint> {
    let change = read(&json_object(&body)?, false, state.webhooks.allow_private)
        .map_err(ApiError::Invalid)?;
    let row: EndpointRow = sqlx::query_as(&format!(
        "UPDATE webhook_endpoints SET
             url = coalesce($2, url),
             event_types = coalesce($3, event_types),
             description = coalesce($4, description),
             enabled = coalesce($5, enabled),
             consecutive_failures = CASE WHEN $5 THEN 0 ELSE consecutive_failures END,
             disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END,
             updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(id(&raw)?)
    .bind(change.url)
    .bind(change.event_types)
    .bind(change.description)
    .bind(change.enabled)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(ApiError::NotFound)?;
    ok(row.view(false), "Webhook endpoint updated")
}

/// Deletes an endpoint: nothing more is sent to it.
#[utoipa::path(delete, path = "/api/v1/affiliate/webhooks/{id}/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<Endpoint>)), (status = 404, description = "No such endpoint")))]
#[tracing::instrument(skip(state, _admin))]
pub async fn remove(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
) -> Answer<Endpoint> {
    let row: EndpointRow = sqlx::query_as(&format!(
        "UPDATE webhook_endpoints SET deleted_at = now(), enabled = false, updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(id(&raw)?)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(ApiError::NotFound)?;
    ok(row.view(false), "Webhook endpoint deleted")
}

/// Gives the endpoint a new secret. For 24 hours deliveries carry a signature by each
/// secret, so the receiver can switch to the new one without missing any.
#[utoipa::path(post, path = "/api/v1/affiliate/webhooks/{id}/rotate-secret/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<Endpoint>)), (status = 404, description = "No such endpoint")))]
#[tracing::instrument(skip(state, _admin))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
) -> Answer<Endpoint> {
    let row: EndpointRow = sqlx::query_as(&format!(
        "UPDATE webhook_endpoints SET previous_secret = secret, secret = $2,
             previous_secret_expires_at = now() + make_interval(hours => $3), updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(id(&raw)?)
    .bind(new_secret())
    .bind(PREVIOUS_SECRET_HOURS)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(ApiError::NotFound)?;
    ok(row.view(true), "Webhook secret rotated")
}

/// The delivery log's query string.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Page number, from 1 (default 1).
    pub page: Option<i64>,
    /// Results per page, 1 to 100 (default 20).
    pub page_size: Option<i64>,
    pub status: Option<DeliveryStatus>,
}

impl DeliveryQuery {
    pub fn parse(query: &Map<String, Value>) -> Result<(Paging, Self), FieldErrors> {
        let mut f = Fields::query(query, &Plain);
        let paging = Paging::read(&mut f, 20, 100);
        let status = f.choice("status");
        f.finish((
            paging,
            DeliveryQuery {
                page: Some(paging.page),
                page_size: Some(paging.size),
                status,
            },
        ))
    }
}

/// One event's delivery to the endpoint, with every attempt.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Delivery {
    pub id: i64,
    /// The webhook-id header: the same on every attempt and redelivery.
    pub message_id: String,
    pub event_type: WebhookEventType,
    pub status: DeliveryStatus,
    pub attempts: Vec<Attempt>,
    /// When it is tried next, while pending.
    pub next_attempt_date: Option<String>,
    pub delivered_date: Option<String>,
    pub created_date: String,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Attempt {
    pub date: String,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<i32>,
    /// What went wrong, when it did.
    pub error: Option<String>,
    pub duration_ms: i32,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct DeliveryList {
    pub results: Vec<Delivery>,
    pub pagination: Pagination,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    event_id: i64,
    event_type: WebhookEventType,
    status: DeliveryStatus,
    next_attempt_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    attempts: Value,
}

impl DeliveryRow {
    fn view(self) -> Delivery {
        let attempts = self
            .attempts
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        Delivery {
            id: self.id,
            message_id: format!("msg_{}", self.event_id),
            event_type: self.event_type,
            status: self.status,
            attempts: attempts.iter().map(attempt).collect(),
            next_attempt_date: (self.status == DeliveryStatus::Pending)
                .then(|| rfc3339_seconds(self.next_attempt_at)),
            delivered_date: self.delivered_at.map(rfc3339_seconds),
            created_date: rfc3339_seconds(self.created_at),
        }
    }
}

fn attempt(a: &Value) -> Attempt {
    let at = a["at"]
        .as_str()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok());
    Attempt {
        date: at.map(rfc3339_seconds).unwrap_or_default(),
        status_code: a["status_code"].as_i64().map(|c| c as i32),
        error: a["error"].as_str().map(String::from),
        duration_ms: a["duration_ms"].as_i64().unwrap_or_default() as i32,
    }
}

/// The endpoint's delivery log, newest first.
#[utoipa::path(get, path = "/api/v1/affiliate/webhooks/{id}/deliveries/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path), DeliveryQuery),
    responses((status = 200, body = inline(Envelope<DeliveryList>)), (status = 400, description = "Invalid parameters"),
               (status = 404, description = "No such endpoint")))]
#[tracing::instrument(skip(state, _admin))]
pub async fn deliveries(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<DeliveryList> {
    let endpoint = find(&state, &raw).await?;
    let query = query_object(&query);
    let (paging, DeliveryQuery { status, .. }) =
        DeliveryQuery::parse(&query).map_err(ApiError::Invalid)?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND ($2::text IS NULL OR status = $2)",
    )
    .bind(endpoint.id)
    .bind(status)
    .fetch_one(&state.pool)
    .await?;
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT d.id, d.event_id, ev.type AS event_type, d.status, d.next_attempt_at,
                d.delivered_at, d.created_at,
                coalesce((SELECT jsonb_agg(jsonb_build_object('at', a.attempted_at,
                    'status_code', a.status_code, 'error', a.error, 'duration_ms', a.duration_ms)
                    ORDER BY a.id) FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]') AS attempts
         FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id
         WHERE d.endpoint_id = $1 AND ($2::text IS NULL OR d.status = $2)
         ORDER BY d.id DESC LIMIT $3 OFFSET $4",
    )
    .bind(endpoint.id)
    .bind(status)
    .bind(paging.size)
    .bind(paging.offset())
    .fetch_all(&state.pool)
    .await?;
    let path = format!("/api/v1/affiliate/webhooks/{}/deliveries/", endpoint.id);
    ok(
        DeliveryList {
            results: rows.into_iter().map(DeliveryRow::view).collect(),
            pagination: Pagination::new(&path, &query, paging, total),
        },
        "Webhook deliveries retrieved",
    )
}

/// Sends a delivery again, now, with the same message id (a failed one gets one more
/// attempt; a delivered one is sent once more).
#[utoipa::path(post, path = "/api/v1/affiliate/webhooks/{id}/deliveries/{delivery_id}/redeliver/", tag = "admin",
    security(("admin_key" = [])),
    params(("id" = i64, Path), ("delivery_id" = i64, Path)),
    responses((status = 202, body = inline(Envelope<Value>)), (status = 404, description = "No such delivery")))]
#[tracing::instrument(skip(state, _admin))]
pub async fn redeliver(
    State(state): State<AppState>,
    _admin: Admin,
    Path((raw, raw_delivery)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Envelope<Value>>), AdminError> {
    let endpoint = find(&state, &raw).await?;
    let delivery: i64 = sqlx::query_scalar(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), delivered_at = NULL
         WHERE id = $1 AND endpoint_id = $2 RETURNING id",
    )
    .bind(id(&raw_delivery)?)
    .bind(endpoint.id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Envelope::new(
            serde_json::json!({"id": delivery, "status": "pending"}),
            "Redelivery scheduled",
        )),
    ))
}
