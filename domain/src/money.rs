//! Decimal values of the domain, each a type that holds only what is valid for it:
//! [`Money`] (an amount in the settlement currency, to the cent), [`Rate`] (a commission
//! rate in percent, 0 to 100) and [`Percent`] (a derived ratio such as a conversion rate).
//!
//! JSON carries them as numbers printed from the decimal itself, never through a float
//! (serde_json's `arbitrary_precision`): money as the API documents show it (`0`, `50`,
//! `37.35`), rates and percentages with at least one decimal (`15.0`, `7.53`). Postgres
//! keeps them as `NUMERIC`; ClickHouse keeps money in whole cents.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};
use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("must be a number")]
    NotANumber,
    #[error("must have at most two decimal places")]
    TooPrecise,
    #[error("must be below 10,000,000,000")]
    TooLarge,
    #[error("must not be negative")]
    Negative,
    #[error("must be a percentage from 0 to 100")]
    NotAPercentage,
}

/// `NUMERIC(12, 2)`: ten digits before the point.
const MONEY_LIMIT: Decimal = Decimal::from_parts(1_410_065_408, 2, 0, false, 0); // 10^10

fn two_places(value: Decimal) -> Result<Decimal, DecimalError> {
    if value.normalize().scale() > 2 {
        return Err(DecimalError::TooPrecise);
    }
    Ok(value.normalize())
}

/// Reads a decimal from text (`19.99`, `1e2`), exactly.
fn parse_decimal(text: &str) -> Result<Decimal, DecimalError> {
    let text = text.trim();
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| DecimalError::NotANumber)
}

/// An amount of money in the settlement currency: whole cents, below 10^10 either way
/// (what the ledger's `NUMERIC(12, 2)` columns hold). May be negative (a clawback, a
/// balance carried below zero); inputs that must not be say so with [`Money::non_negative`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// `amount`, if it is whole cents and fits the ledger.
    pub fn new(amount: Decimal) -> Result<Self, DecimalError> {
        let amount = two_places(amount)?;
        if amount.abs() >= MONEY_LIMIT {
            return Err(DecimalError::TooLarge);
        }
        Ok(Money(amount))
    }

    /// Whole cents (as ClickHouse keeps money).
    pub fn from_cents(cents: i64) -> Self {
        Money(Decimal::new(cents, 2).normalize())
    }

    /// Whole cents; every valid amount has them exactly.
    pub fn cents(self) -> i64 {
        (self.0 * Decimal::ONE_HUNDRED).to_i64().unwrap_or(0)
    }

    /// `self`, refused when below zero.
    pub fn non_negative(self) -> Result<Self, DecimalError> {
        if self.0.is_sign_negative() && !self.0.is_zero() {
            return Err(DecimalError::Negative);
        }
        Ok(self)
    }

    pub fn amount(self) -> Decimal {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    pub fn is_positive(self) -> bool {
        self.0 > Decimal::ZERO
    }

    /// `self` shared out in `parts`, rounded half-even to the cent (zero for no parts).
    pub fn per(self, parts: u64) -> Money {
        if parts == 0 {
            return Money::ZERO;
        }
        Money::rounded(self.0 / Decimal::from(parts))
    }

    /// `value` rounded half-even (banker's rounding) to the cent.
    pub fn rounded(value: Decimal) -> Money {
        Money(
            value
                .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)
                .normalize(),
        )
    }
}

impl FromStr for Money {
    type Err = DecimalError;

    fn from_str(s: &str) -> Result<Self, DecimalError> {
        Money::new(parse_decimal(s)?)
    }
}

impl TryFrom<Decimal> for Money {
    type Error = DecimalError;

    fn try_from(amount: Decimal) -> Result<Self, DecimalError> {
        Money::new(amount)
    }
}

impl From<Money> for Decimal {
    fn from(money: Money) -> Decimal {
        money.0
    }
}

