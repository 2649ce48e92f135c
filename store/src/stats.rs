//! Queries over ClickHouse's rollups (never the raw tables), shaped for the questions
//! the api asks: the lifetime figures of a page of affiliates, and one affiliate's
//! figures over whole UTC days together with the period before, each in one query.
//! Money is in cents.

use std::collections::HashMap;

use chrono::NaiveDate;
use clickhouse::Client;
use reftrack_domain::{Money, Percent};

/// Counts and money of a set of days (or of all time).
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

/// A row of the daily query: the key (1: the period asked for, 0: the one before) and the
/// columns of [`Stats`].
#[derive(serde::Deserialize, clickhouse::Row)]
struct DailyRow {
    key: u8,
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

impl DailyRow {
    fn stats(&self) -> Stats {
        Stats {
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
        }
    }
}

/// Both periods of [`period_and_previous`]: unique visitors are merged within each
/// period, never summed across days.
pub const PERIODS: &str = "
SELECT key,
       c.raw_clicks, c.valid_clicks, c.unique_clicks, c.bot_clicks, c.prefetch_clicks,
       c.duplicate_clicks, c.unknown_code_clicks, c.rate_limited_clicks,
       v.signups, v.purchases, v.refunds, v.sales_cents, v.refunded_cents, v.commission_cents, v.reversed_cents
FROM (
    SELECT toUInt8(day >= toDate(?)) AS key,
           sumMerge(raw_clicks) AS raw_clicks, sumMerge(valid_clicks) AS valid_clicks,
           uniqExactIfMerge(unique_visitors) AS unique_clicks, sumMerge(bot_clicks) AS bot_clicks,
           sumMerge(prefetch_clicks) AS prefetch_clicks, sumMerge(duplicate_clicks) AS duplicate_clicks,
           sumMerge(unknown_code_clicks) AS unknown_code_clicks, sumMerge(rate_limited_clicks) AS rate_limited_clicks
    FROM clicks_daily
    WHERE affiliate_id = ? AND day >= toDate(?) AND day <= toDate(?)
    GROUP BY key
) AS c
FULL OUTER JOIN (
    SELECT toUInt8(day >= toDate(?)) AS key,
           sum(signups) AS signups, sum(purchases) AS purchases, sum(refunds) AS refunds,
           sum(sales_cents) AS sales_cents, sum(refunded_cents) AS refunded_cents,
           sum(commission_cents) AS commission_cents, sum(reversed_cents) AS reversed_cents
    FROM conversions_daily
    WHERE affiliate_id = ? AND day >= toDate(?) AND day <= toDate(?)
    GROUP BY key
) AS v USING key";

/// One affiliate over the whole UTC days `[from, to]`, and over the period of the same
/// length just before it (for trends): one query.
pub async fn period_and_previous(
    client: &Client,
    affiliate_id: i64,
    from: NaiveDate,
    to: NaiveDate,
) -> clickhouse::error::Result<(Stats, Stats)> {
    let days = (to - from).num_days() + 1;
    let before = from - chrono::Duration::days(days);
    let (from, to, before) = (from.to_string(), to.to_string(), before.to_string());
    let rows: Vec<DailyRow> = client
        .query(PERIODS)
        .bind(&from)
        .bind(affiliate_id)
        .bind(&before)
        .bind(&to)
        .bind(&from)
        .bind(affiliate_id)
        .bind(&before)
        .bind(&to)
        .fetch_all()
        .await?;
    let period = |key: u8| {
        rows.iter()
            .find(|r| r.key == key)
            .map(DailyRow::stats)
            .unwrap_or_default()
    };
    Ok((period(1), period(0)))
}

/// One affiliate over the whole UTC days `[from, to]`.
pub async fn days(
    client: &Client,
    affiliate_id: i64,
    from: NaiveDate,
    to: NaiveDate,
) -> clickhouse::error::Result<Stats> {
    // The period before `from` is the second key of the same query; it is not used.
    Ok(period_and_previous(client, affiliate_id, from, to).await?.0)
}

#[derive(serde::Deserialize, clickhouse::Row)]
struct LifetimeRow {
    affiliate_id: u64,
    raw_clicks: u64,
    valid_clicks: u64,
    unique_clicks: u64,
    signups: u64,
    purchases: u64,
    refunds: u64,
    sales_cents: i64,
    refunded_cents: i64,
    commission_cents: i64,
    reversed_cents: i64,
}

/// The query of [`lifetime`] for `ids`: literal ids (integers only), an IN list the
/// index reads directly.
pub fn lifetime_sql(ids: &[i64]) -> String {
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    format!(
        "SELECT affiliate_id, c.raw_clicks, c.valid_clicks, c.unique_clicks,
                v.signups, v.purchases, v.refunds, v.sales_cents, v.refunded_cents,
                v.commission_cents, v.reversed_cents
         FROM (
             SELECT affiliate_id, sumMerge(raw_clicks) AS raw_clicks, sumMerge(valid_clicks) AS valid_clicks,
                    uniqExactIfMerge(unique_visitors) AS unique_clicks
             FROM clicks_lifetime WHERE affiliate_id IN ({list}) GROUP BY affiliate_id
         ) AS c
         FULL OUTER JOIN (
             SELECT affiliate_id, sum(signups) AS signups, sum(purchases) AS purchases, sum(refunds) AS refunds,
                    sum(sales_cents) AS sales_cents, sum(refunded_cents) AS refunded_cents,
                    sum(commission_cents) AS commission_cents, sum(reversed_cents) AS reversed_cents
             FROM conversions_lifetime WHERE affiliate_id IN ({list}) GROUP BY affiliate_id
         ) AS v USING affiliate_id"
    )
}

/// Several affiliates since their beginning (a page of a listing, or one detail): one
/// query over the lifetime rollups, a handful of rows per affiliate.
pub async fn lifetime(
    client: &Client,
    ids: &[i64],
) -> clickhouse::error::Result<HashMap<i64, Stats>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = lifetime_sql(ids);
    let rows: Vec<LifetimeRow> = client.query(&sql).fetch_all().await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let stats = Stats {
                raw_clicks: r.raw_clicks,
                valid_clicks: r.valid_clicks,
                unique_clicks: r.unique_clicks,
                signups: r.signups,
                purchases: r.purchases,
                refunds: r.refunds,
                sales_cents: r.sales_cents,
                refunded_cents: r.refunded_cents,
                commission_cents: r.commission_cents,
                reversed_cents: r.reversed_cents,
                ..Stats::default()
            };
            (r.affiliate_id as i64, stats)
        })
        .collect())
}

