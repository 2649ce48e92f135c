//! The JSON of the admin affiliate API (`docs/api/admin-affiliate-api.txt`): snake_case, money and rates as numbers,
//! timestamps in RFC 3339 to the second.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    /// pending, approved or rejected.
    pub value: String,
    pub display: String,
}

impl StatusView {
    pub fn of(status: &str) -> Self {
        let display = match status {
            "pending" => "Pending Approval",
            "approved" => "Approved",
            "rejected" => "Rejected",
            other => other,
        };
        Self {
            value: status.to_string(),
            display: display.to_string(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListMetrics {
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub total_sales: Decimal,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub total_commissions: Decimal,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub conversion_rate: Decimal,
    pub total_clicks: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListItem {
    pub id: i64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub status: StatusView,
    pub tier: i16,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub commission_rate: Decimal,
    pub join_date: String,
    pub active: bool,
    pub performance_metrics: ListMetrics,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    pub page: i64,
    pub page_size: i64,
    pub total_pages: i64,
    pub total_count: i64,
    pub has_next: bool,
    pub has_previous: bool,
    pub next_url: Option<String>,
    pub previous_url: Option<String>,
}

impl Pagination {
    /// `next_url`/`previous_url` carry the page only, as the admin API document shows them.
    pub fn new(path: &str, page: i64, page_size: i64, total_count: i64) -> Self {
        let total_pages = (total_count + page_size - 1) / page_size;
        let url = |p: i64| format!("{path}?page={p}");
        Self {
            page,
            page_size,
            total_pages,
            total_count,
            has_next: page < total_pages,
            has_previous: page > 1,
            next_url: (page < total_pages).then(|| url(page + 1)),
            previous_url: (page > 1).then(|| url((page - 1).min(total_pages.max(1)))),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AffiliateList {
    pub results: Vec<ListItem>,
    pub pagination: Pagination,
}

/// The answer to a create, an approval or a rejection: the affiliate, with what the
/// action recorded (`R`) in its place among the fields, as the admin API document orders them.
#[derive(Debug, Serialize, ToSchema)]
pub struct AffiliateAnswer<R> {
    pub id: i64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub status: StatusView,
    pub tier: i16,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub commission_rate: Decimal,
    pub join_date: String,
    #[serde(flatten)]
    pub recorded: R,
    pub active: bool,
    pub affiliate_code: String,
}

/// A create records nothing beyond the affiliate.
#[derive(Debug, Serialize, ToSchema)]
pub struct NothingMore {}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalRecord {
    pub approved_date: Option<String>,
    pub approved_by: Option<String>,
    pub approval_note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RejectionRecord {
    pub rejected_date: Option<String>,
    pub rejected_by: Option<String>,
    pub rejection_reason: Option<String>,
}

pub type Created = AffiliateAnswer<NothingMore>;
pub type Approved = AffiliateAnswer<ApprovalRecord>;
pub type Rejected = AffiliateAnswer<RejectionRecord>;

#[derive(Debug, Serialize, ToSchema)]
pub struct AddressView {
    pub street: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
    pub zip: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethodView {
    /// wise, paypal, crypto or bank.
    #[serde(rename = "type")]
    pub kind: String,
    /// For wise and paypal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// For crypto: the wallet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// For bank.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iban: Option<String>,
    pub verified: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DetailMetrics {
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub total_sales: Decimal,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub total_commissions: Decimal,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub conversion_rate: Decimal,
    pub total_clicks: u64,
    /// Net sales per paying referred customer.
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub lifetime_value: Decimal,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Detail {
    pub id: i64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub status: StatusView,
    pub tier: i16,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub commission_rate: Decimal,
    pub join_date: String,
    pub active: bool,
    pub affiliate_code: String,
    pub address: Option<AddressView>,
    pub payment_methods: Vec<PaymentMethodView>,
    pub performance_metrics: DetailMetrics,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Updated {
    pub id: i64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub status: StatusView,
    pub tier: i16,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub commission_rate: Decimal,
    pub join_date: String,
    pub updated_date: String,
    pub active: bool,
    pub affiliate_code: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub id: i64,
    pub deleted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Period {
    pub start_date: String,
    pub end_date: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeriodMetrics {
    pub total_clicks: u64,
    pub unique_clicks: u64,
    /// Purchases.
    pub conversions: u64,
    /// Conversions per 100 unique clicks.
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub conversion_rate: Decimal,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub total_sales: Decimal,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub total_commissions: Decimal,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub average_order_value: Decimal,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Trending {
    /// Signed whole percentage against the previous period of equal length: "+15%".
    pub clicks_trend: String,
    pub conversion_trend: String,
    pub commission_trend: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Performance {
    pub affiliate_id: i64,
    pub period: Period,
    pub metrics: PeriodMetrics,
    pub trending: Trending,
}

/// The performance answer: the admin API document shows it with `success` and `data` only.
#[derive(Debug, Serialize, ToSchema)]
pub struct PerformanceEnvelope {
    pub success: bool,
    pub data: Performance,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutView {
    pub id: i64,
    pub affiliate_id: i64,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub amount: Decimal,
    /// pending, paid or cancelled.
    pub status: String,
    pub method: String,
    pub address: String,
    pub created_at: String,
    pub paid_at: Option<String>,
    pub paid_by: Option<String>,
    pub cancelled_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutList {
    pub results: Vec<PayoutView>,
    pub pagination: Pagination,
}

/// Timestamps as the admin API document shows them: RFC 3339 in UTC, to the second.
pub fn rfc3339_seconds(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