impl fmt::Display for Money {
    /// Two decimals: `20.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, other: Money) -> Money {
        Money(self.0 + other.0)
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, other: Money) -> Money {
        Money(self.0 - other.0)
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, other: Money) {
        self.0 += other.0;
    }
}

impl SubAssign for Money {
    fn sub_assign(&mut self, other: Money) {
        self.0 -= other.0;
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}

/// A commission rate in percent, from 0 to 100, to two decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rate(Decimal);

impl Rate {
    pub fn new(percent: Decimal) -> Result<Self, DecimalError> {
        let percent = two_places(percent)?;
        if percent.is_sign_negative() && !percent.is_zero() || percent > Decimal::ONE_HUNDRED {
            return Err(DecimalError::NotAPercentage);
        }
        Ok(Rate(percent))
    }

    /// `percent`, for constants known to be valid.
    pub const fn from_parts(whole: u32, hundredths: u32) -> Self {
        Rate(Decimal::from_parts(
            whole * 100 + hundredths,
            0,
            0,
            false,
            2,
        ))
    }

    pub fn percent(self) -> Decimal {
        self.0
    }

    /// This rate of `amount`, rounded half-even to the cent.
    pub fn of(self, amount: Money) -> Money {
        Money::rounded(amount.0 * self.0 / Decimal::ONE_HUNDRED)
    }
}

impl FromStr for Rate {
    type Err = DecimalError;

    fn from_str(s: &str) -> Result<Self, DecimalError> {
        Rate::new(parse_decimal(s)?)
    }
}

impl TryFrom<Decimal> for Rate {
    type Error = DecimalError;

    fn try_from(percent: Decimal) -> Result<Self, DecimalError> {
        Rate::new(percent)
    }
}

impl fmt::Display for Rate {
    /// Two decimals: `15.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

/// A derived percentage (conversions per 100 unique clicks, say), to two decimals. Not
/// bounded: more conversions than clicks is possible and shown as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Percent(Decimal);

impl Percent {
    /// `part` per 100 of `whole`, rounded half-even to two decimals; 0 of nothing.
    pub fn of(part: u64, whole: u64) -> Percent {
        if whole == 0 {
            return Percent(Decimal::ZERO);
        }
        Percent(
            (Decimal::from(part) * Decimal::ONE_HUNDRED / Decimal::from(whole))
                .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven),
        )
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

/// JSON: numbers written from the decimal's own digits.
mod json {
    use super::*;
    use serde::de::Error as _;
    use serde::ser::Error as _;

    /// `value` as a JSON number: normalised (`50`, `37.35`), or with at least one
    /// decimal (`15.0`) when `float_like`, as the API documents print rates.
    pub fn serialize<S: serde::Serializer>(
        value: Decimal,
        float_like: bool,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let value = value.normalize();
        let text = if float_like && value.scale() == 0 {
            format!("{value}.0")
        } else {
            value.to_string()
        };
        let number = serde_json::Number::from_str(&text).map_err(S::Error::custom)?;
        serde::Serialize::serialize(&number, serializer)
    }

    /// A number or a numeric string, exactly as written.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Decimal, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        decimal_of(&value).map_err(D::Error::custom)
    }

    use serde::Deserialize;

    pub fn decimal_of(value: &serde_json::Value) -> Result<Decimal, DecimalError> {
        match value {
            serde_json::Value::Number(n) => parse_decimal(&n.to_string()),
            serde_json::Value::String(s) => parse_decimal(s),
            _ => Err(DecimalError::NotANumber),
        }
    }
}

pub use json::decimal_of;

/// `Option<Money>` as a JSON string (`"19.99"`), for the event wire format, which keeps
/// amounts as text so no reader can take them for floats.
pub mod as_text {
    use super::*;
    use serde::Deserialize;
    use serde::de::Error as _;

