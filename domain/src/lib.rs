//! reftrack's domain values, one definition each for every service: the closed sets
//! (statuses, conversion kinds, invitation methods, park reasons) as enums that serde,
//! sqlx (as `TEXT`) and utoipa all understand, so an unknown value is an error rather than
//! a silent default; and [`Money`], which holds only what the ledger's columns can.

mod money;
mod sets;

pub use money::{Money, MoneyError, cents};
pub use sets::{
    AffiliateStatus, CommissionStatus, ConversionKind, InvitationMethod, ParkReason, PayoutStatus,
    ReferralStatus,
};
