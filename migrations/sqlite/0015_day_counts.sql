-- Tokens per account and UTC day (days since 1970-01-01), so that GET /tokens answers its exact
-- total_items, and finds the days a deep page lies in, without counting the tokens. Triggers keep them
-- in the transaction of every insert and delete, whatever path writes the tokens. `shard` is always 0
-- here (SQLite takes one writer at a time); PostgreSQL spreads concurrent writers over shards.
CREATE TABLE token_day_counts (
    account_id  BLOB NOT NULL,
    day         INTEGER NOT NULL,
    shard       INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (account_id, day, shard)
) STRICT, WITHOUT ROWID;

INSERT INTO token_day_counts (account_id, day, shard, n)
SELECT account_id, created_at / 86400000000, 0, COUNT(*) FROM tokens GROUP BY 1, 2;

CREATE TRIGGER tokens_counted_in AFTER INSERT ON tokens BEGIN
    INSERT INTO token_day_counts (account_id, day, shard, n)
    VALUES (NEW.account_id, NEW.created_at / 86400000000, 0, 1)
    ON CONFLICT (account_id, day, shard) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tokens_counted_out AFTER DELETE ON tokens BEGIN
    UPDATE token_day_counts SET n = n - 1
    WHERE account_id = OLD.account_id AND day = OLD.created_at / 86400000000 AND shard = 0;
END;

-- The payments' day counts and totals gain the same `shard` (always 0 here), so that both backends
-- share their SQL; SQLite cannot change a primary key in place, hence the copies.
CREATE TABLE payment_day_counts_sharded (
    account_id     BLOB NOT NULL,
    status         TEXT NOT NULL,
    currency_code  TEXT NOT NULL,
    day            INTEGER NOT NULL,
    shard          INTEGER NOT NULL,
    n              INTEGER NOT NULL,
    PRIMARY KEY (account_id, status, currency_code, day, shard)
) STRICT, WITHOUT ROWID;
INSERT INTO payment_day_counts_sharded (account_id, status, currency_code, day, shard, n)
SELECT account_id, status, currency_code, day, 0, n FROM payment_day_counts;
DROP TABLE payment_day_counts;
ALTER TABLE payment_day_counts_sharded RENAME TO payment_day_counts;
CREATE INDEX payment_day_counts_by_currency ON payment_day_counts (account_id, currency_code, day);

CREATE TABLE payment_day_totals_sharded (
    account_id  BLOB NOT NULL,
    day         INTEGER NOT NULL,
    shard       INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (account_id, day, shard)
) STRICT, WITHOUT ROWID;
INSERT INTO payment_day_totals_sharded (account_id, day, shard, n)
SELECT account_id, day, 0, n FROM payment_day_totals;
DROP TABLE payment_day_totals;
ALTER TABLE payment_day_totals_sharded RENAME TO payment_day_totals;
