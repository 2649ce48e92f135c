//! Rules about the commission ledger that more than one place applies.
//!
//! Every earned or reversed entry has the time it can be paid (`available_at`, the end of
//! its holding period; a reversal shares its commission's). At a moment `now`:
//! - held (pending) = earned − reversed among entries not yet available;
//! - net = earned − reversed − paid − pending payouts (the running totals);
//! - payable = net − held, which may be below zero after a refund of paid money; it is
//!   withdrawable only above zero, and later earnings cover it first.

use reftrack_domain::Money;

/// SQL: the held amount of the affiliate whose id is the expression `affiliate`, at the
/// timestamp parameter `now` (such as `$2`).
pub fn held_sql(affiliate: &str, now: &str) -> String {
    format!(
        "(SELECT COALESCE(sum(CASE l.kind WHEN 'earned' THEN l.amount ELSE -l.amount END), 0)
          FROM ledger_entries l WHERE l.affiliate_id = {affiliate} AND l.available_at > {now})"
    )
}

/// SQL: the payable balance ([`Balances::payable`]) of the affiliate whose running totals
/// row is aliased `totals`, at the timestamp parameter `now`; for queries that choose
/// affiliates by it.
pub fn payable_sql(totals: &str, now: &str) -> String {
    format!(
        "({totals}.earned - {totals}.reversed - {totals}.paid - {totals}.pending_payouts - {held})",
        held = held_sql(&format!("{totals}.affiliate_id"), now)
    )
}

/// An affiliate's balances at a moment, from its running totals and what is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balances {
    pub earned: Money,
    pub reversed: Money,
    pub paid: Money,
    pub pending_payouts: Money,
    pub held: Money,
}

impl Balances {
    /// Earned, net of clawbacks, held or not.
    pub fn total_earned(&self) -> Money {
        self.earned - self.reversed
    }

    /// Past its holding period and not paid or requested; below zero while a refund of
    /// paid money is not yet covered by later earnings.
    pub fn payable(&self) -> Money {
        self.earned - self.reversed - self.paid - self.pending_payouts - self.held
    }

    /// What can be withdrawn now: the payable balance, never below zero.
    pub fn withdrawable(&self) -> Money {
        self.payable().max(Money::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refund_of_paid_money_is_owed_until_later_earnings_cover_it() {
        let c = Money::from_cents;
        let after_refund = Balances {
            earned: c(1000),
            reversed: c(1000),
            paid: c(1000),
            pending_payouts: Money::ZERO,
            held: Money::ZERO,
        };
        assert_eq!(
            (after_refund.payable(), after_refund.withdrawable()),
            (c(-1000), Money::ZERO)
        );
        let later = Balances {
            earned: c(3000),
            held: c(500),
            ..after_refund
        };
        assert_eq!((later.payable(), later.withdrawable()), (c(500), c(500)));
        assert_eq!(later.total_earned(), c(2000));
    }
}
