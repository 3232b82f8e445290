//! Storage: one sub-trait per resource, each in its own file with its SQL, and `Store` over them all.
//! Methods are named by intent and do one query each (multi-step flows live in the domain layer).
//! SQLite and PostgreSQL implement it (`SqlBackend`); the backend is chosen from the database URL.

mod accounts;
mod audit;
mod backend;
pub mod destinations;
mod idempotency;
pub mod imports;
mod jobs;
mod keys;
mod page_json;
mod payment_records;
mod payments;
#[cfg_attr(not(feature = "postgres"), path = "postgres_missing.rs")]
mod postgres;
pub mod processors;
pub mod sessions;
#[cfg_attr(not(feature = "sqlite"), path = "sqlite_missing.rs")]
mod sqlite;
mod tokens;
pub mod types;
mod vault_keys;
mod webhook_records;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use accounts::{Account, AccountStore, Feature, FeatureSet};
pub use audit::{set_node_name, Action, AuditEvent, AuditFilter, AuditOrigin, AuditStore};
pub use destinations::{DestinationRecord, DestinationStore};
pub use idempotency::{IdempotencyRecord, IdempotencyStore};
pub use imports::{ImportFailure, ImportOutcome, ImportRecord, ImportStore};
pub use jobs::{Fence, Job, JobLease, JobStatus, JobStore, NewJob};
pub use keys::{ApiKeyRecord, KeyStore, KeyWithAccount};
pub use payment_records::{
    day_of, start_of_day, PaymentChange, PaymentFilter, PaymentListing, PaymentRecord,
    PaymentWrite, RefundRecord, TransactionRecord,
};
pub use payments::PaymentStore;
pub use processors::{ProcessorRecord, ProcessorStore};
pub use sessions::{OriginRecord, SessionRecord, SessionStore};
pub use tokens::{TokenListing, TokenQuery, TokenRecord, TokenStore};
pub use types::Ts;
pub use vault_keys::{AccountKeysRecord, Reseal, SealedColumn, VaultKeyStore};
pub use webhook_records::{
    CarriedEvent, CarriedEvents, DeliveryOutcomes, DeliveryStatus, EarlierPending,
    FinishedDelivery, OutboxRecord, RetriedDelivery, WebhookDelivery, WebhookRecord,
    CARRIED_EVENTS_JOB, PAYLOAD_EVENTS_JOB,
};
pub use webhooks::WebhookStore;

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
            sqlx::Error::Database(db) if db.code().as_deref().is_some_and(is_out_of_space) => {
                StoreError::Unavailable(format!("no space or I/O error: {}", db.message()))
            }
            sqlx::Error::Database(db) if db.code().as_deref().is_some_and(is_session_lost) => {
                StoreError::Unavailable(format!("the database ended the session: {}", db.message()))
            }
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

/// Whether a database error code says the disk is full or failed, which passes (space freed, a disk
/// replaced): such a write is refused with 503 and retried, not answered 500. PostgreSQL's SQLSTATE
/// `53100` (disk_full) and `58030` (io_error); SQLite's result codes `SQLITE_FULL` (13) and
/// `SQLITE_IOERR` (10) with their extended codes (the primary code is the low byte).
fn is_out_of_space(code: &str) -> bool {
    const SQLITE_IOERR: u32 = 10;
    const SQLITE_FULL: u32 = 13;
    if matches!(code, "53100" | "58030") {
        return true;
    }
    // PostgreSQL SQLSTATEs are five characters; SQLite's codes are numbers of at most four digits.
    code.len() < 5
        && code
            .parse::<u32>()
            .is_ok_and(|c| matches!(c & 0xff, SQLITE_IOERR | SQLITE_FULL))
}

