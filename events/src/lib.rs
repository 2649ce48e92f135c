//! What travels on reftrack's Kafka topics, and how both ends talk to the broker.
//!
//! ingest produces [`ClickEvent`]s (keyed by referral code, so one code's clicks stay in
//! order on one partition) and [`ConversionEvent`]s; aggregator consumes them. Events are
//! JSON so that an operator can read a topic with any Kafka tool; new fields must be
//! optional so that old and new services can run side by side during a deploy.

pub mod click;
pub mod conversion;
pub mod kafka;

pub use click::{ClickEvent, ClickMethod, ClickVerdict, ReferralCode};
pub use conversion::{ConversionEvent, ConversionKind, InvitationMethod};
