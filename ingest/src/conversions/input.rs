//! What `POST /v1/conversions` and its batch form read: each request as a type that both
//! parses the body (every bad field reported at once, by name) and documents it.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use reftrack_common::envelope::FieldErrors;
use reftrack_common::input::{Fields, Plain, Problem};
use reftrack_domain::{ConversionKind, InvitationMethod, Money, decimal_of};
use reftrack_events::click::parse_click_id;
use reftrack_events::{ConversionEvent, ReferralCode};
use serde_json::Value;
use utoipa::ToSchema;

/// Most conversions in one batch request.
pub const MAX_BATCH: usize = 500;
/// Largest purchase or refund accepted.
const MAX_AMOUNT: i64 = 1_000_000_000;
/// How far in the future `occurred_at` may be (clock skew).
const MAX_CLOCK_SKEW_MINUTES: i64 = 5;
/// 2000-01-01: nothing earlier is a real conversion.
const EARLIEST: i64 = 946_684_800;
/// Every field a conversion may carry.
pub const FIELDS: &[&str] = &[
    "event_id",
    "type",
    "user_id",
    "email",
    "referral_code",
    "click_id",
    "coupon",
    "amount",
    "currency",
    "original_event_id",
    "method",
    "occurred_at",
];

/// A signup, purchase or refund, reported by the product's backend.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"event_id": "order-1001", "type": "purchase", "user_id": 42,
    "referral_code": "JANE_DOE_1", "amount": "99.00", "currency": "USD", "method": "link"}))]
pub struct ConversionRequest {
    /// The sender's idempotency key, 1 to 128 characters: the same id sent twice counts once.
    pub event_id: String,
    #[schema(rename = "type")]
    pub kind: ConversionKind,
    /// The referred user's id in the product, a positive integer.
    pub user_id: i64,
    pub email: Option<String>,
    /// The referral code (`?ref=`); `click_id` may stand in for it.
    pub referral_code: Option<String>,
    /// The attribution cookie's value, `CODE.CLICK_ID`; must agree with `referral_code`.
    pub click_id: Option<String>,
    /// A coupon code the user redeemed: attributes the conversion to the coupon's
    /// affiliate, invitation method `coupon`. May stand in for `referral_code`.
    pub coupon: Option<String>,
    /// Purchases and refunds: a positive amount with at most two decimals, as a number or
    /// a string.
    pub amount: Option<Money>,
    /// Purchases and refunds: the settlement currency (`SETTLEMENT_CURRENCY`).
    pub currency: Option<String>,
    /// Refunds: the `event_id` of the purchase refunded.
    pub original_event_id: Option<String>,
    /// How the user was invited (default link).
    pub method: Option<InvitationMethod>,
    /// When it happened, RFC 3339 (default: when received); for backfills.
    pub occurred_at: Option<DateTime<Utc>>,
}

/// Up to 500 conversions, checked as a whole (errors named `events[i].field`), then
/// sent in order.
#[derive(Debug, ToSchema)]
pub struct BatchRequest {
    pub events: Vec<ConversionRequest>,
}

/// What parsing a conversion needs to know: when it is, the settlement currency, and
/// the referral code each live coupon stands for.
pub struct Context<'a> {
    pub now: DateTime<Utc>,
    pub currency: &'a str,
    pub coupon: &'a dyn Fn(&str) -> Option<String>,
}

/// Reads `{"events": [...]}`.
pub fn parse_batch(body: &Value, cx: &Context<'_>) -> Result<Vec<ConversionEvent>, FieldErrors> {
    let Some(object) = body.as_object() else {
        return Err(one("body", "must be a JSON object"));
    };
    let mut f = Fields::body(object, &["events"], &Plain);
    if !f.require("events") {
        return f.finish(Vec::new());
    }
    let events = f.list("events", MAX_BATCH, |f, name, item| match parse(item, cx) {
        Ok(event) => Some(event),
        Err(errors) => {
            for (field, messages) in errors {
                for message in messages {
                    f.fail(&format!("{name}.{field}"), Problem::Said(message));
                }
            }
            None
        }
    });
    if events.as_ref().is_some_and(Vec::is_empty) && !f.is_failed("events") {
        f.fail(
            "events",
            Problem::Said(format!("must hold 1 to {MAX_BATCH} conversions")),
        );
    }
    f.finish(events.unwrap_or_default())
}

