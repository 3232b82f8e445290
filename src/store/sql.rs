//! The SQL shared by both backends. Both accept `$N` placeholders and `RETURNING`, and `Ts` encodes
//! natively on each, so one text serves both; the macro stamps it into each backend's `Store` impl.
//! What differs (job claiming) is passed in as `claim_lock`.

use uuid::Uuid;

use crate::store::{day_of, AuditEvent, PaymentFilter, PaymentRecord, TokenRecord, Ts};

pub(crate) const JOB_COLUMNS: &str =
    "id, kind, payload, status, attempts, max_attempts, run_at, lease_owner, \
     lease_expires_at, last_error, created_at, updated_at";

pub(crate) const TOKEN_COLUMNS: &str = "id, account_id, created_at, expiry_month, expiry_year, cardholder_name, \
     issuer_identification_number, masked_account_number, account_number_last_four, account_number_length, scheme, \
     status, fingerprint, sealed_card, business_key, import_provider, expires_at";

pub(crate) const ACCOUNT_KEYS_COLUMNS: &str =
    "account_id, dek_version, master_version, wrapped_dek, wrapped_fingerprint_key, created_at, rewrapped_at";

/// Rows per multi-row INSERT: well under both backends' limits on bound parameters.
pub(crate) const INSERT_CHUNK: usize = 200;

/// `WHERE` for a token listing; binds `$1` account, then `from` and `until` when present, in that order.
pub(crate) fn token_filter(query: &crate::store::TokenQuery) -> (String, usize) {
    let mut sql = String::from(" WHERE account_id = $1");
    let mut next = 2;
    if query.from.is_some() {
        sql.push_str(&format!(" AND created_at >= ${next}"));
        next += 1;
    }
    if query.until.is_some() {
        sql.push_str(&format!(" AND created_at < ${next}"));
        next += 1;
    }
    (sql, next)
}

/// Appends `INSERT INTO tokens (…) VALUES (…), …` for `rows` to `query`.
pub(crate) fn push_token_insert<'a, DB>(
    query: &mut sqlx::QueryBuilder<'a, DB>,
    rows: &'a [(TokenRecord, AuditEvent)],
) where
    DB: sqlx::Database,
    Uuid: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Ts: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<Ts>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i32: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a [u8]: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    query.push(format!("INSERT INTO tokens ({TOKEN_COLUMNS}) "));
    query.push_values(rows, |mut row, (t, _)| {
        row.push_bind(t.id)
            .push_bind(t.account_id)
            .push_bind(t.created_at)
            .push_bind(t.expiry_month)
            .push_bind(t.expiry_year)
            .push_bind(t.cardholder_name.as_deref())
            .push_bind(t.issuer_identification_number.as_str())
            .push_bind(t.masked_account_number.as_str())
            .push_bind(t.account_number_last_four.as_str())
            .push_bind(t.account_number_length)
            .push_bind(t.scheme.as_str())
            .push_bind(t.status.as_str())
            .push_bind(t.fingerprint.as_slice())
            .push_bind(t.sealed_card.as_slice())
            .push_bind(t.business_key.as_deref())
            .push_bind(t.import_provider.as_deref())
            .push_bind(t.expires_at);
    });
}

/// Appends `INSERT INTO audit_events (…) VALUES (…), …` for the events of `rows` to `query`.
pub(crate) fn push_audit_insert<'a, DB>(
    query: &mut sqlx::QueryBuilder<'a, DB>,
    rows: &'a [(TokenRecord, AuditEvent)],
) where
    DB: sqlx::Database,
    Ts: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<Uuid>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    query.push("INSERT INTO audit_events (at, account_id, actor, action, target, outcome) ");
    query.push_values(rows, |mut row, (_, e)| {
        row.push_bind(e.at)
            .push_bind(e.account_id)
            .push_bind(e.actor.as_str())
            .push_bind(e.action.as_str())
            .push_bind(e.target.as_deref())
            .push_bind(e.outcome.as_str());
    });
}

pub(crate) const PAYMENT_COLUMNS: &str = "id, account_id, version, created_at, updated_at, use_case, status, \
     currency_code, reference, capture_mode, amount_requested, amount_authorized, amount_captured, amount_voided, \
     amount_refunded, amount_refund_reserved, capture_requested, token_id, source, flow_matrix_rule, processor, \
     processor_reference, failure_details, initial_payment_id, recurring_frequency, recurring_expiry, metadata";

pub(crate) const REFUND_COLUMNS: &str =
    "id, payment_id, account_id, created_at, updated_at, amount, currency_code, status, reference, failure_details";

pub(crate) const TRANSACTION_COLUMNS: &str =
    "id, payment_id, created_at, kind, status, amount, processor_reference, message";

