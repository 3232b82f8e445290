//! Storage of card collection in the browser: each account's allowed web origins and its token
//! sessions (kept by the SHA-256 of their id), shared by both backends through `impl_session_store!`.

use async_trait::async_trait;
use uuid::Uuid;

use super::{AuditEvent, StoreResult, Ts};

pub const ORIGIN_COLUMNS: &str = "id, account_id, origin, created_at, removed_at";
pub const SESSION_COLUMNS: &str = "id_hash, account_id, kind, token_id, bypass_identification, \
     token_expiration_secs, created_at, expires_at, completed_at";

/// A web origin (`https://shop.example`, no path) an account's card form may be embedded in.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct OriginRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub origin: String,
    pub created_at: Ts,
    pub removed_at: Option<Ts>,
}

/// A token session. `id_hash` is the SHA-256 of the id the merchant was given; the id itself is not kept.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRecord {
    pub id_hash: Vec<u8>,
    pub account_id: Uuid,
    pub kind: String,
    pub token_id: Option<Uuid>,
    pub bypass_identification: bool,
    pub token_expiration_secs: Option<i64>,
    pub created_at: Ts,
    pub expires_at: Ts,
    pub completed_at: Option<Ts>,
}

#[async_trait]
pub trait SessionStore {
    /// Inserts the origin and writes `audit` in the same transaction.
    async fn insert_origin(&self, origin: &OriginRecord, audit: &AuditEvent) -> StoreResult<()>;
    /// The origin entry, removed or not.
    async fn get_origin(&self, id: Uuid) -> StoreResult<Option<OriginRecord>>;
    /// Origins not removed, of one account or of all, oldest first.
    async fn list_origins(&self, account_id: Option<Uuid>) -> StoreResult<Vec<OriginRecord>>;
    /// Marks the origin removed with `audit`; false (nothing written) if absent or removed already.
    async fn remove_origin(&self, id: Uuid, at: Ts, audit: &AuditEvent) -> StoreResult<bool>;
    /// Whether any account allows `origin` (exact, normalised text).
    async fn origin_allowed_anywhere(&self, origin: &str) -> StoreResult<bool>;
    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()>;
    async fn get_session(&self, id_hash: &[u8]) -> StoreResult<Option<SessionRecord>>;
    /// Completes the session with the token it made or refreshed, if it is still open at `at`; false
    /// if it was completed already or has expired (so a session is used once, even by racing requests).
    async fn complete_session(&self, id_hash: &[u8], token_id: Uuid, at: Ts) -> StoreResult<bool>;
    /// Deletes the sessions that expired before `before`; answers how many.
    async fn purge_sessions(&self, before: Ts) -> StoreResult<u64>;
}

macro_rules! impl_session_store {
    ($store:ty) => {
        const _: () = {
        use $crate::store::audit::write_audit;
        use $crate::store::backend::SqlBackend;
        use $crate::store::sessions::{OriginRecord, SessionRecord, ORIGIN_COLUMNS, SESSION_COLUMNS};
        use $crate::store::{AuditEvent, StoreResult, Ts};
        type Db = <$store as SqlBackend>::DB;

        #[async_trait::async_trait]
        impl $crate::store::SessionStore for $store {
            async fn insert_origin(&self, o: &OriginRecord, audit: &AuditEvent) -> StoreResult<()> {
                let mut tx = self.pool().begin().await?;
                let sql = format!("INSERT INTO allowed_origins ({ORIGIN_COLUMNS}) VALUES ($1, $2, $3, $4, $5)");
                sqlx::query(&sql)
                    .bind(o.id)
                    .bind(o.account_id)
                    .bind(&o.origin)
                    .bind(o.created_at)
                    .bind(o.removed_at)
                    .execute(&mut *tx)
                    .await?;
                write_audit::<Db>(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_origin(&self, id: uuid::Uuid) -> StoreResult<Option<OriginRecord>> {
                let sql = format!("SELECT {ORIGIN_COLUMNS} FROM allowed_origins WHERE id = $1");
                Ok(sqlx::query_as(&sql).bind(id).fetch_optional(self.pool()).await?)
            }

            async fn list_origins(&self, account_id: Option<uuid::Uuid>) -> StoreResult<Vec<OriginRecord>> {
                Ok(match account_id {
                    Some(account) => {
                        let sql = format!(
                            "SELECT {ORIGIN_COLUMNS} FROM allowed_origins \
                             WHERE account_id = $1 AND removed_at IS NULL ORDER BY created_at, id"
                        );
                        sqlx::query_as(&sql).bind(account).fetch_all(self.pool()).await?
                    }
                    None => {
                        let sql = format!(
                            "SELECT {ORIGIN_COLUMNS} FROM allowed_origins \
                             WHERE removed_at IS NULL ORDER BY created_at, id"
                        );
                        sqlx::query_as(&sql).fetch_all(self.pool()).await?
                    }
                })
            }

            async fn remove_origin(&self, id: uuid::Uuid, at: Ts, audit: &AuditEvent) -> StoreResult<bool> {
                let mut tx = self.pool().begin().await?;
                let done = sqlx::query(
                    "UPDATE allowed_origins SET removed_at = $2 WHERE id = $1 AND removed_at IS NULL",
                )
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                Ok($crate::store::audit::commit_if_one::<Db>(tx, done.rows_affected(), Some(audit), &[]).await?)
            }

            async fn origin_allowed_anywhere(&self, origin: &str) -> StoreResult<bool> {
                let found: Option<(uuid::Uuid,)> = sqlx::query_as(
                    "SELECT id FROM allowed_origins WHERE origin = $1 AND removed_at IS NULL LIMIT 1",
                )
                .bind(origin)
                .fetch_optional(self.pool())
                .await?;
                Ok(found.is_some())
            }

            async fn insert_session(&self, s: &SessionRecord) -> StoreResult<()> {
                let sql = format!(
                    "INSERT INTO token_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                );
                sqlx::query(&sql)
                    .bind(&s.id_hash)
                    .bind(s.account_id)
                    .bind(&s.kind)
                    .bind(s.token_id)
                    .bind(s.bypass_identification)
                    .bind(s.token_expiration_secs)
                    .bind(s.created_at)
                    .bind(s.expires_at)
                    .bind(s.completed_at)
                    .execute(self.pool())
                    .await?;
                Ok(())
            }

            async fn get_session(&self, id_hash: &[u8]) -> StoreResult<Option<SessionRecord>> {
                let sql = format!("SELECT {SESSION_COLUMNS} FROM token_sessions WHERE id_hash = $1");
                Ok(sqlx::query_as(&sql).bind(id_hash).fetch_optional(self.pool()).await?)
            }

            async fn complete_session(&self, id_hash: &[u8], token_id: uuid::Uuid, at: Ts) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE token_sessions SET completed_at = $2, token_id = $3 \
                     WHERE id_hash = $1 AND completed_at IS NULL AND expires_at > $2",
                )
                .bind(id_hash)
                .bind(at)
                .bind(token_id)
                .execute(self.pool())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn purge_sessions(&self, before: Ts) -> StoreResult<u64> {
                let done = sqlx::query("DELETE FROM token_sessions WHERE expires_at < $1")
                    .bind(before)
                    .execute(self.pool())
                    .await?;
                Ok(done.rows_affected())
            }
        }
        };
    };
}

pub(crate) use impl_session_store;
