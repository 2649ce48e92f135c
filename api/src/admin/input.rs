//! What the admin API reads: each request body and query string as a type that both
//! parses the input (with [`Fields`], reporting every bad field at once, by name) and
//! documents it in the OpenAPI document, so the two cannot drift apart.

use std::sync::LazyLock;

use chrono::{Days, NaiveDate};
use reftrack_common::envelope::FieldErrors;
use reftrack_common::input::{Fields, Paging, Plain, Problem};
use reftrack_domain::{AffiliateStatus, PaymentMethod, PayoutStatus, Rate};
use regex::Regex;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

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
const ADDRESS_KEYS: &[&str] = &["street", "city", "state_id", "country_id", "zip"];
const PAYMENT_METHOD_KEYS: &[&str] = &["type", "email", "address", "iban"];

static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\+?[0-9 ().-]+$").expect("valid regex"));
static ZIP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9 -]{1,20}$").expect("valid regex"));

#[derive(Debug, Default, Clone, ToSchema)]
pub struct AddressInput {
    pub street: Option<String>,
    pub city: Option<String>,
    pub state_id: Option<i32>,
    pub country_id: Option<i32>,
    pub zip: Option<String>,
}

/// A payment method: `type`, and the address under the key its type names (`email` for
/// wise and paypal, `address` for crypto, `iban` for bank).
#[derive(Debug, Clone, ToSchema)]
pub struct PaymentMethodInput {
    #[schema(rename = "type")]
    pub method: PaymentMethod,
    /// The address, normalised; its JSON key is `email`, `address` or `iban`, as the type says.
    pub address: String,
}

/// A new affiliate.
#[derive(Debug, ToSchema)]
pub struct NewAffiliate {
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub address: Option<AddressInput>,
    pub payment_methods: Vec<PaymentMethodInput>,
    /// Among social_media, blog, email, youtube, podcast, website, paid_ads, influencer,
    /// newsletter, forum, other.
    pub marketing_channels: Vec<String>,
    pub audience_size: Option<i32>,
    /// beginner, intermediate, advanced or expert.
    pub experience_level: Option<String>,
}

/// The fields a PUT gave; an absent one is left as it is.
#[derive(Debug, Default, ToSchema)]
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
    /// 1 to 5.
    pub tier: Option<i16>,
    /// Percent, 0 to 100.
    pub commission_rate: Option<Rate>,
    /// Days its commissions are held before they can be paid (0 to 365); absent: the
    /// program's. An addition to the admin API document.
    pub holding_days: Option<i32>,
}

/// An approval; what is not given stays as it is.
#[derive(Debug, Default, ToSchema)]
pub struct Approval {
    /// 1 to 5.
    pub tier: Option<i16>,
    /// Percent, 0 to 100.
    pub commission_rate: Option<Rate>,
    pub approval_note: Option<String>,
}

/// A rejection, with an optional reason.
#[derive(Debug, Default, ToSchema)]
pub struct Rejection {
    pub reason: Option<String>,
}

/// The affiliates listing's query string.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page number, from 1 (default 1).
    pub page: Option<i64>,
    /// Results per page, 1 to 100 (default 20).
    pub page_size: Option<i64>,
    pub status: Option<AffiliateStatus>,
    /// 1 to 5.
    pub tier: Option<i16>,
    /// In name or email, at most 100 characters.
    pub search: Option<String>,
    pub active: Option<bool>,
}

/// The payouts listing's query string.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PayoutQuery {
    /// Page number, from 1 (default 1).
    pub page: Option<i64>,
    /// Results per page, 1 to 100 (default 20).
    pub page_size: Option<i64>,
    pub status: Option<PayoutStatus>,
}

/// A performance report's period: whole UTC days, both included.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeriodQuery {
    /// YYYY-MM-DD (default: 29 days before date_to). At most 367 days before date_to.
    pub date_from: Option<NaiveDate>,
    /// YYYY-MM-DD (default: today).
    pub date_to: Option<NaiveDate>,
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
const CHANGE_FIELDS: &[&str] = &[
    "name",
    "email",
    "phone",
    "website",
    "address",
    "payment_methods",
    "marketing_channels",
    "audience_size",
    "experience_level",
    "tier",
    "commission_rate",
    "holding_days",
];

