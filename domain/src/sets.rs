//! The closed sets of the domain. Each is stored in Postgres as `TEXT` (the columns have
//! `CHECK (... IN (...))` constraints listing the same values) and written in JSON in
//! lower case.

closed_set! {
    /// Where an affiliate stands with the program.
    AffiliateStatus { Pending = "pending", Approved = "approved", Rejected = "rejected" }
}

impl AffiliateStatus {
    /// How the admin API shows it (`status.display`).
    pub fn label(self) -> &'static str {
        match self {
            AffiliateStatus::Pending => "Pending Approval",
            AffiliateStatus::Approved => "Approved",
            AffiliateStatus::Rejected => "Rejected",
        }
    }
}

closed_set! {
    /// A referred user: signed up, or bought.
    ReferralStatus { Signup = "signup", Converted = "converted" }
}

closed_set! {
    /// A referral's commission as stored: earned, or all of it reversed by refunds.
    CommissionStatus { Earned = "earned", Reversed = "reversed" }
}

closed_set! {
    /// Where a referral's commission stands in its lifecycle (the promoter API's
    /// `commissionStatus`): held until its holding period ends, then payable, then paid;
    /// or reversed by refunds.
    CommissionStage { Pending = "pending", Payable = "payable", Paid = "paid", Reversed = "reversed" }
}

closed_set! {
    /// How a purchase earns: the affiliate's rate of it, or a flat amount.
    RewardKind { Percent = "percent", Flat = "flat" }
}

closed_set! {
    /// A withdrawal request.
    /// `review`: held for an admin to look at (the payout address changed shortly before);
    /// `failed`: the payment provider could not pay it (the amount is back in the balance).
    PayoutStatus { Pending = "pending", Review = "review", Paid = "paid", Cancelled = "cancelled", Failed = "failed" }
}

closed_set! {
    /// What the product's backend reported.
    ConversionKind { Signup = "signup", Purchase = "purchase", Refund = "refund" }
}

closed_set! {
    /// How the referred user was invited (the promoter API's `invitationMethod`).
    #[derive(Default)]
    InvitationMethod { #[default] Link = "link", Email = "email", Coupon = "coupon" }
}

closed_set! {
    /// Why the aggregator parked a message instead of applying it.
    ParkReason {
        UnknownCode = "unknown referral code",
        Inactive = "affiliate not active",
        AlreadyReferred = "user already referred",
        /// A refund whose purchase has not been applied (yet): it waits for it.
        AwaitingPurchase = "refund waiting for its purchase",
        NotAPurchase = "refund of a conversion that is not a purchase",
        RefundTooLarge = "refund exceeds the purchase's remaining amount",
        Undecodable = "undecodable",
        /// Postgres refused the message's data (e.g. an amount beyond its columns).
        Rejected = "rejected by the database",
        /// The referred user is the affiliate's own product user.
        SelfReferral = "self-referral",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_reads_back_and_unknown_values_are_refused() {
        for status in AffiliateStatus::ALL {
            assert_eq!(status.as_str().parse::<AffiliateStatus>(), Ok(*status));
        }
        assert_eq!(
            "approve".parse::<AffiliateStatus>(),
            Err("must be one of pending, approved, rejected".into())
        );
        assert_eq!(
            serde_json::to_string(&ParkReason::AwaitingPurchase).unwrap(),
            "\"refund waiting for its purchase\""
        );
        assert!(serde_json::from_str::<ConversionKind>("\"chargeback\"").is_err());
    }
}

closed_set! {
    /// What a webhook reports (the `type` of the message).
    WebhookEventType {
        AffiliateCreated = "affiliate.created",
        AffiliateApproved = "affiliate.approved",
        AffiliateRejected = "affiliate.rejected",
        ReferralCreated = "referral.created",
        CommissionCreated = "commission.created",
        CommissionReversed = "commission.reversed",
        CommissionPayable = "commission.payable",
        PayoutRequested = "payout.requested",
        PayoutPaid = "payout.paid",
        PayoutCancelled = "payout.cancelled",
        PayoutFailed = "payout.failed",
    }
}

closed_set! {
    /// A webhook delivery: still to be sent (or retried), delivered, or given up on.
    DeliveryStatus { Pending = "pending", Delivered = "delivered", Failed = "failed" }
}
