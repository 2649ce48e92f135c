-- Affiliates (promoters): one row whether created by an admin (seed 004) or lazily for a
-- product user on GET /referrals/promoter (seed 000).

CREATE TABLE countries (
    id    INTEGER PRIMARY KEY,
    iso2  CHAR(2) NOT NULL UNIQUE,
    name  TEXT NOT NULL
);

CREATE TABLE states (
    id          INTEGER PRIMARY KEY,
    country_id  INTEGER NOT NULL REFERENCES countries (id),
    code        TEXT NOT NULL,
    name        TEXT NOT NULL,
    UNIQUE (country_id, code)
);

CREATE TABLE affiliates (
    id                      BIGSERIAL PRIMARY KEY,
    -- The product's user id (promoter API); NULL for an affiliate an admin created.
    user_id                 BIGINT UNIQUE,
    -- The ?ref= token of seed 000 and the affiliate_code of seed 004.
    referral_code           TEXT NOT NULL UNIQUE CHECK (referral_code ~ '^[A-Z0-9_]{1,64}$'),
    name                    TEXT,
    email                   TEXT,
    phone                   TEXT,
    website                 TEXT,
    address_street          TEXT,
    address_city            TEXT,
    address_state_id        INTEGER REFERENCES states (id),
    address_country_id      INTEGER REFERENCES countries (id),
    address_zip             TEXT,
    marketing_channels      TEXT[] NOT NULL DEFAULT '{}',
    audience_size           INTEGER CHECK (audience_size >= 0),
    experience_level        TEXT CHECK (experience_level IN ('beginner', 'intermediate', 'advanced', 'expert')),
    status                  TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    tier                    SMALLINT NOT NULL DEFAULT 1 CHECK (tier BETWEEN 1 AND 5),
    -- Percent of each purchase paid as commission.
    commission_rate         NUMERIC(5, 2) NOT NULL CHECK (commission_rate >= 0 AND commission_rate <= 100),
    min_withdrawal_balance  NUMERIC(12, 2) NOT NULL CHECK (min_withdrawal_balance >= 0),
    -- Overrides the global landing URL for this affiliate's links.
    landing_url             TEXT,
    approved_at             TIMESTAMPTZ,
    approved_by             TEXT,
    approval_note           TEXT,
    rejected_at             TIMESTAMPTZ,
    rejected_by             TEXT,
    rejection_reason        TEXT,
    active                  BOOLEAN NOT NULL DEFAULT TRUE,
    deleted_at              TIMESTAMPTZ,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- An email belongs to one live affiliate; a deleted affiliate frees its email.
CREATE UNIQUE INDEX affiliates_email_key ON affiliates (lower(email)) WHERE deleted_at IS NULL;
CREATE INDEX affiliates_listing ON affiliates (created_at DESC, id DESC) WHERE deleted_at IS NULL;

-- Every rate an affiliate ever had, so a purchase earns the rate in force when it happened,
-- even when it is processed (or replayed) after a change.
CREATE TABLE commission_rate_history (
    affiliate_id  BIGINT NOT NULL REFERENCES affiliates (id),
    valid_from    TIMESTAMPTZ NOT NULL,
    rate          NUMERIC(5, 2) NOT NULL,
    PRIMARY KEY (affiliate_id, valid_from)
);

CREATE FUNCTION record_commission_rate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.commission_rate IS DISTINCT FROM OLD.commission_rate THEN
        INSERT INTO commission_rate_history (affiliate_id, valid_from, rate)
        -- The first rate holds for anything that happened before the affiliate existed.
        VALUES (NEW.id, CASE WHEN TG_OP = 'INSERT' THEN 'epoch'::timestamptz ELSE now() END, NEW.commission_rate)
        ON CONFLICT (affiliate_id, valid_from) DO UPDATE SET rate = EXCLUDED.rate;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER affiliates_rate_history
    AFTER INSERT OR UPDATE OF commission_rate ON affiliates
    FOR EACH ROW EXECUTE FUNCTION record_commission_rate();

-- Where an affiliate is paid. One active method at a time.
CREATE TABLE payout_methods (
    id            BIGSERIAL PRIMARY KEY,
    affiliate_id  BIGINT NOT NULL REFERENCES affiliates (id),
    method        TEXT NOT NULL CHECK (method IN ('wise', 'crypto', 'paypal', 'bank')),
    address       TEXT NOT NULL,
    verified      BOOLEAN NOT NULL DEFAULT FALSE,
    is_active     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (affiliate_id, method)
);
CREATE UNIQUE INDEX payout_methods_one_active ON payout_methods (affiliate_id) WHERE is_active;
