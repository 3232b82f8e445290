-- Foundation schema: accounts, API keys, idempotency records, the durable job table and the audit trail.
-- Timestamps are microseconds since the Unix epoch (INTEGER) so that they sort exactly; ids are 16-byte UUIDs.

CREATE TABLE accounts (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    features    TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id             BLOB PRIMARY KEY,
    account_id     BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    label          TEXT NOT NULL,
    secret_digest  BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER
) STRICT;
CREATE INDEX api_keys_by_account ON api_keys (account_id);

-- One-off markers such as "the default account was bootstrapped".
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) STRICT;

CREATE TABLE idempotency_records (
    account_id       BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    idempotency_key  TEXT NOT NULL,
    request_hash     BLOB NOT NULL,
    created_at       INTEGER NOT NULL,
    response_status  INTEGER,
    response_body    BLOB,
    PRIMARY KEY (account_id, idempotency_key)
) STRICT;
CREATE INDEX idempotency_records_by_age ON idempotency_records (created_at);

CREATE TABLE jobs (
    id                BLOB PRIMARY KEY,
    kind              TEXT NOT NULL,
    payload           TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    run_at            INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    last_error        TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;
CREATE INDEX jobs_ready ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE status = 'running';

-- Who did what, when, with which outcome. Never card data. No foreign key: the trail outlives what it names.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    account_id  BLOB,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    outcome     TEXT NOT NULL
) STRICT;
CREATE INDEX audit_events_by_account ON audit_events (account_id, id);