/// The admin API's own field rules on top of [`Fields`].
trait AdminFields {
    fn phone(&mut self, field: &str) -> Option<String>;
    fn address(&mut self, field: &str) -> Option<AddressInput>;
    fn payment_methods(&mut self, field: &str) -> Option<Vec<PaymentMethodInput>>;
    fn channels(&mut self, field: &str) -> Option<Vec<String>>;
    fn tier(&mut self, field: &str) -> Option<i16>;
}

impl AdminFields for Fields<'_> {
    fn phone(&mut self, field: &str) -> Option<String> {
        let phone = self.text(field, 32)?;
        let digits = phone.chars().filter(char::is_ascii_digit).count();
        if PHONE.is_match(&phone) && (7..=15).contains(&digits) {
            Some(phone)
        } else {
            self.fail(field, Problem::Said("must be a phone number: 7 to 15 digits, optionally with +, spaces, dashes or parentheses".into()));
            None
        }
    }

    fn address(&mut self, field: &str) -> Option<AddressInput> {
        self.object(field, ADDRESS_KEYS, |inner| {
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
            if address.zip.as_ref().is_some_and(|zip| !ZIP.is_match(zip)) {
                inner.fail(
                    "zip",
                    Problem::Said("must be letters, digits, spaces or dashes".into()),
                );
            }
            if address.state_id.is_some() && address.country_id.is_none() {
                inner.fail(
                    "country_id",
                    Problem::Said("is required with state_id".into()),
                );
            }
            address
        })
    }

    fn payment_methods(&mut self, field: &str) -> Option<Vec<PaymentMethodInput>> {
        let methods = self.list(field, 10, |f, name, item| {
            f.item(&name, item, PAYMENT_METHOD_KEYS, |m| {
                let method = m.required_choice::<PaymentMethod>("type")?;
                let key = method.address_key();
                let address = m.required_text(key, 254)?;
                match method.check_address(&address) {
                    Ok(address) => Some(PaymentMethodInput { method, address }),
                    Err(message) => {
                        m.fail(key, Problem::Said(message));
                        None
                    }
                }
            })
            .flatten()
        })?;
        for (i, method) in methods.iter().enumerate() {
            if methods[..i].iter().any(|m| m.method == method.method) {
                self.fail(
                    &format!("{field}[{i}].type"),
                    Problem::Said(format!("{} is listed twice", method.method)),
                );
            }
        }
        Some(methods)
    }

    fn channels(&mut self, field: &str) -> Option<Vec<String>> {
        // A bad channel is named by the list, as the admin API document names fields.
        let mut channels = self.list(field, 20, |f, _, item| {
            match item.as_str().filter(|c| MARKETING_CHANNELS.contains(c)) {
                Some(channel) => Some(channel.to_string()),
                None => {
                    f.fail(
                        field,
                        Problem::OneOf {
                            names: MARKETING_CHANNELS,
                            given: item.to_string(),
                        },
                    );
                    None
                }
            }
        })?;
        channels.dedup();
        Some(channels)
    }

    fn tier(&mut self, field: &str) -> Option<i16> {
        self.integer(field, 1..=5).map(|v| v as i16)
    }
}

impl NewAffiliate {
    pub fn parse(body: &Map<String, Value>) -> Result<Self, FieldErrors> {
        let mut f = Fields::body(body, AFFILIATE_FIELDS, &Plain);
        let new = NewAffiliate {
            name: f.required_text("name", 200).unwrap_or_default(),
            email: f.required_email("email").unwrap_or_default(),
            phone: f.phone("phone"),
            website: f.url("website"),
            address: f.address("address"),
            payment_methods: f.payment_methods("payment_methods").unwrap_or_default(),
            marketing_channels: f.channels("marketing_channels").unwrap_or_default(),
            audience_size: f
                .integer("audience_size", 0..=2_000_000_000)
                .map(|v| v as i32),
            experience_level: f.one_of("experience_level", EXPERIENCE_LEVELS),
        };
        f.finish(new)
    }
}

