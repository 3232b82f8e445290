//! Storage of forwarding: the destinations (the per-account allow-list of `POST /forward`) and the

//! shared by both backends through `impl_destination_store!`.

use async_trait::async_trait;
use uuid::Uuid;

use super::{AuditEvent, StoreResult, Ts};

pub const DESTINATION_COLUMNS: &str = "id, account_id, url, created_at, removed_at";

/// One allow-list entry. The URL holds no secret (credentials are refused when it is added).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct DestinationRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub url: String,
    pub created_at: Ts,
    pub removed_at: Option<Ts>,
}

#[async_trait]
pub trait DestinationStore {
    /// Inserts the entry and writes `audit` in the same transaction.
    async fn insert_destination(
        &self,
        destination: &DestinationRecord,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// The entry, removed or not.
    async fn get_destination(&self, id: Uuid) -> StoreResult<Option<DestinationRecord>>;
    /// Entries not removed, of one account or of all, oldest first.
    async fn list_destinations(
        &self,
        account_id: Option<Uuid>,
    ) -> StoreResult<Vec<DestinationRecord>>;
    /// Marks the entry removed and writes `audit` in the same transaction; false (and nothing written)
    /// if it does not exist or was removed already.
    async fn remove_destination(&self, id: Uuid, at: Ts, audit: &AuditEvent) -> StoreResult<bool>;
}

macro_rules! impl_destination_store {
    ($store:ty) => {
        const _: () = {
        use $crate::store::audit::write_audit;
        use $crate::store::backend::SqlBackend;
        use $crate::store::AuditEvent;
        type Db = <$store as SqlBackend>::DB;

        #[async_trait::async_trait]
        impl $crate::store::DestinationStore for $store {
            async fn insert_destination(
                &self,
                d: &$crate::store::DestinationRecord,
                audit: &AuditEvent,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool().begin().await?;
                let sql = format!(
                    "INSERT INTO forward_destinations ({}) VALUES ($1, $2, $3, $4, $5)",
                    $crate::store::destinations::DESTINATION_COLUMNS
                );
                sqlx::query(&sql)
                    .bind(d.id)
                    .bind(d.account_id)
                    .bind(&d.url)
                    .bind(d.created_at)
                    .bind(d.removed_at)
                    .execute(&mut *tx)
                    .await?;
                write_audit::<Db>(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_destination(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<$crate::store::DestinationRecord>> {
                let sql = format!(
                    "SELECT {} FROM forward_destinations WHERE id = $1",
                    $crate::store::destinations::DESTINATION_COLUMNS
                );
                Ok(sqlx::query_as(&sql).bind(id).fetch_optional(self.pool()).await?)
            }

            async fn list_destinations(
                &self,
                account_id: Option<uuid::Uuid>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::DestinationRecord>> {
                let columns = $crate::store::destinations::DESTINATION_COLUMNS;
                Ok(match account_id {
                    Some(account) => {
                        let sql = format!(
                            "SELECT {columns} FROM forward_destinations \
                             WHERE account_id = $1 AND removed_at IS NULL ORDER BY created_at, id"
                        );
                        sqlx::query_as(&sql).bind(account).fetch_all(self.pool()).await?
                    }
                    None => {
                        let sql = format!(
                            "SELECT {columns} FROM forward_destinations \
                             WHERE removed_at IS NULL ORDER BY created_at, id"
                        );
                        sqlx::query_as(&sql).fetch_all(self.pool()).await?
                    }
                })
            }

            async fn remove_destination(
                &self,
                id: uuid::Uuid,
                at: $crate::store::Ts,
                audit: &AuditEvent,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool().begin().await?;
                let done = sqlx::query(
                    "UPDATE forward_destinations SET removed_at = $2 \
                     WHERE id = $1 AND removed_at IS NULL",
                )
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

pub(crate) use impl_destination_store;