pub(crate) const JOB_INSERT: &str =
    "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, \
     created_at, updated_at) VALUES ($1, $2, $3, 'queued', 0, $4, $5, $6, $6)";

pub(crate) const COUNT_ADD: &str =
    "INSERT INTO payment_day_counts (account_id, day, status, currency_code, n) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, status, currency_code, day) \
     DO UPDATE SET n = payment_day_counts.n + excluded.n";

pub(crate) const TOTAL_ADD: &str =
    "INSERT INTO payment_day_totals (account_id, day, n) VALUES ($1, $2, $3) \
     ON CONFLICT (account_id, day) DO UPDATE SET n = payment_day_totals.n + excluded.n";

/// The per-day totals a set of new payments adds.
pub(crate) fn day_total_deltas(rows: &[PaymentRecord]) -> Vec<((Uuid, i64), i64)> {
    let mut totals = std::collections::BTreeMap::new();
    for p in rows {
        *totals
            .entry((p.account_id, day_of(p.created_at)))
            .or_insert(0) += 1;
    }
    totals.into_iter().collect()
}

/// Appends `INSERT INTO payments (…) VALUES (…), …` for `rows` to `query`.
pub(crate) fn push_payment_insert<'a, DB>(
    query: &mut sqlx::QueryBuilder<'a, DB>,
    rows: &'a [PaymentRecord],
) where
    DB: sqlx::Database,
    Uuid: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<Uuid>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Ts: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i32>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    query.push(format!("INSERT INTO payments ({PAYMENT_COLUMNS}) "));
    query.push_values(rows, |mut row, p| {
        row.push_bind(p.id)
            .push_bind(p.account_id)
            .push_bind(p.version)
            .push_bind(p.created_at)
            .push_bind(p.updated_at)
            .push_bind(p.use_case.as_str())
            .push_bind(p.status.as_str())
            .push_bind(p.currency_code.as_str())
            .push_bind(p.reference.as_str())
            .push_bind(p.capture_mode.as_str())
            .push_bind(p.amount_requested)
            .push_bind(p.amount_authorized)
            .push_bind(p.amount_captured)
            .push_bind(p.amount_voided)
            .push_bind(p.amount_refunded)
            .push_bind(p.amount_refund_reserved)
            .push_bind(p.capture_requested)
            .push_bind(p.token_id)
            .push_bind(p.source.as_str())
            .push_bind(p.flow_matrix_rule.as_str())
            .push_bind(p.processor.as_str())
            .push_bind(p.processor_reference.as_deref())
            .push_bind(p.failure_details.as_deref())
            .push_bind(p.initial_payment_id)
            .push_bind(p.recurring_frequency)
            .push_bind(p.recurring_expiry.as_deref())
            .push_bind(p.metadata.as_deref());
    });
}

