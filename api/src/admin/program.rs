//! The program's commission rules and the tiers' default rates (an addition to the admin
//! API document). A change takes effect from the moment it is made: each conversion
//! earns under the rules in force when it happened, so earlier purchases, even those
//! still on their way through the pipeline, keep theirs.

use axum::body::Bytes;
use axum::extract::State;
use chrono::{DateTime, Utc};
use reftrack_common::envelope::FieldErrors;
use reftrack_common::input::{Fields, Plain, Problem};
use reftrack_domain::{Money, Rate, RewardKind};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::rfc3339_seconds;
use super::{Answer, ok};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::input::json_object;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, change))
}

/// The program's rules in force, with the tiers' default rates.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Program {
    /// percent (the affiliate's rate of each purchase) or flat (flat_amount per purchase).
    pub reward_kind: RewardKind,
    pub flat_amount: Money,
    /// Earned once per referred user, at signup.
    pub signup_reward: Money,
    /// Purchases earn for this many months after the user's first; null: for life.
    pub recurring_months: Option<i32>,
    /// Days a commission is held before it can be paid (an affiliate may have its own).
    pub holding_days: i32,
    /// Since when these rules hold.
    pub valid_from: String,
    pub tiers: Vec<TierRate>,
}

#[derive(Debug, serde::Serialize, ToSchema, sqlx::FromRow)]
pub struct TierRate {
    pub tier: i16,
    /// The default rate of the tier's affiliates, in percent.
    pub rate: Rate,
}

#[derive(sqlx::FromRow)]
struct RulesRow {
    valid_from: DateTime<Utc>,
    reward_kind: RewardKind,
    flat_amount: Money,
    signup_reward: Money,
    recurring_months: Option<i32>,
    holding_days: i32,
}

/// A change of the rules: what it gives changes, the rest stays.
#[derive(Debug, Default, ToSchema)]
pub struct ProgramChange {
    pub reward_kind: Option<RewardKind>,
    pub flat_amount: Option<Money>,
    pub signup_reward: Option<Money>,
    /// 1 to 600; null: for life.
    #[schema(nullable)]
    pub recurring_months: Option<Option<i32>>,
    /// 0 to 365.
    pub holding_days: Option<i32>,
    /// Tiers whose default rate changes.
    pub tiers: Option<Vec<TierChange>>,
}

#[derive(Debug, ToSchema)]
pub struct TierChange {
    /// 1 to 5.
    pub tier: i16,
    pub rate: Rate,
}

const FIELDS: &[&str] = &[
    "reward_kind",
    "flat_amount",
    "signup_reward",
    "recurring_months",
    "holding_days",
    "tiers",
];

impl ProgramChange {
    pub fn parse(body: &Map<String, Value>) -> Result<Self, FieldErrors> {
        let mut f = Fields::body(body, FIELDS, &Plain);
        let change = ProgramChange {
            reward_kind: f.choice("reward_kind"),
            flat_amount: f.money("flat_amount"),
            signup_reward: f.money("signup_reward"),
            // Given as null, it means "for life"; absent, it stays.
            recurring_months: match body.get("recurring_months") {
                None => None,
                Some(Value::Null) => Some(None),
                Some(_) => f
                    .integer("recurring_months", 1..=600)
                    .map(|m| Some(m as i32)),
            },
            holding_days: f.integer("holding_days", 0..=365).map(|d| d as i32),
            tiers: f.list("tiers", 5, |f, name, item| {
                f.item(&name, item, &["tier", "rate"], |t| {
                    let tier = t.required_integer("tier", 1..=5)?;
                    if !t.has("rate") {
                        t.fail("rate", Problem::Required);
                    }
                    Some(TierChange {
                        tier: tier as i16,
                        rate: t.rate("rate")?,
                    })
                })
                .flatten()
            }),
        };
        f.finish(change)
    }
}

/// The rules and tiers' rates in force at the api's clock.
async fn current(state: &AppState) -> Result<Program, ApiError> {
    let now = state.clock.now();
    let rules: RulesRow = sqlx::query_as(
        "SELECT valid_from, reward_kind, flat_amount, signup_reward, recurring_months, holding_days
         FROM program_rules WHERE valid_from <= $1 ORDER BY valid_from DESC LIMIT 1",
    )
    .bind(now)
    .fetch_one(&state.pool)
    .await?;
    let tiers: Vec<TierRate> = sqlx::query_as(
        "SELECT DISTINCT ON (tier) tier, rate FROM tier_rates WHERE valid_from <= $1
         ORDER BY tier, valid_from DESC",
    )
    .bind(now)
    .fetch_all(&state.pool)
    .await?;
    Ok(Program {
        reward_kind: rules.reward_kind,
        flat_amount: rules.flat_amount,
        signup_reward: rules.signup_reward,
        recurring_months: rules.recurring_months,
        holding_days: rules.holding_days,
        valid_from: rfc3339_seconds(rules.valid_from),
        tiers,
    })
}

/// The program's rules in force and the tiers' default rates.
#[utoipa::path(get, path = "/api/v1/affiliate/program/", tag = "admin", security(("admin_key" = [])),
    responses((status = 200, body = inline(reftrack_common::envelope::Envelope<Program>))))]
#[tracing::instrument(skip_all)]
pub async fn show(State(state): State<AppState>, _admin: Admin) -> Answer<Program> {
    ok(current(&state).await?, "Program retrieved successfully")
}

/// Changes the program's rules and tiers' rates from now on.
#[utoipa::path(put, path = "/api/v1/affiliate/program/", tag = "admin", security(("admin_key" = [])),
    request_body = ProgramChange,
    responses((status = 200, body = inline(reftrack_common::envelope::Envelope<Program>)), (status = 400, description = "Field errors")))]
#[tracing::instrument(skip_all)]
pub async fn change(State(state): State<AppState>, _admin: Admin, body: Bytes) -> Answer<Program> {
    let change = ProgramChange::parse(&json_object(&body)?).map_err(ApiError::Invalid)?;
    let mut tx = state.pool.begin().await?;
    // The new rules are the current ones with the changes applied, from now on (the
    // api's clock, which tests move to date a change).
    let now = state.clock.now();
    sqlx::query(
        "INSERT INTO program_rules (valid_from, reward_kind, flat_amount, signup_reward, recurring_months, holding_days)
         SELECT $7, COALESCE($1, reward_kind), COALESCE($2, flat_amount), COALESCE($3, signup_reward),
                CASE WHEN $4 THEN $5 ELSE recurring_months END, COALESCE($6, holding_days)
         FROM (SELECT * FROM program_rules WHERE valid_from <= $7 ORDER BY valid_from DESC LIMIT 1) AS current
         ON CONFLICT (valid_from) DO UPDATE SET reward_kind = EXCLUDED.reward_kind,
             flat_amount = EXCLUDED.flat_amount, signup_reward = EXCLUDED.signup_reward,
             recurring_months = EXCLUDED.recurring_months, holding_days = EXCLUDED.holding_days",
    )
    .bind(change.reward_kind)
    .bind(change.flat_amount)
    .bind(change.signup_reward)
    .bind(change.recurring_months.is_some())
    .bind(change.recurring_months.flatten())
    .bind(change.holding_days)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for tier in change.tiers.unwrap_or_default() {
        sqlx::query(
            "INSERT INTO tier_rates (tier, valid_from, rate) VALUES ($1, $3, $2)
             ON CONFLICT (tier, valid_from) DO UPDATE SET rate = EXCLUDED.rate",
        )
        .bind(tier.tier)
        .bind(tier.rate)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    ok(current(&state).await?, "Program updated successfully")
}
