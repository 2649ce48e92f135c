//! The JSON of the promoter API (`docs/api/promoter-api.txt`): camelCase, money as numbers except the
//! minimum withdrawal balance and a referral's rate, which the seed shows as strings.

use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromoterView {
    pub id: i64,
    /// The product's user id.
    pub user: i64,
    pub referral_token: String,
    pub referral_link: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_payout_method: Option<PayoutMethodView>,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub current_balance: Decimal,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub total_earned: Decimal,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub total_paid: Decimal,
    pub created: String,
    pub updated: String,
    pub link_clicked: i64,
    /// Two decimals, as a string: `"20.00"`.
    pub min_withdrawal_balance: String,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub commission_rate: Decimal,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayoutMethodView {
    pub method: String,
    pub payment_address: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DayEarnings {
    /// Mon, Tue, ... Sun.
    pub day: String,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub value: Decimal,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReferralPage {
    pub count: i64,
    pub pages: i64,
    pub results: Vec<ReferralView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReferralView {
    pub user_id: i64,
    pub email: Option<String>,
    /// signup or converted.
    pub status: String,
    /// link, email or coupon.
    pub invitation_method: String,
    /// Two decimals, as a string: `"15.00"`.
    pub commission_rate: String,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub commission_amount: Decimal,
    /// null, earned or reversed.
    pub commission_status: Option<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct PayoutView {
    pub id: i64,
    pub created: String,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub amount: Decimal,
}

/// Timestamps as the promoter API document shows them: RFC 3339 in UTC, with microseconds when present.
pub fn rfc3339_auto(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// `"20.00"`.
pub fn two_decimals(d: Decimal) -> String {
    format!("{:.2}", d.round_dp(2))
}
