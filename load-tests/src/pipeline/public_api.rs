//! What the run reads back, through api's public endpoints only: the promoter API (with
//! each promoter's own token) and the admin affiliate API (with an admin key).

use std::net::SocketAddr;
use std::str::FromStr;

use anyhow::{Context, ensure};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;

use super::model::Expected;

/// A promoter as the promoter API shows it.
#[derive(Debug, Clone)]
pub struct Promoter {
    pub user_id: i64,
    pub affiliate_id: i64,
    pub code: String,
    pub commission_rate: Decimal,
    /// Its commissions are payable at once (holding 0 days); otherwise they are held for
    /// the program's holding period (30 days by default), pending throughout the run.
    pub payable_at_once: bool,
}

/// What api reports for one affiliate, in the units of [`Expected`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    pub raw_clicks: u64,
    pub valid_clicks: u64,
    pub unique_clicks: u64,
    pub signups: u64,
    pub purchases: u64,
    pub net_sales_cents: i64,
    pub net_commission_cents: i64,
    pub total_earned_cents: i64,
    pub balance_cents: i64,
    pub pending_cents: i64,
    pub payable_cents: i64,
}

impl Observed {
    /// Every figure that differs from `expected`, described. Net commission is payable
    /// (and withdrawable) when `payable_at_once`, pending otherwise.
    pub fn mismatches(&self, expected: &Expected, payable_at_once: bool) -> Vec<String> {
        let net = expected.earned_cents - expected.reversed_cents;
        let (pending, payable) = if payable_at_once { (0, net) } else { (net, 0) };
        let pairs = [
            (
                "raw clicks (performance total_clicks)",
                self.raw_clicks as i64,
                expected.raw_clicks as i64,
            ),
            (
                "valid clicks (promoter linkClicked)",
                self.valid_clicks as i64,
                expected.valid_clicks as i64,
            ),
            (
                "unique clicks (performance unique_clicks)",
                self.unique_clicks as i64,
                expected.unique_clicks as i64,
            ),
            (
                "signups (promoter referrals count)",
                self.signups as i64,
                expected.signups as i64,
            ),
            (
                "purchases (performance conversions)",
                self.purchases as i64,
                expected.purchases as i64,
            ),
            (
                "net sales, cents (performance total_sales)",
                self.net_sales_cents,
                expected.net_sales_cents,
            ),
            (
                "net commission, cents (performance total_commissions)",
                self.net_commission_cents,
                net,
            ),
            (
                "earned, cents (promoter totalEarned)",
                self.total_earned_cents,
                net,
            ),
            (
                "balance, cents (promoter currentBalance)",
                self.balance_cents,
                payable,
            ),
            (
                "pending, cents (admin balance pending)",
                self.pending_cents,
                pending,
            ),
            (
                "payable, cents (admin balance payable)",
                self.payable_cents,
                payable,
            ),
        ];
        pairs
            .into_iter()
            .filter(|(_, got, want)| got != want)
            .map(|(what, got, want)| format!("{what}: api {got}, sent {want}"))
            .collect()
    }
}

#[derive(Clone)]
pub struct PublicApi {
    http: reqwest::Client,
    base: String,
    admin_key: String,
    tokens: std::sync::Arc<api::auth::Tokens>,
}

