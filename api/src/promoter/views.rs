//! The JSON of the promoter API (`docs/api/promoter-api.txt`): camelCase, money as numbers except the
//! minimum withdrawal balance and a referral's rate, which the seed shows as strings.

use reftrack_domain::{
    CommissionStage, InvitationMethod, Money, PaymentMethod, PayoutStatus, Rate, ReferralStatus,
};
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
    pub current_balance: Money,
    pub total_earned: Money,
    pub total_paid: Money,
    pub created: String,
    pub updated: String,
    pub link_clicked: i64,
    /// Two decimals, as a string: `"20.00"`.
    pub min_withdrawal_balance: String,
    pub commission_rate: Rate,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayoutMethodView {
    pub method: PaymentMethod,
    pub payment_address: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DayEarnings {
    /// Mon, Tue, ... Sun.
    pub day: String,
    pub value: Money,
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
    pub status: ReferralStatus,
    pub invitation_method: InvitationMethod,
    /// Two decimals, as a string: `"15.00"`.
    pub commission_rate: String,
    pub commission_amount: Money,
    /// pending (held), payable, paid or reversed; null before any commission.
    pub commission_status: Option<CommissionStage>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PayoutView {
    pub id: i64,
    pub created: String,
    pub amount: Money,
    /// pending, review (held: the payout address changed shortly before) or paid.
    pub status: PayoutStatus,
}

/// Timestamps as the promoter API document shows them: RFC 3339 in UTC, with microseconds when present.
pub fn rfc3339_auto(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
