//! The commission rules, as a pure function from a batch of conversions and the state
//! they touch to the rows to write. Kept free of I/O so every rule is unit-tested.
//! Long because the rules are one decision (each depends on the state the others leave);
//! about half of the file is their unit tests.
//!
//! - Every conversion earns under the terms in force when it happened: the program's
//!   rules (percent or flat reward, signup reward, recurring cap, holding days) and the
//!   affiliate's own (its rate, else its tier's; its holding days, else the program's).
//! - A signup creates the referral (a product user is referred once) and earns the
//!   signup reward, if any.
//! - A purchase earns `amount × rate` (rounded half-even to cents) or the flat amount; it
//!   makes the referral `converted`. With a recurring cap of N months, purchases more
//!   than N months after the user's first purchase earn nothing.
//! - Each commission is payable once its holding period ends (`available_at`).
//! - A refund claws back the commission of the purchase it names, in proportion to the
//!   amount refunded (never more than was earned), available when that commission is:
//!   within the holding period it reverses pending money, after it payable (or paid)
//!   money, which may carry the balance below zero until later earnings cover it.
//! - A conversion by the affiliate's own product user (self-referral) is parked.
//! - A refund read before its purchase waits for it (parked as waiting, with the
//!   purchase's id) and is applied by the batch that applies the purchase.
//! - A repeated `event_id` changes nothing. What cannot be applied is parked with why.
//!
//! Long because every rule is here with its unit tests (about half the file).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use reftrack_domain::{
    CommissionStatus, InvitationMethod, Money, ParkReason, Rate, ReferralStatus, RewardKind,
};
use reftrack_events::{ConversionEvent, ConversionKind};

/// A referral row, existing or created by this batch (then known by its user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferralKey {
    Existing(i64),
    New { user_id: i64 },
}

/// A conversion already applied (in Postgres, or earlier in this batch).
#[derive(Debug, Clone)]
pub struct Applied {
    pub kind: ConversionKind,
    pub affiliate_id: i64,
    pub referral: ReferralKey,
    pub user_id: i64,
    pub amount: Money,
    pub commission: Money,
    /// The rate it earned at; `None` for a flat reward.
    pub rate: Option<Rate>,
    /// When its commission can be paid (none without commission).
    pub available_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    pub key: ReferralKey,
    pub affiliate_id: i64,
    pub user_id: i64,
    pub email: Option<String>,
    pub status: ReferralStatus,
    pub invitation_method: InvitationMethod,
    pub commission_rate: Rate,
    pub commission_amount: Money,
    pub commission_status: Option<CommissionStatus>,
    pub first_event_id: String,
    pub created_at: DateTime<Utc>,
    /// The user's first purchase: where a recurring cap counts from.
    pub first_purchase_at: Option<DateTime<Utc>>,
    /// Whether this batch changed it (and so must write it).
    pub changed: bool,
}

/// The program's rules from `valid_from` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramRules {
    pub valid_from: DateTime<Utc>,
    pub reward_kind: RewardKind,
    pub flat_amount: Money,
    pub signup_reward: Money,
    /// `None`: purchases earn for life.
    pub recurring_months: Option<u32>,
    pub holding_days: u32,
}

/// An affiliate's own terms from `valid_from` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AffiliateTerms {
    pub valid_from: DateTime<Utc>,
    /// Its own rate; `None`: its tier's.
    pub rate: Option<Rate>,
    pub tier: i16,
    /// Its own holding period; `None`: the program's.
    pub holding_days: Option<u32>,
}

/// What a conversion of an affiliate at a moment earns under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    pub rate: Rate,
    pub reward_kind: RewardKind,
    pub flat_amount: Money,
    pub signup_reward: Money,
    pub recurring_months: Option<u32>,
    pub holding_days: u32,
}

/// What Postgres knows that this batch's rules need.
#[derive(Debug, Default)]
pub struct State {
    /// Referral code → affiliate id.
    pub codes: HashMap<String, i64>,
    /// Affiliate id → approved, active and not deleted (may earn).
    pub attributable: HashMap<i64, bool>,
    pub applied: HashMap<String, Applied>,
    /// Per purchase: (amount refunded, commission reversed) so far.
    pub refunded: HashMap<String, (Money, Money)>,
    pub referrals: HashMap<i64, Referral>,
    /// Per affiliate: its own terms over time, sorted by time.
    pub terms: HashMap<i64, Vec<AffiliateTerms>>,
    /// Per tier: its default rate over time, sorted by time.
    pub tier_rates: HashMap<i16, Vec<(DateTime<Utc>, Rate)>>,
    /// The program's rules over time, sorted by time.
    pub program: Vec<ProgramRules>,
    /// Affiliate id → its product user (promoters), for self-referrals.
    pub owners: HashMap<i64, i64>,
    /// Purchase event id → refunds waiting for it (parked earlier, or earlier in this batch).
    pub waiting: HashMap<String, Vec<Waiting>>,
}

