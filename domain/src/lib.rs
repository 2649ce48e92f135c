//! reftrack's domain values, one definition each for every service: the closed sets
//! (statuses, conversion kinds, invitation methods, payment methods, park reasons) as
//! enums that serde, sqlx (as `TEXT`) and utoipa all understand, so an unknown value is an
//! error rather than a silent default; and the decimal values ([`Money`], [`Rate`],
//! [`Percent`]), which hold only what is valid for them and print exactly.

/// Declares an enum whose variants are written as the given strings everywhere.
#[macro_export]
macro_rules! closed_set {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        // Postgres keeps it as TEXT: any text column reads into it, and an unknown value
        // is an error, never a default.
        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl sqlx::Encode<'_, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'_, sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl sqlx::Decode<'_, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'_>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<'_, sqlx::Postgres>>::decode(value)?;
                Ok(text.parse::<$name>().map_err(|err| format!("{text:?}: {err}"))?)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every value as written, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl $crate::ClosedSet for $name {
            const NAMES: &'static [&'static str] = $name::NAMES;
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!("must be one of {}", Self::NAMES.join(", "))),
                }
            }
        }
    };
}

/// A set of values known in advance, each written as a fixed string: what input
/// validation needs to read one and to say which values are allowed.
pub trait ClosedSet: std::str::FromStr + Copy + 'static {
    const NAMES: &'static [&'static str];
}

mod money;
mod payment;
mod sets;

pub use money::{DecimalError, Money, Percent, Rate, as_text, decimal_of};
pub use payment::PaymentMethod;
pub use sets::{
    AffiliateStatus, CommissionStage, CommissionStatus, ConversionKind, DeliveryStatus,
    InvitationMethod, ParkReason, PayoutStatus, ReferralStatus, RewardKind, WebhookEventType,
};