    pub fn serialize<S: serde::Serializer>(
        value: &Option<Money>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(money) => serializer.serialize_str(&money.0.normalize().to_string()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Money>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| text.parse::<Money>().map_err(D::Error::custom))
            .transpose()
    }
}

macro_rules! decimal_serde {
    ($name:ident, $float_like:expr, $inner:ident) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                json::serialize(self.0, $float_like, serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = json::deserialize(deserializer)?;
                $inner(value).map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Number)
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <Decimal as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <Decimal as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl sqlx::Encode<'_, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <Decimal as sqlx::Encode<'_, sqlx::Postgres>>::encode_by_ref(&self.0, buf)
            }
        }

        impl sqlx::Decode<'_, sqlx::Postgres> for $name {
            fn decode(
                value: sqlx::postgres::PgValueRef<'_>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let decimal = <Decimal as sqlx::Decode<'_, sqlx::Postgres>>::decode(value)?;
                Ok($inner(decimal)?)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <Decimal as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }
    };
}

fn percent_of(value: Decimal) -> Result<Percent, DecimalError> {
    Ok(Percent(value.round_dp(2)))
}

decimal_serde!(Money, false, money_of);
decimal_serde!(Rate, true, rate_of);
decimal_serde!(Percent, true, percent_of);

fn money_of(value: Decimal) -> Result<Money, DecimalError> {
    Money::new(value)
}

fn rate_of(value: Decimal) -> Result<Rate, DecimalError> {
    Rate::new(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use serde_json::json;

    #[test]
    fn only_amounts_the_ledger_can_hold_are_money() {
        assert_eq!(Money::new(dec!(19.99)).unwrap().cents(), 1999);
        assert_eq!(Money::new(dec!(19.990)).unwrap().cents(), 1999);
        assert_eq!(Money::new(dec!(0.001)), Err(DecimalError::TooPrecise));
        assert_eq!(Money::new(dec!(10000000000)), Err(DecimalError::TooLarge));
        assert!(Money::new(dec!(9999999999.99)).is_ok());
        assert_eq!(Money::from_cents(-250).to_string(), "-2.50");
        assert_eq!("1e2".parse::<Money>().unwrap().cents(), 10000);
        assert_eq!("abc".parse::<Money>(), Err(DecimalError::NotANumber));
        assert_eq!(
            Money::from_cents(-1).non_negative(),
            Err(DecimalError::Negative)
        );
    }

    #[test]
    fn money_and_rates_print_as_the_api_documents_show_them() {
        let printed = json!({
            "zero": Money::ZERO,
            "whole": Money::from_cents(5000),
            "cents": Money::from_cents(3735),
            "ten_and_a_half": Money::from_cents(1050),
            "rate": "15.00".parse::<Rate>().unwrap(),
            "fraction": Percent::of(753, 10000),
            "none": Percent::of(0, 0),
        });
        assert_eq!(
            printed.to_string(),
            r#"{"cents":37.35,"fraction":7.53,"none":0.0,"rate":15.0,"ten_and_a_half":10.5,"whole":50,"zero":0}"#
        );
    }

    #[test]
    fn json_input_is_read_exactly() {
        // As a float this would be 20.0 and pass; as written it has too many places.
        let money: Result<Money, _> = serde_json::from_str("19.999999999999999999");
        assert!(money.is_err());
        let money: Money = serde_json::from_str("\"19.99\"").unwrap();
        assert_eq!(money.cents(), 1999);
        assert!(serde_json::from_str::<Rate>("100.01").is_err());
        assert!(serde_json::from_str::<Rate>("-1").is_err());
    }

    #[test]
    fn rates_and_shares_round_half_even_to_the_cent() {
        let rate = Rate::from_parts(15, 0);
        assert_eq!(rate.of(Money::from_cents(1050)), Money::from_cents(158));
        assert_eq!(
            Rate::from_parts(10, 0).of(Money::from_cents(125)),
            Money::from_cents(12)
        );
        assert_eq!(Money::from_cents(1000).per(3), Money::from_cents(333));
        assert_eq!(Money::from_cents(1000).per(0), Money::ZERO);
    }
}