/// A refund that arrived before its purchase.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub event: ConversionEvent,
    /// Where it was parked.
    pub position: Position,
    /// Parked by an earlier batch (in Postgres), rather than earlier in this one.
    pub stored: bool,
}

/// The entry of a time-sorted history in force at `at` (before the first change, the
/// first applies).
fn in_force<T>(history: &[T], at: DateTime<Utc>, from: impl Fn(&T) -> DateTime<Utc>) -> Option<&T> {
    let i = history.partition_point(|entry| from(entry) <= at);
    history.get(i.saturating_sub(1))
}

impl State {
    /// The terms `affiliate_id`'s conversions at `at` earn under; `None` when its history
    /// is unknown (it could not earn then).
    pub fn terms_at(&self, affiliate_id: i64, at: DateTime<Utc>) -> Option<Terms> {
        let own = in_force(self.terms.get(&affiliate_id)?, at, |t| t.valid_from)?;
        let program = in_force(&self.program, at, |p| p.valid_from)?;
        let rate = match own.rate {
            Some(rate) => rate,
            None => in_force(self.tier_rates.get(&own.tier)?, at, |(from, _)| *from)?.1,
        };
        Some(Terms {
            rate,
            reward_kind: program.reward_kind,
            flat_amount: program.flat_amount,
            signup_reward: program.signup_reward,
            recurring_months: program.recurring_months,
            holding_days: own.holding_days.unwrap_or(program.holding_days),
        })
    }

    fn is_own_user(&self, affiliate_id: i64, user_id: i64) -> bool {
        self.owners.get(&affiliate_id) == Some(&user_id)
    }

    fn may_earn(&self, affiliate_id: i64) -> bool {
        self.attributable
            .get(&affiliate_id)
            .copied()
            .unwrap_or(false)
    }
}

/// Where a message sits in Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConversion {
    pub event_id: String,
    pub kind: ConversionKind,
    pub affiliate_id: i64,
    pub referral: ReferralKey,
    pub user_id: i64,
    pub amount: Option<Money>,
    pub commission: Money,
    pub rate: Option<Rate>,
    pub original_event_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub position: Position,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Earned,
    Reversed,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Earned => "earned",
            EntryKind::Reversed => "reversed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub affiliate_id: i64,
    pub kind: EntryKind,
    pub amount: Money,
    pub rate: Option<Rate>,
    pub conversion_event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub available_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub position: Position,
    pub reason: ParkReason,
    pub event_id: Option<String>,
    /// The purchase a waiting refund waits for.
    pub waits_for: Option<String>,
}

/// A refund parked by an earlier batch whose purchase this batch applied: `reason` is
/// `None` when it was applied, else why it still cannot be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub position: Position,
    pub event_id: String,
    pub reason: Option<ParkReason>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TotalsDelta {
    pub earned: Money,
    pub reversed: Money,
}

/// The rows a batch writes.
#[derive(Debug, Default)]
pub struct Plan {
    pub new_referrals: Vec<Referral>,
    pub changed_referrals: Vec<Referral>,
    pub conversions: Vec<NewConversion>,
    pub ledger: Vec<LedgerEntry>,
    pub parked: Vec<Parked>,
    pub released: Vec<Released>,
    pub totals: BTreeMap<i64, TotalsDelta>,
    pub duplicates: usize,
}

/// Applies `events` (in the order they were read) to `state` and returns what to write.
pub fn plan(state: &mut State, events: &[(Position, ConversionEvent)]) -> Plan {
    let mut plan = Plan::default();
    for (position, event) in events {
        if state.applied.contains_key(&event.event_id) {
            plan.duplicates += 1;
            continue;
        }
        let outcome = match event.kind {
            ConversionKind::Signup => signup(state, event),
            ConversionKind::Purchase => purchase(state, event),
            ConversionKind::Refund => refund(state, event),
        };
        match outcome {
            Ok(applied) => {
                record(state, &mut plan, *position, event, applied);
                if event.kind == ConversionKind::Purchase {
                    release_waiting(state, &mut plan, *position, &event.event_id);
                }
            }
            Err(reason) => park(state, &mut plan, *position, event, reason),
        }
    }
    let referrals: Vec<Referral> = state
        .referrals
        .values()
        .filter(|r| r.changed)
        .cloned()
        .collect();
    for referral in referrals {
        match referral.key {
            ReferralKey::New { .. } => plan.new_referrals.push(referral),
            ReferralKey::Existing(_) => plan.changed_referrals.push(referral),
        }
    }
    plan.new_referrals.sort_by_key(|r| r.user_id);
    plan
}