/// Whether a PostgreSQL SQLSTATE says the session is over rather than the statement wrong: class 57
/// (the server shutting down, restarting, or an administrator ending the session) and class 08
/// (connection exceptions). Answered 503 as a connection that broke is, and for the same reason: the
/// request may be retried, and the next statement runs on another connection.
fn is_session_lost(code: &str) -> bool {
    code.len() == 5 && (code.starts_with("57P") || code.starts_with("08"))
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

impl Backend {
    /// The backend's name as metrics and admin output spell it.
    pub fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Everything Strongroom keeps, one sub-trait per resource. Every method is one statement (or one short
/// transaction where a change and the rows that record it must land together). The sub-traits' methods
/// are callable on a `DynStore` without importing them: a trait object carries its supertraits' methods.
#[async_trait]
pub trait Store:
    AccountStore
    + KeyStore
    + IdempotencyStore
    + JobStore
    + VaultKeyStore
    + TokenStore
    + PaymentStore
    + AuditStore
    + WebhookStore
    + ImportStore
    + ProcessorStore
    + DestinationStore
    + SessionStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> Backend;
    /// Applies the embedded migrations of this backend.
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;
    /// After deletes: SQLite checkpoints its WAL and truncates it, so that deleted pages (overwritten in
    /// the database by `secure_delete`) do not linger in the log. Nothing on PostgreSQL (see the README).
    async fn checkpoint_after_delete(&self) -> StoreResult<()>;
    async fn close(&self);
    /// The pool's connections: (idle, in use).
    fn pool_connections(&self) -> (u32, u32);
    /// Queued jobs by kind: (kind, how many, earliest `run_at`), for the metrics.
    async fn job_queue_stats(&self) -> StoreResult<Vec<(String, i64, Option<Ts>)>>;
    /// Imports preparing or running, over all accounts.
    async fn count_active_imports(&self) -> StoreResult<i64>;
    /// Writes a consistent copy of the whole database to the new file `path` while it serves (SQLite:
    /// `VACUUM INTO`); a backend that is backed up with its own tools answers `Unsupported`.
    async fn backup_into(&self, path: &std::path::Path) -> StoreResult<()>;
    /// Refreshes the planner statistics of tables that changed by more rows than they held when those
    /// were last gathered, answering which (housekeeping calls it every few seconds). PostgreSQL keeps a
    /// prepared statement's generic plan until the statistics of its tables change; where autovacuum
    /// is off or has not come round yet (its first minute on a new database), a plan made while a table
    /// was nearly empty stays: the payment batches' UPDATE went on scanning the whole payments table
    /// instead of probing its key, and an import's lookup scanned every token of the account. SQLite
    /// plans from its schema alone: nothing to do there.
    async fn refresh_stale_statistics(&self) -> StoreResult<Vec<String>>;
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
pub async fn open(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<DynStore, OpenError> {
    let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
    match scheme {
        "sqlite" => sqlite::open(url, max_connections, acquire_timeout).await,
        "postgres" | "postgresql" => postgres::open(url, max_connections, acquire_timeout).await,
        _ => Err(OpenError::UnknownScheme(scheme.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::{is_out_of_space, is_session_lost};

    #[test]
    fn a_full_disk_is_told_apart_from_other_errors() {
        // SQLITE_FULL, SQLITE_IOERR, SQLITE_IOERR_WRITE, SQLITE_IOERR_FSYNC; PostgreSQL disk_full, io_error.
        for code in ["13", "10", "778", "1034", "53100", "58030"] {
            assert!(is_out_of_space(code), "{code}");
        }
        // SQLITE_CONSTRAINT_UNIQUE, SQLITE_BUSY; PostgreSQL unique_violation, out_of_memory.
        for code in ["2067", "5", "23505", "53200", "10000"] {
            assert!(!is_out_of_space(code), "{code}");
        }
    }

    #[test]
    fn a_session_the_database_ended_is_told_apart_from_a_failed_statement() {
        // admin_shutdown, crash_shutdown, cannot_connect_now, connection_failure, connection_exception.
        for code in ["57P01", "57P02", "57P03", "08006", "08000"] {
            assert!(is_session_lost(code), "{code}");
        }
        // query_canceled, unique_violation, serialization_failure; SQLite's SQLITE_BUSY and a code of 8.
        for code in ["57014", "23505", "40001", "5", "8", "0800"] {
            assert!(!is_session_lost(code), "{code}");
        }
    }
}
