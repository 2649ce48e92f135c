//! Validation of the admin API's request bodies into typed inputs. Every bad field is
//! reported at once, by name; unknown fields are refused rather than silently dropped.

use std::sync::LazyLock;

use reftrack_common::envelope::FieldErrors;
use reftrack_common::money::{AmountError, parse_amount};
use regex::Regex;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::payout;

pub const MARKETING_CHANNELS: &[&str] = &[
    "social_media",
    "blog",
    "email",
    "youtube",
    "podcast",
    "website",
    "paid_ads",
    "influencer",
    "newsletter",
    "forum",
    "other",
];
pub const EXPERIENCE_LEVELS: &[&str] = &["beginner", "intermediate", "advanced", "expert"];

static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\+?[0-9 ().-]+$").expect("valid regex"));
static ZIP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9 -]{1,20}$").expect("valid regex"));

#[derive(Debug, Default, Clone)]
pub struct AddressInput {
    pub street: Option<String>,
    pub city: Option<String>,
    pub state_id: Option<i32>,
    pub country_id: Option<i32>,
    pub zip: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PaymentMethodInput {
    pub method: String,
    pub address: String,
}

#[derive(Debug)]
pub struct NewAffiliate {
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub address: Option<AddressInput>,
    pub payment_methods: Vec<PaymentMethodInput>,
    pub marketing_channels: Vec<String>,
    pub audience_size: Option<i32>,
    pub experience_level: Option<String>,
}

/// The fields a PUT gave; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct AffiliateChanges {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub address: Option<AddressInput>,
    pub payment_methods: Option<Vec<PaymentMethodInput>>,
    pub marketing_channels: Option<Vec<String>>,
    pub audience_size: Option<i32>,
    pub experience_level: Option<String>,
    pub tier: Option<i16>,
    pub commission_rate: Option<Decimal>,
}

#[derive(Debug, Default)]
pub struct Approval {
    pub tier: Option<i16>,
    pub commission_rate: Option<Decimal>,
    pub approval_note: Option<String>,
}

/// Collects field errors while reading a body.
struct Fields<'a> {
    body: &'a Map<String, Value>,
    errors: FieldErrors,
}