fn one(field: &str, message: &str) -> FieldErrors {
    FieldErrors::from([(field.to_string(), vec![message.to_string()])])
}

/// Reads one conversion.
pub fn parse(body: &Value, cx: &Context<'_>) -> Result<ConversionEvent, FieldErrors> {
    let (now, currency) = (cx.now, cx.currency);
    let Some(object) = body.as_object() else {
        return Err(one("body", "must be a JSON object"));
    };
    let mut f = Fields::body(object, FIELDS, &Plain);
    let event_id = f.required_text("event_id", 128);
    let kind = f.required_choice::<ConversionKind>("type");
    let user_id = f.required_integer("user_id", 1..=i64::MAX);
    let email = f.email("email");
    let coupon = coupon(&mut f, cx);
    let (referral_code, click_id) = attribution(&mut f, coupon.as_ref().map(|(_, code)| code));
    let (amount, currency) = match kind {
        Some(ConversionKind::Purchase | ConversionKind::Refund) => {
            (amount(&mut f), settlement_currency(&mut f, currency))
        }
        _ => {
            refuse_unless(&mut f, &["amount", "currency"], "purchases and refunds");
            (None, None)
        }
    };
    let original_event_id = if kind == Some(ConversionKind::Refund) {
        f.required_text("original_event_id", 128)
    } else {
        refuse_unless(&mut f, &["original_event_id"], "refunds");
        None
    };
    let method = match &coupon {
        Some(_) => InvitationMethod::Coupon,
        None => f.choice::<InvitationMethod>("method").unwrap_or_default(),
    };
    let occurred_at = occurred_at(&mut f, now);
    let event = match (event_id, kind, user_id, referral_code) {
        (Some(event_id), Some(kind), Some(user_id), Some(code)) => Some(ConversionEvent {
            event_id,
            kind,
            user_id,
            email,
            referral_code: code.into_string(),
            coupon: coupon.map(|(coupon, _)| coupon),
            click_id,
            amount,
            currency,
            original_event_id,
            method,
            occurred_at,
            received_at: now,
        }),
        _ => None,
    };
    // Every field that is missing from `event` failed, so `finish` refuses it.
    f.finish(event)
        .map(|event| event.expect("a conversion without a failed field is whole"))
}

/// Marks each of `fields` given here as accepted only on `kinds`.
fn refuse_unless(f: &mut Fields<'_>, fields: &[&str], kinds: &str) {
    for field in fields {
        if f.has(field) {
            f.fail(field, Problem::Said(format!("is only accepted on {kinds}")));
        }
    }
}

/// The coupon named, if any, with the referral code it stands for.
fn coupon(f: &mut Fields<'_>, cx: &Context<'_>) -> Option<(String, ReferralCode)> {
    let coupon = f.text("coupon", 64)?.to_ascii_uppercase();
    match (cx.coupon)(&coupon).and_then(|code| ReferralCode::parse(&code)) {
        Some(code) => Some((coupon, code)),
        None => {
            f.fail(
                "coupon",
                Problem::Said(format!("{coupon} is not a live coupon code")),
            );
            None
        }
    }
}

