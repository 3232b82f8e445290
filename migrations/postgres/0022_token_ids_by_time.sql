-- Token ids made under a per-account id key give back the token's creation time (src/vault/token_ids.rs).
-- PostgreSQL keeps its primary key on the id (an A/B of time-ordered token ids showed no steady gain
-- there); the column is here so that both backends share the tokens' SQL, and lookups by the time
-- the id gives back use tokens_by_account_created as on SQLite.
ALTER TABLE account_keys ADD COLUMN wrapped_id_key BYTEA;
ALTER TABLE tokens ADD COLUMN keyed_id BOOLEAN NOT NULL DEFAULT FALSE;