impl<'a> Fields<'a> {
    fn new(body: &'a Map<String, Value>, known: &[&str]) -> Self {
        let mut fields = Self {
            body,
            errors: FieldErrors::new(),
        };
        for key in body.keys().filter(|k| !known.contains(&k.as_str())) {
            fields.fail(key, "is not a known field");
        }
        fields
    }

    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .entry(field.to_string())
            .or_default()
            .push(message.into());
    }

    /// A present, non-null value.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.body.get(field).filter(|v| !v.is_null())
    }

    fn text(&mut self, field: &str, max: usize) -> Option<String> {
        match self.get(field) {
            None => None,
            Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max => {
                Some(s.trim().to_string())
            }
            Some(_) => {
                self.fail(
                    field,
                    format!("must be a non-empty string of at most {max} characters"),
                );
                None
            }
        }
    }

    fn required_text(&mut self, field: &str, max: usize) -> Option<String> {
        if self.get(field).is_none() {
            self.fail(field, "is required");
            return None;
        }
        self.text(field, max)
    }

    fn email(&mut self, field: &str, required: bool) -> Option<String> {
        let email = if required {
            self.required_text(field, 254)
        } else {
            self.text(field, 254)
        }?;
        if email_address::EmailAddress::is_valid(&email) {
            Some(email.to_lowercase())
        } else {
            self.fail(field, "must be a valid email address");
            None
        }
    }

    fn phone(&mut self, field: &str) -> Option<String> {
        let phone = self.text(field, 32)?;
        let digits = phone.chars().filter(char::is_ascii_digit).count();
        if PHONE.is_match(&phone) && (7..=15).contains(&digits) {
            Some(phone)
        } else {
            self.fail(field, "must be a phone number: 7 to 15 digits, optionally with +, spaces, dashes or parentheses");
            None
        }
    }

    fn website(&mut self, field: &str) -> Option<String> {
        let website = self.text(field, 2048)?;
        match url::Url::parse(&website) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(website),
            _ => {
                self.fail(field, "must be an http:// or https:// URL");
                None
            }
        }
    }

    fn integer(&mut self, field: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
        match self.get(field)? {
            Value::Number(n) if n.as_i64().is_some_and(|v| range.contains(&v)) => n.as_i64(),
            _ => {
                self.fail(
                    field,
                    format!(
                        "must be an integer from {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }

    fn choice(&mut self, field: &str, choices: &[&str]) -> Option<String> {
        match self.get(field)? {
            Value::String(s) if choices.contains(&s.as_str()) => Some(s.clone()),
            _ => {
                self.fail(field, format!("must be one of {}", choices.join(", ")));
                None
            }
        }
    }

    fn rate(&mut self, field: &str) -> Option<Decimal> {
        let value = self.get(field)?;
        match parse_amount(value) {
            Ok(rate) if rate <= Decimal::ONE_HUNDRED => Some(rate),
            Ok(_) | Err(AmountError::Negative) => {
                self.fail(field, "must be a percentage from 0 to 100");
                None
            }
            Err(AmountError::TooManyDecimals) => {
                self.fail(field, "must have at most 2 decimal places");
                None
            }
            Err(AmountError::NotANumber) => {
                self.fail(field, "must be a number");
                None
            }
        }
    }

    fn channels(&mut self, field: &str) -> Option<Vec<String>> {
        let items = match self.get(field)? {
            Value::Array(items) if items.len() <= 20 => items,
            _ => {
                self.fail(field, "must be a list of at most 20 channels");
                return None;
            }
        };
        let mut channels = Vec::new();
        for item in items {
            match item.as_str() {
                Some(c) if MARKETING_CHANNELS.contains(&c) => channels.push(c.to_string()),
                _ => {
                    self.fail(
                        field,
                        format!(
                            "each channel must be one of {}",
                            MARKETING_CHANNELS.join(", ")
                        ),
                    );
                    return None;
                }
            }
        }
        channels.dedup();
        Some(channels)
    }

    fn address(&mut self, field: &str) -> Option<AddressInput> {
        let Some(Value::Object(map)) = self.get(field) else {
            if self.get(field).is_some() {
                self.fail(
                    field,
                    "must be an object with street, city, state_id, country_id and zip",
                );
            }
            return None;
        };
        let mut inner = Fields::new(map, &["street", "city", "state_id", "country_id", "zip"]);
        let address = AddressInput {
            street: inner.text("street", 200),
            city: inner.text("city", 100),
            state_id: inner
                .integer("state_id", 1..=i64::from(i32::MAX))
                .map(|v| v as i32),
            country_id: inner
                .integer("country_id", 1..=i64::from(i32::MAX))
                .map(|v| v as i32),
            zip: inner.text("zip", 20),
        };
        if let Some(zip) = &address.zip
            && !ZIP.is_match(zip)
        {
            inner.fail("zip", "must be letters, digits, spaces or dashes");
        }
        if address.state_id.is_some() && address.country_id.is_none() {
            inner.fail("country_id", "is required with state_id");
        }
        for (name, messages) in inner.errors {
            self.errors.insert(format!("{field}.{name}"), messages);
        }
        Some(address)
    }

    fn payment_methods(&mut self, field: &str) -> Option<Vec<PaymentMethodInput>> {
        let items = match self.get(field)? {
            Value::Array(items) if items.len() <= 10 => items,
            _ => {
                self.fail(field, "must be a list of at most 10 payment methods");
                return None;
            }
        };
        let mut methods = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let name = format!("{field}[{i}]");
            let Value::Object(map) = item else {
                self.fail(
                    &name,
                    "must be an object with type and email, address or iban",
                );
                continue;
            };
            let Some(kind) = map
                .get("type")
                .and_then(Value::as_str)
                .filter(|k| payout::METHODS.contains(k))
            else {
                self.fail(
                    &format!("{name}.type"),
                    format!("must be one of {}", payout::METHODS.join(", ")),
                );
                continue;
            };
            let key = address_key(kind);
            match map
                .get(key)
                .and_then(Value::as_str)
                .map(|a| payout::check_address(kind, a))
            {
                Some(Ok(address)) => {
                    if methods
                        .iter()
                        .any(|m: &PaymentMethodInput| m.method == kind)
                    {
                        self.fail(&format!("{name}.type"), format!("{kind} is listed twice"));
                    }
                    methods.push(PaymentMethodInput {
                        method: kind.to_string(),
                        address,
                    });
                }
                Some(Err(message)) => self.fail(&format!("{name}.{key}"), message),
                None => self.fail(&format!("{name}.{key}"), format!("is required for {kind}")),
            }
        }
        Some(methods)
    }

    fn finish<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

/// Which key of a payment method carries its address.
pub fn address_key(method: &str) -> &'static str {
    match method {
        "crypto" => "address",
        "bank" => "iban",
        _ => "email",
    }
}

const AFFILIATE_FIELDS: &[&str] = &[
    "name",
    "email",
    "phone",
    "website",
    "address",
    "payment_methods",
    "marketing_channels",
    "audience_size",
    "experience_level",
];

pub fn new_affiliate(body: &Map<String, Value>) -> Result<NewAffiliate, FieldErrors> {
    let mut f = Fields::new(body, AFFILIATE_FIELDS);
    let name = f.required_text("name", 200);
    let email = f.email("email", true);
    let new = NewAffiliate {
        name: name.unwrap_or_default(),
        email: email.unwrap_or_default(),
        phone: f.phone("phone"),
        website: f.website("website"),
        address: f.address("address"),
        payment_methods: f.payment_methods("payment_methods").unwrap_or_default(),
        marketing_channels: f.channels("marketing_channels").unwrap_or_default(),
        audience_size: f
            .integer("audience_size", 0..=2_000_000_000)
            .map(|v| v as i32),
        experience_level: f.choice("experience_level", EXPERIENCE_LEVELS),
    };
    f.finish(new)
}

pub fn changes(body: &Map<String, Value>) -> Result<AffiliateChanges, FieldErrors> {
    let known: Vec<&str> = AFFILIATE_FIELDS
        .iter()
        .copied()
        .chain(["tier", "commission_rate"])
        .collect();
    let mut f = Fields::new(body, &known);
    let changes = AffiliateChanges {
        name: f.text("name", 200),
        email: f.email("email", false),
        phone: f.phone("phone"),
        website: f.website("website"),
        address: f.address("address"),
        payment_methods: f.payment_methods("payment_methods"),
        marketing_channels: f.channels("marketing_channels"),
        audience_size: f
            .integer("audience_size", 0..=2_000_000_000)
            .map(|v| v as i32),
        experience_level: f.choice("experience_level", EXPERIENCE_LEVELS),
        tier: f.integer("tier", 1..=5).map(|v| v as i16),
        commission_rate: f.rate("commission_rate"),
    };
    f.finish(changes)
}

pub fn approval(body: &Map<String, Value>) -> Result<Approval, FieldErrors> {
    let mut f = Fields::new(body, &["tier", "commission_rate", "approval_note"]);
    let approval = Approval {
        tier: f.integer("tier", 1..=5).map(|v| v as i16),
        commission_rate: f.rate("commission_rate"),
        approval_note: f.text("approval_note", 2000),
    };
    f.finish(approval)
}

pub fn rejection(body: &Map<String, Value>) -> Result<Option<String>, FieldErrors> {
    let mut f = Fields::new(body, &["reason"]);
    let reason = f.text("reason", 2000);
    f.finish(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn the_seed_request_is_valid() {
        let body = object(json!({
            "name": "Jane Doe", "email": "jane@example.com", "phone": "+1-555-0123", "website": "https://janedoe.com",
            "address": {"street": "123 Main St", "city": "New York", "state_id": 47, "country_id": 233, "zip": "10001"},
            "payment_methods": [{"type": "paypal", "email": "jane@paypal.com"}],
            "marketing_channels": ["social_media", "blog", "email"], "audience_size": 5000, "experience_level": "intermediate"
        }));
        let new = new_affiliate(&body).unwrap();
        assert_eq!(new.payment_methods[0].address, "jane@paypal.com");
        assert_eq!(new.address.unwrap().country_id, Some(233));
    }

    #[test]
    fn every_bad_field_is_named() {
        let body = object(json!({
            "email": "nope", "phone": "12", "website": "ftp://x", "address": {"zip": "!!!", "state_id": 4},
            "payment_methods": [{"type": "crypto", "address": "0x1"}, {"type": "cash"}],
            "marketing_channels": ["tv"], "audience_size": -1, "experience_level": "god", "surprise": true
        }));
        let errors = new_affiliate(&body).unwrap_err();
        let named: Vec<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(
            named,
            vec![
                "address.country_id",
                "address.zip",
                "audience_size",
                "email",
                "experience_level",
                "marketing_channels",
                "name",
                "payment_methods[0].address",
                "payment_methods[1].type",
                "phone",
                "surprise",
                "website"
            ]
        );
    }

    #[test]
    fn tiers_and_rates_are_bounded() {
        for (body, field) in [
            (json!({"tier": 0}), "tier"),
            (json!({"tier": 6}), "tier"),
            (json!({"commission_rate": 100.5}), "commission_rate"),
            (json!({"commission_rate": -1}), "commission_rate"),
            (json!({"commission_rate": 12.345}), "commission_rate"),
        ] {
            assert!(
                changes(&object(body.clone()))
                    .unwrap_err()
                    .contains_key(field),
                "{body}"
            );
        }
        let ok = approval(&object(
            json!({"tier": 2, "commission_rate": 12.0, "approval_note": "fine"}),
        ))
        .unwrap();
        assert_eq!(
            (ok.tier, ok.commission_rate.map(|r| r.to_string())),
            (Some(2), Some("12".to_string()))
        );
    }
}