fn record(
    state: &mut State,
    plan: &mut Plan,
    position: Position,
    event: &ConversionEvent,
    applied: Applied,
) {
    let rate = applied.rate;
    if applied.commission.is_positive() {
        let (kind, delta) = match event.kind {
            ConversionKind::Refund => (
                EntryKind::Reversed,
                &mut plan
                    .totals
                    .entry(applied.affiliate_id)
                    .or_default()
                    .reversed,
            ),
            _ => (
                EntryKind::Earned,
                &mut plan.totals.entry(applied.affiliate_id).or_default().earned,
            ),
        };
        *delta += applied.commission;
        plan.ledger.push(LedgerEntry {
            affiliate_id: applied.affiliate_id,
            kind,
            amount: applied.commission,
            rate,
            conversion_event_id: event.event_id.clone(),
            occurred_at: event.occurred_at,
            available_at: applied.available_at.unwrap_or(event.occurred_at),
        });
    }
    plan.conversions.push(NewConversion {
        event_id: event.event_id.clone(),
        kind: event.kind,
        affiliate_id: applied.affiliate_id,
        referral: applied.referral,
        user_id: event.user_id,
        amount: event.amount,
        commission: applied.commission,
        rate,
        original_event_id: event.original_event_id.clone(),
        occurred_at: event.occurred_at,
        received_at: event.received_at,
        position,
    });
    state.applied.insert(event.event_id.clone(), applied);
}

fn park(
    state: &mut State,
    plan: &mut Plan,
    position: Position,
    event: &ConversionEvent,
    reason: ParkReason,
) {
    let waits_for = (reason == ParkReason::AwaitingPurchase)
        .then(|| event.original_event_id.clone())
        .flatten();
    if let Some(purchase) = &waits_for {
        state
            .waiting
            .entry(purchase.clone())
            .or_default()
            .push(Waiting {
                event: event.clone(),
                position,
                stored: false,
            });
    }
    plan.parked.push(Parked {
        position,
        reason,
        event_id: Some(event.event_id.clone()),
        waits_for,
    });
}

/// Applies the refunds that waited for the purchase just applied at `at`. They are
/// recorded at the purchase's position: the message that made them applicable.
fn release_waiting(state: &mut State, plan: &mut Plan, at: Position, purchase_id: &str) {
    for waiting in state.waiting.remove(purchase_id).unwrap_or_default() {
        let event = &waiting.event;
        let reason = if state.applied.contains_key(&event.event_id) {
            None // a copy of it (re-driven) was applied already
        } else {
            match refund(state, event) {
                Ok(applied) => {
                    record(state, plan, at, event, applied);
                    None
                }
                Err(reason) => Some(reason),
            }
        };
        if waiting.stored {
            plan.released.push(Released {
                position: waiting.position,
                event_id: event.event_id.clone(),
                reason,
            });
            continue;
        }
        // Parked earlier in this batch: not parked after all, or parked for the new reason.
        let index = plan
            .parked
            .iter()
            .position(|p| p.position == waiting.position);
        match (index, reason) {
            (Some(i), None) => {
                plan.parked.remove(i);
            }
            (Some(i), Some(reason)) => {
                plan.parked[i].reason = reason;
                plan.parked[i].waits_for = None;
            }
            (None, _) => {}
        }
    }
}

fn attributable(state: &State, code: &str) -> Result<i64, ParkReason> {
    match state.codes.get(code) {
        None => Err(ParkReason::UnknownCode),
        Some(&id) if state.may_earn(id) => Ok(id),
        Some(_) => Err(ParkReason::Inactive),
    }
}

/// When a commission earned at `at` under `terms` can be paid.
fn available_at(terms: &Terms, at: DateTime<Utc>) -> DateTime<Utc> {
    at + chrono::Duration::days(i64::from(terms.holding_days))
}

/// Refuses a conversion of the affiliate's own product user.
fn not_self_referral(
    state: &State,
    affiliate_id: i64,
    event: &ConversionEvent,
) -> Result<(), ParkReason> {
    if state.is_own_user(affiliate_id, event.user_id) {
        return Err(ParkReason::SelfReferral);
    }
    Ok(())
}

fn signup(state: &mut State, event: &ConversionEvent) -> Result<Applied, ParkReason> {
    if state.referrals.contains_key(&event.user_id) {
        return Err(ParkReason::AlreadyReferred);
    }
    let affiliate_id = attributable(state, &event.referral_code)?;
    not_self_referral(state, affiliate_id, event)?;
    let terms = state
        .terms_at(affiliate_id, event.occurred_at)
        .ok_or(ParkReason::Inactive)?;
    let key = ReferralKey::New {
        user_id: event.user_id,
    };
    let mut referral = new_referral(key, affiliate_id, event, terms.rate, ReferralStatus::Signup);
    let reward = terms.signup_reward;
    if reward.is_positive() {
        referral.commission_amount = reward;
        referral.commission_status = Some(CommissionStatus::Earned);
    }
    state.referrals.insert(event.user_id, referral);
    Ok(Applied {
        kind: ConversionKind::Signup,
        affiliate_id,
        referral: key,
        user_id: event.user_id,
        amount: Money::ZERO,
        commission: reward,
        rate: None,
        available_at: reward
            .is_positive()
            .then(|| available_at(&terms, event.occurred_at)),
    })
}

