//! The contract each SQL backend fulfils (`SqlBackend`): its pool, its migrations, its job-claim lock and
//! its token batch writer. The SQL both backends share lives in the resource files; `impl_sql_store!`
//! stamps it onto a backend, which may use nothing of the backend but this trait.

use std::future::Future;

use sqlx::migrate::Migrator;
use sqlx::{Database, QueryBuilder};

use super::{AuditEvent, Backend, OutboxRecord, PaymentWrite, StoreResult, TokenRecord};

/// Rows per multi-row INSERT: well under both backends' limits on bound parameters.
pub(crate) const INSERT_CHUNK: usize = 200;

/// Runs a statement built by a `QueryBuilder` on a connection. The shared writers (`write_job`,
/// `write_audit`, `write_outbox`) are generic over the database and need this: generic code cannot see
/// that a backend's argument buffer may outlive the builder's borrow, while each backend's own impl can.
pub(crate) trait SqlDb: Database {
    fn execute_built<'c>(
        conn: &'c mut Self::Connection,
        query: &'c mut QueryBuilder<'_, Self>,
    ) -> impl Future<Output = Result<Self::QueryResult, sqlx::Error>> + Send + 'c;
}

/// What differs between SQLite and PostgreSQL. Both accept `$N` placeholders and `RETURNING`, and `Ts`
/// encodes natively on each, so the rest of the SQL is one text. Its async methods are native (not
/// boxed): they are only called from the concrete impls `impl_sql_store!` stamps.
pub(crate) trait SqlBackend: Send + Sync + 'static {
    type DB: SqlDb;
    const BACKEND: Backend;
    const MIGRATOR: Migrator;
    /// Appended to the job claim's sub-selects, so that concurrent claimants skip each other's rows
    /// (empty where the database takes one writer at a time).
    const CLAIM_LOCK: &'static str;
    /// How a claim of several jobs matches the ids its sub-select locked: written around the
    /// sub-select, after `id`. PostgreSQL: `= ANY(ARRAY(…))`, the sub-select run once and its ids
    /// looked up in the primary key. Written `IN (…) AND status = 'queued'`, the planner could join the
    /// ids to `jobs_ready` instead (its predicate matched, its leading columns not the id): with
    /// statistics from a smaller table it scanned that whole index once per claimed id, and a claim of
    /// 63 jobs among 17,000 ran for 40 s and more (seen in `bench/webhooks.sh`, deliveries crawling at
    /// 57 a second). SQLite: `IN (…)`, looked up by the primary key.
    const IDS_OF: (&'static str, &'static str);
    /// The shard a count row change goes to (an SQL expression): where several connections write at
    /// once, each its own, so that concurrent commits do not wait on one hot count row; readers add
    /// the shards up.
    const SHARD: &'static str;
    /// Whether lookups of a list of keys within an account are sent as one-off statements, planned
    /// afresh on each call with the keys in hand. PostgreSQL switches a prepared statement to a generic
    /// plan after a few executions and keeps it; for these the generic plan may probe the index by
    /// account only and filter the keys, which costs nothing on a small account and scans every token
    /// of a large one (40 ms and more a lookup by 30,000 cards of an import). SQLite plans from its
    /// schema alone, so it keeps its statements prepared.
    const PLAN_EACH_CALL: bool;

    fn pool(&self) -> &sqlx::Pool<Self::DB>;
    /// Where the frequent small write transactions go (job claims and their ends, webhook delivery
    /// outcomes, payment batches). Where the database takes one writer at a time, that is the one
    /// connection the token and payment batches use, so that writers queue for it in turn instead of
    /// meeting in the database's busy handler, which sleeps a millisecond and more between tries.
    fn writer(&self) -> &sqlx::Pool<Self::DB> {
        self.pool()
    }
    /// The statement that answers a page of payments, newest first, as one JSON array of their public
    /// objects (`store::page_json`): `from` is `payments` with its `WHERE` clause, `$next` the page's
    /// size and `$next + 1` the rows skipped.
    fn payment_page_sql(from: &str, next: usize) -> String;
    /// The same for tokens in `order` (`ASC` or `DESC`), the card-art links starting with the text
    /// bound to `$next + 2`.
    fn token_page_sql(from: &str, order: &str, next: usize) -> String;
    async fn close_pools(&self);
    /// Has the database gather fresh planner statistics for the tables that changed much since it last
    /// did, where its planner goes by them; answers the tables it refreshed (see `Store`).
    async fn refresh_stale_statistics(&self) -> Result<Vec<String>, sqlx::Error>;
    /// Inserts tokens with their audit events and `outbox` in one commit; the hot path of tokenisation,
    /// so each backend writes it the fastest way it has. An empty `outbox` must cost nothing.
    async fn insert_token_batch(
        &self,
        batch: &[(TokenRecord, AuditEvent)],
        outbox: &[OutboxRecord],
    ) -> StoreResult<()>;
    /// The token writer has nothing queued after a batch: a backend that kept something for the next
    /// batch (SQLite keeps the writer connection) lets it go now.
    fn token_batches_idle(&self) {}
    /// Writes a group commit of payment writes in fewer trips than the shared path (a statement per kind
    /// of row), where the backend has a way and the batch allows it; `None`: the shared path writes it.
    async fn write_payment_batch(
        &self,
        _writes: &[PaymentWrite],
    ) -> Option<StoreResult<Vec<bool>>> {
        None
    }
    /// A consistent copy of the database into the new file `path` (see `Store::backup_into`).
    async fn backup_into(&self, path: &std::path::Path) -> StoreResult<()>;
}

