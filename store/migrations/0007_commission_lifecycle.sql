-- The commission lifecycle and rules: holding periods, flat and percentage rewards,
-- signup rewards, recurring caps, tier defaults, coupons, and the fraud basics.

-- The program's rules, as they changed over time: each purchase earns under the rules in
-- force when it happened. The first row holds from the beginning.
CREATE TABLE program_rules (
    valid_from        TIMESTAMPTZ PRIMARY KEY,
    -- 'percent': the affiliate's rate of each purchase; 'flat': flat_amount per purchase.
    reward_kind       TEXT NOT NULL CHECK (reward_kind IN ('percent', 'flat')),
    flat_amount       NUMERIC(12, 2) NOT NULL DEFAULT 0 CHECK (flat_amount >= 0),
    -- Earned once per referred user, at signup.
    signup_reward     NUMERIC(12, 2) NOT NULL DEFAULT 0 CHECK (signup_reward >= 0),
    -- A referred user's purchases earn for this many months after their first purchase;
    -- NULL: for life.
    recurring_months  INTEGER CHECK (recurring_months > 0),
    -- Days a commission is held (pending) before it can be paid.
    holding_days      INTEGER NOT NULL CHECK (holding_days BETWEEN 0 AND 365)
);
INSERT INTO program_rules (valid_from, reward_kind, holding_days) VALUES ('epoch', 'percent', 30);

-- The default rate of each tier, over time. An affiliate's own rate overrides it.
CREATE TABLE tier_rates (
    tier        SMALLINT NOT NULL CHECK (tier BETWEEN 1 AND 5),
    valid_from  TIMESTAMPTZ NOT NULL,
    rate        NUMERIC(5, 2) NOT NULL CHECK (rate >= 0 AND rate <= 100),
    PRIMARY KEY (tier, valid_from)
);
INSERT INTO tier_rates (tier, valid_from, rate) VALUES
    (1, 'epoch', 10), (2, 'epoch', 12), (3, 'epoch', 15), (4, 'epoch', 18), (5, 'epoch', 20);

-- An affiliate's own rate becomes optional (NULL: its tier's), and it may hold its
-- commissions for its own number of days.
ALTER TABLE affiliates
    ALTER COLUMN commission_rate DROP NOT NULL,
    ADD COLUMN holding_days INTEGER CHECK (holding_days BETWEEN 0 AND 365);

-- Every change of an affiliate's terms (own rate, tier, holding days), with its time.
-- Replaces the rate-only history, which it starts from.
CREATE TABLE affiliate_terms_history (
    affiliate_id  BIGINT NOT NULL REFERENCES affiliates (id),
    valid_from    TIMESTAMPTZ NOT NULL,
    rate          NUMERIC(5, 2),
    tier          SMALLINT NOT NULL,
    holding_days  INTEGER,
    PRIMARY KEY (affiliate_id, valid_from)
);
INSERT INTO affiliate_terms_history (affiliate_id, valid_from, rate, tier, holding_days)
SELECT h.affiliate_id, h.valid_from, h.rate, a.tier, NULL
FROM commission_rate_history h JOIN affiliates a ON a.id = h.affiliate_id;

DROP TRIGGER affiliates_rate_history ON affiliates;
DROP FUNCTION record_commission_rate();
DROP TABLE commission_rate_history;

CREATE FUNCTION record_affiliate_terms() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.commission_rate IS DISTINCT FROM OLD.commission_rate
       OR NEW.tier IS DISTINCT FROM OLD.tier
       OR NEW.holding_days IS DISTINCT FROM OLD.holding_days THEN
        INSERT INTO affiliate_terms_history (affiliate_id, valid_from, rate, tier, holding_days)
        -- The first terms hold for anything that happened before the affiliate existed.
        VALUES (NEW.id, CASE WHEN TG_OP = 'INSERT' THEN 'epoch'::timestamptz ELSE now() END,
                NEW.commission_rate, NEW.tier, NEW.holding_days)
        ON CONFLICT (affiliate_id, valid_from) DO UPDATE
            SET rate = EXCLUDED.rate, tier = EXCLUDED.tier, holding_days = EXCLUDED.holding_days;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER affiliates_terms_history
    AFTER INSERT OR UPDATE OF commission_rate, tier, holding_days ON affiliates
    FOR EACH ROW EXECUTE FUNCTION record_affiliate_terms();

-- When an earned or reversed commission can be paid: the end of its holding period. A
-- reversal shares the date of the commission it reverses, so a refund within the
-- holding period reverses pending money and one after it reverses payable (or paid)
-- money. Existing entries were payable at once (no holding period before this).
ALTER TABLE ledger_entries ADD COLUMN available_at TIMESTAMPTZ;
ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only;
UPDATE ledger_entries SET available_at = occurred_at WHERE kind <> 'paid';
ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only;
ALTER TABLE ledger_entries ADD CHECK ((kind = 'paid') = (available_at IS NULL));
CREATE INDEX ledger_by_availability ON ledger_entries (affiliate_id, available_at)
    INCLUDE (kind, amount) WHERE available_at IS NOT NULL;

-- A referred user's first purchase: where a recurring cap counts from.
ALTER TABLE referrals ADD COLUMN first_purchase_at TIMESTAMPTZ;
UPDATE referrals r SET first_purchase_at = (
    SELECT min(occurred_at) FROM conversions c WHERE c.referral_id = r.id AND c.kind = 'purchase');

-- Coupon codes an affiliate shares; a conversion naming one is attributed to it.
CREATE TABLE coupons (
    id            BIGSERIAL PRIMARY KEY,
    affiliate_id  BIGINT NOT NULL REFERENCES affiliates (id),
    code          TEXT NOT NULL CHECK (code ~ '^[A-Z0-9_-]{1,64}$'),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    disabled_at   TIMESTAMPTZ
);
-- A code belongs to one live coupon; a disabled coupon's code may be given out again.
CREATE UNIQUE INDEX coupons_live_code ON coupons (code) WHERE disabled_at IS NULL;
CREATE INDEX coupons_by_affiliate ON coupons (affiliate_id, created_at DESC);
CREATE TRIGGER coupons_notify_directory
    AFTER INSERT OR UPDATE OR DELETE ON coupons
    FOR EACH STATEMENT EXECUTE FUNCTION notify_directory_change();

-- A withdrawal to an address changed shortly before is held for review.
ALTER TABLE payouts DROP CONSTRAINT payouts_status_check;
ALTER TABLE payouts ADD CHECK (status IN ('pending', 'review', 'paid', 'cancelled'));
ALTER TABLE payout_methods ADD COLUMN address_changed_at TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE payout_methods ADD COLUMN verified_at TIMESTAMPTZ, ADD COLUMN verified_by TEXT;
