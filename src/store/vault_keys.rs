//! Vault keys: each account's data key, fingerprint key and token id key, wrapped by a master key version.
//! `VaultKeyStore` and its SQL; a rewrap only replaces keys still wrapped by the version it read.

use async_trait::async_trait;
use uuid::Uuid;

use super::{AuditEvent, StoreResult, Ts};

pub(crate) const ACCOUNT_KEYS_COLUMNS: &str =
    "account_id, dek_version, master_version, wrapped_dek, wrapped_fingerprint_key, created_at, rewrapped_at, \
     previous_dek_version, previous_wrapped_dek, wrapped_id_key";

/// An account's data key, fingerprint key and token id key, each wrapped (AES-256-GCM) by master key
/// `master_version`.
#[derive(Clone, sqlx::FromRow)]
pub struct AccountKeysRecord {
    pub account_id: Uuid,
    pub dek_version: i32,
    pub master_version: i32,
    pub wrapped_dek: Vec<u8>,
    pub wrapped_fingerprint_key: Vec<u8>,
    pub created_at: Ts,
    pub rewrapped_at: Option<Ts>,
    /// The data key being rotated away from (wrapped by the same master version), until the rotation
    /// job has re-sealed everything and destroys it.
    pub previous_dek_version: Option<i32>,
    pub previous_wrapped_dek: Option<Vec<u8>>,
    /// The key of the account's token ids (`vault::token_ids`); none in records made before there
    /// were id keys, until the vault adds one. It outlives data-key rotations: it names tokens.
    pub wrapped_id_key: Option<Vec<u8>>,
}

/// Where sealed values live, for the data-key rotation job: table, id column, sealed column, and the
/// column naming the account. Every such table has `created_at`: rows are paged and found by it with
/// the id (tokens have no index on every id; see `vault::token_ids`).
#[derive(Clone, Copy, Debug)]
pub struct SealedColumn {
    pub table: &'static str,
    pub id: &'static str,
    pub column: &'static str,
    pub account: &'static str,
}

/// A sealed value as the rotation pages through them: row id, creation time, the sealed bytes.
pub type SealedRow = (Uuid, Ts, Vec<u8>);

/// One sealed value to replace, only if it still holds `old`.
pub struct Reseal {
    pub id: Uuid,
    pub created_at: Ts,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
    /// For tokens: the card's fingerprint under the new fingerprint key.
    pub fingerprint: Option<Vec<u8>>,
}

