-- Payout batches: an admin gathers the payable balances of one payment method into a
-- batch, exports it for the payment provider (PayPal Payouts, Wise), and marks each
-- line paid or failed. A line is a payout: its money moves through the ledger as any
-- payout's does (pending → a `paid` entry, or back to the balance when it fails).

CREATE TABLE payout_batches (
    id          BIGSERIAL PRIMARY KEY,
    method      TEXT NOT NULL CHECK (method IN ('wise', 'crypto', 'paypal', 'bank')),
    -- ISO 4217; every line of a batch is paid in it.
    currency    TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by  TEXT NOT NULL
);

ALTER TABLE payouts
    ADD COLUMN batch_id BIGINT REFERENCES payout_batches (id),
    ADD COLUMN failed_at TIMESTAMPTZ,
    ADD COLUMN failed_by TEXT,
    ADD COLUMN failure_reason TEXT;
CREATE INDEX payouts_by_batch ON payouts (batch_id, id) WHERE batch_id IS NOT NULL;

-- A payment the provider could not make: the amount returns to the balance.
ALTER TABLE payouts DROP CONSTRAINT payouts_status_check;
ALTER TABLE payouts ADD CHECK (status IN ('pending', 'review', 'paid', 'cancelled', 'failed'));

CREATE OR REPLACE FUNCTION webhook_payout(p payouts) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('id', p.id, 'affiliate_id', p.affiliate_id, 'amount', p.amount,
        'status', p.status, 'method', p.method, 'created_at', p.created_at,
        'batch_id', p.batch_id, 'failure_reason', p.failure_reason)
$$;

CREATE OR REPLACE FUNCTION webhooks_payout_settled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_events (type, data)
    SELECT 'payout.' || n.status, webhook_payout(n)
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.status IS DISTINCT FROM o.status AND n.status IN ('paid', 'cancelled', 'failed')
    ORDER BY n.id;
    RETURN NULL;
END $$;