/// A value from an enum's string table, written into a statement's text as an SQL string literal, for
/// the few places where binding it would cost: a partial index (`jobs_ready`, `jobs_leased`) is only
/// matched by a query that names its predicate's literal, which a parameter is not (a PostgreSQL
/// generic plan, SQLite's planner), and the hot batch inserts keep their bound parameters to the
/// columns that vary. Quotes in the text are doubled.
pub(crate) struct SqlText(pub &'static str);

impl std::fmt::Display for SqlText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("'")?;
        for (i, part) in self.0.split('\'').enumerate() {
            if i > 0 {
                f.write_str("''")?;
            }
            f.write_str(part)?;
        }
        f.write_str("'")
    }
}

/// `$first, $first+1, …` for an `IN (…)` list of `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Implements `Store` and every resource sub-trait for a `SqlBackend`.
macro_rules! impl_sql_store {
    ($store:ty) => {
        $crate::store::accounts::impl_account_store!($store);
        $crate::store::keys::impl_key_store!($store);
        $crate::store::idempotency::impl_idempotency_store!($store);
        $crate::store::jobs::impl_job_store!($store);
        $crate::store::vault_keys::impl_vault_key_store!($store);
        $crate::store::tokens::impl_token_store!($store);
        $crate::store::payments::impl_payment_store!($store);
        $crate::store::audit::impl_audit_store!($store);
        $crate::store::webhooks::impl_webhook_store!($store);
        $crate::store::imports::impl_import_store!($store);
        $crate::store::processors::impl_processor_store!($store);
        $crate::store::destinations::impl_destination_store!($store);
        $crate::store::sessions::impl_session_store!($store);

        const _: () = {
            use $crate::store::backend::SqlBackend;
            use $crate::store::{Backend, StoreResult};

            #[async_trait::async_trait]
            impl $crate::store::Store for $store {
                fn backend(&self) -> Backend {
                    <Self as SqlBackend>::BACKEND
                }

                async fn migrate(&self) -> StoreResult<()> {
                    <Self as SqlBackend>::MIGRATOR.run(self.pool()).await?;
                    Ok(())
                }

                async fn ping(&self) -> StoreResult<()> {
                    sqlx::query("SELECT 1").execute(self.pool()).await?;
                    Ok(())
                }

                async fn checkpoint_after_delete(&self) -> StoreResult<()> {
                    if <Self as SqlBackend>::BACKEND == Backend::Sqlite {
                        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                            .execute(self.pool())
                            .await?;
                    }
                    Ok(())
                }

                async fn close(&self) {
                    self.close_pools().await
                }

                fn pool_connections(&self) -> (u32, u32) {
                    let pool = self.pool();
                    let idle = pool.num_idle() as u32;
                    (idle, pool.size().saturating_sub(idle))
                }

                async fn job_queue_stats(&self) -> StoreResult<Vec<(String, i64, Option<$crate::store::Ts>)>> {
                    Ok(sqlx::query_as(
                        "SELECT kind, COUNT(*), MIN(run_at) FROM jobs WHERE status = 'queued' GROUP BY kind",
                    )
                    .fetch_all(self.pool())
                    .await?)
                }

                async fn count_active_imports(&self) -> StoreResult<i64> {
                    let (n,): (i64,) = sqlx::query_as(
                        "SELECT COUNT(*) FROM token_imports WHERE status IN ('preparing', 'running')",
                    )
                    .fetch_one(self.pool())
                    .await?;
                    Ok(n)
                }

                async fn backup_into(&self, path: &std::path::Path) -> StoreResult<()> {
                    <Self as SqlBackend>::backup_into(self, path).await
                }

                async fn refresh_stale_statistics(&self) -> StoreResult<Vec<String>> {
                    Ok(<Self as SqlBackend>::refresh_stale_statistics(self).await?)
                }
            }
        };
    };
}

pub(crate) use impl_sql_store;