/// The referral code, from `referral_code`, the cookie's `click_id` or a coupon (all
/// that are given must agree), and the click id.
fn attribution(
    f: &mut Fields<'_>,
    coupon: Option<&ReferralCode>,
) -> (Option<ReferralCode>, Option<uuid::Uuid>) {
    if let Some(coupon) = coupon
        && f.get("referral_code")
            .and_then(Value::as_str)
            .and_then(ReferralCode::parse)
            .is_some_and(|c| c != *coupon)
    {
        return fail(f, "coupon", "belongs to another referral code".to_string());
    }
    let direct = f.get("referral_code").map(|v| {
        v.as_str()
            .and_then(ReferralCode::parse)
            .ok_or_else(|| "must be 1 to 64 letters, digits or underscores".to_string())
    });
    let from_click = f.get("click_id").map(|v| {
        v.as_str()
            .and_then(parse_click_id)
            .ok_or_else(|| "must be the CODE.CLICK_ID value of the attribution cookie".to_string())
    });
    let direct = match direct {
        Some(Err(message)) => return fail(f, "referral_code", message),
        Some(Ok(code)) => Some(code),
        None => None,
    };
    let (from_click, click_id) = match from_click {
        Some(Err(message)) => return fail(f, "click_id", message),
        Some(Ok((code, id))) => (Some(code), Some(id)),
        None => (None, None),
    };
    match (direct, from_click) {
        (Some(a), Some(b)) if a != b => fail(
            f,
            "click_id",
            format!(
                "belongs to referral code {}, not {}",
                b.as_str(),
                a.as_str()
            ),
        ),
        (Some(code), _) | (None, Some(code)) => match coupon {
            Some(coupon) if *coupon != code => {
                fail(f, "coupon", "belongs to another referral code".to_string())
            }
            _ => (Some(code), click_id),
        },
        (None, None) => match coupon {
            Some(coupon) => (Some(coupon.clone()), None),
            None => fail(
                f,
                "referral_code",
                "referral_code or click_id (or coupon) is required".to_string(),
            ),
        },
    }
}

fn fail<T>(f: &mut Fields<'_>, field: &str, message: String) -> (Option<T>, Option<uuid::Uuid>) {
    f.fail(field, Problem::Said(message));
    (None, None)
}

/// A positive amount with at most two decimals, from a number or a string.
fn amount(f: &mut Fields<'_>) -> Option<Money> {
    if !f.require("amount") {
        return None;
    }
    let value = f.get("amount")?;
    let said = |f: &mut Fields<'_>, message: String| {
        f.fail("amount", Problem::Said(message));
        None
    };
    match decimal_of(value).and_then(Money::new) {
        Err(err) => {
            f.fail("amount", Problem::Decimal(err));
            None
        }
        Ok(amount) if !amount.is_positive() => said(f, "must be greater than zero".into()),
        Ok(amount) if amount > Money::from_cents(MAX_AMOUNT * 100) => {
            said(f, format!("must not exceed {MAX_AMOUNT}"))
        }
        Ok(amount) => Some(amount),
    }
}

fn settlement_currency(f: &mut Fields<'_>, currency: &str) -> Option<String> {
    match f.get("currency").map(Value::as_str) {
        Some(Some(c)) if c == currency => Some(c.to_string()),
        Some(given) => {
            let given = given.unwrap_or("not a string");
            f.fail(
                "currency",
                Problem::Said(format!(
                    "must be {currency}, the settlement currency (got {given})"
                )),
            );
            None
        }
        None => {
            f.fail(
                "currency",
                Problem::Said(format!("is required with an amount: {currency}")),
            );
            None
        }
    }
}

