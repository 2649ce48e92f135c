//! Reading request input into typed values: the one validator every endpoint uses.
//!
//! [`Fields`] reads a JSON object (a body) or a query string field by field, each method
//! returning the typed value or noting what is wrong with the field, so that every bad
//! field is reported at once, by name (`address.zip`, `events[3].amount`). Unknown fields
//! are refused rather than silently dropped. What a problem is called is the API's own
//! business: the promoter API words it as the Django REST framework product it mirrors,
//! the others plainly ([`Wording`]).
//!
//! Long because it is the whole validator: the problems, two wordings, the field readers
//! and paging, with their tests.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use chrono::{DateTime, NaiveDate, Utc};
use reftrack_domain::{ClosedSet, DecimalError, Money, Rate, decimal_of};
use serde_json::{Map, Value};

use crate::envelope::FieldErrors;

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Required,
    Unknown,
    /// Not a string, empty, too long, or with control characters.
    Text {
        max: usize,
    },
    Email,
    Url,
    Integer {
        range: RangeInclusive<i64>,
    },
    Boolean,
    OneOf {
        names: &'static [&'static str],
        given: String,
    },
    Decimal(DecimalError),
    Timestamp,
    Date,
    /// Not an object with these keys.
    Object {
        keys: &'static [&'static str],
    },
    List {
        max: usize,
    },
    /// Anything else, said as it is.
    Said(String),
}

/// How an API words a [`Problem`].
pub trait Wording: Sync {
    fn say(&self, problem: Problem) -> String;
}

/// "is required", "must be one of a, b": the admin API's and ingest's style.
pub struct Plain;

impl Wording for Plain {
    fn say(&self, problem: Problem) -> String {
        match problem {
            Problem::Required => "is required".into(),
            Problem::Unknown => "is not a known field".into(),
            Problem::Text { max } => {
                format!("must be 1 to {max} characters without control characters")
            }
            Problem::Email => "must be a valid email address".into(),
            Problem::Url => "must be an http:// or https:// URL".into(),
            Problem::Integer { range } if *range.end() == i64::MAX && *range.start() == 1 => {
                "must be a positive integer".into()
            }
            Problem::Integer { range } => {
                format!(
                    "must be an integer from {} to {}",
                    range.start(),
                    range.end()
                )
            }
            Problem::Boolean => "must be true or false".into(),
            Problem::OneOf { names, .. } => format!("must be one of {}", names.join(", ")),
            Problem::Decimal(DecimalError::NotANumber) => {
                "must be a decimal number such as 19.99".into()
            }
            Problem::Decimal(DecimalError::TooPrecise) => {
                "must have at most 2 decimal places".into()
            }
            Problem::Decimal(err) => err.to_string(),
            Problem::Timestamp => {
                "must be an RFC 3339 timestamp such as 2024-08-24T12:12:03Z".into()
            }
            Problem::Date => "must be a date in ISO format: YYYY-MM-DD".into(),
            Problem::Object { keys } => format!("must be an object with {}", keys.join(", ")),
            Problem::List { max } => format!("must be a list of at most {max} items"),
            Problem::Said(text) => text,
        }
    }
}

/// "This field is required.": the Django REST framework's style, which the promoter API
/// answers in.
pub struct Drf;

impl Wording for Drf {
    fn say(&self, problem: Problem) -> String {
        match problem {
            Problem::Required => "This field is required.".into(),
            Problem::Unknown => "This field is not accepted.".into(),
            Problem::Text { max } => {
                format!("Ensure this field is not blank and has no more than {max} characters.")
            }
            Problem::Email => "Enter a valid email address.".into(),
            Problem::Url => "Enter a valid URL.".into(),
            Problem::Integer { range } if *range.end() == i64::MAX && *range.start() == 1 => {
                "A valid positive integer is required.".into()
            }
            Problem::Integer { range } => format!(
                "Ensure this value is an integer between {} and {}.",
                range.start(),
                range.end()
            ),
            Problem::Boolean => "Must be a valid boolean.".into(),
            Problem::OneOf { given, .. } => format!("\"{given}\" is not a valid choice."),
            Problem::Decimal(DecimalError::NotANumber) => "A valid number is required.".into(),
            Problem::Decimal(DecimalError::TooPrecise) => {
                "Ensure that there are no more than 2 decimal places.".into()
            }
            Problem::Decimal(DecimalError::Negative) => {
                "Ensure this value is greater than or equal to 0.".into()
            }
            Problem::Decimal(err) => format!(
                "Ensure this value {}.",
                err.to_string().trim_start_matches("must ")
            ),
            Problem::Timestamp => {
                "Datetime has wrong format. Use RFC 3339: 2024-08-24T12:12:03Z.".into()
            }
            Problem::Date => {
                "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.".into()
            }
            Problem::Object { keys } => format!("Expected an object with {}.", keys.join(", ")),
            Problem::List { max } => format!("Ensure this field has no more than {max} elements."),
            Problem::Said(text) => text,
        }
    }
}

