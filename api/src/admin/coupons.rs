//! Coupon codes (an addition to the admin API document): an affiliate's codes, which a
//! conversion may name instead of a referral code or click id; it is then attributed to
//! the coupon's affiliate with invitation method `coupon`. Create, list, disable.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use reftrack_common::envelope::{Envelope, FieldErrors};
use reftrack_common::input::{Fields, Plain, Problem};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::rfc3339_seconds;
use super::{Answer, db, id, ok};
use crate::auth::Admin;
use crate::error::{AdminError, ApiError};
use crate::input::json_object;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(disable))
}

/// A new coupon code.
#[derive(Debug, ToSchema)]
pub struct NewCoupon {
    /// Letters, digits, `_` and `-`, 1 to 64 (kept upper-case).
    pub code: String,
}

impl NewCoupon {
    pub fn parse(body: &Map<String, Value>) -> Result<Self, FieldErrors> {
        let mut f = Fields::body(body, &["code"], &Plain);
        let code = f.required_text("code", 64).map(|c| c.to_ascii_uppercase());
        if let Some(code) = &code
            && !code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            f.fail(
                "code",
                Problem::Said("must be letters, digits, _ or -".into()),
            );
        }
        f.finish(NewCoupon {
            code: code.unwrap_or_default(),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
struct CouponRow {
    id: i64,
    affiliate_id: i64,
    code: String,
    created_at: DateTime<Utc>,
    disabled_at: Option<DateTime<Utc>>,
}

/// A coupon as the API shows it.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Coupon {
    pub id: i64,
    pub affiliate_id: i64,
    pub code: String,
    pub active: bool,
    pub created_date: String,
    pub disabled_date: Option<String>,
}

impl From<CouponRow> for Coupon {
    fn from(c: CouponRow) -> Self {
        Coupon {
            id: c.id,
            affiliate_id: c.affiliate_id,
            code: c.code,
            active: c.disabled_at.is_none(),
            created_date: rfc3339_seconds(c.created_at),
            disabled_date: c.disabled_at.map(rfc3339_seconds),
        }
    }
}

const COLUMNS: &str = "id, affiliate_id, code, created_at, disabled_at";

/// Creates a coupon code for an affiliate.
#[utoipa::path(post, path = "/api/v1/affiliate/affiliates/{id}/coupons/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)), request_body = NewCoupon,
    responses((status = 201, body = inline(Envelope<Coupon>)), (status = 400, description = "Field errors"),
               (status = 404, description = "No such affiliate"), (status = 409, description = "The code is taken")))]
#[tracing::instrument(skip(state, _admin, body))]
pub async fn create(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Envelope<Coupon>>), AdminError> {
    let id = id(&raw)?;
    let new = NewCoupon::parse(&json_object(&body)?).map_err(ApiError::Invalid)?;
    db::find(&state.pool, id).await?;
    let inserted: Result<CouponRow, sqlx::Error> = sqlx::query_as(&format!(
        "INSERT INTO coupons (affiliate_id, code) VALUES ($1, $2) RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&new.code)
    .fetch_one(&state.pool)
    .await;
    let coupon = match inserted {
        Ok(coupon) => coupon,
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("coupons_live_code") => {
            return Err(
                ApiError::Conflict(format!("The coupon code {} is taken", new.code)).into(),
            );
        }
        Err(e) => return Err(e.into()),
    };
    Ok((
        StatusCode::CREATED,
        Json(Envelope::new(
            Coupon::from(coupon),
            "Coupon created successfully",
        )),
    ))
}

/// An affiliate's coupon codes, newest first, disabled ones included.
#[utoipa::path(get, path = "/api/v1/affiliate/affiliates/{id}/coupons/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = inline(Envelope<Vec<Coupon>>)), (status = 404, description = "No such affiliate")))]
#[tracing::instrument(skip(state, _admin))]
pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
) -> Answer<Vec<Coupon>> {
    let id = id(&raw)?;
    db::find(&state.pool, id).await?;
    let coupons: Vec<CouponRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM coupons WHERE affiliate_id = $1 ORDER BY created_at DESC, id DESC"
    ))
    .bind(id)
    .fetch_all(&state.pool)
    .await?;
    ok(
        coupons.into_iter().map(Coupon::from).collect(),
        "Coupons retrieved successfully",
    )
}

/// Disables a coupon code: conversions naming it are refused from then on.
#[utoipa::path(post, path = "/api/v1/affiliate/coupons/{code}/disable/", tag = "admin", security(("admin_key" = [])),
    params(("code" = String, Path)),
    responses((status = 200, body = inline(Envelope<Coupon>)), (status = 404, description = "No live coupon with this code")))]
#[tracing::instrument(skip(state, _admin))]
pub async fn disable(
    State(state): State<AppState>,
    _admin: Admin,
    Path(code): Path<String>,
) -> Answer<Coupon> {
    let coupon: CouponRow = sqlx::query_as(&format!(
        "UPDATE coupons SET disabled_at = now() WHERE code = $1 AND disabled_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(code.to_ascii_uppercase())
    .fetch_optional(&state.pool)
    .await?
    .ok_or(ApiError::NotFound)?;
    ok(Coupon::from(coupon), "Coupon disabled")
}
