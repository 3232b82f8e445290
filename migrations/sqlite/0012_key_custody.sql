-- Key custody (issue 14): an account's data key mid-rotation keeps its previous version until every
-- sealed value is under the new one; admin key operations take a lock row besides a file lock.

ALTER TABLE account_keys ADD COLUMN previous_dek_version INTEGER;
ALTER TABLE account_keys ADD COLUMN previous_wrapped_dek BLOB;
CREATE INDEX account_keys_rotating ON account_keys (account_id) WHERE previous_dek_version IS NOT NULL;

CREATE TABLE key_locks (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
