//! API keys: `KeyStore` and its SQL. Only the digest of a key's secret is stored, and authentication
//! reads a key with its account's features in one query.

use std::fmt;

use async_trait::async_trait;
use uuid::Uuid;

use super::{AuditEvent, FeatureSet, StoreResult, Ts};

/// An API key as stored: only the SHA-256 digest of its secret.
#[derive(Clone, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub label: String,
    pub secret_digest: Vec<u8>,
    pub created_at: Ts,
    pub revoked_at: Option<Ts>,
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("label", &self.label)
            .field("secret_digest", &"****")
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

/// What authentication needs in one read: the key and its account's features.
#[derive(Clone, sqlx::FromRow)]
pub struct KeyWithAccount {
    pub key_id: Uuid,
    pub account_id: Uuid,
    pub secret_digest: Vec<u8>,
    pub revoked_at: Option<Ts>,
    #[sqlx(try_from = "String")]
    pub features: FeatureSet,
}

#[async_trait]
pub trait KeyStore {
    /// Inserts `key` with `audit` (its creation) in one commit.
    async fn insert_api_key(&self, key: &ApiKeyRecord, audit: &AuditEvent) -> StoreResult<()>;
    async fn get_api_key(&self, id: Uuid) -> StoreResult<Option<ApiKeyRecord>>;
    async fn get_key_with_account(&self, key_id: Uuid) -> StoreResult<Option<KeyWithAccount>>;
    async fn list_api_keys(&self, account_id: Uuid) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Marks the key revoked and writes `audit` in the same transaction; false (and nothing written) if it
    /// does not exist or was revoked already.
    async fn revoke_api_key(&self, id: Uuid, at: Ts, audit: &AuditEvent) -> StoreResult<bool>;
}

/// Shared with the bootstrap of the default account, which writes its first key.
pub(crate) const API_KEY_INSERT: &str =
    "INSERT INTO api_keys (id, account_id, label, secret_digest, created_at, revoked_at) \
     VALUES ($1, $2, $3, $4, $5, $6)";

macro_rules! impl_key_store {
    ($store:ty) => {
        const _: () = {
            use uuid::Uuid;
            use $crate::store::audit::write_audit;
            use $crate::store::backend::SqlBackend;
            use $crate::store::keys::API_KEY_INSERT;
            use $crate::store::{ApiKeyRecord, AuditEvent, KeyStore, KeyWithAccount, StoreResult, Ts};

            type Db = <$store as SqlBackend>::DB;

            #[async_trait::async_trait]
            impl KeyStore for $store {
                async fn insert_api_key(&self, k: &ApiKeyRecord, audit: &AuditEvent) -> StoreResult<()> {
                    let mut tx = self.pool().begin().await?;
                    sqlx::query(API_KEY_INSERT)
                        .bind(k.id)
                        .bind(k.account_id)
                        .bind(&k.label)
                        .bind(&k.secret_digest)
                        .bind(k.created_at)
                        .bind(k.revoked_at)
                        .execute(&mut *tx)
                        .await?;
                    write_audit::<Db>(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn get_api_key(&self, id: Uuid) -> StoreResult<Option<ApiKeyRecord>> {
                    Ok(sqlx::query_as(
                        "SELECT id, account_id, label, secret_digest, created_at, revoked_at FROM api_keys WHERE id = $1",
                    )
                    .bind(id)
                    .fetch_optional(self.pool())
                    .await?)
                }

                async fn get_key_with_account(&self, key_id: Uuid) -> StoreResult<Option<KeyWithAccount>> {
                    Ok(sqlx::query_as(
                        "SELECT k.id AS key_id, k.account_id, k.secret_digest, k.revoked_at, a.features \
                         FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = $1",
                    )
                    .bind(key_id)
                    .fetch_optional(self.pool())
                    .await?)
                }

                async fn list_api_keys(&self, account_id: Uuid) -> StoreResult<Vec<ApiKeyRecord>> {
                    Ok(sqlx::query_as(
                        "SELECT id, account_id, label, secret_digest, created_at, revoked_at FROM api_keys \
                         WHERE account_id = $1 ORDER BY created_at, id",
                    )
                    .bind(account_id)
                    .fetch_all(self.pool())
                    .await?)
                }

                async fn revoke_api_key(&self, id: Uuid, at: Ts, audit: &AuditEvent) -> StoreResult<bool> {
                    let mut tx = self.pool().begin().await?;
                    let done =
                        sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                            .bind(id)
                            .bind(at)
                            .execute(&mut *tx)
                            .await?;
                    Ok($crate::store::audit::commit_if_one::<Db>(tx, done.rows_affected(), Some(audit), &[]).await?)
                }
            }
        };
    };
}

pub(crate) use impl_key_store;