/// One affiliate's figures per UTC day of `[from, to]` (days without any are left out):
/// clicks, unique clicks, conversions (signups and purchases), net commission.
pub const DAILY: &str = "
SELECT toString(day) AS date, c.raw_clicks, c.unique_clicks, v.conversions, v.commission_cents
FROM (
    SELECT day, sumMerge(raw_clicks) AS raw_clicks, uniqExactIfMerge(unique_visitors) AS unique_clicks
    FROM clicks_daily
    WHERE affiliate_id = ? AND day >= toDate(?) AND day <= toDate(?)
    GROUP BY day
) AS c
FULL OUTER JOIN (
    SELECT day, sum(signups) + sum(purchases) AS conversions,
           sum(commission_cents) - sum(reversed_cents) AS commission_cents
    FROM conversions_daily
    WHERE affiliate_id = ? AND day >= toDate(?) AND day <= toDate(?)
    GROUP BY day
) AS v USING day
ORDER BY day";

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize, clickhouse::Row)]
pub struct DayFigures {
    /// YYYY-MM-DD.
    pub date: String,
    pub raw_clicks: u64,
    pub unique_clicks: u64,
    pub conversions: u64,
    pub commission_cents: i64,
}

/// [`DAILY`] for one affiliate.
pub async fn daily(
    client: &Client,
    affiliate_id: i64,
    from: NaiveDate,
    to: NaiveDate,
) -> clickhouse::error::Result<Vec<DayFigures>> {
    let (from, to) = (from.to_string(), to.to_string());
    client
        .query(DAILY)
        .bind(affiliate_id)
        .bind(&from)
        .bind(&to)
        .bind(affiliate_id)
        .bind(&from)
        .bind(&to)
        .fetch_all()
        .await
}
