-- Tokens per account and UTC day (days since 1970-01-01), so that GET /tokens answers its exact
-- total_items, and finds the days a deep page lies in, without counting the tokens. Statement-level
-- triggers keep them in the transaction of every insert and delete, one row change per account and day
-- per statement however many tokens it writes. Each database session adds to a shard of its own
-- (its backend pid modulo 16), so that concurrent writers of one account do not queue on one row lock;
-- readers add the shards up. No foreign key: the counts of an account being deleted are written by
-- the cascade that deletes its tokens.
CREATE TABLE token_day_counts (
    account_id  UUID NOT NULL,
    day         BIGINT NOT NULL,
    shard       INTEGER NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (account_id, day, shard)
);

INSERT INTO token_day_counts (account_id, day, shard, n)
SELECT account_id, floor(extract(epoch FROM created_at) / 86400)::BIGINT, 0, COUNT(*)
FROM tokens GROUP BY 1, 2;

CREATE FUNCTION tokens_count_in() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO token_day_counts (account_id, day, shard, n)
    SELECT account_id, floor(extract(epoch FROM created_at) / 86400)::BIGINT, pg_backend_pid() % 16, COUNT(*)
    FROM new_tokens GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (account_id, day, shard) DO UPDATE SET n = token_day_counts.n + excluded.n;
    RETURN NULL;
END $$;

CREATE FUNCTION tokens_count_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO token_day_counts (account_id, day, shard, n)
    SELECT account_id, floor(extract(epoch FROM created_at) / 86400)::BIGINT, pg_backend_pid() % 16, -COUNT(*)
    FROM old_tokens GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (account_id, day, shard) DO UPDATE SET n = token_day_counts.n + excluded.n;
    RETURN NULL;
END $$;

CREATE TRIGGER tokens_counted_in AFTER INSERT ON tokens
    REFERENCING NEW TABLE AS new_tokens FOR EACH STATEMENT EXECUTE FUNCTION tokens_count_in();
CREATE TRIGGER tokens_counted_out AFTER DELETE ON tokens
    REFERENCING OLD TABLE AS old_tokens FOR EACH STATEMENT EXECUTE FUNCTION tokens_count_out();

-- The payments' day counts and totals are sharded the same way: each commit adds to the shard of its
-- session (the payment writer commits on several connections at once), and readers add them up.
ALTER TABLE payment_day_counts ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payment_day_counts DROP CONSTRAINT payment_day_counts_pkey;
ALTER TABLE payment_day_counts ADD PRIMARY KEY (account_id, status, currency_code, day, shard);
ALTER TABLE payment_day_totals ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payment_day_totals DROP CONSTRAINT payment_day_totals_pkey;
ALTER TABLE payment_day_totals ADD PRIMARY KEY (account_id, day, shard);