/// When it happened: not in the future (beyond clock skew), not before 2000; now by default.
fn occurred_at(f: &mut Fields<'_>, now: DateTime<Utc>) -> DateTime<Utc> {
    let Some(at) = f.timestamp("occurred_at") else {
        return now;
    };
    if at > now + ChronoDuration::minutes(MAX_CLOCK_SKEW_MINUTES) {
        f.fail(
            "occurred_at",
            Problem::Said("must not be in the future".into()),
        );
    } else if at.timestamp() < EARLIEST {
        f.fail(
            "occurred_at",
            Problem::Said("must not be before 2000-01-01".into()),
        );
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2024-09-08T09:00:00Z".parse().unwrap()
    }

    /// Coupon SPRING10 stands for code AB12.
    fn cx() -> Context<'static> {
        Context {
            now: now(),
            currency: "USD",
            coupon: &|coupon| (coupon == "SPRING10").then(|| "AB12".to_string()),
        }
    }

    fn purchase() -> Value {
        json!({"event_id": "o-1", "type": "purchase", "user_id": 7, "referral_code": "ab12",
               "amount": 19.99, "currency": "USD", "occurred_at": "2024-09-08T08:59:00Z"})
    }

    #[test]
    fn a_valid_purchase_becomes_an_event() {
        let event = parse(&purchase(), &cx()).unwrap();
        assert_eq!(event.referral_code, "AB12");
        assert_eq!(event.amount.map(|a| a.cents()), Some(1999));
        assert_eq!(event.method, InvitationMethod::Link);
        assert_eq!(event.received_at, now());
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (json!({"amount": -5}), "amount", "greater than zero"),
            (json!({"amount": "NaN"}), "amount", "decimal number"),
            (json!({"amount": 1.999}), "amount", "2 decimal places"),
            (json!({"amount": "12.345"}), "amount", "2 decimal places"),
            (
                json!({"currency": "EUR"}),
                "currency",
                "settlement currency",
            ),
            (json!({"type": "upgrade"}), "type", "one of"),
            (json!({"user_id": -1}), "user_id", "positive integer"),
            (json!({"user_id": "7"}), "user_id", "positive integer"),
            (json!({"email": "not-an-email"}), "email", "valid email"),
            (json!({"referral_code": "a-b"}), "referral_code", "letters"),
            (
                json!({"referral_code": null}),
                "referral_code",
                "or click_id",
            ),
            (json!({"click_id": "nope"}), "click_id", "CODE.CLICK_ID"),
            (json!({"method": "fax"}), "method", "one of"),
            (
                json!({"occurred_at": "yesterday"}),
                "occurred_at",
                "RFC 3339",
            ),
            (
                json!({"occurred_at": "2030-01-01T00:00:00Z"}),
                "occurred_at",
                "future",
            ),
            (
                json!({"original_event_id": "x"}),
                "original_event_id",
                "only accepted on refunds",
            ),
            (json!({"surprise": 1}), "surprise", "not a known field"),
        ];
        for (patch, field, needle) in cases {
            let mut body = purchase();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            let errors = parse(&body, &cx()).unwrap_err();
            let messages = errors
                .get(field)
                .unwrap_or_else(|| panic!("{field} not named in {errors:?}"));
            assert!(
                messages.iter().any(|m| m.contains(needle)),
                "{field}: {messages:?}"
            );
        }
    }

    #[test]
    fn refunds_need_their_purchase_and_signups_carry_no_money() {
        let refund = json!({"event_id": "r-1", "type": "refund", "user_id": 7, "referral_code": "AB12", "amount": "5.00", "currency": "USD"});
        assert!(
            parse(&refund, &cx())
                .unwrap_err()
                .contains_key("original_event_id")
        );
        let signup = json!({"event_id": "s-1", "type": "signup", "user_id": 7, "referral_code": "AB12", "amount": 3});
        assert!(parse(&signup, &cx()).unwrap_err().contains_key("amount"));
    }

    #[test]
    fn the_click_id_gives_the_code_and_must_agree_with_it() {
        let click = uuid::Uuid::now_v7();
        let id = reftrack_events::click::format_click_id("AB12", click);
        let body = json!({"event_id": "s-1", "type": "signup", "user_id": 7, "click_id": id});
        let event = parse(&body, &cx()).unwrap();
        assert_eq!(
            (event.referral_code.as_str(), event.click_id),
            ("AB12", Some(click))
        );
        let body = json!({"event_id": "s-1", "type": "signup", "user_id": 7, "click_id": id, "referral_code": "ZZ"});
        assert!(parse(&body, &cx()).unwrap_err().contains_key("click_id"));
    }

    #[test]
    fn a_coupon_attributes_to_its_affiliate_and_must_agree_with_any_code() {
        let body = json!({"event_id": "p-1", "type": "purchase", "user_id": 7, "coupon": "spring10",
                          "amount": 10, "currency": "USD"});
        let event = parse(&body, &cx()).unwrap();
        assert_eq!(
            (
                event.referral_code.as_str(),
                event.coupon.as_deref(),
                event.method
            ),
            ("AB12", Some("SPRING10"), InvitationMethod::Coupon)
        );
        let mut other = body.clone();
        other["referral_code"] = json!("ZZ");
        assert!(parse(&other, &cx()).unwrap_err().contains_key("coupon"));
        let mut unknown = body;
        unknown["coupon"] = json!("NOPE");
        assert!(parse(&unknown, &cx()).unwrap_err().contains_key("coupon"));
    }

    #[test]
    fn batch_errors_are_indexed() {
        let body = json!({"events": [purchase(), {"event_id": "x"}]});
        let errors = parse_batch(&body, &cx()).unwrap_err();
        assert!(errors.contains_key("events[1].type"), "{errors:?}");
        assert!(!errors.keys().any(|k| k.starts_with("events[0]")));
    }
}
