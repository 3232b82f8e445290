-- Payments on tokens, their refunds and processor transactions, and the per-day counts that answer
-- total_items and deep pages of GET /payments without scanning the payments.

CREATE TABLE payments (
    id                      UUID PRIMARY KEY,
    account_id              UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    version                 BIGINT NOT NULL,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL,
    use_case                TEXT NOT NULL,
    status                  TEXT NOT NULL,
    currency_code           TEXT NOT NULL,
    reference               TEXT NOT NULL,
    capture_mode            TEXT NOT NULL,
    amount_requested        BIGINT NOT NULL,
    amount_authorized       BIGINT NOT NULL,
    amount_captured         BIGINT NOT NULL,
    amount_voided           BIGINT NOT NULL,
    amount_refunded         BIGINT NOT NULL,
    amount_refund_reserved  BIGINT NOT NULL,
    capture_requested       BIGINT,
    token_id                UUID NOT NULL,
    source                  TEXT NOT NULL,
    flow_matrix_rule        TEXT NOT NULL,
    processor               TEXT NOT NULL,
    processor_reference     TEXT,
    failure_details         TEXT,
    initial_payment_id      UUID,
    recurring_frequency     INTEGER,
    recurring_expiry        TEXT,
    metadata                TEXT
);
-- Newest first per account, with the filter columns in the index so that a filtered page reads no rows
-- it does not return.
CREATE INDEX payments_by_account_created ON payments (account_id, created_at DESC, id DESC) INCLUDE (status, currency_code);

-- Payments per account, UTC day (days since 1970-01-01), status and currency, kept in the same
-- transaction as every insert and status change. Keyed status first, so that a status filter reads only
-- its own rows; a currency-only filter has its own index; unfiltered totals have their own table.
CREATE TABLE payment_day_counts (
    account_id     UUID NOT NULL,
    status         TEXT NOT NULL,
    currency_code  TEXT NOT NULL,
    day            BIGINT NOT NULL,
    n              BIGINT NOT NULL,
    PRIMARY KEY (account_id, status, currency_code, day)
);
CREATE INDEX payment_day_counts_by_currency ON payment_day_counts (account_id, currency_code, day);

CREATE TABLE payment_day_totals (
    account_id  UUID NOT NULL,
    day         BIGINT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (account_id, day)
);

CREATE TABLE refunds (
    id               UUID PRIMARY KEY,
    payment_id       UUID NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    account_id       UUID NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    amount           BIGINT NOT NULL,
    currency_code    TEXT NOT NULL,
    status           TEXT NOT NULL,
    reference        TEXT,
    failure_details  TEXT
);
CREATE INDEX refunds_by_payment ON refunds (payment_id, created_at);

CREATE TABLE payment_transactions (
    id                   UUID PRIMARY KEY,
    payment_id           UUID NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    created_at           TIMESTAMPTZ NOT NULL,
    kind                 TEXT NOT NULL,
    status               TEXT NOT NULL,
    amount               BIGINT NOT NULL,
    processor_reference  TEXT,
    message              TEXT
);
CREATE INDEX payment_transactions_by_payment ON payment_transactions (payment_id, created_at);
