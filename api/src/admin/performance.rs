//! An affiliate's performance over a period, with the trend against the period before.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{NaiveDate, Utc};
use reftrack_store::stats::{self, Stats};
use rust_decimal::Decimal;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::db;
use super::id;
use super::input::PeriodQuery;
use super::views::{Performance, PerformanceEnvelope, Period, PeriodMetrics, Trending};
use crate::auth::Admin;
use crate::error::{AdminError, ApiError};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(performance))
}

/// Signed whole percentage change: "+15%", "-8%". From nothing to something is "+100%".
fn trend(current: Decimal, previous: Decimal) -> String {
    let change = if previous.is_zero() {
        if current.is_zero() {
            Decimal::ZERO
        } else {
            Decimal::ONE_HUNDRED
        }
    } else {
        (current - previous) * Decimal::ONE_HUNDRED / previous.abs()
    };
    let rounded =
        change.round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    if rounded.is_sign_negative() && !rounded.is_zero() {
        format!("{rounded}%")
    } else {
        format!("+{}%", rounded.abs())
    }
}

fn period_metrics(s: &Stats) -> PeriodMetrics {
    let total_sales = s.net_sales();
    PeriodMetrics {
        total_clicks: s.raw_clicks,
        unique_clicks: s.unique_clicks,
        conversions: s.purchases,
        conversion_rate: s.conversion_rate(),
        total_sales,
        total_commissions: s.net_commission(),
        average_order_value: total_sales.per(s.purchases),
    }
}

/// An affiliate's figures over a period, with the trend against the period before.
#[utoipa::path(get, path = "/api/v1/affiliate/affiliates/{id}/performance/", tag = "admin", security(("admin_key" = [])),
    params(("id" = i64, Path), PeriodQuery),
    responses((status = 200, body = PerformanceEnvelope), (status = 400, description = "Invalid dates"), (status = 404, description = "No such affiliate")))]
#[tracing::instrument(skip(state, _admin, query))]
pub async fn performance(
    State(state): State<AppState>,
    _admin: Admin,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<PerformanceEnvelope>, AdminError> {
    let id = id(&raw)?;
    let query = reftrack_common::input::query_object(&query);
    let (from, to) =
        PeriodQuery::parse(&query, Utc::now().date_naive()).map_err(ApiError::Invalid)?;
    db::find(&state.pool, id).await?;
    let key = format!("performance:{id}:{from}:{to}");
    let data = state
        .cache
        .get_or_compute(&key, compute_performance(&state, id, from, to))
        .await?;
    Ok(Json(PerformanceEnvelope {
        success: true,
        data,
    }))
}

async fn compute_performance(
    state: &AppState,
    id: i64,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Performance, ApiError> {
    let (current, previous) = stats::period_and_previous(&state.clickhouse, id, from, to).await?;
    let metrics = period_metrics(&current);
    let earlier = period_metrics(&previous);
    Ok(Performance {
        affiliate_id: id,
        period: Period {
            start_date: from.to_string(),
            end_date: to.to_string(),
        },
        trending: Trending {
            clicks_trend: trend(metrics.total_clicks.into(), earlier.total_clicks.into()),
            conversion_trend: trend(metrics.conversions.into(), earlier.conversions.into()),
            commission_trend: trend(
                metrics.total_commissions.amount(),
                earlier.total_commissions.amount(),
            ),
        },
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn trends_are_signed_whole_percentages() {
        assert_eq!(trend(dec!(115), dec!(100)), "+15%");
        assert_eq!(trend(dec!(92), dec!(100)), "-8%");
        assert_eq!(trend(dec!(100), dec!(100)), "+0%");
        assert_eq!(trend(dec!(5), dec!(0)), "+100%");
        assert_eq!(trend(dec!(0), dec!(0)), "+0%");
        assert_eq!(trend(dec!(1), dec!(3)), "-67%");
        assert_eq!(trend(dec!(1068), dec!(875.41)), "+22%");
    }

    #[test]
    fn the_seed_example_metrics_follow_from_the_rollup() {
        let s = Stats {
            raw_clicks: 1250,
            unique_clicks: 890,
            purchases: 67,
            sales_cents: 890_000,
            commission_cents: 106_800,
            ..Stats::default()
        };
        let m = period_metrics(&s);
        assert_eq!(
            (m.conversion_rate.value(), m.average_order_value.amount()),
            (dec!(7.53), dec!(132.84))
        );
    }
}
