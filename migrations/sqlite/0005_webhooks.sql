-- Webhooks: per-account subscriptions (URL, event types, signing key sealed under the account's data
-- key) and the outbox of their deliveries, written in the transaction of the change each event reports.

CREATE TABLE webhooks (
    id          BLOB PRIMARY KEY,
    account_id  BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    -- Comma list of event types, e.g. `token.created,payment.captured`.
    events      TEXT NOT NULL,
    -- The signing key, sealed (AES-256-GCM) under the account's data key; never stored in clear.
    sealed_key  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    -- Set by `webhook remove`: the row stays so that its deliveries can be cancelled and audited.
    removed_at  INTEGER
) STRICT;
CREATE INDEX webhooks_by_account ON webhooks (account_id) WHERE removed_at IS NULL;

-- One row per event and webhook. `seq` grows in commit order for the changes of one object (they are
-- serialised by the object's row), so delivering a (webhook, object)'s rows by `seq` follows the order
-- of its changes.
CREATE TABLE webhook_deliveries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               BLOB NOT NULL UNIQUE,
    event_id         BLOB NOT NULL,
    webhook_id       BLOB NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    account_id       BLOB NOT NULL,
    object_id        BLOB NOT NULL,
    event_type       TEXT NOT NULL,
    -- The exact bytes sent and signed: only what the API returns (masked numbers), never card data.
    body             TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    finished_at      INTEGER
) STRICT;
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, object_id, seq)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, seq);
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at) WHERE finished_at IS NOT NULL;
