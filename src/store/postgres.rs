//! PostgreSQL, for several stateless nodes on one database: its `SqlBackend` (job claiming with
//! `FOR UPDATE SKIP LOCKED`, the one-statement token batch) and the encoding of `Ts` as TIMESTAMPTZ.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgConnection, PgPoolOptions, PgQueryResult, PgTypeInfo,
    PgValueRef,
};
use sqlx::{Decode, Encode, PgPool, Postgres, QueryBuilder, Type};

use super::audit::push_audit_insert;
use super::backend::{impl_sql_store, SqlBackend, SqlDb, INSERT_CHUNK};
use super::tokens::push_token_insert;
use super::webhook_records::{push_outbox_insert, push_outbox_jobs, write_outbox};
use super::{AuditEvent, Backend, DynStore, OpenError, OutboxRecord, StoreResult, TokenRecord, Ts};

pub struct PgStore {
    pool: PgPool,
}

impl SqlBackend for PgStore {
    type DB = Postgres;
    const BACKEND: Backend = Backend::Postgres;
    const MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");
    const CLAIM_LOCK: &'static str = "FOR UPDATE SKIP LOCKED";
    // A shard per database session (pool connection), as the token counts' triggers do.
    const SHARD: &'static str = "pg_backend_pid() % 16";

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn payment_page_sql(rows: &str) -> String {
        super::page_json::postgres::payment_page(rows)
    }

    fn token_page_sql(rows: &str, url: usize, order: &str) -> String {
        super::page_json::postgres::token_page(rows, url, order)
    }

    async fn backup_into(&self, _path: &std::path::Path) -> StoreResult<()> {
        Err(super::StoreError::Other(
            "PostgreSQL is backed up with its own tools (pg_dump, or base backups with WAL archiving); see the README".into(),
        ))
    }

    async fn close_pools(&self) {
        self.pool.close().await;
    }

    /// Each chunk is one statement (`WITH … INSERT INTO tokens …) INSERT INTO audit_events …`), atomic on
    /// its own; a small outbox joins that statement as two more CTEs. A batch of several chunks, or an
    /// outbox of several, runs in one transaction.
    async fn insert_token_batch(
        &self,
        batch: &[(TokenRecord, AuditEvent)],
        outbox: &[OutboxRecord],
    ) -> StoreResult<()> {
        let statement = |chunk| {
            let mut statement = sqlx::QueryBuilder::<Postgres>::new("WITH new_tokens AS (");
            push_token_insert(&mut statement, chunk);
            statement.push(" RETURNING 1) ");
            push_audit_insert(&mut statement, chunk.iter().map(|(_, audit)| audit));
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
            push_audit_insert(&mut statement, batch.iter().map(|(_, audit)| audit));
            statement.push(" RETURNING 1), new_deliveries AS (");
            push_outbox_insert(&mut statement, outbox);
            statement.push(" RETURNING 1) ");
            push_outbox_jobs(&mut statement, outbox);
            statement.build().execute(&self.pool).await?;
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for chunk in batch.chunks(INSERT_CHUNK) {
            statement(chunk).build().execute(&mut *tx).await?;
        }
        write_outbox::<Postgres>(&mut tx, outbox).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// See `open`: in milliseconds, as PostgreSQL reads the setting.
const IDLE_IN_TRANSACTION_TIMEOUT_MS: &str = "10000";

pub async fn open(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<DynStore, OpenError> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| OpenError::Invalid(e.to_string()))?;
    // A node paused (or cut off) inside a transaction would hold its row locks for as long as it is
    // away: a job's row locked by a fenced write would never be claimed by another node. The server
    // ends such a session after this long idle in a transaction, rolling it back; none of ours waits
    // on anything but the database inside one.
    let options = options.options([(
        "idle_in_transaction_session_timeout",
        IDLE_IN_TRANSACTION_TIMEOUT_MS,
    )]);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(acquire_timeout)
        .connect_with(options)
        .await
        .map_err(|e| OpenError::Connect(e.to_string()))?;
    Ok(Arc::new(PgStore { pool }))
}

impl_sql_store!(PgStore);

impl SqlDb for Postgres {
    fn execute_built<'c>(
        conn: &'c mut PgConnection,
        query: &'c mut QueryBuilder<'_, Postgres>,
    ) -> impl Future<Output = Result<PgQueryResult, sqlx::Error>> + Send + 'c {
        query.build().execute(conn)
    }
}

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
