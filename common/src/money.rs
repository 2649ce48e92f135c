//! Money taken from JSON input: a number or a string, exact, at most two decimals.
//! Callers word the errors in their API's style.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    NotANumber,
    Negative,
    TooManyDecimals,
}

/// Parses an amount (`19.99` or `"19.99"`), normalised (`"20.00"` → `20`).
pub fn parse_amount(value: &Value) -> Result<Decimal, AmountError> {
    let text = match value {
        // Without serde_json's arbitrary precision, a number prints as the shortest
        // decimal that reads back to the same f64: `19.99` stays `19.99`.
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return Err(AmountError::NotANumber),
    };
    let amount = Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| AmountError::NotANumber)?;
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(AmountError::Negative);
    }
    if amount.normalize().scale() > 2 {
        return Err(AmountError::TooManyDecimals);
    }
    Ok(amount.normalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_are_exact_and_bounded_to_cents() {
        assert_eq!(parse_amount(&json!(19.99)).unwrap().to_string(), "19.99");
        assert_eq!(parse_amount(&json!("20.00")).unwrap().to_string(), "20");
        assert_eq!(parse_amount(&json!(50)).unwrap().to_string(), "50");
        assert_eq!(
            parse_amount(&json!(1.999)),
            Err(AmountError::TooManyDecimals)
        );
        assert_eq!(parse_amount(&json!("-1")), Err(AmountError::Negative));
        assert_eq!(parse_amount(&json!("NaN")), Err(AmountError::NotANumber));
        assert_eq!(parse_amount(&json!(true)), Err(AmountError::NotANumber));
    }
}
