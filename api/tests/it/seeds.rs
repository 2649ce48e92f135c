//! The example responses of the API documents in `docs/api/`, verbatim, for shape comparison.

use serde_json::Value;

pub fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("seed examples are JSON")
}

pub const PROMOTER: &str = r#"{
  "id": 2, "user": 1, "referralToken": "6B86B273FF", "referralLink": "http://localhost:8000/?ref=6B86B273FF",
  "currentBalance": 0, "totalEarned": 0, "totalPaid": 0,
  "created": "2024-08-24T12:12:03.374694Z", "updated": "2024-09-08T09:11:15.032367Z",
  "linkClicked": 0, "minWithdrawalBalance": "20.00", "commissionRate": 15.0
}"#;

pub const PROMOTER_WITH_METHOD: &str = r#"{
  "id": 2, "user": 1, "referralToken": "6B86B273FF", "referralLink": "http://localhost:8000/?ref=6B86B273FF",
  "activePayoutMethod": {"method": "wise", "paymentAddress": "example@gmail.com"},
  "currentBalance": 0, "totalEarned": 0, "totalPaid": 0,
  "created": "2024-08-24T12:12:03.374694Z", "updated": "2024-09-08T09:11:15.032367Z",
  "linkClicked": 0, "minWithdrawalBalance": "20.00", "commissionRate": 15.0
}"#;

pub const RECENT_EARNINGS: &str = r#"[
  {"day": "Mon", "value": 50}, {"day": "Tue", "value": 0}, {"day": "Wed", "value": 30}, {"day": "Thu", "value": 70},
  {"day": "Fri", "value": 20}, {"day": "Sat", "value": 0}, {"day": "Sun", "value": 10}
]"#;

pub const REFERRALS: &str = r#"{
  "count": 1, "pages": 1,
  "results": [{"userId": 2, "email": "john_doe@example.com", "status": "signup", "invitationMethod": "email",
               "commissionRate": "15.00", "commissionAmount": 0, "commissionStatus": null}]
}"#;

pub const PAYOUTS: &str = r#"[
  {"id": 1, "created": "2024-08-30T10:00:00Z", "amount": 100},
  {"id": 2, "created": "2024-08-25T15:30:00Z", "amount": 50}
]"#;

pub const LIST: &str = r#"{
  "success": true,
  "data": {
    "results": [{
      "id": 123, "name": "John Smith", "email": "john@example.com",
      "status": {"value": "approved", "display": "Approved"},
      "tier": 2, "commission_rate": 12.0, "join_date": "2024-01-15T10:30:00Z", "active": true,
      "performance_metrics": {"total_sales": 15000.00, "total_commissions": 1800.00, "conversion_rate": 12.5, "total_clicks": 2500}
    }],
    "pagination": {"page": 1, "page_size": 20, "total_pages": 5, "total_count": 95, "has_next": true,
                   "has_previous": false, "next_url": "/api/v1/affiliate/affiliates/?page=2", "previous_url": null}
  },
  "message": "Affiliates retrieved successfully", "timestamp": 1640995200, "api_version": "1.0"
}"#;

pub const CREATE_REQUEST: &str = r#"{
  "name": "Jane Doe", "email": "jane@example.com", "phone": "+1-555-0123", "website": "https://janedoe.com",
  "address": {"street": "123 Main St", "city": "New York", "state_id": 47, "country_id": 233, "zip": "10001"},
  "payment_methods": [{"type": "paypal", "email": "jane@paypal.com"}],
  "marketing_channels": ["social_media", "blog", "email"], "audience_size": 5000, "experience_level": "intermediate"
}"#;

pub const CREATE: &str = r#"{
  "success": true,
  "data": {"id": 124, "name": "Jane Doe", "email": "jane@example.com",
           "status": {"value": "pending", "display": "Pending Approval"},
           "tier": 1, "commission_rate": 10.0, "join_date": "2024-01-20T14:22:00Z", "active": true,
           "affiliate_code": "JANE_DOE_124"},
  "message": "Affiliate created successfully", "timestamp": 1640995200, "api_version": "1.0"
}"#;

pub const DETAIL: &str = r#"{
  "success": true,
  "data": {
    "id": 123, "name": "John Smith", "email": "john@example.com", "phone": "+1-555-0123", "website": "https://johnsmith.com",
    "status": {"value": "approved", "display": "Approved"},
    "tier": 2, "commission_rate": 12.0, "join_date": "2024-01-15T10:30:00Z", "active": true, "affiliate_code": "JOHN_SMITH_123",
    "address": {"street": "456 Oak St", "city": "Los Angeles", "state": "California", "country": "United States", "zip": "90210"},
    "payment_methods": [{"type": "paypal", "email": "john@paypal.com", "verified": true}],
    "performance_metrics": {"total_sales": 15000.00, "total_commissions": 1800.00, "conversion_rate": 12.5,
                            "total_clicks": 2500, "lifetime_value": 25000.00}
  },
  "message": "Affiliate details retrieved successfully", "timestamp": 1640995200, "api_version": "1.0"
}"#;

pub const UPDATE: &str = r#"{
  "success": true,
  "data": {"id": 123, "name": "John Smith", "email": "john@example.com", "phone": "+1-555-9999",
           "website": "https://newwebsite.com", "status": {"value": "approved", "display": "Approved"},
           "tier": 3, "commission_rate": 15.0, "join_date": "2024-01-15T10:30:00Z", "updated_date": "2024-01-20T16:45:00Z",
           "active": true, "affiliate_code": "JOHN_SMITH_123"},
  "message": "Affiliate updated successfully", "timestamp": 1640995200, "api_version": "1.0"
}"#;

pub const APPROVE: &str = r#"{
  "success": true,
  "data": {"id": 123, "name": "John Smith", "email": "john@example.com",
           "status": {"value": "approved", "display": "Approved"},
           "tier": 2, "commission_rate": 12.0, "join_date": "2024-01-15T10:30:00Z",
           "approved_date": "2024-01-20T16:45:00Z", "approved_by": "admin@rebusai.com",
           "approval_note": "Approved based on excellent portfolio", "active": true, "affiliate_code": "JOHN_SMITH_123"},
  "message": "Affiliate approved successfully", "timestamp": 1640995200, "api_version": "1.0"
}"#;

pub const PERFORMANCE: &str = r#"{
  "success": true,
  "data": {
    "affiliate_id": 123,
    "period": {"start_date": "2024-01-01", "end_date": "2024-01-31"},
    "metrics": {"total_clicks": 1250, "unique_clicks": 890, "conversions": 67, "conversion_rate": 7.53,
                "total_sales": 8900.00, "total_commissions": 1068.00, "average_order_value": 132.84},
    "trending": {"clicks_trend": "+15%", "conversion_trend": "+8%", "commission_trend": "+22%"}
  }
}"#;