/// Reads the fields of one JSON object, collecting what is wrong with each.
pub struct Fields<'a> {
    body: &'a Map<String, Value>,
    wording: &'static dyn Wording,
    /// Query strings carry every value as text: numbers and booleans are read from it.
    from_text: bool,
    errors: FieldErrors,
}

/// A query string as the JSON object [`Fields::query`] reads.
pub fn query_object(query: &HashMap<String, String>) -> Map<String, Value> {
    query
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

impl<'a> Fields<'a> {
    /// The fields of a JSON body; any key outside `known` is an error.
    pub fn body(
        body: &'a Map<String, Value>,
        known: &[&str],
        wording: &'static dyn Wording,
    ) -> Self {
        let mut fields = Self {
            body,
            wording,
            from_text: false,
            errors: FieldErrors::new(),
        };
        fields.refuse_unknown(known);
        fields
    }

    /// The parameters of a query string (see [`query_object`]); unknown ones are ignored,
    /// as links may carry parameters meant for someone else.
    pub fn query(query: &'a Map<String, Value>, wording: &'static dyn Wording) -> Self {
        Self {
            body: query,
            wording,
            from_text: true,
            errors: FieldErrors::new(),
        }
    }

    fn refuse_unknown(&mut self, known: &[&str]) {
        let unknown: Vec<String> = self
            .body
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            self.fail(&key, Problem::Unknown);
        }
    }

    pub fn fail(&mut self, field: &str, problem: Problem) {
        let message = self.wording.say(problem);
        self.errors
            .entry(field.to_string())
            .or_default()
            .push(message);
    }

    pub fn is_failed(&self, field: &str) -> bool {
        self.errors.contains_key(field)
    }

    /// A present, non-null value (in a query string, also non-empty: `?status=` filters
    /// nothing).
    pub fn get(&self, field: &str) -> Option<&'a Value> {
        let blank = |v: &Value| v.as_str().is_some_and(|s| s.trim().is_empty());
        self.body
            .get(field)
            .filter(|v| !(v.is_null() || self.from_text && blank(v)))
    }

    /// Whether the field was given (and is not null).
    pub fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    /// Notes `field` as required when it is missing; whether it is there.
    pub fn require(&mut self, field: &str) -> bool {
        let present = self.has(field);
        if !present {
            self.fail(field, Problem::Required);
        }
        present
    }

    /// Trimmed text of 1 to `max` characters, without control characters.
    pub fn text(&mut self, field: &str, max: usize) -> Option<String> {
        match self.get(field)? {
            Value::String(s)
                if !s.trim().is_empty()
                    && s.chars().count() <= max
                    && !s.chars().any(char::is_control) =>
            {
                Some(s.trim().to_string())
            }
            _ => {
                self.fail(field, Problem::Text { max });
                None
            }
        }
    }

    pub fn required_text(&mut self, field: &str, max: usize) -> Option<String> {
        self.require(field).then(|| self.text(field, max)).flatten()
    }

    /// An email address, lower-cased.
    pub fn email(&mut self, field: &str) -> Option<String> {
        let email = self.text(field, 254)?;
        if email_address::EmailAddress::is_valid(&email) {
            Some(email.to_lowercase())
        } else {
            self.fail(field, Problem::Email);
            None
        }
    }

    pub fn required_email(&mut self, field: &str) -> Option<String> {
        self.require(field).then(|| self.email(field)).flatten()
    }

    /// An http or https URL with a host.
    pub fn url(&mut self, field: &str) -> Option<String> {
        let text = self.text(field, 2048)?;
        match url::Url::parse(&text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(text),
            _ => {
                self.fail(field, Problem::Url);
                None
            }
        }
    }

    pub fn integer(&mut self, field: &str, range: RangeInclusive<i64>) -> Option<i64> {
        let value = match self.get(field)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) if self.from_text => s.trim().parse().ok(),
            _ => None,
        };
        match value {
            Some(v) if range.contains(&v) => Some(v),
            _ => {
                self.fail(field, Problem::Integer { range });
                None
            }
        }
    }

    pub fn required_integer(&mut self, field: &str, range: RangeInclusive<i64>) -> Option<i64> {
        self.require(field)
            .then(|| self.integer(field, range))
            .flatten()
    }

    pub fn boolean(&mut self, field: &str) -> Option<bool> {
        let value = match self.get(field)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if self.from_text => match s.to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if value.is_none() {
            self.fail(field, Problem::Boolean);
        }
        value
    }

    /// One value of a closed set, as written.
    pub fn choice<T: ClosedSet>(&mut self, field: &str) -> Option<T> {
        let value = self.get(field)?;
        match value.as_str().and_then(|s| s.parse::<T>().ok()) {
            Some(choice) => Some(choice),
            None => {
                let given = value
                    .as_str()
                    .map_or_else(|| value.to_string(), String::from);
                self.fail(
                    field,
                    Problem::OneOf {
                        names: T::NAMES,
                        given,
                    },
                );
                None
            }
        }
    }

    pub fn required_choice<T: ClosedSet>(&mut self, field: &str) -> Option<T> {
        self.require(field).then(|| self.choice(field)).flatten()
    }

    /// Text that is one of `choices`.
    pub fn one_of(&mut self, field: &str, choices: &'static [&'static str]) -> Option<String> {
        let value = self.get(field)?;
        match value.as_str().filter(|s| choices.contains(s)) {
            Some(choice) => Some(choice.to_string()),
            None => {
                let given = value
                    .as_str()
                    .map_or_else(|| value.to_string(), String::from);
                self.fail(
                    field,
                    Problem::OneOf {
                        names: choices,
                        given,
                    },
                );
                None
            }
        }
    }

    /// An amount of money (a number or a numeric string, read exactly), not negative.
    pub fn money(&mut self, field: &str) -> Option<Money> {
        let value = self.get(field)?;
        match decimal_of(value)
            .and_then(Money::new)
            .and_then(Money::non_negative)
        {
            Ok(money) => Some(money),
            Err(err) => {
                self.fail(field, Problem::Decimal(err));
                None
            }
        }
    }

    pub fn required_money(&mut self, field: &str) -> Option<Money> {
        self.require(field).then(|| self.money(field)).flatten()
    }

    /// A percentage from 0 to 100, to two decimals.
    pub fn rate(&mut self, field: &str) -> Option<Rate> {
        let value = self.get(field)?;
        match decimal_of(value).and_then(Rate::new) {
            Ok(rate) => Some(rate),
            Err(err) => {
                self.fail(field, Problem::Decimal(err));
                None
            }
        }
    }

    /// An RFC 3339 timestamp.
    pub fn timestamp(&mut self, field: &str) -> Option<DateTime<Utc>> {
        let value = self.get(field)?;
        match value.as_str().map(DateTime::parse_from_rfc3339) {
            Some(Ok(t)) => Some(t.with_timezone(&Utc)),
            _ => {
                self.fail(field, Problem::Timestamp);
                None
            }
        }
    }

    /// A calendar date, `YYYY-MM-DD`.
    pub fn date(&mut self, field: &str) -> Option<NaiveDate> {
        let value = self.get(field)?;
        match value
            .as_str()
            .map(|s| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d"))
        {
            Some(Ok(day)) => Some(day),
            _ => {
                self.fail(field, Problem::Date);
                None
            }
        }
    }

    /// A nested object, read by `read` with its own fields; its errors are named
    /// `field.inner`.
    pub fn object<T>(
        &mut self,
        field: &str,
        keys: &'static [&'static str],
        read: impl FnOnce(&mut Fields<'a>) -> T,
    ) -> Option<T> {
        let value = self.get(field)?;
        let Value::Object(map) = value else {
            self.fail(field, Problem::Object { keys });
            return None;
        };
        let mut inner = Fields::body(map, keys, self.wording);
        inner.from_text = self.from_text;
        let read = read(&mut inner);
        self.adopt(field, inner);
        Some(read)
    }

    /// A list of at most `max` items, each read by `read` (given its index and value);
    /// errors are named `field[i]...` by `read`.
    pub fn list<T>(
        &mut self,
        field: &str,
        max: usize,
        mut read: impl FnMut(&mut Self, String, &'a Value) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = match self.get(field)? {
            Value::Array(items) if items.len() <= max => items,
            _ => {
                self.fail(field, Problem::List { max });
                return None;
            }
        };
        let mut read_items = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(value) = read(self, format!("{field}[{i}]"), item) {
                read_items.push(value);
            }
        }
        Some(read_items)
    }

    /// Reads `item` as an object with `keys`, its errors named `name.inner`.
    pub fn item<T>(
        &mut self,
        name: &str,
        item: &'a Value,
        keys: &'static [&'static str],
        read: impl FnOnce(&mut Fields<'a>) -> T,
    ) -> Option<T> {
        let Value::Object(map) = item else {
            self.fail(name, Problem::Object { keys });
            return None;
        };
        let mut inner = Fields::body(map, keys, self.wording);
        let read = read(&mut inner);
        self.adopt(name, inner);
        Some(read)
    }

    /// Takes over the errors of `inner`, named `prefix.field`.
    fn adopt(&mut self, prefix: &str, inner: Fields<'_>) {
        for (name, messages) in inner.errors {
            self.errors
                .entry(format!("{prefix}.{name}"))
                .or_default()
                .extend(messages);
        }
    }

    /// `value` when no field was wrong, else every problem by field.
    pub fn finish<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