impl AffiliateChanges {
    pub fn parse(body: &Map<String, Value>) -> Result<Self, FieldErrors> {
        let mut f = Fields::body(body, CHANGE_FIELDS, &Plain);
        let changes = AffiliateChanges {
            name: f.text("name", 200),
            email: f.email("email"),
            phone: f.phone("phone"),
            website: f.url("website"),
            address: f.address("address"),
            payment_methods: f.payment_methods("payment_methods"),
            marketing_channels: f.channels("marketing_channels"),
            audience_size: f
                .integer("audience_size", 0..=2_000_000_000)
                .map(|v| v as i32),
            experience_level: f.one_of("experience_level", EXPERIENCE_LEVELS),
            tier: f.tier("tier"),
            commission_rate: f.rate("commission_rate"),
            holding_days: f.integer("holding_days", 0..=365).map(|d| d as i32),
        };
        f.finish(changes)
    }
}

impl Approval {
    pub fn parse(body: &Map<String, Value>) -> Result<Self, FieldErrors> {
        let mut f = Fields::body(body, &["tier", "commission_rate", "approval_note"], &Plain);
        let approval = Approval {
            tier: f.tier("tier"),
            commission_rate: f.rate("commission_rate"),
            approval_note: f.text("approval_note", 2000),
        };
        f.finish(approval)
    }
}

impl Rejection {
    pub fn parse(body: &Map<String, Value>) -> Result<Self, FieldErrors> {
        let mut f = Fields::body(body, &["reason"], &Plain);
        let reason = f.text("reason", 2000);
        f.finish(Rejection { reason })
    }
}

impl ListQuery {
    pub fn parse(query: &Map<String, Value>) -> Result<(Paging, Self), FieldErrors> {
        let mut f = Fields::query(query, &Plain);
        let paging = Paging::read(&mut f, 20, 100);
        let list = ListQuery {
            page: Some(paging.page),
            page_size: Some(paging.size),
            status: f.choice("status"),
            tier: f.tier("tier"),
            search: f.text("search", 100),
            active: f.boolean("active"),
        };
        f.finish((paging, list))
    }
}

impl PayoutQuery {
    pub fn parse(query: &Map<String, Value>) -> Result<(Paging, Self), FieldErrors> {
        let mut f = Fields::query(query, &Plain);
        let paging = Paging::read(&mut f, 20, 100);
        let status = f.choice("status");
        f.finish((
            paging,
            PayoutQuery {
                page: Some(paging.page),
                page_size: Some(paging.size),
                status,
            },
        ))
    }
}

impl PeriodQuery {
    /// `[date_from, date_to]`, 30 days ending `today` by default.
    pub fn parse(
        query: &Map<String, Value>,
        today: NaiveDate,
    ) -> Result<(NaiveDate, NaiveDate), FieldErrors> {
        let mut f = Fields::query(query, &Plain);
        let to = f.date("date_to").unwrap_or(today);
        let from = f.date("date_from").unwrap_or(to - Days::new(29));
        if from > to {
            f.fail(
                "date_from",
                Problem::Said("must not be after date_to".into()),
            );
        } else if (to - from).num_days() > 366 {
            f.fail(
                "date_from",
                Problem::Said("the period must not exceed 367 days".into()),
            );
        }
        f.finish((from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        serde_json::from_value(v).expect("an object")
    }

    #[test]
    fn the_seed_request_is_valid() {
        let body = object(json!({
            "name": "Jane Doe", "email": "jane@example.com", "phone": "+1-555-0123", "website": "https://janedoe.com",
            "address": {"street": "123 Main St", "city": "New York", "state_id": 47, "country_id": 233, "zip": "10001"},
            "payment_methods": [{"type": "paypal", "email": "jane@paypal.com"}],
            "marketing_channels": ["social_media", "blog", "email"], "audience_size": 5000, "experience_level": "intermediate"
        }));
        let new = NewAffiliate::parse(&body).unwrap();
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
        let errors = NewAffiliate::parse(&body).unwrap_err();
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
                AffiliateChanges::parse(&object(body.clone()))
                    .unwrap_err()
                    .contains_key(field),
                "{body}"
            );
        }
        let ok = Approval::parse(&object(
            json!({"tier": 2, "commission_rate": 12.0, "approval_note": "fine"}),
        ))
        .unwrap();
        assert_eq!(
            (ok.tier, ok.commission_rate.map(|r| r.to_string())),
            (Some(2), Some("12.00".to_string()))
        );
    }
}
