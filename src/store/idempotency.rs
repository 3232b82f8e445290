//! Idempotency records: `IdempotencyStore` and its SQL. A request claims `(account, key)`, records its
//! answer under that claim, and a later claim may take over a record that expired or was abandoned.

use async_trait::async_trait;
use uuid::Uuid;

use super::{StoreResult, Ts};

/// A stored idempotency record; `response_status` is `None` while the first request is in flight.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct IdempotencyRecord {
    pub request_hash: Vec<u8>,
    pub created_at: Ts,
    pub response_status: Option<i32>,
    pub response_body: Option<Vec<u8>>,
}

#[async_trait]
pub trait IdempotencyStore {
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
    /// How many of the account's records were created at or after `since`, counting no further
    /// than `up_to` (so that the cost is bounded by the cap being checked).
    async fn count_idempotency_records(
        &self,
        account_id: Uuid,
        since: Ts,
        up_to: u64,
    ) -> StoreResult<u64>;
}

macro_rules! impl_idempotency_store {
    ($store:ty) => {
        const _: () = {
            use uuid::Uuid;
            use $crate::store::backend::SqlBackend;
            use $crate::store::{IdempotencyRecord, IdempotencyStore, StoreResult, Ts};

            #[async_trait::async_trait]
            impl IdempotencyStore for $store {
                async fn insert_idempotency_claim(&self, account_id: Uuid, key: &str, hash: &[u8], at: Ts) -> StoreResult<bool> {
                    let done = sqlx::query(
                        "INSERT INTO idempotency_records (account_id, idempotency_key, request_hash, created_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, idempotency_key) DO NOTHING",
                    )
                    .bind(account_id)
                    .bind(key)
                    .bind(hash)
                    .bind(at)
                    .execute(self.pool())
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
                    .fetch_optional(self.pool())
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
                    .execute(self.pool())
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
                    .execute(self.pool())
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
                    .execute(self.pool())
                    .await?;
                    Ok(())
                }

                async fn purge_idempotency_records(&self, created_before: Ts) -> StoreResult<u64> {
                    let done = sqlx::query("DELETE FROM idempotency_records WHERE created_at < $1")
                        .bind(created_before)
                        .execute(self.pool())
                        .await?;
                    Ok(done.rows_affected())
                }

                async fn count_idempotency_records(&self, account_id: Uuid, since: Ts, up_to: u64) -> StoreResult<u64> {
                    let (count,): (i64,) = sqlx::query_as(
                        "SELECT COUNT(*) FROM (SELECT 1 FROM idempotency_records \
                         WHERE account_id = $1 AND created_at >= $2 LIMIT $3) AS live",
                    )
                    .bind(account_id)
                    .bind(since)
                    .bind(i64::try_from(up_to).unwrap_or(i64::MAX))
                    .fetch_one(self.pool())
                    .await?;
                    Ok(u64::try_from(count).unwrap_or(0))
                }
            }
        };
    };
}

pub(crate) use impl_idempotency_store;
