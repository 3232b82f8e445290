//! Storage of token imports: the import row (status, counters, resume position, sealed keys), the
//! payment methods each import has counted, and its failures: `ImportStore` and its SQL.

use std::fmt;

use async_trait::async_trait;
use uuid::Uuid;

use super::{AuditEvent, Fence, NewJob, OutboxRecord, StoreResult, TokenRecord, Ts};
use crate::model::import::ImportStatus;

pub const IMPORT_COLUMNS: &str = "id, account_id, provider, status, sealed_api_key, sealed_ingest_key, \
     ingest_key_digest, position, attempts, successes, failures, created_at, updated_at, finished_at";

#[derive(Clone, sqlx::FromRow)]
pub struct ImportRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub provider: String,
    /// `preparing`, `running`, `finished` or `aborted`.
    pub status: String,
    /// The provider's API key, sealed under the account's data key; `None` once the import ended.
    pub sealed_api_key: Option<Vec<u8>>,
    /// The key the provider presents to the ingest endpoint, sealed; `None` once the import ended.
    pub sealed_ingest_key: Option<Vec<u8>>,
    pub ingest_key_digest: Option<Vec<u8>>,
    /// JSON: where the job resumes.
    pub position: Option<String>,
    pub attempts: i64,
    pub successes: i64,
    pub failures: i64,
    pub created_at: Ts,
    pub updated_at: Ts,
    pub finished_at: Option<Ts>,
}

impl ImportRecord {
    pub fn is_active(&self) -> bool {
        self.status
            .parse::<ImportStatus>()
            .is_ok_and(ImportStatus::is_active)
    }
}

impl fmt::Debug for ImportRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportRecord")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Why one card (or the whole import) failed. `context` is a JSON object without card data.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ImportFailure {
    pub reason: String,
    pub context: String,
}

/// What became of one payment method.
#[derive(Clone, Debug)]
pub struct ImportOutcome {
    pub payment_method: String,
    /// `None`: it is in the vault.
    pub failure: Option<ImportFailure>,
}