/// A page of a listing: which one, and how many items it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: i64,
    pub size: i64,
}

impl Paging {
    /// `page` (from 1) and `page_size` (1 to `max_size`, `default_size` when absent).
    pub fn read(fields: &mut Fields<'_>, default_size: i64, max_size: i64) -> Paging {
        Paging {
            page: fields.integer("page", 1..=i64::MAX).unwrap_or(1),
            size: fields
                .integer("page_size", 1..=max_size)
                .unwrap_or(default_size),
        }
    }

    /// `page` only, pages of a fixed `size`.
    pub fn read_page(fields: &mut Fields<'_>, size: i64) -> Paging {
        Paging {
            page: fields.integer("page", 1..=i64::MAX).unwrap_or(1),
            size,
        }
    }

    pub fn offset(self) -> i64 {
        (self.page - 1).saturating_mul(self.size)
    }

    /// Pages needed for `count` items (at least one: an empty listing has page 1).
    pub fn pages(self, count: i64) -> i64 {
        ((count + self.size - 1) / self.size).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reftrack_domain::PaymentMethod;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        serde_json::from_value(v).expect("an object")
    }

    #[test]
    fn every_bad_field_is_named_once_in_the_apis_wording() {
        let body = object(json!({
            "name": "", "tier": 9, "method": "cheque", "amount": 1.999, "surprise": 1,
            "address": {"zip": 5, "x": 1}, "list": [{"n": "a"}, 3]
        }));
        let mut f = Fields::body(
            &body,
            &[
                "name", "tier", "method", "amount", "address", "list", "email",
            ],
            &Plain,
        );
        assert_eq!(f.text("name", 10), None);
        assert_eq!(f.integer("tier", 1..=5), None);
        assert_eq!(f.choice::<PaymentMethod>("method"), None);
        assert_eq!(f.money("amount"), None);
        assert_eq!(f.required_email("email"), None);
        f.object("address", &["zip"], |a| a.text("zip", 5));
        f.list("list", 5, |f, name, item| {
            f.item(&name, item, &["n"], |i| i.text("n", 3))
        });
        let errors = f.finish(()).unwrap_err();
        let named: Vec<(&str, &str)> = errors
            .iter()
            .map(|(k, v)| (k.as_str(), v[0].as_str()))
            .collect();
        assert_eq!(
            named,
            vec![
                ("address.x", "is not a known field"),
                (
                    "address.zip",
                    "must be 1 to 5 characters without control characters"
                ),
                ("amount", "must have at most 2 decimal places"),
                ("email", "is required"),
                ("list[1]", "must be an object with n"),
                ("method", "must be one of wise, crypto, paypal, bank"),
                (
                    "name",
                    "must be 1 to 10 characters without control characters"
                ),
                ("surprise", "is not a known field"),
                ("tier", "must be an integer from 1 to 5"),
            ]
        );
    }