impl PublicApi {
    pub fn new(addr: SocketAddr, admin_key: String, tokens: api::auth::Tokens) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("http://{addr}"),
            admin_key,
            tokens: std::sync::Arc::new(tokens),
        }
    }

    async fn get(&self, path: &str, bearer: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("GET {path}: body"))?;
        ensure!(status.is_success(), "GET {path}: {status} {body}");
        Ok(body)
    }

    fn token(&self, user_id: i64) -> String {
        self.tokens.issue(user_id, 3600)
    }

    /// The promoter of `user_id`, created on first sight as the promoter API does.
    pub async fn promoter(&self, user_id: i64) -> anyhow::Result<Promoter> {
        let me = self
            .get("/referrals/promoter", &self.token(user_id))
            .await?;
        Ok(Promoter {
            user_id,
            affiliate_id: me["id"].as_i64().context("promoter id")?,
            code: me["referralToken"]
                .as_str()
                .context("referralToken")?
                .to_string(),
            commission_rate: Decimal::from_str(&me["commissionRate"].to_string())
                .context("commissionRate")?,
            payable_at_once: false,
        })
    }

    /// Makes `promoter`'s commissions payable at once (its own holding period: 0 days).
    pub async fn pay_at_once(&self, promoter: &mut Promoter) -> anyhow::Result<()> {
        let path = format!("/api/v1/affiliate/affiliates/{}/", promoter.affiliate_id);
        let response = self
            .http
            .put(format!("{}{path}", self.base))
            .bearer_auth(&self.admin_key)
            .json(&serde_json::json!({"holding_days": 0}))
            .send()
            .await
            .with_context(|| format!("PUT {path}"))?;
        let status = response.status();
        ensure!(
            status.is_success(),
            "PUT {path}: {status} {}",
            response.text().await.unwrap_or_default()
        );
        promoter.payable_at_once = true;
        Ok(())
    }

    /// The admin performance metrics of `affiliate_id` over `[from, to]` (whole days).
    pub async fn performance(
        &self,
        affiliate_id: i64,
        from: NaiveDate,
        to: NaiveDate,
    ) -> anyhow::Result<Value> {
        let path = format!(
            "/api/v1/affiliate/affiliates/{affiliate_id}/performance/?date_from={from}&date_to={to}"
        );
        let answer = self.get(&path, &self.admin_key).await?;
        Ok(answer["data"]["metrics"].clone())
    }

    pub async fn observe(
        &self,
        promoter: &Promoter,
        from: NaiveDate,
        to: NaiveDate,
    ) -> anyhow::Result<Observed> {
        let token = self.token(promoter.user_id);
        let me = self.get("/referrals/promoter", &token).await?;
        let referrals = self.get("/referrals/", &token).await?;
        let metrics = self.performance(promoter.affiliate_id, from, to).await?;
        let balance = self
            .get(
                &format!(
                    "/api/v1/affiliate/affiliates/{}/balance/",
                    promoter.affiliate_id
                ),
                &self.admin_key,
            )
            .await?;
        let count = |v: &Value| v.as_u64().unwrap_or(u64::MAX);
        Ok(Observed {
            raw_clicks: count(&metrics["total_clicks"]),
            valid_clicks: count(&me["linkClicked"]),
            unique_clicks: count(&metrics["unique_clicks"]),
            signups: count(&referrals["count"]),
            purchases: count(&metrics["conversions"]),
            net_sales_cents: cents(&metrics["total_sales"])?,
            net_commission_cents: cents(&metrics["total_commissions"])?,
            total_earned_cents: cents(&me["totalEarned"])?,
            balance_cents: cents(&me["currentBalance"])?,
            pending_cents: cents(&balance["data"]["pending"])?,
            payable_cents: cents(&balance["data"]["payable"])?,
        })
    }
}

/// A money amount as the APIs show it (a JSON number or string), in cents.
fn cents(v: &Value) -> anyhow::Result<i64> {
    let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let amount = Decimal::from_str(&text).with_context(|| format!("money {v}"))?;
    ensure!(
        amount.scale() <= 2,
        "money with more than two decimals: {v}"
    );
    (amount * Decimal::ONE_HUNDRED)
        .try_into()
        .with_context(|| format!("money {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed_as(expected: &Expected) -> Observed {
        let net = expected.earned_cents - expected.reversed_cents;
        // Payable at once: nothing pending.
        Observed {
            raw_clicks: expected.raw_clicks,
            valid_clicks: expected.valid_clicks,
            unique_clicks: expected.unique_clicks,
            signups: expected.signups,
            purchases: expected.purchases,
            net_sales_cents: expected.net_sales_cents,
            net_commission_cents: net,
            total_earned_cents: net,
            balance_cents: net,
            pending_cents: 0,
            payable_cents: net,
        }
    }

    #[test]
    fn each_figure_that_differs_is_one_mismatch() {
        let expected = Expected {
            raw_clicks: 120,
            valid_clicks: 100,
            unique_clicks: 90,
            signups: 4,
            purchases: 2,
            net_sales_cents: 15_000,
            earned_cents: 1_500,
            reversed_cents: 250,
        };
        assert!(
            observed_as(&expected)
                .mismatches(&expected, true)
                .is_empty()
        );

        let mut counted_twice = observed_as(&expected);
        counted_twice.signups += 1;
        counted_twice.balance_cents += 125;
        assert_eq!(
            counted_twice.mismatches(&expected, true),
            [
                "signups (promoter referrals count): api 5, sent 4",
                "balance, cents (promoter currentBalance): api 1375, sent 1250",
            ]
        );
        // Held: the same money must be pending, and none of it withdrawable.
        assert_eq!(
            observed_as(&expected).mismatches(&expected, false),
            [
                "balance, cents (promoter currentBalance): api 1250, sent 0",
                "pending, cents (admin balance pending): api 0, sent 1250",
                "payable, cents (admin balance payable): api 1250, sent 0",
            ]
        );
    }

    #[test]
    fn money_is_read_in_cents_from_numbers_and_strings() {
        assert_eq!(cents(&serde_json::json!("12.34")).unwrap(), 1234);
        assert_eq!(cents(&serde_json::json!(7.5)).unwrap(), 750);
        assert!(cents(&serde_json::json!("0.001")).is_err());
    }
}
