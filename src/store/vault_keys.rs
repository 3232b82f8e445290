//! Vault keys: each account's data key and fingerprint key, wrapped by a master key version.
//! `VaultKeyStore` and its SQL; a rewrap only replaces keys still wrapped by the version it read.

use async_trait::async_trait;
use uuid::Uuid;

use super::{AuditEvent, StoreResult, Ts};

pub(crate) const ACCOUNT_KEYS_COLUMNS: &str =
    "account_id, dek_version, master_version, wrapped_dek, wrapped_fingerprint_key, created_at, rewrapped_at";

/// An account's data key and fingerprint key, each wrapped (AES-256-GCM) by master key `master_version`.
#[derive(Clone, sqlx::FromRow)]
pub struct AccountKeysRecord {
    pub account_id: Uuid,
    pub dek_version: i32,
    pub master_version: i32,
    pub wrapped_dek: Vec<u8>,
    pub wrapped_fingerprint_key: Vec<u8>,
    pub created_at: Ts,
    pub rewrapped_at: Option<Ts>,
}

#[async_trait]
pub trait VaultKeyStore {
    async fn get_account_keys(&self, account_id: Uuid) -> StoreResult<Option<AccountKeysRecord>>;
    /// Stores an account's first keys; false if another node stored them first.
    async fn insert_account_keys(&self, keys: &AccountKeysRecord) -> StoreResult<bool>;
    async fn list_account_keys_wrapped_before(
        &self,
        master_version: i32,
        limit: i64,
    ) -> StoreResult<Vec<AccountKeysRecord>>;
    /// Replaces the wrapping of an account's keys if they are still wrapped by `old_master_version`, with
    /// `audit` in the same transaction if given (a rotation audits itself with its last rewrap); false
    /// (and nothing written) if they were not.
    async fn rewrap_account_keys(
        &self,
        keys: &AccountKeysRecord,
        old_master_version: i32,
        audit: Option<&AuditEvent>,
    ) -> StoreResult<bool>;
}

macro_rules! impl_vault_key_store {
    ($store:ty) => {
        const _: () = {
            use uuid::Uuid;
            use $crate::store::backend::SqlBackend;
            use $crate::store::vault_keys::ACCOUNT_KEYS_COLUMNS;
            use $crate::store::{AccountKeysRecord, AuditEvent, StoreResult, VaultKeyStore};

            type Db = <$store as SqlBackend>::DB;

            #[async_trait::async_trait]
            impl VaultKeyStore for $store {
                async fn get_account_keys(&self, account_id: Uuid) -> StoreResult<Option<AccountKeysRecord>> {
                    let sql = format!("SELECT {ACCOUNT_KEYS_COLUMNS} FROM account_keys WHERE account_id = $1");
                    Ok(sqlx::query_as(&sql).bind(account_id).fetch_optional(self.pool()).await?)
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
                    .execute(self.pool())
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn list_account_keys_wrapped_before(
                    &self,
                    master_version: i32,
                    limit: i64,
                ) -> StoreResult<Vec<AccountKeysRecord>> {
                    let sql = format!(
                        "SELECT {ACCOUNT_KEYS_COLUMNS} FROM account_keys WHERE master_version < $1 \
                         ORDER BY account_id LIMIT $2"
                    );
                    Ok(sqlx::query_as(&sql).bind(master_version).bind(limit).fetch_all(self.pool()).await?)
                }

                async fn rewrap_account_keys(
                    &self,
                    k: &AccountKeysRecord,
                    old_master_version: i32,
                    audit: Option<&AuditEvent>,
                ) -> StoreResult<bool> {
                    let mut tx = self.pool().begin().await?;
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
                    .execute(&mut *tx)
                    .await?;
                    Ok($crate::store::audit::commit_if_one::<Db>(tx, done.rows_affected(), audit, &[]).await?)
                }
            }
        };
    };
}

pub(crate) use impl_vault_key_store;
