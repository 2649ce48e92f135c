//! What the promoter API reads, each a type that parses the input (worded as the Django
//! REST framework product it mirrors) and documents it in the OpenAPI document.

use reftrack_common::envelope::FieldErrors;
use reftrack_common::input::{Drf, Fields, Paging, Problem};
use reftrack_domain::{Money, PaymentMethod};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

/// The payout method to use from now on.
#[derive(Debug, ToSchema)]
pub struct SetPayoutMethod {
    pub method: PaymentMethod,
    /// An email for wise and paypal, a Bitcoin or Ethereum wallet for crypto, an IBAN for bank.
    pub payment_address: String,
}

impl SetPayoutMethod {
    pub fn parse(body: &Map<String, Value>) -> Result<Self, FieldErrors> {
        let mut f = Fields::body(body, &["method", "payment_address"], &Drf);
        let method = f.required_choice::<PaymentMethod>("method");
        let address = f.required_text("payment_address", 254);
        let payment_address = match (method, address) {
            (Some(method), Some(address)) => match method.check_address(&address) {
                Ok(address) => Some(address),
                Err(message) => {
                    f.fail("payment_address", Problem::Said(message));
                    None
                }
            },
            _ => None,
        };
        let set = method
            .zip(payment_address)
            .map(|(method, payment_address)| Self {
                method,
                payment_address,
            });
        f.finish(set)
            .map(|set| set.expect("both fields read when none failed"))
    }
}

/// The balance a payout can be requested from.
#[derive(Debug, ToSchema)]
pub struct SetMinWithdrawal {
    /// An amount with at most two decimals, within the bounds the program sets.
    pub min_withdrawal_balance: Money,
}

impl SetMinWithdrawal {
    /// The amount, if it lies in `[lower, upper]`.
    pub fn parse(
        body: &Map<String, Value>,
        lower: Money,
        upper: Money,
    ) -> Result<Self, FieldErrors> {
        const FIELD: &str = "min_withdrawal_balance";
        let mut f = Fields::body(body, &[FIELD], &Drf);
        let amount = f.required_money(FIELD);
        match amount {
            Some(a) if a < lower => f.fail(
                FIELD,
                Problem::Said(format!(
                    "Ensure this value is greater than or equal to {lower}."
                )),
            ),
            Some(a) if a > upper => f.fail(
                FIELD,
                Problem::Said(format!(
                    "Ensure this value is less than or equal to {upper}."
                )),
            ),
            _ => {}
        }
        f.finish(amount).map(|amount| Self {
            min_withdrawal_balance: amount.expect("read when none failed"),
        })
    }
}

/// A page of the referrals listing.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number, from 1.
    pub page: Option<i64>,
}

impl PageQuery {
    pub fn parse(query: &Map<String, Value>, size: i64) -> Result<Paging, FieldErrors> {
        let mut f = Fields::query(query, &Drf);
        let paging = Paging::read_page(&mut f, size);
        f.finish(paging)
    }
}
