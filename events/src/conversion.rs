//! A signup, purchase or refund that the product's backend reported, after ingest
//! validated it.

use chrono::{DateTime, Utc};
use reftrack_domain::Money;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use reftrack_domain::{ConversionKind, InvitationMethod};

/// A validated conversion. Money is a decimal carried as a string, never a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversionEvent {
    /// The sender's idempotency key: the same id sent twice is counted once.
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: ConversionKind,
    /// The referred user in the product.
    pub user_id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The referral code, given directly or taken from the click id.
    pub referral_code: String,
    /// The coupon code the conversion named, when it was attributed by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<String>,
    /// The click that brought the user, when the product sent the cookie's click id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_id: Option<Uuid>,
    /// Purchase or refund amount, in the settlement currency, at most two decimals.
    #[serde(
        default,
        with = "reftrack_domain::as_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// For a refund: the purchase it refunds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_event_id: Option<String>,
    #[serde(default)]
    pub method: InvitationMethod,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

impl ConversionEvent {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a conversion serialises")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn money_travels_as_an_exact_string() {
        let event = ConversionEvent {
            event_id: "order-1".into(),
            kind: ConversionKind::Purchase,
            user_id: 42,
            email: Some("a@b.example".into()),
            referral_code: "6B86B273FF".into(),
            click_id: None,
            coupon: None,
            amount: Some(Money::new(dec!(19.99)).unwrap()),
            currency: Some("USD".into()),
            original_event_id: None,
            method: InvitationMethod::Coupon,
            occurred_at: "2024-08-24T12:12:03.374694Z".parse().unwrap(),
            received_at: "2024-08-24T12:12:04Z".parse().unwrap(),
        };
        let bytes = event.encode();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains(r#""amount":"19.99""#), "{text}");
        assert!(text.contains(r#""type":"purchase""#), "{text}");
        assert_eq!(ConversionEvent::decode(&bytes).unwrap(), event);
    }
}