fn new_referral(
    key: ReferralKey,
    affiliate_id: i64,
    event: &ConversionEvent,
    rate: Rate,
    status: ReferralStatus,
) -> Referral {
    Referral {
        key,
        affiliate_id,
        user_id: event.user_id,
        email: event.email.clone(),
        status,
        invitation_method: event.method,
        commission_rate: rate,
        commission_amount: Money::ZERO,
        commission_status: None,
        first_event_id: event.event_id.clone(),
        created_at: event.occurred_at,
        first_purchase_at: None,
        changed: true,
    }
}

fn purchase(state: &mut State, event: &ConversionEvent) -> Result<Applied, ParkReason> {
    let amount = event.amount.unwrap_or_default();
    // A referred user stays with the affiliate who referred them.
    let affiliate_id = match state.referrals.get(&event.user_id) {
        Some(referral) if state.may_earn(referral.affiliate_id) => referral.affiliate_id,
        Some(_) => return Err(ParkReason::Inactive),
        None => attributable(state, &event.referral_code)?,
    };
    not_self_referral(state, affiliate_id, event)?;
    let terms = state
        .terms_at(affiliate_id, event.occurred_at)
        .ok_or(ParkReason::Inactive)?;
    let referral = state.referrals.entry(event.user_id).or_insert_with(|| {
        new_referral(
            ReferralKey::New {
                user_id: event.user_id,
            },
            affiliate_id,
            event,
            terms.rate,
            ReferralStatus::Converted,
        )
    });
    let first_purchase = *referral.first_purchase_at.get_or_insert(event.occurred_at);
    let within_cap = terms.recurring_months.is_none_or(|months| {
        first_purchase
            .checked_add_months(chrono::Months::new(months))
            .is_none_or(|end| event.occurred_at < end)
    });
    let (earned, rate) = match (within_cap, terms.reward_kind) {
        (false, _) => (Money::ZERO, None),
        (true, RewardKind::Percent) => (terms.rate.of(amount), Some(terms.rate)),
        (true, RewardKind::Flat) => (terms.flat_amount, None),
    };
    referral.status = ReferralStatus::Converted;
    referral.commission_amount += earned;
    if earned.is_positive() {
        referral.commission_status = Some(CommissionStatus::Earned);
    }
    referral.changed = true;
    Ok(Applied {
        kind: ConversionKind::Purchase,
        affiliate_id,
        referral: referral.key,
        user_id: event.user_id,
        amount,
        commission: earned,
        rate,
        available_at: earned
            .is_positive()
            .then(|| available_at(&terms, event.occurred_at)),
    })
}

fn refund(state: &mut State, event: &ConversionEvent) -> Result<Applied, ParkReason> {
    let amount = event.amount.unwrap_or_default();
    let original_id = event.original_event_id.as_deref().unwrap_or_default();
    let original = match state.applied.get(original_id) {
        Some(o) if o.kind == ConversionKind::Purchase => o.clone(),
        Some(_) => return Err(ParkReason::NotAPurchase),
        None => return Err(ParkReason::AwaitingPurchase),
    };
    let (refunded, reversed) = state.refunded.get(original_id).copied().unwrap_or_default();
    let remaining_amount = original.amount - refunded;
    if amount > remaining_amount {
        return Err(ParkReason::RefundTooLarge);
    }
    let remaining_commission = original.commission - reversed;
    let clawback = if amount == remaining_amount {
        // The last refund takes back exactly what is left, leaving no stray cents.
        remaining_commission
    } else {
        let share = match original.rate {
            Some(rate) => rate.of(amount),
            // A flat reward is clawed back in proportion to the amount refunded.
            None if original.amount.is_positive() => Money::rounded(
                original.commission.amount() * amount.amount() / original.amount.amount(),
            ),
            None => Money::ZERO,
        };
        share.min(remaining_commission)
    };
    state.refunded.insert(
        original_id.to_string(),
        (refunded + amount, reversed + clawback),
    );
    if let Some(referral) = state.referrals.get_mut(&original.user_id) {
        referral.commission_amount -= clawback;
        if referral.commission_amount.is_zero() && referral.commission_status.is_some() {
            referral.commission_status = Some(CommissionStatus::Reversed);
        }
        referral.changed = true;
    }
    Ok(Applied {
        kind: ConversionKind::Refund,
        affiliate_id: original.affiliate_id,
        referral: original.referral,
        user_id: original.user_id,
        amount,
        commission: clawback,
        rate: original.rate,
        // Reversed money is pending or payable as the money it reverses is.
        available_at: original.available_at,
    })
}