/// The day counts a set of new payments adds: one entry per (account, day, status, currency).
pub(crate) fn day_count_deltas(rows: &[PaymentRecord]) -> Vec<((Uuid, i64, String, String), i64)> {
    let mut counts = std::collections::BTreeMap::new();
    for p in rows {
        *counts
            .entry((
                p.account_id,
                day_of(p.created_at),
                p.status.clone(),
                p.currency_code.clone(),
            ))
            .or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

/// `WHERE` for a payment listing: `$1` account, then `from`, `until`, the statuses and the currencies, in
/// that order, each only when present; returns the next free placeholder number.
pub(crate) fn payment_filter(
    filter: &PaymentFilter,
    column: &str,
    first: usize,
) -> (String, usize) {
    let mut sql = String::from(" WHERE account_id = $1");
    let mut next = first;
    if filter.from.is_some() {
        sql.push_str(&format!(" AND {column} >= ${next}"));
        next += 1;
    }
    if filter.until.is_some() {
        sql.push_str(&format!(" AND {column} < ${next}"));
        next += 1;
    }
    if !filter.statuses.is_empty() {
        sql.push_str(&format!(
            " AND status IN ({})",
            placeholders(next, filter.statuses.len())
        ));
        next += filter.statuses.len();
    }
    if !filter.currencies.is_empty() {
        sql.push_str(&format!(
            " AND currency_code IN ({})",
            placeholders(next, filter.currencies.len())
        ));
        next += filter.currencies.len();
    }
    (sql, next)
}

/// `$first, $first+1, …` for an `IN (…)` list of `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Takes over an expired lease first (rare, and its job has waited longest), else the queued job due
/// first. Two lookups, each walking its own partial index in order and stopping at the first row: one
/// `OR` over both made the database collect and sort every due job on each claim, which a backlog of
/// webhook deliveries turned into seconds.
pub(crate) fn claim_sql(kinds: usize, claim_lock: &str) -> String {
    format!(
        "UPDATE jobs SET status = 'running', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, \
         updated_at = $3 \
         WHERE id = COALESCE( \
             (SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at < $3 AND kind IN ({kinds}) \
              ORDER BY lease_expires_at LIMIT 1 {claim_lock}), \
             (SELECT id FROM jobs WHERE status = 'queued' AND run_at <= $3 AND kind IN ({kinds}) \
              ORDER BY run_at, id LIMIT 1 {claim_lock})) \
           AND (status = 'queued' OR lease_expires_at < $3) \
         RETURNING {JOB_COLUMNS}",
        kinds = placeholders(4, kinds),
    )
}

macro_rules! impl_store {
    ($store:ty, db = $db:ty, backend = $backend:expr, claim_lock = $claim_lock:expr) => {
        /// Writes shared by several `Store` methods, on the pool or inside a transaction.
        impl $store {
            async fn write_account<'e>(db: impl sqlx::Executor<'e, Database = $db>, a: &Account) -> Result<(), sqlx::Error> {
                sqlx::query("INSERT INTO accounts (id, name, features, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(a.id)
                    .bind(&a.name)
                    .bind(a.features.to_db())
                    .bind(a.created_at)
                    .execute(db)
                    .await?;
                Ok(())
            }

            async fn write_api_key<'e>(db: impl sqlx::Executor<'e, Database = $db>, k: &ApiKeyRecord) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "INSERT INTO api_keys (id, account_id, label, secret_digest, created_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(k.id)
                .bind(k.account_id)
                .bind(&k.label)
                .bind(&k.secret_digest)
                .bind(k.created_at)
                .bind(k.revoked_at)
                .execute(db)
                .await?;
                Ok(())
            }

            async fn write_job<'e>(db: impl sqlx::Executor<'e, Database = $db>, job: &NewJob) -> Result<(), sqlx::Error> {
                sqlx::query($crate::store::sql::JOB_INSERT)
                    .bind(job.id)
                    .bind(&job.kind)
                    .bind(&job.payload)
                    .bind(job.max_attempts)
                    .bind(job.run_at)
                    .bind(Ts::now())
                    .execute(db)
                    .await?;
                Ok(())
            }

            async fn add_day_count<'e>(
                db: impl sqlx::Executor<'e, Database = $db>,
                (account, day, status, currency): (Uuid, i64, &str, &str),
                n: i64,
            ) -> Result<(), sqlx::Error> {
                sqlx::query($crate::store::sql::COUNT_ADD)
                    .bind(account)
                    .bind(day)
                    .bind(status)
                    .bind(currency)
                    .bind(n)
                    .execute(db)
                    .await?;
                Ok(())
            }

            $crate::store::webhook_records::webhook_helpers!($db);

            /// Payment rows with their day counts and totals, inside the caller's transaction.
            async fn write_payments(tx: &mut sqlx::Transaction<'_, $db>, rows: &[PaymentRecord]) -> Result<(), sqlx::Error> {
                for chunk in rows.chunks($crate::store::sql::INSERT_CHUNK) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new("");
                    $crate::store::sql::push_payment_insert(&mut insert, chunk);
                    insert.build().execute(&mut **tx).await?;
                }
                for ((account, day, status, currency), n) in $crate::store::sql::day_count_deltas(rows) {
                    Self::add_day_count(&mut **tx, (account, day, &status, &currency), n).await?;
                }
                for ((account, day), n) in $crate::store::sql::day_total_deltas(rows) {
                    sqlx::query($crate::store::sql::TOTAL_ADD)
                        .bind(account)
                        .bind(day)
                        .bind(n)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> $crate::store::Backend {
                $backend
            }

            async fn migrate(&self) -> StoreResult<()> {
                Self::MIGRATOR.run(&self.pool).await?;
                Ok(())
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn close(&self) {
                self.close_pools().await
            }

            async fn insert_account(&self, a: &Account) -> StoreResult<()> {
                Ok(Self::write_account(&self.pool, a).await?)
            }

            async fn get_account(&self, id: Uuid) -> StoreResult<Option<Account>> {
                Ok(sqlx::query_as("SELECT id, name, features, created_at FROM accounts WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
                Ok(sqlx::query_as("SELECT id, name, features, created_at FROM accounts ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn bootstrap_default_account(&self, a: &Account, k: &ApiKeyRecord) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let claimed = sqlx::query(
                    "INSERT INTO meta (key, value) SELECT 'bootstrap', $1 \
                     WHERE NOT EXISTS (SELECT 1 FROM accounts) ON CONFLICT (key) DO NOTHING",
                )
                .bind(a.id.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !claimed {
                    return Ok(false);
                }
                Self::write_account(&mut *tx, a).await?;
                Self::write_api_key(&mut *tx, k).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn insert_api_key(&self, k: &ApiKeyRecord) -> StoreResult<()> {
                Ok(Self::write_api_key(&self.pool, k).await?)
            }

            async fn get_api_key(&self, id: Uuid) -> StoreResult<Option<ApiKeyRecord>> {
                Ok(sqlx::query_as(
                    "SELECT id, account_id, label, secret_digest, created_at, revoked_at FROM api_keys WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn get_key_with_account(&self, key_id: Uuid) -> StoreResult<Option<KeyWithAccount>> {
                Ok(sqlx::query_as(
                    "SELECT k.id AS key_id, k.account_id, k.secret_digest, k.revoked_at, a.features \
                     FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = $1",
                )
                .bind(key_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn list_api_keys(&self, account_id: Uuid) -> StoreResult<Vec<ApiKeyRecord>> {
                Ok(sqlx::query_as(
                    "SELECT id, account_id, label, secret_digest, created_at, revoked_at FROM api_keys \
                     WHERE account_id = $1 ORDER BY created_at, id",
                )
                .bind(account_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn revoke_api_key(&self, id: Uuid, at: Ts) -> StoreResult<bool> {
                let done = sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_idempotency_claim(&self, account_id: Uuid, key: &str, hash: &[u8], at: Ts) -> StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO idempotency_records (account_id, idempotency_key, request_hash, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, idempotency_key) DO NOTHING",
                )
                .bind(account_id)
                .bind(key)
                .bind(hash)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn get_idempotency_record(&self, account_id: Uuid, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
                Ok(sqlx::query_as(
                    "SELECT request_hash, created_at, response_status, response_body FROM idempotency_records \
                     WHERE account_id = $1 AND idempotency_key = $2",
                )
                .bind(account_id)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn reclaim_idempotency_record(
                &self,
                account_id: Uuid,
                key: &str,
                hash: &[u8],
                at: Ts,
                expired_before: Ts,
                abandoned_before: Ts,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE idempotency_records \
                     SET request_hash = $3, created_at = $4, response_status = NULL, response_body = NULL \
                     WHERE account_id = $1 AND idempotency_key = $2 \
                       AND (created_at < $5 OR (response_status IS NULL AND created_at < $6))",
                )
                .bind(account_id)
                .bind(key)
                .bind(hash)
                .bind(at)
                .bind(expired_before)
                .bind(abandoned_before)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn save_idempotent_response(
                &self,
                account_id: Uuid,
                key: &str,
                claimed_at: Ts,
                status: i32,
                body: &[u8],
            ) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE idempotency_records SET response_status = $4, response_body = $5 \
                     WHERE account_id = $1 AND idempotency_key = $2 AND created_at = $3 AND response_status IS NULL",
                )
                .bind(account_id)
                .bind(key)
                .bind(claimed_at)
                .bind(status)
                .bind(body)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn delete_idempotency_record(&self, account_id: Uuid, key: &str, claimed_at: Ts) -> StoreResult<()> {
                sqlx::query(
                    "DELETE FROM idempotency_records WHERE account_id = $1 AND idempotency_key = $2 \
                     AND created_at = $3 AND response_status IS NULL",
                )
                    .bind(account_id)
                    .bind(key)
                    .bind(claimed_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn purge_idempotency_records(&self, created_before: Ts) -> StoreResult<u64> {
                let done = sqlx::query("DELETE FROM idempotency_records WHERE created_at < $1")
                    .bind(created_before)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn enqueue_job(&self, job: &NewJob) -> StoreResult<()> {
                Ok(Self::write_job(&self.pool, job).await?)
            }

            async fn claim_next_job(&self, kinds: &[&str], owner: &str, now: Ts, lease_until: Ts) -> StoreResult<Option<Job>> {
                if kinds.is_empty() {
                    return Ok(None);
                }
                let sql = $crate::store::sql::claim_sql(kinds.len(), $claim_lock);
                let mut query = sqlx::query_as(&sql).bind(owner).bind(lease_until).bind(now);
                for kind in kinds {
                    query = query.bind(*kind);
                }
                Ok(query.fetch_optional(&self.pool).await?)
            }

            async fn renew_job_lease(&self, id: Uuid, owner: &str, lease_until: Ts, now: Ts) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE jobs SET lease_expires_at = $3, updated_at = $4 \
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(id)
                .bind(owner)
                .bind(lease_until)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn complete_job(&self, id: Uuid, owner: &str, now: Ts) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE jobs SET status = 'done', lease_owner = NULL, lease_expires_at = NULL, updated_at = $3 \
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(id)
                .bind(owner)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn reschedule_job(&self, id: Uuid, owner: &str, run_at: Ts, error: &str, now: Ts) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE jobs SET status = 'queued', run_at = $3, last_error = $4, lease_owner = NULL, \
                     lease_expires_at = NULL, updated_at = $5 \
                     WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(id)
                .bind(owner)
                .bind(run_at)
                .bind(error)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn fail_job(&self, id: Uuid, owner: &str, error: &str, now: Ts) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE jobs SET status = 'failed', last_error = $3, lease_owner = NULL, lease_expires_at = NULL, \
                     updated_at = $4 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                )
                .bind(id)
                .bind(owner)
                .bind(error)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn get_job(&self, id: Uuid) -> StoreResult<Option<Job>> {
                let sql = format!("SELECT {} FROM jobs WHERE id = $1", $crate::store::sql::JOB_COLUMNS);
                Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
            }

            async fn get_account_keys(&self, account_id: Uuid) -> StoreResult<Option<AccountKeysRecord>> {
                let sql = format!(
                    "SELECT {} FROM account_keys WHERE account_id = $1",
                    $crate::store::sql::ACCOUNT_KEYS_COLUMNS
                );
                Ok(sqlx::query_as(&sql).bind(account_id).fetch_optional(&self.pool).await?)
            }

            async fn insert_account_keys(&self, k: &AccountKeysRecord) -> StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO account_keys (account_id, dek_version, master_version, wrapped_dek, \
                     wrapped_fingerprint_key, created_at, rewrapped_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (account_id) DO NOTHING",
                )
                .bind(k.account_id)
                .bind(k.dek_version)
                .bind(k.master_version)
                .bind(&k.wrapped_dek)
                .bind(&k.wrapped_fingerprint_key)
                .bind(k.created_at)
                .bind(k.rewrapped_at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn list_account_keys_wrapped_before(&self, master_version: i32, limit: i64) -> StoreResult<Vec<AccountKeysRecord>> {
                let sql = format!(
                    "SELECT {} FROM account_keys WHERE master_version < $1 ORDER BY account_id LIMIT $2",
                    $crate::store::sql::ACCOUNT_KEYS_COLUMNS
                );
                Ok(sqlx::query_as(&sql).bind(master_version).bind(limit).fetch_all(&self.pool).await?)
            }

            async fn rewrap_account_keys(&self, k: &AccountKeysRecord, old_master_version: i32) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE account_keys SET master_version = $2, wrapped_dek = $3, wrapped_fingerprint_key = $4, \
                     rewrapped_at = $5 WHERE account_id = $1 AND master_version = $6",
                )
                .bind(k.account_id)
                .bind(k.master_version)
                .bind(&k.wrapped_dek)
                .bind(&k.wrapped_fingerprint_key)
                .bind(k.rewrapped_at)
                .bind(old_master_version)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_tokens(&self, batch: &[(TokenRecord, AuditEvent)]) -> StoreResult<()> {
                self.insert_token_batch(batch, &[]).await
            }

            async fn get_token(&self, account_id: Uuid, id: Uuid) -> StoreResult<Option<TokenRecord>> {
                let sql = format!(
                    "SELECT {} FROM tokens WHERE id = $1 AND account_id = $2",
                    $crate::store::sql::TOKEN_COLUMNS
                );
                Ok(sqlx::query_as(&sql).bind(id).bind(account_id).fetch_optional(&self.pool).await?)
            }

            async fn list_tokens(&self, q: &TokenQuery) -> StoreResult<Vec<TokenRecord>> {
                let (filter, next) = $crate::store::sql::token_filter(q);
                let order = if q.oldest_first { "ASC" } else { "DESC" };
                let sql = format!(
                    "SELECT {} FROM tokens{filter} ORDER BY created_at {order}, id {order} LIMIT ${} OFFSET ${}",
                    $crate::store::sql::TOKEN_COLUMNS,
                    next,
                    next + 1
                );
                let mut query = sqlx::query_as(&sql).bind(q.account_id);
                if let Some(from) = q.from {
                    query = query.bind(from);
                }
                if let Some(until) = q.until {
                    query = query.bind(until);
                }
                Ok(query.bind(q.limit).bind(q.offset).fetch_all(&self.pool).await?)
            }

            async fn count_tokens(&self, q: &TokenQuery) -> StoreResult<u64> {
                let (filter, _) = $crate::store::sql::token_filter(q);
                let sql = format!("SELECT COUNT(*) FROM tokens{filter}");
                let mut query = sqlx::query_scalar::<_, i64>(&sql).bind(q.account_id);
                if let Some(from) = q.from {
                    query = query.bind(from);
                }
                if let Some(until) = q.until {
                    query = query.bind(until);
                }
                Ok(u64::try_from(query.fetch_one(&self.pool).await?).unwrap_or(0))
            }

            async fn delete_token(&self, account_id: Uuid, id: Uuid) -> StoreResult<bool> {
                let done = sqlx::query("DELETE FROM tokens WHERE id = $1 AND account_id = $2")
                    .bind(id)
                    .bind(account_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_expired_tokens(&self, now: Ts) -> StoreResult<u64> {
                let done = sqlx::query("DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at < $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn insert_payment(&self, p: &PaymentRecord, job: Option<&NewJob>) -> StoreResult<()> {
                self.insert_payment_with_outbox(p, job, &[]).await
            }

            async fn insert_payments(&self, rows: &[PaymentRecord]) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::write_payments(&mut tx, rows).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_payment(&self, account_id: Uuid, id: Uuid) -> StoreResult<Option<PaymentRecord>> {
                let sql = format!(
                    "SELECT {} FROM payments WHERE id = $1 AND account_id = $2",
                    $crate::store::sql::PAYMENT_COLUMNS
                );
                Ok(sqlx::query_as(&sql).bind(id).bind(account_id).fetch_optional(&self.pool).await?)
            }

            async fn apply_payment_change(&self, c: &PaymentChange) -> StoreResult<bool> {
                let p = &c.payment;
                let mut tx = self.pool.begin().await?;
                let updated = sqlx::query(
                    "UPDATE payments SET version = $3, updated_at = $4, status = $5, amount_authorized = $6, \
                     amount_captured = $7, amount_voided = $8, amount_refunded = $9, amount_refund_reserved = $10, \
                     capture_requested = $11, processor_reference = $12, failure_details = $13 \
                     WHERE id = $1 AND version = $2",
                )
                .bind(p.id)
                .bind(c.expected_version)
                .bind(p.version)
                .bind(p.updated_at)
                .bind(&p.status)
                .bind(p.amount_authorized)
                .bind(p.amount_captured)
                .bind(p.amount_voided)
                .bind(p.amount_refunded)
                .bind(p.amount_refund_reserved)
                .bind(p.capture_requested)
                .bind(&p.processor_reference)
                .bind(&p.failure_details)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() != 1 {
                    return Ok(false);
                }
                if c.previous_status != p.status {
                    let day = $crate::store::day_of(p.created_at);
                    for (status, delta) in [(&c.previous_status, -1i64), (&p.status, 1i64)] {
                        Self::add_day_count(&mut *tx, (p.account_id, day, status, &p.currency_code), delta).await?;
                    }
                }
                if let Some(t) = &c.transaction {
                    let sql = format!(
                        "INSERT INTO payment_transactions ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        $crate::store::sql::TRANSACTION_COLUMNS
                    );
                    sqlx::query(&sql)
                        .bind(t.id)
                        .bind(t.payment_id)
                        .bind(t.created_at)
                        .bind(&t.kind)
                        .bind(&t.status)
                        .bind(t.amount)
                        .bind(&t.processor_reference)
                        .bind(&t.message)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(r) = &c.new_refund {
                    let sql = format!(
                        "INSERT INTO refunds ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                        $crate::store::sql::REFUND_COLUMNS
                    );
                    sqlx::query(&sql)
                        .bind(r.id)
                        .bind(r.payment_id)
                        .bind(r.account_id)
                        .bind(r.created_at)
                        .bind(r.updated_at)
                        .bind(r.amount)
                        .bind(&r.currency_code)
                        .bind(&r.status)
                        .bind(&r.reference)
                        .bind(&r.failure_details)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(r) = &c.finished_refund {
                    let done = sqlx::query(
                        "UPDATE refunds SET status = $2, updated_at = $3, failure_details = $4 \
                         WHERE id = $1 AND status = 'processing'",
                    )
                    .bind(r.id)
                    .bind(&r.status)
                    .bind(r.updated_at)
                    .bind(&r.failure_details)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        return Ok(false);
                    }
                }
                if let Some(job) = &c.job {
                    Self::write_job(&mut *tx, job).await?;
                }
                Self::write_outbox(&mut tx, &c.outbox).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn payment_day_counts(&self, f: &PaymentFilter) -> StoreResult<Vec<(i64, i64)>> {
                let (filter, _) = $crate::store::sql::payment_filter(f, "day", 2);
                let sql = if f.statuses.is_empty() && f.currencies.is_empty() {
                    format!("SELECT day, n FROM payment_day_totals{filter} AND n > 0 ORDER BY day DESC")
                } else {
                    format!(
                        "SELECT day, CAST(SUM(n) AS BIGINT) FROM payment_day_counts{filter} \
                         GROUP BY day HAVING SUM(n) > 0 ORDER BY day DESC"
                    )
                };
                let mut query = sqlx::query_as::<_, (i64, i64)>(&sql).bind(f.account_id);
                if let Some(from) = f.from {
                    query = query.bind($crate::store::day_of(from));
                }
                if let Some(until) = f.until {
                    query = query.bind($crate::store::day_of(until));
                }
                for s in &f.statuses {
                    query = query.bind(s);
                }
                for c in &f.currencies {
                    query = query.bind(c);
                }
                Ok(query.fetch_all(&self.pool).await?)
            }

            async fn list_payments_between(
                &self,
                f: &PaymentFilter,
                lower: Option<Ts>,
                upper: Option<Ts>,
                limit: i64,
                offset: i64,
            ) -> StoreResult<Vec<PaymentRecord>> {
                let window = PaymentFilter { from: lower, until: upper, ..f.clone() };
                let (filter, next) = $crate::store::sql::payment_filter(&window, "created_at", 2);
                let sql = format!(
                    "SELECT {} FROM payments{filter} ORDER BY created_at DESC, id DESC LIMIT ${next} OFFSET ${}",
                    $crate::store::sql::PAYMENT_COLUMNS,
                    next + 1
                );
                let mut query = sqlx::query_as(&sql).bind(f.account_id);
                if let Some(lower) = lower {
                    query = query.bind(lower);
                }
                if let Some(upper) = upper {
                    query = query.bind(upper);
                }
                for s in &f.statuses {
                    query = query.bind(s);
                }
                for c in &f.currencies {
                    query = query.bind(c);
                }
                Ok(query.bind(limit).bind(offset).fetch_all(&self.pool).await?)
            }

            async fn get_refund(&self, account_id: Uuid, id: Uuid) -> StoreResult<Option<RefundRecord>> {
                let sql = format!(
                    "SELECT {} FROM refunds WHERE id = $1 AND account_id = $2",
                    $crate::store::sql::REFUND_COLUMNS
                );
                Ok(sqlx::query_as(&sql).bind(id).bind(account_id).fetch_optional(&self.pool).await?)
            }

            async fn list_refunds(&self, payment_id: Uuid) -> StoreResult<Vec<RefundRecord>> {
                let sql = format!(
                    "SELECT {} FROM refunds WHERE payment_id = $1 ORDER BY created_at, id",
                    $crate::store::sql::REFUND_COLUMNS
                );
                Ok(sqlx::query_as(&sql).bind(payment_id).fetch_all(&self.pool).await?)
            }

            async fn list_transactions(&self, payment_id: Uuid) -> StoreResult<Vec<TransactionRecord>> {
                let sql = format!(
                    "SELECT {} FROM payment_transactions WHERE payment_id = $1 ORDER BY created_at, id",
                    $crate::store::sql::TRANSACTION_COLUMNS
                );
                Ok(sqlx::query_as(&sql).bind(payment_id).fetch_all(&self.pool).await?)
            }

            async fn purge_finished_jobs(&self, before: Ts) -> StoreResult<u64> {
                let done = sqlx::query("DELETE FROM jobs WHERE status IN ('done', 'failed') AND updated_at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn insert_audit_event(&self, e: &AuditEvent) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO audit_events (at, account_id, actor, action, target, outcome) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(e.at)
                .bind(e.account_id)
                .bind(&e.actor)
                .bind(&e.action)
                .bind(&e.target)
                .bind(&e.outcome)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_audit_events(&self, account_id: Uuid, limit: i64) -> StoreResult<Vec<AuditEvent>> {
                Ok(sqlx::query_as(
                    "SELECT id, at, account_id, actor, action, target, outcome FROM audit_events \
                     WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(account_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn insert_webhook(&self, w: &$crate::store::WebhookRecord) -> StoreResult<()> {
                let sql = format!(
                    "INSERT INTO webhooks ({}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    $crate::store::WEBHOOK_COLUMNS
                );
                sqlx::query(&sql)
                    .bind(w.id)
                    .bind(w.account_id)
                    .bind(&w.url)
                    .bind(&w.events)
                    .bind(&w.sealed_key)
                    .bind(w.created_at)
                    .bind(w.removed_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<$crate::store::WebhookRecord>> {
                let sql = format!("SELECT {} FROM webhooks WHERE id = $1", $crate::store::WEBHOOK_COLUMNS);
                Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
            }

            async fn list_webhooks(&self, account_id: Option<Uuid>) -> StoreResult<Vec<$crate::store::WebhookRecord>> {
                let columns = $crate::store::WEBHOOK_COLUMNS;
                Ok(match account_id {
                    Some(account) => {
                        let sql = format!(
                            "SELECT {columns} FROM webhooks WHERE account_id = $1 AND removed_at IS NULL \
                             ORDER BY created_at, id"
                        );
                        sqlx::query_as(&sql).bind(account).fetch_all(&self.pool).await?
                    }
                    None => {
                        let sql = format!(
                            "SELECT {columns} FROM webhooks WHERE removed_at IS NULL ORDER BY created_at, id"
                        );
                        sqlx::query_as(&sql).fetch_all(&self.pool).await?
                    }
                })
            }

            async fn remove_webhook(&self, id: Uuid, at: Ts) -> StoreResult<bool> {
                let done = sqlx::query("UPDATE webhooks SET removed_at = $2 WHERE id = $1 AND removed_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn insert_tokens_with_outbox(
                &self,
                batch: &[(TokenRecord, AuditEvent)],
                outbox: &[$crate::store::OutboxRecord],
            ) -> StoreResult<()> {
                self.insert_token_batch(batch, outbox).await
            }

            async fn delete_token_with_outbox(
                &self,
                account_id: Uuid,
                id: Uuid,
                outbox: &[$crate::store::OutboxRecord],
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query("DELETE FROM tokens WHERE id = $1 AND account_id = $2")
                    .bind(id)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::write_outbox(&mut tx, outbox).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn touch_token_with_outbox(
                &self,
                account_id: Uuid,
                id: Uuid,
                e: &AuditEvent,
                outbox: &[$crate::store::OutboxRecord],
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                // A write that changes nothing, for the row lock: a delete of the token waits for it.
                let done = sqlx::query("UPDATE tokens SET status = status WHERE id = $1 AND account_id = $2")
                    .bind(id)
                    .bind(account_id)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO audit_events (at, account_id, actor, action, target, outcome) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(e.at)
                .bind(e.account_id)
                .bind(&e.actor)
                .bind(&e.action)
                .bind(&e.target)
                .bind(&e.outcome)
                .execute(&mut *tx)
                .await?;
                Self::write_outbox(&mut tx, outbox).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn insert_payment_with_outbox(
                &self,
                p: &PaymentRecord,
                job: Option<&NewJob>,
                outbox: &[$crate::store::OutboxRecord],
            ) -> StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::write_payments(&mut tx, std::slice::from_ref(p)).await?;
                if let Some(job) = job {
                    Self::write_job(&mut *tx, job).await?;
                }
                Self::write_outbox(&mut tx, outbox).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_webhook_delivery(&self, id: Uuid) -> StoreResult<Option<$crate::store::WebhookDelivery>> {
                let sql = format!(
                    "SELECT {} FROM webhook_deliveries WHERE id = $1",
                    $crate::store::DELIVERY_COLUMNS
                );
                Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
            }

            async fn pending_delivery_before(
                &self,
                webhook_id: Uuid,
                object_id: Uuid,
                seq: i64,
            ) -> StoreResult<Option<$crate::store::WebhookDelivery>> {
                let sql = format!(
                    "SELECT {} FROM webhook_deliveries WHERE webhook_id = $1 AND object_id = $2 AND seq < $3 \
                     AND status = 'pending' ORDER BY seq LIMIT 1",
                    $crate::store::DELIVERY_COLUMNS
                );
                Ok(sqlx::query_as(&sql)
                    .bind(webhook_id)
                    .bind(object_id)
                    .bind(seq)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn record_delivery_attempt(
                &self,
                id: Uuid,
                attempts: i32,
                next_attempt_at: Ts,
                error: &str,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE webhook_deliveries SET attempts = $2, next_attempt_at = $3, last_error = $4 \
                     WHERE id = $1 AND status = 'pending'",
                )
                .bind(id)
                .bind(attempts)
                .bind(next_attempt_at)
                .bind(error)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn finish_webhook_delivery(
                &self,
                id: Uuid,
                status: &str,
                attempts: i32,
                error: Option<&str>,
                at: Ts,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE webhook_deliveries SET status = $2, attempts = $3, \
                     last_error = COALESCE($4, last_error), finished_at = $5 \
                     WHERE id = $1 AND status = 'pending'",
                )
                .bind(id)
                .bind(status)
                .bind(attempts)
                .bind(error)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn list_webhook_deliveries(
                &self,
                webhook_id: Uuid,
                limit: i64,
            ) -> StoreResult<Vec<$crate::store::WebhookDelivery>> {
                let sql = format!(
                    "SELECT {} FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY seq DESC LIMIT $2",
                    $crate::store::DELIVERY_COLUMNS
                );
                Ok(sqlx::query_as(&sql).bind(webhook_id).bind(limit).fetch_all(&self.pool).await?)
            }

            async fn purge_webhook_deliveries(&self, before: Ts) -> StoreResult<u64> {
                let done = sqlx::query(
                    "DELETE FROM webhook_deliveries WHERE finished_at IS NOT NULL AND finished_at < $1",
                )
                .bind(before)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use impl_store;
