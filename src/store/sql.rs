//! The SQL shared by both backends. Both accept `$N` placeholders and `RETURNING`, and `Ts` encodes
//! natively on each, so one text serves both; the macro stamps it into each backend's `Store` impl.
//! What differs (job claiming) is passed in as `claim_lock`.

pub(crate) const JOB_COLUMNS: &str =
    "id, kind, payload, status, attempts, max_attempts, run_at, lease_owner, \
     lease_expires_at, last_error, created_at, updated_at";

/// `$first, $first+1, …` for an `IN (…)` list of `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn claim_sql(kinds: usize, claim_lock: &str) -> String {
    format!(
        "UPDATE jobs SET status = 'running', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, \
         updated_at = $3 \
         WHERE id = (SELECT id FROM jobs WHERE kind IN ({kinds}) \
                     AND ((status = 'queued' AND run_at <= $3) OR (status = 'running' AND lease_expires_at < $3)) \
                     ORDER BY run_at, id LIMIT 1 {claim_lock}) \
           AND (status = 'queued' OR lease_expires_at < $3) \
         RETURNING {JOB_COLUMNS}",
        kinds = placeholders(4, kinds),
    )
}

macro_rules! impl_store {
    ($store:ty, backend = $backend:expr, claim_lock = $claim_lock:expr) => {
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
                self.pool.close().await
            }

            async fn insert_account(&self, a: &Account) -> StoreResult<()> {
                sqlx::query("INSERT INTO accounts (id, name, features, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(a.id)
                    .bind(&a.name)
                    .bind(a.features.to_db())
                    .bind(a.created_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
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
                sqlx::query("INSERT INTO accounts (id, name, features, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(a.id)
                    .bind(&a.name)
                    .bind(a.features.to_db())
                    .bind(a.created_at)
                    .execute(&mut *tx)
                    .await?;
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
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn insert_api_key(&self, k: &ApiKeyRecord) -> StoreResult<()> {
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
                .execute(&self.pool)
                .await?;
                Ok(())
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

            async fn save_idempotent_response(&self, account_id: Uuid, key: &str, status: i32, body: &[u8]) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE idempotency_records SET response_status = $3, response_body = $4 \
                     WHERE account_id = $1 AND idempotency_key = $2",
                )
                .bind(account_id)
                .bind(key)
                .bind(status)
                .bind(body)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn delete_idempotency_record(&self, account_id: Uuid, key: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM idempotency_records WHERE account_id = $1 AND idempotency_key = $2")
                    .bind(account_id)
                    .bind(key)
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
                sqlx::query(
                    "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, run_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, 'queued', 0, $4, $5, $6, $6)",
                )
                .bind(job.id)
                .bind(&job.kind)
                .bind(&job.payload)
                .bind(job.max_attempts)
                .bind(job.run_at)
                .bind(Ts::now())
                .execute(&self.pool)
                .await?;
                Ok(())
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

            async fn insert_audit_event(&self, e: &AuditEvent) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO audit_events (id, at, account_id, actor, action, target, outcome) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(e.id)
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
                     WHERE account_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
                )
                .bind(account_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}

pub(crate) use impl_store;