/// Events whose rules need this state: codes, event ids (and refunds' originals), users.
pub struct Wants {
    pub codes: HashSet<String>,
    pub event_ids: HashSet<String>,
    pub user_ids: HashSet<i64>,
    /// Whether a refund (which may wait) or a purchase (which may release one) is among them.
    pub refunds: bool,
    pub purchases: bool,
}

pub fn wants(events: &[(Position, ConversionEvent)]) -> Wants {
    let mut wants = Wants {
        codes: HashSet::new(),
        event_ids: HashSet::new(),
        user_ids: HashSet::new(),
        refunds: false,
        purchases: false,
    };
    for (_, e) in events {
        wants.refunds |= e.kind == ConversionKind::Refund;
        wants.purchases |= e.kind == ConversionKind::Purchase;
        wants.codes.insert(e.referral_code.clone());
        wants.event_ids.insert(e.event_id.clone());
        if let Some(original) = &e.original_event_id {
            wants.event_ids.insert(original.clone());
        }
        wants.user_ids.insert(e.user_id);
    }
    wants
}

#[cfg(test)]
mod tests {
    use super::*;
    use reftrack_events::InvitationMethod;
    use rust_decimal::Decimal;
    use rust_decimal_macros::dec;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn m(amount: Decimal) -> Money {
        Money::new(amount).unwrap()
    }

    fn r(percent: Decimal) -> Rate {
        Rate::new(percent).unwrap()
    }

    fn state() -> State {
        let mut state = State::default();
        state.codes.insert("ACME".into(), 1);
        state.codes.insert("SLEEPY".into(), 2);
        state.attributable.insert(1, true);
        state.attributable.insert(2, false);
        state.terms.insert(
            1,
            vec![
                own_rate(DateTime::<Utc>::MIN_UTC, dec!(10)),
                own_rate(at("2024-06-01T00:00:00Z"), dec!(12.5)),
            ],
        );
        state
            .terms
            .insert(2, vec![own_rate(DateTime::<Utc>::MIN_UTC, dec!(10))]);
        state.program = vec![program(RewardKind::Percent, 0)];
        state
    }

    /// An affiliate's own rate from `from` on (tier 1, the program's holding period).
    fn own_rate(from: DateTime<Utc>, percent: Decimal) -> AffiliateTerms {
        AffiliateTerms {
            valid_from: from,
            rate: Some(r(percent)),
            tier: 1,
            holding_days: None,
        }
    }

    /// The program's rules from the beginning: `kind`, no flat amount or signup reward,
    /// for life, `holding_days`.
    fn program(kind: RewardKind, holding_days: u32) -> ProgramRules {
        ProgramRules {
            valid_from: DateTime::<Utc>::MIN_UTC,
            reward_kind: kind,
            flat_amount: Money::ZERO,
            signup_reward: Money::ZERO,
            recurring_months: None,
            holding_days,
        }
    }

    fn event(
        id: &str,
        kind: ConversionKind,
        user: i64,
        amount: Option<Money>,
        when: &str,
    ) -> ConversionEvent {
        ConversionEvent {
            event_id: id.into(),
            kind,
            user_id: user,
            email: Some(format!("u{user}@example.com")),
            referral_code: "ACME".into(),
            click_id: None,
            coupon: None,
            amount,
            currency: amount.map(|_| "USD".into()),
            original_event_id: None,
            method: InvitationMethod::Email,
            occurred_at: at(when),
            received_at: at(when),
        }
    }

    fn refund_of(id: &str, original: &str, user: i64, amount: Money) -> ConversionEvent {
        let mut e = event(
            id,
            ConversionKind::Refund,
            user,
            Some(amount),
            "2024-07-01T00:00:00Z",
        );
        e.original_event_id = Some(original.into());
        e
    }

