//! The embedded default: one SQLite file in WAL mode with `synchronous=FULL`, so that an answered write
//! survives a kill -9 or a power cut.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Decode, Encode, Sqlite, SqlitePool, Type};
use uuid::Uuid;

use super::sql::impl_store;
use super::{
    Account, AccountKeysRecord, ApiKeyRecord, AuditEvent, IdempotencyRecord, Job, KeyWithAccount,
    NewJob, StoreResult, TokenQuery, TokenRecord, Ts,
};
use super::{Backend, DynStore, OpenError};

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
}

pub async fn open(url: &str, max_connections: u32) -> Result<DynStore, OpenError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| OpenError::Invalid(e.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| OpenError::Connect(e.to_string()))?;
    Ok(Arc::new(SqliteStore { pool }))
}

impl_store!(
    SqliteStore,
    db = sqlx::Sqlite,
    backend = Backend::Sqlite,
    claim_lock = ""
);

// `Ts` is stored as INTEGER microseconds: exact, and sorts as it should.
impl Type<Sqlite> for Ts {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for Ts {
    fn encode_by_ref(
        &self,
        buf: &mut Vec<sqlx::sqlite::SqliteArgumentValue<'q>>,
    ) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<'q, Sqlite>>::encode(self.micros(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let micros = <i64 as Decode<'r, Sqlite>>::decode(value)?;
        Ts::from_micros(micros).ok_or_else(|| format!("timestamp out of range: {micros}").into())
    }
}