#[async_trait]
pub trait ImportStore {
    /// Inserts a new import with the job that runs it; a second active import of the account violates
    /// `token_imports_one_active`. `audit` (its creation) is written in the same commit.
    async fn insert_import(
        &self,
        import: &ImportRecord,
        job: &NewJob,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    async fn get_import(&self, id: Uuid) -> StoreResult<Option<ImportRecord>>;
    /// Newest first.
    async fn list_imports(
        &self,
        account_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<ImportRecord>>;
    async fn count_imports(&self, account_id: Uuid) -> StoreResult<u64>;
    /// `preparing` → `running`; false if the import is no longer preparing.
    /// Fenced on `fence` when given (the job run driving the import), like the writes below.
    async fn mark_import_running(
        &self,
        id: Uuid,
        fence: Option<&Fence>,
        now: Ts,
    ) -> StoreResult<bool>;
    /// Counts the outcomes not counted before (by payment method) and stores the failures among them,
    /// moving the resume position if one is given; all in one transaction, and only while the import
    /// runs (false otherwise, writing nothing). With a `fence`, only while that claim of the import's job
    /// still holds it, checked in the same transaction: a run that lost its lease records nothing.
    async fn record_import_outcomes(
        &self,
        id: Uuid,
        fence: Option<&Fence>,
        outcomes: &[ImportOutcome],
        position: Option<&str>,
        now: Ts,
    ) -> StoreResult<bool>;
    /// Ends an active import (`finished` only from `running`; `aborted` from either active state) whose
    /// counters still stand at `attempts`, destroying its keys, with an optional failure entry saying why
    /// and the webhook outbox rows of its end, and `audit` if the end is an audited action (an abort asked
    /// for); false (writing nothing) if it was not active or moved on, or if `fence` (the job run ending
    /// it, if a job does) lost its lease.
    #[allow(clippy::too_many_arguments)]
    async fn end_import(
        &self,
        id: Uuid,
        fence: Option<&Fence>,
        status: &str,
        attempts: i64,
        failure: Option<&ImportFailure>,
        outbox: &[OutboxRecord],
        audit: Option<&AuditEvent>,
        now: Ts,
    ) -> StoreResult<bool>;
    /// In insertion order.
    async fn list_import_failures(
        &self,
        id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<ImportFailure>>;
    async fn count_import_failures(&self, id: Uuid) -> StoreResult<u64>;
    /// Which of `payment_methods` this import has already counted.
    async fn counted_payment_methods(
        &self,
        id: Uuid,
        payment_methods: &[String],
    ) -> StoreResult<Vec<String>>;
    /// Which of `keys` already name a token of the account from `provider`.
    async fn existing_business_keys(
        &self,
        account_id: Uuid,
        provider: &str,
        keys: &[String],
    ) -> StoreResult<Vec<String>>;
    async fn get_token_by_business_key(
        &self,
        account_id: Uuid,
        provider: &str,
        key: &str,
    ) -> StoreResult<Option<TokenRecord>>;
}

/// The statuses an import may end as `status` from: `finished` ends only a running import; `aborted`
/// any active one. Spelled out here (not derived from `ImportStatus::can_move_to`) so that a unit test
/// can hold the SQL guard to the state machine.
pub(crate) fn end_import_guard(status: &str) -> &'static [ImportStatus] {
    if status == ImportStatus::Finished.as_str() {
        &[ImportStatus::Running]
    } else {
        &[ImportStatus::Preparing, ImportStatus::Running]
    }
}

macro_rules! impl_import_store {
    ($store:ty) => {
        const _: () = {
            use uuid::Uuid;
            use $crate::store::audit::write_audit;
            use $crate::model::import::ImportStatus;
            use $crate::store::backend::{placeholders, SqlBackend, INSERT_CHUNK};
            use $crate::store::imports::{end_import_guard, IMPORT_COLUMNS};
            use $crate::store::jobs::{write_job, Fence, HOLD_FENCE_SQL};
            use $crate::store::tokens::TOKEN_COLUMNS;
            use $crate::store::webhook_records::write_outbox;
            use $crate::store::{
                AuditEvent, ImportFailure, ImportOutcome, ImportRecord, ImportStore, NewJob, OutboxRecord, StoreResult,
                TokenRecord, Ts,
            };

            type Db = <$store as SqlBackend>::DB;

            /// Runs a lookup of which of a list of keys exist, planned on each call where the database would
            /// otherwise keep a generic plan (`SqlBackend::PLAN_EACH_CALL`).
            async fn fetch_keys(
                pool: &sqlx::Pool<Db>,
                query: &mut sqlx::QueryBuilder<'_, Db>,
            ) -> Result<Vec<String>, sqlx::Error> {
                query
                    .build_query_scalar::<String>()
                    .persistent(!<$store as SqlBackend>::PLAN_EACH_CALL)
                    .fetch_all(pool)
                    .await
            }

            /// Checks and locks `fence`'s job first in `tx` (see `HOLD_FENCE_SQL`); no fence, no check.
            async fn hold_fence(
                tx: &mut <Db as sqlx::Database>::Connection,
                fence: Option<&Fence>,
            ) -> Result<bool, sqlx::Error> {
                let Some(fence) = fence else {
                    return Ok(true);
                };
                let held = sqlx::query(HOLD_FENCE_SQL)
                    .bind(fence.job)
                    .bind(fence.owner.as_str())
                    .bind(fence.generation)
                    .execute(tx)
                    .await?;
                Ok(held.rows_affected() == 1)
            }

            #[async_trait::async_trait]
            impl ImportStore for $store {
                async fn insert_import(&self, i: &ImportRecord, job: &NewJob, audit: &AuditEvent) -> StoreResult<()> {
                    let mut tx = self.pool().begin().await?;
                    let sql = format!(
                        "INSERT INTO token_imports ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                        IMPORT_COLUMNS
                    );
                    sqlx::query(&sql)
                        .bind(i.id)
                        .bind(i.account_id)
                        .bind(&i.provider)
                        .bind(&i.status)
                        .bind(&i.sealed_api_key)
                        .bind(&i.sealed_ingest_key)
                        .bind(&i.ingest_key_digest)
                        .bind(&i.position)
                        .bind(i.attempts)
                        .bind(i.successes)
                        .bind(i.failures)
                        .bind(i.created_at)
                        .bind(i.updated_at)
                        .bind(i.finished_at)
                        .execute(&mut *tx)
                        .await?;
                    write_job::<Db>(&mut tx, job, Ts::now()).await?;
                    write_audit::<Db>(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn get_import(&self, id: Uuid) -> StoreResult<Option<ImportRecord>> {
                    let sql = format!(
                        "SELECT {} FROM token_imports WHERE id = $1",
                        IMPORT_COLUMNS
                    );
                    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(self.pool()).await?)
                }

                async fn list_imports(&self, account_id: Uuid, limit: i64, offset: i64) -> StoreResult<Vec<ImportRecord>> {
                    let sql = format!(
                        "SELECT {} FROM token_imports WHERE account_id = $1 \
                         ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
                        IMPORT_COLUMNS
                    );
                    Ok(sqlx::query_as(&sql)
                        .bind(account_id)
                        .bind(limit)
                        .bind(offset)
                        .fetch_all(self.pool())
                        .await?)
                }

                async fn count_imports(&self, account_id: Uuid) -> StoreResult<u64> {
                    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM token_imports WHERE account_id = $1")
                        .bind(account_id)
                        .fetch_one(self.pool())
                        .await?;
                    Ok(u64::try_from(n).unwrap_or(0))
                }

                async fn mark_import_running(&self, id: Uuid, fence: Option<&Fence>, now: Ts) -> StoreResult<bool> {
                    let mut tx = self.pool().begin().await?;
                    if !hold_fence(&mut tx, fence).await? {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    let done = sqlx::query(
                        "UPDATE token_imports SET status = $3, updated_at = $2 WHERE id = $1 AND status = $4",
                    )
                    .bind(id)
                    .bind(now)
                    .bind(ImportStatus::Running.as_str())
                    .bind(ImportStatus::Preparing.as_str())
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    tx.commit().await?;
                    Ok(true)
                }

                async fn record_import_outcomes(
                    &self,
                    id: Uuid,
                    fence: Option<&Fence>,
                    outcomes: &[ImportOutcome],
                    position: Option<&str>,
                    now: Ts,
                ) -> StoreResult<bool> {
                    let mut tx = self.pool().begin().await?;
                    if !hold_fence(&mut tx, fence).await? {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    // Takes the row (and SQLite's write lock) first, so that an abort cannot slip in between.
                    let running = sqlx::query(
                        "UPDATE token_imports SET updated_at = $2, position = COALESCE($3, position) \
                         WHERE id = $1 AND status = $4",
                    )
                    .bind(id)
                    .bind(now)
                    .bind(position)
                    .bind(ImportStatus::Running.as_str())
                    .execute(&mut *tx)
                    .await?;
                    if running.rows_affected() != 1 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    let mut new: std::collections::HashSet<String> = std::collections::HashSet::new();
                    for chunk in outcomes.chunks(INSERT_CHUNK) {
                        let mut insert = sqlx::QueryBuilder::<Db>::new(
                            "INSERT INTO token_import_items (import_id, payment_method, succeeded) ",
                        );
                        insert.push_values(chunk, |mut row, o| {
                            row.push_bind(id)
                                .push_bind(o.payment_method.as_str())
                                .push_bind(o.failure.is_none());
                        });
                        insert.push(" ON CONFLICT DO NOTHING RETURNING payment_method");
                        let inserted: Vec<String> = insert.build_query_scalar().fetch_all(&mut *tx).await?;
                        new.extend(inserted);
                    }
                    let mut counted = std::collections::HashSet::new();
                    let fresh: Vec<&ImportOutcome> = outcomes
                        .iter()
                        .filter(|o| new.contains(&o.payment_method) && counted.insert(o.payment_method.as_str()))
                        .collect();
                    let failed: Vec<&ImportFailure> = fresh.iter().filter_map(|o| o.failure.as_ref()).collect();
                    for chunk in failed.chunks(INSERT_CHUNK) {
                        let mut insert = sqlx::QueryBuilder::<Db>::new(
                            "INSERT INTO token_import_failures (import_id, reason, context, created_at) ",
                        );
                        insert.push_values(chunk, |mut row, f| {
                            row.push_bind(id)
                                .push_bind(f.reason.as_str())
                                .push_bind(f.context.as_str())
                                .push_bind(now);
                        });
                        insert.build().execute(&mut *tx).await?;
                    }
                    let (all, bad) = (fresh.len() as i64, failed.len() as i64);
                    if all > 0 {
                        sqlx::query(
                            "UPDATE token_imports SET attempts = attempts + $2, successes = successes + $3, \
                             failures = failures + $4 WHERE id = $1",
                        )
                        .bind(id)
                        .bind(all)
                        .bind(all - bad)
                        .bind(bad)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(true)
                }

                async fn end_import(
                    &self,
                    id: Uuid,
                    fence: Option<&Fence>,
                    status: &str,
                    attempts: i64,
                    failure: Option<&ImportFailure>,
                    outbox: &[OutboxRecord],
                    audit: Option<&AuditEvent>,
                    now: Ts,
                ) -> StoreResult<bool> {
                    let mut tx = self.pool().begin().await?;
                    if !hold_fence(&mut tx, fence).await? {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    let from = end_import_guard(status);
                    // A fatal failure is listed among the failures, so it is counted as one attempt
                    // that failed: `failures` is the list's length and `attempts` their sum, always.
                    let sql = format!(
                        "UPDATE token_imports SET status = $2, finished_at = $3, updated_at = $3, \
                         sealed_api_key = NULL, sealed_ingest_key = NULL, ingest_key_digest = NULL, \
                         attempts = attempts + $5, failures = failures + $5 \
                         WHERE id = $1 AND attempts = $4 AND status IN ({})",
                        placeholders(6, from.len())
                    );
                    let mut query = sqlx::query(&sql)
                        .bind(id)
                        .bind(status)
                        .bind(now)
                        .bind(attempts)
                        .bind(i64::from(failure.is_some()));
                    for s in from {
                        query = query.bind(s.as_str());
                    }
                    let done = query.execute(&mut *tx).await?;
                    if done.rows_affected() != 1 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    if let Some(f) = failure {
                        sqlx::query(
                            "INSERT INTO token_import_failures (import_id, reason, context, created_at) \
                             VALUES ($1, $2, $3, $4)",
                        )
                        .bind(id)
                        .bind(&f.reason)
                        .bind(&f.context)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    write_outbox::<Db>(&mut tx, outbox).await?;
                    if let Some(audit) = audit {
                        write_audit::<Db>(&mut tx, audit).await?;
                    }
                    tx.commit().await?;
                    Ok(true)
                }

                async fn list_import_failures(&self, id: Uuid, limit: i64, offset: i64) -> StoreResult<Vec<ImportFailure>> {
                    Ok(sqlx::query_as(
                        "SELECT reason, context FROM token_import_failures WHERE import_id = $1 \
                         ORDER BY id LIMIT $2 OFFSET $3",
                    )
                    .bind(id)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(self.pool())
                    .await?)
                }

                async fn count_import_failures(&self, id: Uuid) -> StoreResult<u64> {
                    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM token_import_failures WHERE import_id = $1")
                        .bind(id)
                        .fetch_one(self.pool())
                        .await?;
                    Ok(u64::try_from(n).unwrap_or(0))
                }

                async fn counted_payment_methods(&self, id: Uuid, pms: &[String]) -> StoreResult<Vec<String>> {
                    let mut found = Vec::new();
                    for chunk in pms.chunks(INSERT_CHUNK) {
                        let mut query = sqlx::QueryBuilder::<Db>::new(
                            "SELECT payment_method FROM token_import_items WHERE import_id = ",
                        );
                        query.push_bind(id).push(" AND payment_method IN (");
                        let mut list = query.separated(", ");
                        for pm in chunk {
                            list.push_bind(pm.as_str());
                        }
                        query.push(")");
                        found.extend(fetch_keys(self.pool(), &mut query).await?);
                    }
                    Ok(found)
                }

                async fn existing_business_keys(&self, account_id: Uuid, provider: &str, keys: &[String]) -> StoreResult<Vec<String>> {
                    let mut found = Vec::new();
                    for chunk in keys.chunks(INSERT_CHUNK) {
                        let mut query = sqlx::QueryBuilder::<Db>::new("SELECT business_key FROM tokens WHERE account_id = ");
                        query
                            .push_bind(account_id)
                            .push(" AND import_provider = ")
                            .push_bind(provider)
                            .push(" AND business_key IN (");
                        let mut list = query.separated(", ");
                        for key in chunk {
                            list.push_bind(key.as_str());
                        }
                        query.push(")");
                        found.extend(fetch_keys(self.pool(), &mut query).await?);
                    }
                    Ok(found)
                }

                async fn get_token_by_business_key(&self, account_id: Uuid, provider: &str, key: &str) -> StoreResult<Option<TokenRecord>> {
                    let sql = format!(
                        "SELECT {} FROM tokens WHERE account_id = $1 AND import_provider = $2 AND business_key = $3",
                        TOKEN_COLUMNS
                    );
                    Ok(sqlx::query_as(&sql)
                        .bind(account_id)
                        .bind(provider)
                        .bind(key)
                        .fetch_optional(self.pool())
                        .await?)
                }
            }
        };
    };
}

pub(crate) use impl_import_store;
