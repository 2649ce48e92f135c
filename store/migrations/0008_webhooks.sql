-- Webhooks: endpoints an admin registers, and a transactional outbox of events. Each
-- event is written by a trigger in the same transaction as the change it reports (an
-- affiliate created or decided, a referral, a ledger entry, a payout), so no event is lost
-- and none is sent for a change that was rolled back. The api's sender fans events out to
-- the endpoints that want them and delivers them at least once.

CREATE TABLE webhook_endpoints (
    id                          BIGSERIAL PRIMARY KEY,
    url                         TEXT NOT NULL,
    description                 TEXT,
    -- Event types sent to it; empty: every type.
    event_types                 TEXT[] NOT NULL DEFAULT '{}',
    -- Standard Webhooks secret, whsec_ + base64 of 32 random bytes.
    secret                      TEXT NOT NULL,
    -- After a rotation, deliveries are signed with both secrets until this expires.
    previous_secret             TEXT,
    previous_secret_expires_at  TIMESTAMPTZ,
    enabled                     BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason             TEXT,
    -- Failed attempts in a row; reset by a success or by enabling the endpoint again.
    consecutive_failures        INTEGER NOT NULL DEFAULT 0,
    deleted_at                  TIMESTAMPTZ,
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The outbox. `data` is the event's object; the message sent is
-- {"type": type, "timestamp": created_at, "data": data} with webhook-id "msg_<id>".
CREATE TABLE webhook_events (
    id          BIGSERIAL PRIMARY KEY,
    type        TEXT NOT NULL,
    data        JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    fanned_out  BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX webhook_events_to_fan_out ON webhook_events (id) WHERE NOT fanned_out;

-- One event for one endpoint. The sender claims a due delivery by moving its
-- next_attempt_at past the request's timeout (a lease): if the sender dies mid-request,
-- the delivery comes due again and is sent again (at least once).
CREATE TABLE webhook_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    event_id         BIGINT NOT NULL REFERENCES webhook_events (id),
    endpoint_id      BIGINT NOT NULL REFERENCES webhook_endpoints (id),
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id DESC);

-- Every attempt, for the delivery log.
CREATE TABLE webhook_attempts (
    id            BIGSERIAL PRIMARY KEY,
    delivery_id   BIGINT NOT NULL REFERENCES webhook_deliveries (id),
    attempted_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    status_code   INTEGER,
    error         TEXT,
    duration_ms   INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, id);

-- commission.payable is announced when a commission's holding period has ended. The
-- sender moves `until` forward and announces what became payable in between; a ledger
-- entry written already past `until` is announced by its insert. Both read `until` under
-- a row lock (FOR UPDATE by the sender, FOR SHARE by the insert), so each commission is
-- announced exactly once whichever commits first.
CREATE TABLE webhook_payable_cursor (
    only_row  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    until     TIMESTAMPTZ NOT NULL
);
INSERT INTO webhook_payable_cursor (until) VALUES (now());
CREATE INDEX ledger_entries_payable_at ON ledger_entries (available_at) WHERE kind = 'earned';

CREATE FUNCTION webhook_affiliate(a affiliates) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('id', a.id, 'affiliate_code', a.referral_code, 'name', a.name,
        'email', a.email, 'status', a.status, 'tier', a.tier, 'user_id', a.user_id)
$$;

CREATE FUNCTION webhooks_affiliate_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (type, data)
    SELECT 'affiliate.created', webhook_affiliate(n) FROM new_rows n ORDER BY n.id;
    RETURN NULL;
END $$;
CREATE TRIGGER affiliates_webhook_created AFTER INSERT ON affiliates
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION webhooks_affiliate_created();

CREATE FUNCTION webhooks_affiliate_decided() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (type, data)
    SELECT 'affiliate.' || n.status,
           webhook_affiliate(n) || jsonb_build_object('note', CASE n.status
               WHEN 'approved' THEN n.approval_note ELSE n.rejection_reason END)
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.status IS DISTINCT FROM o.status AND n.status IN ('approved', 'rejected')
    ORDER BY n.id;
    RETURN NULL;
END $$;
CREATE TRIGGER affiliates_webhook_decided AFTER UPDATE ON affiliates
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks_affiliate_decided();

CREATE FUNCTION webhooks_referral_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (type, data)
    SELECT 'referral.created', jsonb_build_object('id', n.id, 'affiliate_id', n.affiliate_id,
        'user_id', n.user_id, 'email', n.email, 'invitation_method', n.invitation_method,
        'event_id', n.first_event_id, 'created_at', n.created_at)
    FROM new_rows n ORDER BY n.id;
    RETURN NULL;
END $$;
CREATE TRIGGER referrals_webhook_created AFTER INSERT ON referrals
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION webhooks_referral_created();

CREATE FUNCTION webhook_commission(e ledger_entries) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('id', e.id, 'affiliate_id', e.affiliate_id, 'amount', e.amount,
        'rate', e.rate, 'event_id', e.conversion_event_id, 'occurred_at', e.occurred_at,
        'payable_at', e.available_at)
$$;

CREATE FUNCTION webhooks_commission_entered() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    payable_until timestamptz;
BEGIN
    INSERT INTO webhook_events (type, data)
    SELECT CASE n.kind WHEN 'earned' THEN 'commission.created' ELSE 'commission.reversed' END,
           webhook_commission(n)
    FROM new_rows n WHERE n.kind IN ('earned', 'reversed') ORDER BY n.id;
    IF EXISTS (SELECT 1 FROM new_rows WHERE kind = 'earned') THEN
        SELECT until INTO payable_until FROM webhook_payable_cursor FOR SHARE;
        INSERT INTO webhook_events (type, data)
        SELECT 'commission.payable', webhook_commission(n)
        FROM new_rows n WHERE n.kind = 'earned' AND n.available_at <= payable_until ORDER BY n.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_entries_webhook AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION webhooks_commission_entered();

CREATE FUNCTION webhook_payout(p payouts) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('id', p.id, 'affiliate_id', p.affiliate_id, 'amount', p.amount,
        'status', p.status, 'method', p.method, 'created_at', p.created_at)
$$;

CREATE FUNCTION webhooks_payout_requested() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (type, data)
    SELECT 'payout.requested', webhook_payout(n) FROM new_rows n ORDER BY n.id;
    RETURN NULL;
END $$;
CREATE TRIGGER payouts_webhook_requested AFTER INSERT ON payouts
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION webhooks_payout_requested();

CREATE FUNCTION webhooks_payout_settled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (type, data)
    SELECT 'payout.' || n.status, webhook_payout(n)
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.status IS DISTINCT FROM o.status AND n.status IN ('paid', 'cancelled')
    ORDER BY n.id;
    RETURN NULL;
END $$;
CREATE TRIGGER payouts_webhook_settled AFTER UPDATE ON payouts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhooks_payout_settled();