#[async_trait]
pub trait VaultKeyStore {
    async fn get_account_keys(&self, account_id: Uuid) -> StoreResult<Option<AccountKeysRecord>>;
    /// Stores an account's first keys; false if another node stored them first.
    async fn insert_account_keys(&self, keys: &AccountKeysRecord) -> StoreResult<bool>;
    /// Gives an account's keys an id key wrapped by `master_version`, if they have none and are still
    /// wrapped by that version; false (nothing written) otherwise.
    async fn add_account_id_key(
        &self,
        account_id: Uuid,
        master_version: i32,
        wrapped_id_key: &[u8],
    ) -> StoreResult<bool>;
    async fn list_account_keys_wrapped_before(
        &self,
        master_version: i32,
        limit: i64,
    ) -> StoreResult<Vec<AccountKeysRecord>>;
    /// Replaces the wrapping of an account's keys if they are still wrapped by `old_master_version` (and
    /// still have an id key exactly when `keys` has one: one added since `keys` was read is not lost), with
    /// `audit` in the same transaction if given (a rotation audits itself with its last rewrap); false
    /// (and nothing written) if they were not.
    async fn rewrap_account_keys(
        &self,
        keys: &AccountKeysRecord,
        old_master_version: i32,
        audit: Option<&AuditEvent>,
    ) -> StoreResult<bool>;
    /// Installs `keys` (a new data key with the current one as previous) if the account is still at
    /// `old_dek_version`, not mid-rotation, and has an id key exactly when `keys` has, with `audit`;
    /// false (nothing written) otherwise.
    async fn begin_data_key_rotation(
        &self,
        keys: &AccountKeysRecord,
        old_dek_version: i32,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// Destroys the previous data key of an account at `dek_version`, with `audit`.
    async fn finish_data_key_rotation(
        &self,
        account_id: Uuid,
        dek_version: i32,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    /// Accounts whose key record is wrapped by master `master_version` (retirement refuses while any).
    async fn count_account_keys_under(&self, master_version: i32) -> StoreResult<i64>;
    /// Sealed values of an account after `after` (by creation time, then id), at most `limit`.
    async fn list_sealed(
        &self,
        at: SealedColumn,
        account_id: Uuid,
        after: Option<(Ts, Uuid)>,
        limit: i64,
    ) -> StoreResult<Vec<SealedRow>>;
    /// Replaces sealed values of the account still unchanged since read, in one transaction; how many
    /// were replaced.
    async fn replace_sealed(
        &self,
        at: SealedColumn,
        account_id: Uuid,
        rows: &[Reseal],
    ) -> StoreResult<u64>;
    /// Takes the named lock row until `expires_at` (or after it expired for its holder); false if held.
    async fn try_key_lock(&self, name: &str, holder: &str, expires_at: Ts) -> StoreResult<bool>;
    async fn release_key_lock(&self, name: &str, holder: &str) -> StoreResult<()>;
}

macro_rules! impl_vault_key_store {
    ($store:ty) => {
        const _: () = {
            use uuid::Uuid;
            use $crate::store::backend::SqlBackend;
            use $crate::store::vault_keys::ACCOUNT_KEYS_COLUMNS;
            use $crate::store::{AccountKeysRecord, AuditEvent, StoreResult, VaultKeyStore, Ts};
            use $crate::store::vault_keys::{SealedColumn, SealedRow, Reseal};

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
                         wrapped_fingerprint_key, created_at, rewrapped_at, previous_dek_version, previous_wrapped_dek, \
                         wrapped_id_key) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                         ON CONFLICT (account_id) DO NOTHING",
                    )
                    .bind(k.account_id)
                    .bind(k.dek_version)
                    .bind(k.master_version)
                    .bind(&k.wrapped_dek)
                    .bind(&k.wrapped_fingerprint_key)
                    .bind(k.created_at)
                    .bind(k.rewrapped_at)
                    .bind(k.previous_dek_version)
                    .bind(&k.previous_wrapped_dek)
                    .bind(&k.wrapped_id_key)
                    // On SQLite the writers' one connection, where writes queue rather than meet in the
                    // busy handler.
                    .execute(self.writer())
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn add_account_id_key(
                    &self,
                    account_id: Uuid,
                    master_version: i32,
                    wrapped_id_key: &[u8],
                ) -> StoreResult<bool> {
                    let done = sqlx::query(
                        "UPDATE account_keys SET wrapped_id_key = $3 \
                         WHERE account_id = $1 AND master_version = $2 AND wrapped_id_key IS NULL",
                    )
                    .bind(account_id)
                    .bind(master_version)
                    .bind(wrapped_id_key)
                    .execute(self.writer())
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
                         rewrapped_at = $5, previous_wrapped_dek = $7, wrapped_id_key = $9 \
                         WHERE account_id = $1 AND master_version = $6 AND dek_version = $8 \
                         AND (wrapped_id_key IS NULL) = $10",
                    )
                    .bind(k.account_id)
                    .bind(k.master_version)
                    .bind(&k.wrapped_dek)
                    .bind(&k.wrapped_fingerprint_key)
                    .bind(k.rewrapped_at)
                    .bind(old_master_version)
                    .bind(&k.previous_wrapped_dek)
                    .bind(k.dek_version)
                    .bind(&k.wrapped_id_key)
                    .bind(k.wrapped_id_key.is_none())
                    .execute(&mut *tx)
                    .await?;
                    Ok($crate::store::audit::commit_if_one::<Db>(tx, done.rows_affected(), audit, &[]).await?)
                }

                async fn begin_data_key_rotation(
                    &self,
                    k: &AccountKeysRecord,
                    old_dek_version: i32,
                    audit: &AuditEvent,
                ) -> StoreResult<bool> {
                    let mut tx = self.pool().begin().await?;
                    let done = sqlx::query(
                        "UPDATE account_keys SET dek_version = $2, master_version = $3, wrapped_dek = $4, \
                         wrapped_fingerprint_key = $5, rewrapped_at = $6, previous_dek_version = $7, \
                         previous_wrapped_dek = $8, wrapped_id_key = $10 WHERE account_id = $1 AND dek_version = $9 \
                         AND previous_dek_version IS NULL AND (wrapped_id_key IS NULL) = $11",
                    )
                    .bind(k.account_id)
                    .bind(k.dek_version)
                    .bind(k.master_version)
                    .bind(&k.wrapped_dek)
                    .bind(&k.wrapped_fingerprint_key)
                    .bind(k.rewrapped_at)
                    .bind(k.previous_dek_version)
                    .bind(&k.previous_wrapped_dek)
                    .bind(old_dek_version)
                    .bind(&k.wrapped_id_key)
                    .bind(k.wrapped_id_key.is_none())
                    .execute(&mut *tx)
                    .await?;
                    Ok($crate::store::audit::commit_if_one::<Db>(tx, done.rows_affected(), Some(audit), &[]).await?)
                }

                async fn finish_data_key_rotation(
                    &self,
                    account_id: Uuid,
                    dek_version: i32,
                    audit: &AuditEvent,
                ) -> StoreResult<bool> {
                    let mut tx = self.pool().begin().await?;
                    let done = sqlx::query(
                        "UPDATE account_keys SET previous_dek_version = NULL, previous_wrapped_dek = NULL \
                         WHERE account_id = $1 AND dek_version = $2 AND previous_dek_version IS NOT NULL",
                    )
                    .bind(account_id)
                    .bind(dek_version)
                    .execute(&mut *tx)
                    .await?;
                    Ok($crate::store::audit::commit_if_one::<Db>(tx, done.rows_affected(), Some(audit), &[]).await?)
                }

                async fn count_account_keys_under(&self, master_version: i32) -> StoreResult<i64> {
                    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM account_keys WHERE master_version = $1")
                        .bind(master_version)
                        .fetch_one(self.pool())
                        .await?)
                }

