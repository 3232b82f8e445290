-- Card collection in the browser. `allowed_origins`: the web origins (scheme, host, port) an account's
-- card form may be embedded in and its sessions called from; removing one keeps the row for the audit
-- trail. `token_sessions`: single-use sessions made by the merchant's server for the hosted card form.
-- Only the SHA-256 of a session id is stored, so the table alone opens no session.

CREATE TABLE allowed_origins (
    id          UUID PRIMARY KEY,
    account_id  UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    origin      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    removed_at  TIMESTAMPTZ
);
CREATE INDEX allowed_origins_by_account ON allowed_origins (account_id, created_at)
    WHERE removed_at IS NULL;
CREATE INDEX allowed_origins_by_origin ON allowed_origins (origin) WHERE removed_at IS NULL;

CREATE TABLE token_sessions (
    id_hash                BYTEA PRIMARY KEY,
    account_id             UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- `tokenize` (a new card) or `refresh` (a fresh code for an existing token).
    kind                   TEXT NOT NULL,
    -- The token whose security code a refresh session collects; the token made, once completed.
    token_id               UUID,
    bypass_identification  BOOLEAN NOT NULL,
    -- Lifetime in seconds of the token a tokenize session makes (an ephemeral token), if asked for.
    token_expiration_secs  BIGINT,
    created_at             TIMESTAMPTZ NOT NULL,
    expires_at             TIMESTAMPTZ NOT NULL,
    completed_at           TIMESTAMPTZ
);
CREATE INDEX token_sessions_by_expiry ON token_sessions (expires_at);