    #[test]
    fn the_promoter_api_words_problems_as_django_rest_framework() {
        let body = object(json!({"method": "cheque"}));
        let mut f = Fields::body(&body, &["method", "payment_address"], &Drf);
        f.choice::<PaymentMethod>("method");
        f.required_text("payment_address", 10);
        let errors = f.finish(()).unwrap_err();
        assert_eq!(errors["method"], ["\"cheque\" is not a valid choice."]);
        assert_eq!(errors["payment_address"], ["This field is required."]);
    }

    #[test]
    fn query_strings_give_numbers_and_booleans_as_text_and_paging_is_bounded() {
        let query = query_object(&HashMap::from([
            ("page".to_string(), "3".to_string()),
            ("page_size".to_string(), "101".to_string()),
            ("active".to_string(), "FALSE".to_string()),
        ]));
        let mut f = Fields::query(&query, &Plain);
        let paging = Paging::read(&mut f, 20, 100);
        assert_eq!(f.boolean("active"), Some(false));
        assert_eq!(paging, Paging { page: 3, size: 20 });
        assert_eq!(paging.offset(), 40);
        assert_eq!(
            f.finish(()).unwrap_err()["page_size"],
            ["must be an integer from 1 to 100"]
        );
        // A JSON body's "7" is text, not a number.
        let body = object(json!({"user_id": "7"}));
        let mut f = Fields::body(&body, &["user_id"], &Plain);
        assert_eq!(f.integer("user_id", 1..=i64::MAX), None);
    }
}
