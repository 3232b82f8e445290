//! Storage: one trait whose methods are named by intent and do one query each (multi-step flows live in
//! the domain layer). SQLite and PostgreSQL implement it; the backend is chosen from the database URL.

pub mod destinations;
pub mod imports;
mod payment_records;
#[cfg_attr(not(feature = "postgres"), path = "postgres_missing.rs")]
mod postgres;
mod sql;
#[cfg_attr(not(feature = "sqlite"), path = "sqlite_missing.rs")]
mod sqlite;
pub mod types;
mod webhook_records;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

pub use destinations::{DestinationRecord, DestinationStore};
pub use imports::{ImportFailure, ImportOutcome, ImportRecord, ImportStore};
pub use payment_records::*;
pub use types::*;
pub use webhook_records::*;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness or foreign-key constraint refused the write; carries the constraint's name.
    #[error("constraint `{0}` refused the write")]
    Constraint(String),
    /// The database could not be reached or did not answer in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A row did not decode into its record.
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) => match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation
                | sqlx::error::ErrorKind::ForeignKeyViolation => {
                    StoreError::Constraint(db.constraint().unwrap_or("unnamed").to_owned())
                }
                _ => StoreError::Other(db.message().to_owned()),
            },
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(err.to_string()),
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt(err.to_string()),
            _ => StoreError::Other(err.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError::Other(format!("migration failed: {err}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Everything Strongroom keeps. Every method is one statement (or one short transaction where a
/// marker and its rows must land together).
#[async_trait]
pub trait Store: ImportStore + DestinationStore + Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Applies the embedded migrations of this backend.
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;
    async fn close(&self);

    // Accounts and keys.
    async fn insert_account(&self, account: &Account) -> StoreResult<()>;
    async fn get_account(&self, id: Uuid) -> StoreResult<Option<Account>>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    /// Creates `account` with `key` only if the database has never had an account bootstrapped and holds
    /// no account; returns whether it did. Safe when several nodes start at once.
    async fn bootstrap_default_account(
        &self,
        account: &Account,
        key: &ApiKeyRecord,
    ) -> StoreResult<bool>;
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;
    async fn get_api_key(&self, id: Uuid) -> StoreResult<Option<ApiKeyRecord>>;
    async fn get_key_with_account(&self, key_id: Uuid) -> StoreResult<Option<KeyWithAccount>>;
    async fn list_api_keys(&self, account_id: Uuid) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Marks the key revoked; false if it does not exist or was revoked already.
    async fn revoke_api_key(&self, id: Uuid, at: Ts) -> StoreResult<bool>;

    // Idempotency records.
    /// Claims `(account, key)` for a new request; false if a record exists.
    async fn insert_idempotency_claim(
        &self,
        account_id: Uuid,
        key: &str,
        request_hash: &[u8],
        at: Ts,
    ) -> StoreResult<bool>;
    async fn get_idempotency_record(
        &self,
        account_id: Uuid,
        key: &str,
    ) -> StoreResult<Option<IdempotencyRecord>>;
    /// Re-claims a record that expired (created before `expired_before`) or whose request was abandoned
    /// in flight (no response and created before `abandoned_before`).
    async fn reclaim_idempotency_record(
        &self,
        account_id: Uuid,
        key: &str,
        request_hash: &[u8],
        at: Ts,
        expired_before: Ts,
        abandoned_before: Ts,
    ) -> StoreResult<bool>;
    /// Records the answer of the request that claimed the key at `claimed_at` (not of a later claimant).
    async fn save_idempotent_response(
        &self,
        account_id: Uuid,
        key: &str,
        claimed_at: Ts,
        status: i32,
        body: &[u8],
    ) -> StoreResult<()>;
    /// Releases the key, if the claim made at `claimed_at` still holds it.
    async fn delete_idempotency_record(
        &self,
        account_id: Uuid,
        key: &str,
        claimed_at: Ts,
    ) -> StoreResult<()>;
    async fn purge_idempotency_records(&self, created_before: Ts) -> StoreResult<u64>;

    // The durable job table.
    async fn enqueue_job(&self, job: &NewJob) -> StoreResult<()>;
    /// Leases the oldest runnable job of one of `kinds`: queued and due, or running with an expired lease.
    async fn claim_next_job(
        &self,
        kinds: &[&str],
        owner: &str,
        now: Ts,
        lease_until: Ts,
    ) -> StoreResult<Option<Job>>;
    /// Extends a lease still held by `owner`; false if it was lost.
    async fn renew_job_lease(
        &self,
        id: Uuid,
        owner: &str,
        lease_until: Ts,
        now: Ts,
    ) -> StoreResult<bool>;
    /// Marks done a job whose lease `owner` still holds; false if the lease was lost.
    async fn complete_job(&self, id: Uuid, owner: &str, now: Ts) -> StoreResult<bool>;
    /// Puts a leased job back in the queue to run at `run_at`, recording why.
    async fn reschedule_job(
        &self,
        id: Uuid,
        owner: &str,
        run_at: Ts,
        error: &str,
        now: Ts,
    ) -> StoreResult<bool>;
    /// Gives up on a leased job for good.
    async fn fail_job(&self, id: Uuid, owner: &str, error: &str, now: Ts) -> StoreResult<bool>;
    async fn get_job(&self, id: Uuid) -> StoreResult<Option<Job>>;
    /// Deletes jobs that ended (done or failed) before `before`.
    async fn purge_finished_jobs(&self, before: Ts) -> StoreResult<u64>;

    // Vault keys.
    async fn get_account_keys(&self, account_id: Uuid) -> StoreResult<Option<AccountKeysRecord>>;
    /// Stores an account's first keys; false if another node stored them first.
    async fn insert_account_keys(&self, keys: &AccountKeysRecord) -> StoreResult<bool>;
    async fn list_account_keys_wrapped_before(
        &self,
        master_version: i32,
        limit: i64,
    ) -> StoreResult<Vec<AccountKeysRecord>>;
    /// Replaces the wrapping of an account's keys if they are still wrapped by `old_master_version`.
    async fn rewrap_account_keys(
        &self,
        keys: &AccountKeysRecord,
        old_master_version: i32,
    ) -> StoreResult<bool>;

    // Tokens.
    /// Inserts tokens and their audit events in one transaction (one durable commit for the batch).
    async fn insert_tokens(&self, tokens: &[(TokenRecord, AuditEvent)]) -> StoreResult<()>;
    async fn get_token(&self, account_id: Uuid, id: Uuid) -> StoreResult<Option<TokenRecord>>;
    async fn list_tokens(&self, query: &TokenQuery) -> StoreResult<Vec<TokenRecord>>;
    async fn count_tokens(&self, query: &TokenQuery) -> StoreResult<u64>;
    /// Deletes the token row with its sealed card; false if there was none.
    async fn delete_token(&self, account_id: Uuid, id: Uuid) -> StoreResult<bool>;
    async fn delete_expired_tokens(&self, now: Ts) -> StoreResult<u64>;

    // Payments.
    /// Inserts a new payment with its day count and, if given, its job.
    async fn insert_payment(
        &self,
        payment: &PaymentRecord,
        job: Option<&NewJob>,
    ) -> StoreResult<()>;
    /// Inserts many payments (with their day counts) in one transaction, for seeding.
    async fn insert_payments(&self, payments: &[PaymentRecord]) -> StoreResult<()>;
    async fn get_payment(&self, account_id: Uuid, id: Uuid) -> StoreResult<Option<PaymentRecord>>;
    /// Applies a change atomically; false if the payment moved on since it was read.
    async fn apply_payment_change(&self, change: &PaymentChange) -> StoreResult<bool>;
    /// Matching payments per UTC day, newest day first.
    async fn payment_day_counts(&self, filter: &PaymentFilter) -> StoreResult<Vec<(i64, i64)>>;
    /// Matching payments created in `[lower, upper)`, newest first (ties by id), skipping `offset`.
    async fn list_payments_between(
        &self,
        filter: &PaymentFilter,
        lower: Option<Ts>,
        upper: Option<Ts>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<PaymentRecord>>;
    async fn get_refund(&self, account_id: Uuid, id: Uuid) -> StoreResult<Option<RefundRecord>>;
    async fn list_refunds(&self, payment_id: Uuid) -> StoreResult<Vec<RefundRecord>>;
    async fn list_transactions(&self, payment_id: Uuid) -> StoreResult<Vec<TransactionRecord>>;

    // Audit trail.
    async fn insert_audit_event(&self, event: &AuditEvent) -> StoreResult<()>;
    async fn list_audit_events(&self, account_id: Uuid, limit: i64)
        -> StoreResult<Vec<AuditEvent>>;

    // Webhooks. The `*_with_outbox` methods make the same change as their namesakes and write the
    // outbox rows (deliveries and their jobs) in the same transaction; they are only called when some
    // webhook subscribes to the event, so that accounts without one pay nothing.
    async fn insert_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()>;
    async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<WebhookRecord>>;
    /// Webhooks not removed, of one account or of all, oldest first.
    async fn list_webhooks(&self, account_id: Option<Uuid>) -> StoreResult<Vec<WebhookRecord>>;
    /// Marks the webhook removed; false if it does not exist or was removed already.
    async fn remove_webhook(&self, id: Uuid, at: Ts) -> StoreResult<bool>;
    async fn insert_tokens_with_outbox(
        &self,
        tokens: &[(TokenRecord, AuditEvent)],
        outbox: &[OutboxRecord],
    ) -> StoreResult<()>;
    /// Deletes the token and writes `outbox` if it existed; false (and nothing written) if not.
    async fn delete_token_with_outbox(
        &self,
        account_id: Uuid,
        id: Uuid,
        outbox: &[OutboxRecord],
    ) -> StoreResult<bool>;
    /// Records a change of a token's state that is not a column (its security code was dropped): locks
    /// the token's row, so that its events are ordered with its deletion, and writes `audit` and
    /// `outbox`; false (and nothing written) if there is no such token.
    async fn touch_token_with_outbox(
        &self,
        account_id: Uuid,
        id: Uuid,
        audit: &AuditEvent,
        outbox: &[OutboxRecord],
    ) -> StoreResult<bool>;
    async fn insert_payment_with_outbox(
        &self,
        payment: &PaymentRecord,
        job: Option<&NewJob>,
        outbox: &[OutboxRecord],
    ) -> StoreResult<()>;
    async fn get_webhook_delivery(&self, id: Uuid) -> StoreResult<Option<WebhookDelivery>>;
    /// The earliest still-pending delivery of the same webhook and object queued before `seq`, if any.
    async fn pending_delivery_before(
        &self,
        webhook_id: Uuid,
        object_id: Uuid,
        seq: i64,
    ) -> StoreResult<Option<WebhookDelivery>>;
    /// Records a failed attempt of a pending delivery and when to try again.
    async fn record_delivery_attempt(
        &self,
        id: Uuid,
        attempts: i32,
        next_attempt_at: Ts,
        error: &str,
    ) -> StoreResult<bool>;
    /// Ends a pending delivery as `delivered`, `failed` or `cancelled`.
    async fn finish_webhook_delivery(
        &self,
        id: Uuid,
        status: &str,
        attempts: i32,
        error: Option<&str>,
        at: Ts,
    ) -> StoreResult<bool>;
    /// A webhook's deliveries, newest first.
    async fn list_webhook_deliveries(
        &self,
        webhook_id: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>>;
    /// Deletes deliveries that ended before `before`.
    async fn purge_webhook_deliveries(&self, before: Ts) -> StoreResult<u64>;
}

pub type DynStore = Arc<dyn Store>;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "STRONGROOM_DATABASE_URL: unsupported scheme `{0}`; use `sqlite://PATH` or `postgres://USER@HOST/DB`"
    )]
    UnknownScheme(String),
    #[error("STRONGROOM_DATABASE_URL: this strongroom binary was built without {0} support (cargo feature `{1}`)")]
    NotCompiled(&'static str, &'static str),
    #[error("STRONGROOM_DATABASE_URL: {0}")]
    Invalid(String),
    #[error("could not open the database: {0}")]
    Connect(String),
}

/// Opens the store named by `url` (without running migrations).
pub async fn open(url: &str, max_connections: u32) -> Result<DynStore, OpenError> {
    let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
    match scheme {
        "sqlite" => sqlite::open(url, max_connections).await,
        "postgres" | "postgresql" => postgres::open(url, max_connections).await,
        _ => Err(OpenError::UnknownScheme(scheme.to_owned())),
    }
}
