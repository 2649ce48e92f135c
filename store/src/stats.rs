//! Queries over ClickHouse's hourly rollups (never the raw tables): one affiliate over a
//! range, or several affiliates at once (a page of a listing). Ranges are
//! half-open `[from, to)` in UTC; money is in cents.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use clickhouse::Client;
use reftrack_domain::{Money, Percent};

/// Counts and money of a set of hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub raw_clicks: u64,
    pub valid_clicks: u64,
    pub unique_clicks: u64,
    pub bot_clicks: u64,
    pub prefetch_clicks: u64,
    pub duplicate_clicks: u64,
    pub unknown_code_clicks: u64,
    pub rate_limited_clicks: u64,
    pub signups: u64,
    pub purchases: u64,
    pub refunds: u64,
    pub sales_cents: i64,
    pub refunded_cents: i64,
    pub commission_cents: i64,
    pub reversed_cents: i64,
}

impl Stats {
    /// Sales net of refunds.
    pub fn net_sales(&self) -> Money {
        Money::from_cents(self.sales_cents - self.refunded_cents)
    }

    /// Commission net of clawbacks.
    pub fn net_commission(&self) -> Money {
        Money::from_cents(self.commission_cents - self.reversed_cents)
    }

    /// Purchases per 100 unique clicks.
    pub fn conversion_rate(&self) -> Percent {
        Percent::of(self.purchases, self.unique_clicks)
    }
}

/// The click and conversion columns of [`Stats`], joined on `key` (affiliate or day).
/// Unique visitors are merged across the range, not summed per hour.
const STATS_BY: &str = "
SELECT key,
       c.raw_clicks, c.valid_clicks, c.unique_clicks, c.bot_clicks, c.prefetch_clicks,
       c.duplicate_clicks, c.unknown_code_clicks, c.rate_limited_clicks,
       v.signups, v.purchases, v.refunds, v.sales_cents, v.refunded_cents, v.commission_cents, v.reversed_cents
FROM (
    SELECT {key} AS key,
           sumMerge(raw_clicks) AS raw_clicks, sumMerge(valid_clicks) AS valid_clicks,
           uniqExactIfMerge(unique_visitors) AS unique_clicks, sumMerge(bot_clicks) AS bot_clicks,
           sumMerge(prefetch_clicks) AS prefetch_clicks, sumMerge(duplicate_clicks) AS duplicate_clicks,
           sumMerge(unknown_code_clicks) AS unknown_code_clicks, sumMerge(rate_limited_clicks) AS rate_limited_clicks
    FROM clicks_hourly WHERE {filter} AND hour >= toDateTime(?) AND hour < toDateTime(?)
    GROUP BY key
) AS c
FULL OUTER JOIN (
    SELECT {key} AS key,
           sum(signups) AS signups, sum(purchases) AS purchases, sum(refunds) AS refunds,
           sum(sales_cents) AS sales_cents, sum(refunded_cents) AS refunded_cents,
           sum(commission_cents) AS commission_cents, sum(reversed_cents) AS reversed_cents
    FROM conversions_hourly WHERE {filter} AND hour >= toDateTime(?) AND hour < toDateTime(?)
    GROUP BY key
) AS v USING key";

fn secs(t: DateTime<Utc>) -> u32 {
    t.timestamp().clamp(0, i64::from(u32::MAX)) as u32
}

/// A row of [`STATS_BY`]: the key (affiliate id, day number or 0) and the columns of [`Stats`].
#[derive(serde::Deserialize, clickhouse::Row)]
struct KeyedRow {
    key: u64,
    raw_clicks: u64,
    valid_clicks: u64,
    unique_clicks: u64,
    bot_clicks: u64,
    prefetch_clicks: u64,
    duplicate_clicks: u64,
    unknown_code_clicks: u64,
    rate_limited_clicks: u64,
    signups: u64,
    purchases: u64,
    refunds: u64,
    sales_cents: i64,
    refunded_cents: i64,
    commission_cents: i64,
    reversed_cents: i64,
}

impl KeyedRow {
    fn split(self) -> (u64, Stats) {
        let stats = Stats {
            raw_clicks: self.raw_clicks,
            valid_clicks: self.valid_clicks,
            unique_clicks: self.unique_clicks,
            bot_clicks: self.bot_clicks,
            prefetch_clicks: self.prefetch_clicks,
            duplicate_clicks: self.duplicate_clicks,
            unknown_code_clicks: self.unknown_code_clicks,
            rate_limited_clicks: self.rate_limited_clicks,
            signups: self.signups,
            purchases: self.purchases,
            refunds: self.refunds,
            sales_cents: self.sales_cents,
            refunded_cents: self.refunded_cents,
            commission_cents: self.commission_cents,
            reversed_cents: self.reversed_cents,
        };
        (self.key, stats)
    }
}

/// Runs [`STATS_BY`] grouped by `key` (an SQL expression of `affiliate_id` and `hour`)
/// over the hours matching `filter` in `[from, to)`.
async fn stats_by(
    client: &Client,
    key: &str,
    filter: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> clickhouse::error::Result<Vec<(u64, Stats)>> {
    let sql = STATS_BY
        .replace("{key}", &format!("toUInt64({key})"))
        .replace("{filter}", filter);
    let rows: Vec<KeyedRow> = client
        .query(&sql)
        .bind(secs(from))
        .bind(secs(to))
        .bind(secs(from))
        .bind(secs(to))
        .fetch_all()
        .await?;
    Ok(rows.into_iter().map(KeyedRow::split).collect())
}

/// One affiliate over `[from, to)`.
pub async fn affiliate(
    client: &Client,
    affiliate_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> clickhouse::error::Result<Stats> {
    let rows = stats_by(
        client,
        "affiliate_id",
        &format!("affiliate_id = {affiliate_id}"),
        from,
        to,
    )
    .await?;
    Ok(rows.into_iter().next().map(|(_, s)| s).unwrap_or_default())
}

/// Several affiliates over `[from, to)` (e.g. a page of a listing).
pub async fn affiliates(
    client: &Client,
    ids: &[i64],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> clickhouse::error::Result<HashMap<i64, Stats>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list = ids
        .iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let filter = format!("affiliate_id IN ({list})");
    let rows = stats_by(client, "affiliate_id", &filter, from, to).await?;
    Ok(rows.into_iter().map(|(id, s)| (id as i64, s)).collect())
}
