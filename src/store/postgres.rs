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

use super::backend::{impl_sql_store, SqlBackend, SqlDb, INSERT_CHUNK};
use super::tokens::{day_counts, TOKEN_COLUMNS};
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

    /// The whole batch is one statement of one text whatever its size: the columns go as arrays
    /// (`UNNEST`), so that each connection prepares and plans it once, and the tokens, their day counts
    /// (one upsert per account and day, in the session's shard) and their audit events are written by
    /// one round trip, atomically. A small outbox joins it as two more CTEs; a larger one makes it a
    /// transaction.
    async fn insert_token_batch(
        &self,
        batch: &[(TokenRecord, AuditEvent)],
        outbox: &[OutboxRecord],
    ) -> StoreResult<()> {
        let counts = day_counts(batch);
        let mut statement = sqlx::QueryBuilder::<Postgres>::new("");
        push_token_batch(&mut statement, batch, &counts);
        if outbox.is_empty() {
            statement.push(" SELECT 1");
            statement.build().execute(&self.pool).await?;
            return Ok(());
        }
        if outbox.len() <= INSERT_CHUNK {
            statement.push(", new_deliveries AS (");
            push_outbox_insert(&mut statement, outbox);
            statement.push(" RETURNING 1) ");
            push_outbox_jobs(&mut statement, outbox);
            statement.build().execute(&self.pool).await?;
            return Ok(());
        }
        statement.push(" SELECT 1");
        let mut tx = self.pool.begin().await?;
        statement.build().execute(&mut *tx).await?;
        write_outbox::<Postgres>(&mut tx, outbox).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Appends `WITH new_tokens AS (…), new_counts AS (…), new_audit AS (…)` writing `batch` and `counts`
/// (see `day_counts`) from arrays; the caller ends the statement.
fn push_token_batch<'a>(
    statement: &mut sqlx::QueryBuilder<'a, Postgres>,
    batch: &'a [(TokenRecord, AuditEvent)],
    counts: &[(uuid::Uuid, i64, i64)],
) {
    let tokens = || batch.iter().map(|(t, _)| t);
    let audits = || batch.iter().map(|(_, a)| a);
    statement.push(format!(
        "WITH new_tokens AS (INSERT INTO tokens ({TOKEN_COLUMNS}) SELECT * FROM UNNEST("
    ));
    let mut columns = statement.separated(", ");
    columns.push_bind(tokens().map(|t| t.id).collect::<Vec<_>>());
    columns.push_unseparated("::uuid[]");
    columns.push_bind(tokens().map(|t| t.account_id).collect::<Vec<_>>());
    columns.push_unseparated("::uuid[]");
    columns.push_bind(
        tokens()
            .map(|t| t.created_at.datetime())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(tokens().map(|t| t.expiry_month).collect::<Vec<_>>());
    columns.push_bind(tokens().map(|t| t.expiry_year).collect::<Vec<_>>());
    columns.push_bind(
        tokens()
            .map(|t| t.cardholder_name.as_deref())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.issuer_identification_number.as_str())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.masked_account_number.as_str())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.account_number_last_four.as_str())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.account_number_length)
            .collect::<Vec<_>>(),
    );
    columns.push_bind(tokens().map(|t| t.scheme.as_str()).collect::<Vec<_>>());
    columns.push_bind(tokens().map(|t| t.status.as_str()).collect::<Vec<_>>());
    columns.push_bind(
        tokens()
            .map(|t| t.fingerprint.as_slice())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.sealed_card.as_slice())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.business_key.as_deref())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.import_provider.as_deref())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.expires_at.map(|at| at.datetime()))
            .collect::<Vec<_>>(),
    );
    statement.push(
        ") RETURNING 1), new_counts AS (INSERT INTO token_day_counts (account_id, day, shard, n) \
         SELECT account_id, day, pg_backend_pid() % 16, n FROM UNNEST(",
    );
    let mut columns = statement.separated(", ");
    columns.push_bind(counts.iter().map(|c| c.0).collect::<Vec<_>>());
    columns.push_unseparated("::uuid[]");
    columns.push_bind(counts.iter().map(|c| c.1).collect::<Vec<_>>());
    columns.push_bind(counts.iter().map(|c| c.2).collect::<Vec<_>>());
    statement.push(
        ") AS c (account_id, day, n) \
         ON CONFLICT (account_id, day, shard) DO UPDATE SET n = token_day_counts.n + excluded.n \
         RETURNING 1), new_audit AS (INSERT INTO audit_events \
         (at, account_id, actor, action, target, outcome, remote_addr, request_id, node) SELECT * FROM UNNEST(",
    );
    let mut columns = statement.separated(", ");
    columns.push_bind(audits().map(|a| a.at.datetime()).collect::<Vec<_>>());
    columns.push_bind(audits().map(|a| a.account_id).collect::<Vec<_>>());
    columns.push_unseparated("::uuid[]");
    columns.push_bind(audits().map(|a| a.actor.as_str()).collect::<Vec<_>>());
    columns.push_bind(audits().map(|a| a.action.as_str()).collect::<Vec<_>>());
    columns.push_bind(audits().map(|a| a.target.as_deref()).collect::<Vec<_>>());
    columns.push_bind(audits().map(|a| a.outcome.as_str()).collect::<Vec<_>>());
    columns.push_bind(
        audits()
            .map(|a| a.remote_addr.as_deref())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        audits()
            .map(|a| a.request_id.as_deref())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(audits().map(|a| a.node.as_deref()).collect::<Vec<_>>());
    statement.push(") RETURNING 1)");
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
