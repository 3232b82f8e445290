-- Processors of an account (their credentials sealed under the account's data key, wiped on removal),
-- the account's routing rules (one JSON document, replaced whole), and what a payment's authorizing
-- processor told us that later payments need (the network transaction id).

CREATE TABLE processors (
    id              BLOB PRIMARY KEY,
    account_id      BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    -- JSON of non-secret settings (`api_base`, `timeout_ms`).
    settings        TEXT NOT NULL,
    -- The secrets JSON, sealed (AES-256-GCM) under the account's data key with the id as AAD; NULL once
    -- removed.
    sealed_secrets  BLOB,
    created_at      INTEGER NOT NULL,
    removed_at      INTEGER
) STRICT;
-- One live processor per name and account; a removed name may be reused.
CREATE UNIQUE INDEX processors_live_name ON processors (account_id, name) WHERE removed_at IS NULL;

CREATE TABLE routing_rules (
    account_id  BLOB PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    rules       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

ALTER TABLE payments ADD COLUMN network_transaction_id TEXT;
