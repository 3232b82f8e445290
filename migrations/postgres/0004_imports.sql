-- Token imports from Stripe: the import with its counters and resume position, which payment methods it
-- has already counted (so that a retried or resumed forward is never counted twice), and its failures.

CREATE TABLE token_imports (
    id                 UUID PRIMARY KEY,
    account_id         UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    provider           TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('preparing', 'running', 'finished', 'aborted')),
    -- The Stripe key and the ingest key, sealed under the account's data key; destroyed when the import ends.
    sealed_api_key     BYTEA,
    sealed_ingest_key  BYTEA,
    -- SHA-256 of the ingest key's secret, checked by the ingest endpoint; NULL once the import ended.
    ingest_key_digest  BYTEA,
    -- JSON: where the job resumes.
    position           TEXT,
    attempts           BIGINT NOT NULL DEFAULT 0,
    successes          BIGINT NOT NULL DEFAULT 0,
    failures           BIGINT NOT NULL DEFAULT 0,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    finished_at        TIMESTAMPTZ
);
CREATE INDEX token_imports_by_account ON token_imports (account_id, created_at);
-- One import may be preparing or running per account.
CREATE UNIQUE INDEX token_imports_one_active ON token_imports (account_id)
    WHERE status IN ('preparing', 'running');

CREATE TABLE token_import_items (
    import_id       UUID NOT NULL REFERENCES token_imports (id) ON DELETE CASCADE,
    payment_method  TEXT NOT NULL,
    succeeded       BOOLEAN NOT NULL,
    PRIMARY KEY (import_id, payment_method)
);

-- Never card data: reason and a JSON context of ids, statuses and Stripe's error code or message.
CREATE TABLE token_import_failures (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    import_id   UUID NOT NULL REFERENCES token_imports (id) ON DELETE CASCADE,
    reason      TEXT NOT NULL,
    context     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX token_import_failures_by_import ON token_import_failures (import_id, id);
