//! PostgreSQL, for several stateless nodes on one database. Job claiming uses `FOR UPDATE SKIP LOCKED`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgConnectOptions, PgPoolOptions, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, PgPool, Postgres, Type};
use uuid::Uuid;

use super::imports::impl_import_store;
use super::sql::{impl_store, push_audit_insert, push_token_insert, INSERT_CHUNK};
use super::{
    Account, AccountKeysRecord, ApiKeyRecord, AuditEvent, IdempotencyRecord, Job, KeyWithAccount,
    NewJob, PaymentChange, PaymentFilter, PaymentRecord, RefundRecord, StoreResult, TokenQuery,
    TokenRecord, TransactionRecord, Ts,
};
use super::{Backend, DynStore, OpenError};
use super::{ImportFailure, ImportOutcome, ImportRecord};

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

    async fn close_pools(&self) {
        self.pool.close().await;
    }

    /// Each chunk is one statement (`WITH … INSERT INTO tokens …) INSERT INTO audit_events …`), atomic on
    /// its own; a batch of several chunks, or one with an outbox to write, runs in one transaction.
    async fn insert_token_batch(
        &self,
        batch: &[(TokenRecord, AuditEvent)],
        outbox: &[super::OutboxRecord],
    ) -> StoreResult<()> {
        let statement = |chunk| {
            let mut statement = sqlx::QueryBuilder::<Postgres>::new("WITH new_tokens AS (");
            push_token_insert(&mut statement, chunk);
            statement.push(" RETURNING 1) ");
            push_audit_insert(&mut statement, chunk);
            statement
        };
        if batch.len() <= INSERT_CHUNK && outbox.is_empty() {
            statement(batch).build().execute(&self.pool).await?;
            return Ok(());
        }
        if batch.len() <= INSERT_CHUNK && outbox.len() <= INSERT_CHUNK {
            // Still one statement, hence one round trip: the outbox joins as two more CTEs.
            let mut statement = sqlx::QueryBuilder::<Postgres>::new("WITH new_tokens AS (");
            push_token_insert(&mut statement, batch);
            statement.push(" RETURNING 1), new_audit AS (");
            push_audit_insert(&mut statement, batch);
            statement.push(" RETURNING 1), new_deliveries AS (");
            super::push_outbox_insert(&mut statement, outbox);
            statement.push(" RETURNING 1) ");
            super::push_outbox_jobs(&mut statement, outbox);
            statement.build().execute(&self.pool).await?;
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for chunk in batch.chunks(INSERT_CHUNK) {
            statement(chunk).build().execute(&mut *tx).await?;
        }
        Self::write_outbox(&mut tx, outbox).await?;
        tx.commit().await?;
        Ok(())
    }
}

pub async fn open(url: &str, max_connections: u32) -> Result<DynStore, OpenError> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| OpenError::Invalid(e.to_string()))?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| OpenError::Connect(e.to_string()))?;
    Ok(Arc::new(PgStore { pool }))
}

super::destinations::impl_destination_store!(PgStore);
impl_import_store!(PgStore, db = sqlx::Postgres);

impl_store!(
    PgStore,
    db = sqlx::Postgres,
    backend = Backend::Postgres,
    claim_lock = "FOR UPDATE SKIP LOCKED"
);

// `Ts` is a TIMESTAMPTZ, which keeps microseconds: what `Ts` holds.
impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.datetime(), buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Ts::from_datetime(<DateTime<Utc> as Decode<
            'r,
            Postgres,
        >>::decode(value)?))
    }
}
