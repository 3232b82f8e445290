-- Forwarding destinations: the allow-list of where `POST /forward` may send an account's card data.
-- An entry allows a scheme, host, port and path prefix; removing one keeps the row for the audit trail.

CREATE TABLE forward_destinations (
    id          BLOB PRIMARY KEY,
    account_id  BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- The normalised URL as registered: scheme, host, optional port and the path prefix.
    url         TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    removed_at  INTEGER
) STRICT;
CREATE INDEX forward_destinations_by_account ON forward_destinations (account_id, created_at)
    WHERE removed_at IS NULL;