                async fn list_sealed(
                    &self,
                    at: SealedColumn,
                    account_id: Uuid,
                    after: Option<(Ts, Uuid)>,
                    limit: i64,
                ) -> StoreResult<Vec<SealedRow>> {
                    // Names come from constants in the code, never from input.
                    let select = format!(
                        "SELECT {id}, created_at, {col} FROM {table} WHERE {acc} = $1 AND {col} IS NOT NULL",
                        id = at.id, col = at.column, table = at.table, acc = at.account
                    );
                    let query = match after {
                        None => sqlx::query_as(&format!("{select} ORDER BY created_at, {id} LIMIT $2", id = at.id))
                            .bind(account_id)
                            .bind(limit)
                            .fetch_all(self.pool())
                            .await?,
                        Some((created_at, id)) => sqlx::query_as(&format!(
                                "{select} AND (created_at, {id}) > ($2, $3) ORDER BY created_at, {id} LIMIT $4",
                                id = at.id
                            ))
                            .bind(account_id)
                            .bind(created_at)
                            .bind(id)
                            .bind(limit)
                            .fetch_all(self.pool())
                            .await?,
                    };
                    Ok(query)
                }

                async fn replace_sealed(&self, at: SealedColumn, account_id: Uuid, rows: &[Reseal]) -> StoreResult<u64> {
                    let mut tx = self.pool().begin().await?;
                    let mut n = 0;
                    for r in rows {
                        let done = match &r.fingerprint {
                            Some(fp) => sqlx::query(&format!(
                                    "UPDATE {table} SET {col} = $2, fingerprint = $4 \
                                     WHERE {acc} = $5 AND created_at = $6 AND {id} = $1 AND {col} = $3",
                                    table = at.table, col = at.column, id = at.id, acc = at.account
                                ))
                                .bind(r.id).bind(&r.new).bind(&r.old).bind(fp).bind(account_id).bind(r.created_at)
                                .execute(&mut *tx).await?,
                            None => sqlx::query(&format!(
                                    "UPDATE {table} SET {col} = $2 \
                                     WHERE {acc} = $4 AND created_at = $5 AND {id} = $1 AND {col} = $3",
                                    table = at.table, col = at.column, id = at.id, acc = at.account
                                ))
                                .bind(r.id).bind(&r.new).bind(&r.old).bind(account_id).bind(r.created_at)
                                .execute(&mut *tx).await?,
                        };
                        n += done.rows_affected();
                    }
                    tx.commit().await?;
                    Ok(n)
                }

                async fn try_key_lock(&self, name: &str, holder: &str, expires_at: Ts) -> StoreResult<bool> {
                    let done = sqlx::query(
                        "INSERT INTO key_locks (name, holder, expires_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                         WHERE key_locks.expires_at < $4",
                    )
                    .bind(name)
                    .bind(holder)
                    .bind(expires_at)
                    .bind(Ts::now())
                    .execute(self.pool())
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn release_key_lock(&self, name: &str, holder: &str) -> StoreResult<()> {
                    sqlx::query("DELETE FROM key_locks WHERE name = $1 AND holder = $2")
                        .bind(name)
                        .bind(holder)
                        .execute(self.pool())
                        .await?;
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use impl_vault_key_store;
