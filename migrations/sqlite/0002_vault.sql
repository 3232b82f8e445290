-- The vault: per-account data keys wrapped by the master key, and tokens with their sealed card data.

CREATE TABLE account_keys (
    account_id               BLOB PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    dek_version              INTEGER NOT NULL,
    master_version           INTEGER NOT NULL,
    wrapped_dek              BLOB NOT NULL,
    wrapped_fingerprint_key  BLOB NOT NULL,
    created_at               INTEGER NOT NULL,
    rewrapped_at             INTEGER
) STRICT;
CREATE INDEX account_keys_by_master_version ON account_keys (master_version);

-- Only the sealed blob holds the card number; the other columns are what the API shows. The keyed
-- fingerprint gets its index with the first query that looks tokens up by it.
CREATE TABLE tokens (
    id                            BLOB PRIMARY KEY,
    account_id                    BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at                    INTEGER NOT NULL,
    expiry_month                  INTEGER NOT NULL,
    expiry_year                   INTEGER NOT NULL,
    cardholder_name               TEXT,
    issuer_identification_number  TEXT NOT NULL,
    masked_account_number         TEXT NOT NULL,
    account_number_last_four      TEXT NOT NULL,
    account_number_length         INTEGER NOT NULL,
    scheme                        TEXT NOT NULL,
    status                        TEXT NOT NULL,
    fingerprint                   BLOB NOT NULL,
    sealed_card                   BLOB NOT NULL,
    business_key                  TEXT,
    import_provider               TEXT,
    expires_at                    INTEGER
) STRICT;
CREATE INDEX tokens_by_account_created ON tokens (account_id, created_at, id);
CREATE UNIQUE INDEX tokens_by_business_key ON tokens (account_id, import_provider, business_key)
    WHERE business_key IS NOT NULL;
CREATE INDEX tokens_expiring ON tokens (expires_at) WHERE expires_at IS NOT NULL;
