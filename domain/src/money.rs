//! Money in the settlement currency: a decimal with at most two places that fits the
//! ledger's `NUMERIC(12, 2)` columns. Written in JSON as a number (as both API documents
//! show money), never rounded through a float on the way in.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must have at most two decimal places")]
    TooPrecise,
    #[error("must be below 10,000,000,000")]
    TooLarge,
}

/// `NUMERIC(12, 2)`: ten digits before the point.
const LIMIT: Decimal = Decimal::from_parts(1_410_065_408, 2, 0, false, 0); // 10^10

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// `amount`, if it has at most two decimal places and fits the columns.
    pub fn new(amount: Decimal) -> Result<Self, MoneyError> {
        if amount.normalize().scale() > 2 {
            return Err(MoneyError::TooPrecise);
        }
        if amount.abs() >= LIMIT {
            return Err(MoneyError::TooLarge);
        }
        Ok(Money(amount.round_dp(2)))
    }

    /// Whole cents (as ClickHouse keeps money). Cents beyond an `i64` cannot exist here.
    pub fn from_cents(cents: i64) -> Self {
        Money(Decimal::new(cents, 2))
    }

    pub fn cents(self) -> i64 {
        cents(self.0)
    }

    pub fn amount(self) -> Decimal {
        self.0
    }
}

/// Whole cents of `amount`, rounded to the cent (ClickHouse keeps money in cents); 0 for
/// an amount beyond an `i64` of cents (which no valid event carries).
pub fn cents(amount: Decimal) -> i64 {
    (amount * Decimal::ONE_HUNDRED)
        .round()
        .to_i64()
        .unwrap_or(0)
}

impl TryFrom<Decimal> for Money {
    type Error = MoneyError;

    fn try_from(amount: Decimal) -> Result<Self, MoneyError> {
        Money::new(amount)
    }
}

impl From<Money> for Decimal {
    fn from(money: Money) -> Decimal {
        money.0
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        rust_decimal::serde::float::serialize(&self.0, serializer)
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Double,
            )))
            .into()
    }
}

impl utoipa::ToSchema for Money {}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn only_amounts_the_ledger_can_hold_are_money() {
        assert_eq!(Money::new(dec!(19.99)).unwrap().cents(), 1999);
        assert_eq!(Money::new(dec!(19.990)).unwrap().cents(), 1999);
        assert_eq!(Money::new(dec!(0.001)), Err(MoneyError::TooPrecise));
        assert_eq!(Money::new(dec!(10000000000)), Err(MoneyError::TooLarge));
        assert!(Money::new(dec!(9999999999.99)).is_ok());
        assert_eq!(Money::from_cents(-250).to_string(), "-2.50");
        assert_eq!(
            serde_json::to_string(&Money::from_cents(1050)).unwrap(),
            "10.5"
        );
    }
}
