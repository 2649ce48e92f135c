//! The commission rules, as a pure function from a batch of conversions and the state
//! they touch to the rows to write. Kept free of I/O so every rule is unit-tested.
//!
//! - A signup creates the referral (a product user is referred once).
//! - A purchase earns `amount × rate`, the rate in force when the purchase happened,
//!   rounded half-even to cents; it makes the referral `converted`.
//! - A refund claws back the commission of the purchase it names, in proportion to the
//!   amount refunded (never more than was earned); the reversal nets against the
//!   affiliate's balance, hence against the next payout.
//! - A refund read before its purchase waits for it (parked as waiting, with the
//!   purchase's id) and is applied by the batch that applies the purchase.
//! - A repeated `event_id` changes nothing. What cannot be applied is parked with why.
//!
//! Long because every rule is here with its unit tests (about half the file).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use reftrack_domain::{
    CommissionStatus, InvitationMethod, Money, ParkReason, Rate, ReferralStatus,
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
    pub rate: Option<Rate>,
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
    /// Whether this batch changed it (and so must write it).
    pub changed: bool,
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
    /// Per affiliate: (valid from, rate), sorted by time.
    pub rates: HashMap<i64, Vec<(DateTime<Utc>, Rate)>>,
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

impl State {
    fn rate_at(&self, affiliate_id: i64, at: DateTime<Utc>) -> Option<Rate> {
        let history = self.rates.get(&affiliate_id)?;
        let i = history.partition_point(|(from, _)| *from <= at);
        // Before the first change, the first rate applies.
        history.get(i.saturating_sub(1)).map(|(_, rate)| *rate)
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
    pub rate: Rate,
    pub conversion_event_id: String,
    pub occurred_at: DateTime<Utc>,
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
            rate: rate.unwrap_or_default(),
            conversion_event_id: event.event_id.clone(),
            occurred_at: event.occurred_at,
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

fn signup(state: &mut State, event: &ConversionEvent) -> Result<Applied, ParkReason> {
    if state.referrals.contains_key(&event.user_id) {
        return Err(ParkReason::AlreadyReferred);
    }
    let affiliate_id = attributable(state, &event.referral_code)?;
    let rate = state
        .rate_at(affiliate_id, event.occurred_at)
        .ok_or(ParkReason::Inactive)?;
    let key = ReferralKey::New {
        user_id: event.user_id,
    };
    state.referrals.insert(
        event.user_id,
        new_referral(key, affiliate_id, event, rate, ReferralStatus::Signup),
    );
    Ok(Applied {
        kind: ConversionKind::Signup,
        affiliate_id,
        referral: key,
        user_id: event.user_id,
        amount: Money::ZERO,
        commission: Money::ZERO,
        rate: Some(rate),
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
    let rate = state
        .rate_at(affiliate_id, event.occurred_at)
        .ok_or(ParkReason::Inactive)?;
    let earned = rate.of(amount);
    let referral = state.referrals.entry(event.user_id).or_insert_with(|| {
        new_referral(
            ReferralKey::New {
                user_id: event.user_id,
            },
            affiliate_id,
            event,
            rate,
            ReferralStatus::Converted,
        )
    });
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
        rate: Some(rate),
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
        original
            .rate
            .unwrap_or_default()
            .of(amount)
            .min(remaining_commission)
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
        state.rates.insert(
            1,
            vec![
                (DateTime::<Utc>::MIN_UTC, r(dec!(10))),
                (at("2024-06-01T00:00:00Z"), r(dec!(12.5))),
            ],
        );
        state
            .rates
            .insert(2, vec![(DateTime::<Utc>::MIN_UTC, r(dec!(10)))]);
        state
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
                (m(dec!(10.00)), r(dec!(10))),
                (m(dec!(12.50)), r(dec!(12.5)))
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
            .rates
            .insert(3, vec![(DateTime::<Utc>::MIN_UTC, r(dec!(50)))]);
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
}
