-- Payments on tokens, their refunds and processor transactions, and the per-day counts that answer
-- total_items and deep pages of GET /payments without scanning the payments.

CREATE TABLE payments (
    id                      BLOB PRIMARY KEY,
    account_id              BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    version                 INTEGER NOT NULL,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL,
    use_case                TEXT NOT NULL,
    status                  TEXT NOT NULL,
    currency_code           TEXT NOT NULL,
    reference               TEXT NOT NULL,
    capture_mode            TEXT NOT NULL,
    amount_requested        INTEGER NOT NULL,
    amount_authorized       INTEGER NOT NULL,
    amount_captured         INTEGER NOT NULL,
    amount_voided           INTEGER NOT NULL,
    amount_refunded         INTEGER NOT NULL,
    amount_refund_reserved  INTEGER NOT NULL,
    capture_requested       INTEGER,
    token_id                BLOB NOT NULL,
    source                  TEXT NOT NULL,
    flow_matrix_rule        TEXT NOT NULL,
    processor               TEXT NOT NULL,
    processor_reference     TEXT,
    failure_details         TEXT,
    initial_payment_id      BLOB,
    recurring_frequency     INTEGER,
    recurring_expiry        TEXT,
    metadata                TEXT
) STRICT;
-- Newest first per account, with the filter columns in the index so that a filtered page reads no rows
-- it does not return.
CREATE INDEX payments_by_account_created ON payments (account_id, created_at, id, status, currency_code);

-- Payments per account, UTC day (days since 1970-01-01), status and currency, kept in the same
-- transaction as every insert and status change. Keyed status first, so that a status filter reads only
-- its own rows; a currency-only filter has its own index; unfiltered totals have their own table.
CREATE TABLE payment_day_counts (
    account_id     BLOB NOT NULL,
    status         TEXT NOT NULL,
    currency_code  TEXT NOT NULL,
    day            INTEGER NOT NULL,
    n              INTEGER NOT NULL,
    PRIMARY KEY (account_id, status, currency_code, day)
) STRICT, WITHOUT ROWID;
CREATE INDEX payment_day_counts_by_currency ON payment_day_counts (account_id, currency_code, day);

CREATE TABLE payment_day_totals (
    account_id  BLOB NOT NULL,
    day         INTEGER NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (account_id, day)
) STRICT, WITHOUT ROWID;

CREATE TABLE refunds (
    id               BLOB PRIMARY KEY,
    payment_id       BLOB NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    account_id       BLOB NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    amount           INTEGER NOT NULL,
    currency_code    TEXT NOT NULL,
    status           TEXT NOT NULL,
    reference        TEXT,
    failure_details  TEXT
) STRICT;
CREATE INDEX refunds_by_payment ON refunds (payment_id, created_at);

CREATE TABLE payment_transactions (
    id                   BLOB PRIMARY KEY,
    payment_id           BLOB NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    created_at           INTEGER NOT NULL,
    kind                 TEXT NOT NULL,
    status               TEXT NOT NULL,
    amount               INTEGER NOT NULL,
    processor_reference  TEXT,
    message              TEXT
) STRICT;
CREATE INDEX payment_transactions_by_payment ON payment_transactions (payment_id, created_at);