    fn positioned(events: Vec<ConversionEvent>) -> Vec<(Position, ConversionEvent)> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    Position {
                        partition: 0,
                        offset: i as i64,
                    },
                    e,
                )
            })
            .collect()
    }

    #[test]
    fn commission_rounds_half_even_to_cents() {
        assert_eq!(r(dec!(10)).of(m(dec!(0.25))), m(dec!(0.02))); // 0.025 → 0.02
        assert_eq!(r(dec!(10)).of(m(dec!(0.35))), m(dec!(0.04))); // 0.035 → 0.04
        assert_eq!(r(dec!(15)).of(m(dec!(19.99))), m(dec!(3.00))); // 2.9985
        assert_eq!(r(dec!(12.5)).of(m(dec!(33.33))), m(dec!(4.17))); // 4.16625
        assert_eq!(r(dec!(33.33)).of(m(dec!(1000000))), m(dec!(333300.00)));
    }

    #[test]
    fn a_signup_then_purchases_earn_each_at_the_rate_of_its_moment() {
        let mut state = state();
        let plan = plan(
            &mut state,
            &positioned(vec![
                event(
                    "s1",
                    ConversionKind::Signup,
                    7,
                    None,
                    "2024-05-01T00:00:00Z",
                ),
                event(
                    "p1",
                    ConversionKind::Purchase,
                    7,
                    Some(m(dec!(100))),
                    "2024-05-20T00:00:00Z",
                ),
                event(
                    "p2",
                    ConversionKind::Purchase,
                    7,
                    Some(m(dec!(100))),
                    "2024-06-02T00:00:00Z",
                ),
            ]),
        );
        assert!(plan.parked.is_empty(), "{:?}", plan.parked);
        let earned: Vec<_> = plan.ledger.iter().map(|e| (e.amount, e.rate)).collect();
        assert_eq!(
            earned,
            vec![
                (m(dec!(10.00)), Some(r(dec!(10)))),
                (m(dec!(12.50)), Some(r(dec!(12.5))))
            ]
        );
        assert_eq!(
            plan.totals[&1],
            TotalsDelta {
                earned: m(dec!(22.50)),
                reversed: m(dec!(0))
            }
        );
        assert_eq!(plan.new_referrals.len(), 1);
        let referral = &plan.new_referrals[0];
        assert_eq!(
            (
                referral.status,
                referral.commission_amount,
                referral.commission_status
            ),
            (
                ReferralStatus::Converted,
                m(dec!(22.50)),
                Some(CommissionStatus::Earned)
            )
        );
        assert_eq!(
            referral.commission_rate,
            r(dec!(10)),
            "the rate when the user signed up"
        );
        assert_eq!(referral.invitation_method, InvitationMethod::Email);
    }

    #[test]
    fn refunds_claw_back_in_proportion_and_never_more_than_earned() {
        let mut state = state();
        let plan = plan(
            &mut state,
            &positioned(vec![
                event(
                    "p1",
                    ConversionKind::Purchase,
                    8,
                    Some(m(dec!(99.99))),
                    "2024-07-01T00:00:00Z",
                ),
                refund_of("r1", "p1", 8, m(dec!(33.33))),
                refund_of("r2", "p1", 8, m(dec!(33.33))),
                refund_of("r3", "p1", 8, m(dec!(33.33))),
                refund_of("r4", "p1", 8, m(dec!(0.01))),
            ]),
        );
        // 99.99 × 12.5% = 12.49875 → 12.50; refunds: 4.17, 4.17, then the rest 4.16.
        let reversed: Vec<_> = plan
            .ledger
            .iter()
            .filter(|e| e.kind == EntryKind::Reversed)
            .map(|e| e.amount)
            .collect();
        assert_eq!(reversed, vec![m(dec!(4.17)), m(dec!(4.17)), m(dec!(4.16))]);
        assert_eq!(
            plan.totals[&1],
            TotalsDelta {
                earned: m(dec!(12.50)),
                reversed: m(dec!(12.50))
            }
        );
        assert_eq!(plan.parked.len(), 1);
        assert_eq!(plan.parked[0].reason, ParkReason::RefundTooLarge);
        let referral = &plan.new_referrals[0];
        assert_eq!(
            (referral.commission_amount, referral.commission_status),
            (m(dec!(0)), Some(CommissionStatus::Reversed))
        );
    }

    #[test]
    fn a_repeated_event_id_counts_once_within_and_across_batches() {
        let mut state = state();
        let purchase = event(
            "p1",
            ConversionKind::Purchase,
            9,
            Some(m(dec!(50))),
            "2024-07-01T00:00:00Z",
        );
        let first = plan(
            &mut state,
            &positioned(vec![purchase.clone(), purchase.clone()]),
        );
        assert_eq!((first.ledger.len(), first.duplicates), (1, 1));
        let again = plan(&mut state, &positioned(vec![purchase]));
        assert_eq!(
            (
                again.ledger.len(),
                again.duplicates,
                again.conversions.len()
            ),
            (0, 1, 0)
        );
    }

    #[test]
    fn what_cannot_be_applied_is_parked_with_the_reason() {
        let mut state = state();
        let mut unknown = event(
            "s1",
            ConversionKind::Signup,
            1,
            None,
            "2024-07-01T00:00:00Z",
        );
        unknown.referral_code = "NOPE".into();
        let mut inactive = event(
            "s2",
            ConversionKind::Signup,
            2,
            None,
            "2024-07-01T00:00:00Z",
        );
        inactive.referral_code = "SLEEPY".into();
        let plan = plan(
            &mut state,
            &positioned(vec![
                unknown,
                inactive,
                event(
                    "s3",
                    ConversionKind::Signup,
                    3,
                    None,
                    "2024-07-01T00:00:00Z",
                ),
                event(
                    "s4",
                    ConversionKind::Signup,
                    3,
                    None,
                    "2024-07-02T00:00:00Z",
                ),
                refund_of("r1", "missing", 3, m(dec!(1))),
            ]),
        );
        let reasons: Vec<_> = plan
            .parked
            .iter()
            .map(|p| (p.position.offset, p.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (0, ParkReason::UnknownCode),
                (1, ParkReason::Inactive),
                (3, ParkReason::AlreadyReferred),
                (4, ParkReason::AwaitingPurchase)
            ]
        );
        assert_eq!(plan.conversions.len(), 1);
    }

    fn purchase_of(id: &str, user: i64, amount: Money) -> ConversionEvent {
        event(
            id,
            ConversionKind::Purchase,
            user,
            Some(amount),
            "2024-05-01T00:00:00Z",
        )
    }

    #[test]
    fn a_refund_before_its_purchase_in_the_same_batch_is_applied_with_the_purchase() {
        let mut state = state();
        let plan = plan(
            &mut state,
            &positioned(vec![
                refund_of("r1", "p1", 7, m(dec!(40))),
                purchase_of("p1", 7, m(dec!(100))),
            ]),
        );
        assert!(plan.parked.is_empty(), "{:?}", plan.parked);
        let refund = plan
            .conversions
            .iter()
            .find(|c| c.event_id == "r1")
            .unwrap();
        assert_eq!(refund.commission, m(dec!(4.00)));
        assert_eq!(
            refund.position.offset, 1,
            "recorded where the purchase was read"
        );
        assert_eq!(plan.totals[&1].earned, m(dec!(10.00)));
        assert_eq!(plan.totals[&1].reversed, m(dec!(4.00)));
    }

    #[test]
    fn a_refund_parked_by_an_earlier_batch_is_released_by_its_purchase() {
        let mut state = state();
        let held = Position {
            partition: 3,
            offset: 99,
        };
        state.waiting.insert(
            "p1".into(),
            vec![
                Waiting {
                    event: refund_of("r1", "p1", 7, m(dec!(100))),
                    position: held,
                    stored: true,
                },
                // A copy re-driven meanwhile: applied once only.
                Waiting {
                    event: refund_of("r1", "p1", 7, m(dec!(100))),
                    position: Position {
                        partition: 3,
                        offset: 120,
                    },
                    stored: true,
                },
                Waiting {
                    event: refund_of("r2", "p1", 7, m(dec!(1))),
                    position: Position {
                        partition: 3,
                        offset: 121,
                    },
                    stored: true,
                },
            ],
        );
        let plan = plan(
            &mut state,
            &positioned(vec![purchase_of("p1", 7, m(dec!(100)))]),
        );
        let reasons: Vec<_> = plan
            .released
            .iter()
            .map(|r| (r.position.offset, r.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (99, None),
                (120, None),
                (121, Some(ParkReason::RefundTooLarge))
            ]
        );
        assert_eq!(
            plan.totals[&1].reversed,
            m(dec!(10.00)),
            "the whole commission, once"
        );
        assert_eq!(plan.conversions.len(), 2);
        assert!(plan.parked.is_empty());
    }

    #[test]
    fn a_refund_still_waiting_names_its_purchase_and_a_refund_of_a_signup_does_not_wait() {
        let mut state = state();
        let plan = plan(
            &mut state,
            &positioned(vec![
                event(
                    "s1",
                    ConversionKind::Signup,
                    7,
                    None,
                    "2024-05-01T00:00:00Z",
                ),
                refund_of("r1", "s1", 7, m(dec!(1))),
                refund_of("r2", "p9", 7, m(dec!(1))),
            ]),
        );
        let parked: Vec<_> = plan
            .parked
            .iter()
            .map(|p| (p.reason, p.waits_for.as_deref()))
            .collect();
        assert_eq!(
            parked,
            vec![
                (ParkReason::NotAPurchase, None),
                (ParkReason::AwaitingPurchase, Some("p9"))
            ]
        );
    }

    #[test]
    fn a_purchase_stays_with_the_referring_affiliate() {
        let mut state = state();
        state.codes.insert("OTHER".into(), 3);
        state.attributable.insert(3, true);
        state
            .terms
            .insert(3, vec![own_rate(DateTime::<Utc>::MIN_UTC, dec!(50))]);
        let mut later = event(
            "p1",
            ConversionKind::Purchase,
            5,
            Some(m(dec!(10))),
            "2024-07-01T00:00:00Z",
        );
        later.referral_code = "OTHER".into();
        let plan = plan(
            &mut state,
            &positioned(vec![
                event(
                    "s1",
                    ConversionKind::Signup,
                    5,
                    None,
                    "2024-05-01T00:00:00Z",
                ),
                later,
            ]),
        );
        assert_eq!(plan.ledger[0].affiliate_id, 1);
        assert_eq!(plan.ledger[0].amount, m(dec!(1.25)));
    }

    #[test]
    fn terms_come_from_the_program_the_tier_and_the_affiliate_as_they_were_then() {
        let mut state = state();
        state.tier_rates.insert(
            2,
            vec![
                (DateTime::<Utc>::MIN_UTC, r(dec!(12))),
                (at("2024-06-01T00:00:00Z"), r(dec!(14))),
            ],
        );
        // Affiliate 3: tier 2's rate until it gets its own, with its own holding period.
        state.terms.insert(
            3,
            vec![
                AffiliateTerms {
                    valid_from: DateTime::<Utc>::MIN_UTC,
                    rate: None,
                    tier: 2,
                    holding_days: None,
                },
                AffiliateTerms {
                    valid_from: at("2024-07-01T00:00:00Z"),
                    rate: Some(r(dec!(20))),
                    tier: 2,
                    holding_days: Some(7),
                },
            ],
        );
        state.program = vec![program(RewardKind::Percent, 30)];
        let terms = |when: &str| state.terms_at(3, at(when)).unwrap();
        assert_eq!(terms("2024-05-01T00:00:00Z").rate, r(dec!(12)));
        assert_eq!(terms("2024-06-15T00:00:00Z").rate, r(dec!(14)));
        assert_eq!(terms("2024-06-15T00:00:00Z").holding_days, 30);
        let own = terms("2024-08-01T00:00:00Z");
        assert_eq!((own.rate, own.holding_days), (r(dec!(20)), 7));
    }

    #[test]
    fn commissions_are_held_and_a_refund_reverses_them_as_held() {
        let mut state = state();
        state.program = vec![program(RewardKind::Percent, 30)];
        let plan = plan(
            &mut state,
            &positioned(vec![
                purchase_of("p1", 7, m(dec!(100))),
                refund_of("r1", "p1", 7, m(dec!(40))),
            ]),
        );
        let available: Vec<_> = plan
            .ledger
            .iter()
            .map(|e| (e.kind, e.available_at))
            .collect();
        // The purchase happened on 2024-05-01 (see purchase_of); the refund on 2024-07-01,
        // after the holding period: it reverses what had become payable.
        let day = at("2024-05-01T00:00:00Z") + chrono::Duration::days(30);
        assert_eq!(
            available,
            vec![(EntryKind::Earned, day), (EntryKind::Reversed, day)]
        );
    }

    #[test]
    fn flat_rewards_signup_rewards_and_a_recurring_cap() {
        let mut state = state();
        state.program = vec![ProgramRules {
            flat_amount: m(dec!(25)),
            signup_reward: m(dec!(5)),
            recurring_months: Some(2),
            ..program(RewardKind::Flat, 0)
        }];
        let mut second = event(
            "p2",
            ConversionKind::Purchase,
            7,
            Some(m(dec!(80))),
            "2024-08-31T00:00:00Z",
        );
        second.referral_code = "ACME".into();
        let mut late = second.clone();
        late.event_id = "p3".into();
        late.occurred_at = at("2024-09-02T00:00:00Z");
        let plan = plan(
            &mut state,
            &positioned(vec![
                event(
                    "s1",
                    ConversionKind::Signup,
                    7,
                    None,
                    "2024-06-30T00:00:00Z",
                ),
                event(
                    "p1",
                    ConversionKind::Purchase,
                    7,
                    Some(m(dec!(200))),
                    "2024-07-01T00:00:00Z",
                ),
                second,
                // Past the two months from the first purchase: it earns nothing.
                late,
                refund_of("r1", "p1", 7, m(dec!(50))),
            ]),
        );
        let commissions: Vec<_> = plan
            .conversions
            .iter()
            .map(|c| (c.event_id.as_str(), c.commission))
            .collect();
        assert_eq!(
            commissions,
            vec![
                ("s1", m(dec!(5))),
                ("p1", m(dec!(25))),
                ("p2", m(dec!(25))),
                ("p3", Money::ZERO),
                // A quarter of the purchase refunded: a quarter of its flat reward.
                ("r1", m(dec!(6.25))),
            ]
        );
        assert_eq!(
            plan.new_referrals[0].commission_amount,
            m(dec!(5) + dec!(25) + dec!(25) - dec!(6.25))
        );
    }

    #[test]
    fn an_affiliate_referring_its_own_product_user_is_parked() {
        let mut state = state();
        state.owners.insert(1, 7);
        let plan = plan(
            &mut state,
            &positioned(vec![
                event(
                    "s1",
                    ConversionKind::Signup,
                    7,
                    None,
                    "2024-06-30T00:00:00Z",
                ),
                purchase_of("p1", 7, m(dec!(100))),
                purchase_of("p2", 8, m(dec!(100))),
            ]),
        );
        let parked: Vec<_> = plan.parked.iter().map(|p| p.reason).collect();
        assert_eq!(
            parked,
            vec![ParkReason::SelfReferral, ParkReason::SelfReferral]
        );
        assert_eq!(plan.conversions.len(), 1);
    }
}
