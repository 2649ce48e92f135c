//! The JSON of the admin affiliate API (`docs/api/admin-affiliate-api.txt`): snake_case, money and rates as numbers,
//! timestamps in RFC 3339 to the second.

use reftrack_common::input::Paging;
use reftrack_domain::{AffiliateStatus, Money, PaymentMethod, PayoutStatus, Percent, Rate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    pub value: AffiliateStatus,
    /// Pending Approval, Approved or Rejected.
    pub display: String,
}

impl StatusView {
    pub fn of(status: AffiliateStatus) -> Self {
        Self {
            value: status,
            display: status.label().to_string(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListMetrics {
    pub total_sales: Money,
    pub total_commissions: Money,
    pub conversion_rate: Percent,
    pub total_clicks: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListItem {
    pub id: i64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub status: StatusView,
    pub tier: i16,
    pub commission_rate: Rate,
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
    /// The pagination of a listing at `path` asked for with `query`: `next_url` and
    /// `previous_url` keep the query's other parameters (filters, page size), so following
    /// them gives the next page of the same listing.
    pub fn new(path: &str, query: &Map<String, Value>, paging: Paging, total_count: i64) -> Self {
        let Paging { page, size } = paging;
        let total_pages = (total_count + size - 1) / size;
        let url = |p: i64| {
            let mut link = url::form_urlencoded::Serializer::new(String::new());
            link.append_pair("page", &p.to_string());
            for (key, value) in query.iter().filter(|(k, _)| k.as_str() != "page") {
                if let Some(value) = value.as_str() {
                    link.append_pair(key, value);
                }
            }
            format!("{path}?{}", link.finish())
        };
        Self {
            page,
            page_size: size,
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
    pub commission_rate: Rate,
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
    #[serde(rename = "type")]
    pub kind: PaymentMethod,
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
    pub total_sales: Money,
    pub total_commissions: Money,
    pub conversion_rate: Percent,
    pub total_clicks: u64,
    /// Net sales per paying referred customer.
    pub lifetime_value: Money,
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
    pub commission_rate: Rate,
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
    pub commission_rate: Rate,
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
    pub conversion_rate: Percent,
    pub total_sales: Money,
    pub total_commissions: Money,
    pub average_order_value: Money,
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
    pub amount: Money,
    pub status: PayoutStatus,
    pub method: PaymentMethod,
    pub address: String,
    pub created_at: String,
    pub paid_at: Option<String>,
    pub paid_by: Option<String>,
    pub cancelled_at: Option<String>,
    pub failed_at: Option<String>,
    /// Why the provider could not pay it.
    pub failure_reason: Option<String>,
    /// The payout batch it is a line of.
    pub batch_id: Option<i64>,
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
