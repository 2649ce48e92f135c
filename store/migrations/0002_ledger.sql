-- Referrals, conversions, the append-only commission ledger, payouts and running totals.

-- A product user referred by an affiliate. A user is referred once: the affiliate whose
-- link brought the signup keeps the user.
CREATE TABLE referrals (
    id                 BIGSERIAL PRIMARY KEY,
    affiliate_id       BIGINT NOT NULL REFERENCES affiliates (id),
    user_id            BIGINT NOT NULL UNIQUE,
    email              TEXT,
    status             TEXT NOT NULL CHECK (status IN ('signup', 'converted')),
    invitation_method  TEXT NOT NULL CHECK (invitation_method IN ('link', 'email', 'coupon')),
    -- The affiliate's rate when the user was referred.
    commission_rate    NUMERIC(5, 2) NOT NULL,
    -- Commission earned on this user's purchases, net of refunds.
    commission_amount  NUMERIC(12, 2) NOT NULL DEFAULT 0,
    commission_status  TEXT CHECK (commission_status IN ('earned', 'reversed')),
    first_event_id     TEXT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX referrals_by_affiliate ON referrals (affiliate_id, created_at DESC, id DESC);

-- Every attributed conversion, once per event_id (the sender's idempotency key). The
-- Kafka position of the first delivery tells a replay apart from a repeated event id.
CREATE TABLE conversions (
    event_id           TEXT PRIMARY KEY,
    kind               TEXT NOT NULL CHECK (kind IN ('signup', 'purchase', 'refund')),
    affiliate_id       BIGINT NOT NULL REFERENCES affiliates (id),
    referral_id        BIGINT NOT NULL REFERENCES referrals (id),
    user_id            BIGINT NOT NULL,
    amount             NUMERIC(12, 2) CHECK (amount >= 0),
    -- Commission earned (purchase) or clawed back (refund).
    commission         NUMERIC(12, 2) NOT NULL DEFAULT 0 CHECK (commission >= 0),
    rate               NUMERIC(5, 2),
    original_event_id  TEXT REFERENCES conversions (event_id),
    occurred_at        TIMESTAMPTZ NOT NULL,
    received_at        TIMESTAMPTZ NOT NULL,
    kafka_partition    INTEGER NOT NULL,
    kafka_offset       BIGINT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX conversions_refunds ON conversions (original_event_id) WHERE original_event_id IS NOT NULL;

CREATE TABLE payouts (
    id               BIGSERIAL PRIMARY KEY,
    affiliate_id     BIGINT NOT NULL REFERENCES affiliates (id),
    amount           NUMERIC(12, 2) NOT NULL CHECK (amount > 0),
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'cancelled')),
    method           TEXT NOT NULL,
    address          TEXT NOT NULL,
    idempotency_key  TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    paid_at          TIMESTAMPTZ,
    paid_by          TEXT,
    cancelled_at     TIMESTAMPTZ,
    cancelled_by     TEXT,
    UNIQUE (affiliate_id, idempotency_key)
);
CREATE INDEX payouts_by_affiliate ON payouts (affiliate_id, created_at DESC);
CREATE INDEX payouts_by_status ON payouts (status, created_at DESC);

-- The commission ledger: earned on a purchase, reversed on a refund, paid on a payout.
-- Append-only: balances are sums of entries, never edited in place.
CREATE TABLE ledger_entries (
    id                   BIGSERIAL PRIMARY KEY,
    affiliate_id         BIGINT NOT NULL REFERENCES affiliates (id),
    kind                 TEXT NOT NULL CHECK (kind IN ('earned', 'reversed', 'paid')),
    amount               NUMERIC(12, 2) NOT NULL CHECK (amount > 0),
    rate                 NUMERIC(5, 2),
    conversion_event_id  TEXT UNIQUE REFERENCES conversions (event_id),
    payout_id            BIGINT UNIQUE REFERENCES payouts (id),
    -- When the business event happened (purchase, refund, payment); earnings are charted by it.
    occurred_at          TIMESTAMPTZ NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((kind = 'paid') = (payout_id IS NOT NULL)),
    CHECK ((kind = 'paid') = (conversion_event_id IS NULL))
);
CREATE INDEX ledger_by_affiliate ON ledger_entries (affiliate_id, occurred_at);

CREATE FUNCTION forbid_ledger_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only' USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION forbid_ledger_change();

-- Running totals per affiliate, moved in the same transaction as the ledger entries and
-- payouts they sum, one statement per batch. balance = earned - reversed - paid - pending.
CREATE TABLE affiliate_totals (
    affiliate_id     BIGINT PRIMARY KEY REFERENCES affiliates (id),
    link_clicked     BIGINT NOT NULL DEFAULT 0,
    earned           NUMERIC(14, 2) NOT NULL DEFAULT 0,
    reversed         NUMERIC(14, 2) NOT NULL DEFAULT 0,
    paid             NUMERIC(14, 2) NOT NULL DEFAULT 0,
    pending_payouts  NUMERIC(14, 2) NOT NULL DEFAULT 0,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION create_affiliate_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO affiliate_totals (affiliate_id) VALUES (NEW.id);
    RETURN NEW;
END $$;

CREATE TRIGGER affiliates_totals_row
    AFTER INSERT ON affiliates
    FOR EACH ROW EXECUTE FUNCTION create_affiliate_totals();
