//! Storage of an account's processors (settings, credentials sealed by the domain, soft removal that wipes
//! them), its routing rules (one JSON document per account, replaced whole), and the two payment facts a
//! failover and a merchant-initiated payment need, and the pending answers of processors that answer later
//! by notification. `ProcessorStore` is a supertrait of `Store`.

use std::fmt;

use async_trait::async_trait;
use uuid::Uuid;

use super::{AuditEvent, NewJob, StoreResult, TransactionRecord, Ts};

pub const PROCESSOR_COLUMNS: &str =
    "id, account_id, name, kind, settings, sealed_secrets, created_at, removed_at";

#[derive(Clone, sqlx::FromRow)]
pub struct ProcessorRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    /// `stripe` or `adyen`.
    pub kind: String,
    /// JSON: non-secret settings.
    pub settings: String,
    /// The secrets JSON sealed under the account's data key; `None` once removed.
    pub sealed_secrets: Option<Vec<u8>>,
    pub created_at: Ts,
    pub removed_at: Option<Ts>,
}

impl fmt::Debug for ProcessorRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessorRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait ProcessorStore {
    /// Inserts the processor and writes `audit` in the same transaction. A second live processor of the
    /// same name violates `processors_live_name` (and nothing is written).
    async fn insert_processor(
        &self,
        processor: &ProcessorRecord,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    async fn get_processor(&self, id: Uuid) -> StoreResult<Option<ProcessorRecord>>;
    /// Live processors, of one account or of all, oldest first.
    async fn list_processors(&self, account_id: Option<Uuid>) -> StoreResult<Vec<ProcessorRecord>>;
    /// Marks the processor removed, wipes its sealed secrets and writes `audit`, in one transaction;
    /// false (and nothing written) if it was not live.
    async fn remove_processor(&self, id: Uuid, at: Ts, audit: &AuditEvent) -> StoreResult<bool>;
    /// The account's routing rules as stored (JSON), if it has any.
    async fn get_routing_rules(&self, account_id: Uuid) -> StoreResult<Option<String>>;
    /// Replaces the account's rules in one statement, with `audit` in the same transaction.
    async fn set_routing_rules(
        &self,
        account_id: Uuid,
        rules: &str,
        at: Ts,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    /// A failed authorization attempt handed over to `processor`: records the attempt and moves the
    /// payment (still at `expected_version`) to `processor` at the next version, with `job` (undoing
    /// an attempt whose answer never came) in the same transaction; false if it moved on.
    async fn record_failover(
        &self,
        payment_id: Uuid,
        expected_version: i64,
        processor: &str,
        attempt: &TransactionRecord,
        job: Option<&NewJob>,
        at: Ts,
    ) -> StoreResult<bool>;
    async fn set_network_transaction_id(&self, payment_id: Uuid, id: &str) -> StoreResult<()>;
    async fn get_network_transaction_id(&self, payment_id: Uuid) -> StoreResult<Option<String>>;
    /// A capture, void or refund the processor accepted and answers later (by notification): records
    /// the `pending` transaction, once per kind and processor reference (a retried job adds no second
    /// row), and for `refund_id` the reference its notification will cite. Nothing is written if the
    /// notification came first: the refund is no longer processing, or the payment no longer in
    /// `awaiting` (the in-between status of a capture or void).
    async fn record_pending(
        &self,
        pending: &TransactionRecord,
        refund_id: Option<Uuid>,
        awaiting: Option<&str>,
    ) -> StoreResult<()>;
    /// The refund of `payment_id` that the processor knows by `reference`.
    async fn refund_by_processor_reference(
        &self,
        payment_id: Uuid,
        reference: &str,
    ) -> StoreResult<Option<Uuid>>;
}

macro_rules! impl_processor_store {
    ($store:ty) => {
        const _: () = {
        use uuid::Uuid;
        use $crate::store::audit::write_audit;
        use $crate::store::backend::SqlBackend;
        use $crate::store::{AuditEvent, StoreResult, Ts};
        type Db = <$store as SqlBackend>::DB;

        #[async_trait::async_trait]
        impl $crate::store::ProcessorStore for $store {
            async fn insert_processor(
                &self,
                p: &$crate::store::ProcessorRecord,
                audit: &AuditEvent,
            ) -> StoreResult<()> {
                let mut tx = self.pool().begin().await?;
                let sql = format!(
                    "INSERT INTO processors ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    $crate::store::processors::PROCESSOR_COLUMNS
                );
                sqlx::query(&sql)
                    .bind(p.id)
                    .bind(p.account_id)
                    .bind(&p.name)
                    .bind(&p.kind)
                    .bind(&p.settings)
                    .bind(&p.sealed_secrets)
                    .bind(p.created_at)
                    .bind(p.removed_at)
                    .execute(&mut *tx)
                    .await?;
                write_audit::<Db>(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_processor(&self, id: Uuid) -> StoreResult<Option<$crate::store::ProcessorRecord>> {
                let sql = format!(
                    "SELECT {} FROM processors WHERE id = $1",
                    $crate::store::processors::PROCESSOR_COLUMNS
                );
                Ok(sqlx::query_as(&sql).bind(id).fetch_optional(self.pool()).await?)
            }

            async fn list_processors(
                &self,
                account_id: Option<Uuid>,
            ) -> StoreResult<Vec<$crate::store::ProcessorRecord>> {
                let sql = format!(
                    "SELECT {} FROM processors WHERE removed_at IS NULL \
                     AND ($1 IS NULL OR account_id = $1) ORDER BY created_at, id",
                    $crate::store::processors::PROCESSOR_COLUMNS
                );
                Ok(sqlx::query_as(&sql).bind(account_id).fetch_all(self.pool()).await?)
            }

            async fn remove_processor(&self, id: Uuid, at: Ts, audit: &AuditEvent) -> StoreResult<bool> {
                let mut tx = self.pool().begin().await?;
                let done = sqlx::query(
                    "UPDATE processors SET removed_at = $2, sealed_secrets = NULL \
                     WHERE id = $1 AND removed_at IS NULL",
                )
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                Ok($crate::store::audit::commit_if_one::<Db>(tx, done.rows_affected(), Some(audit), &[]).await?)
            }

            async fn get_routing_rules(&self, account_id: Uuid) -> StoreResult<Option<String>> {
                Ok(sqlx::query_scalar("SELECT rules FROM routing_rules WHERE account_id = $1")
                    .bind(account_id)
                    .fetch_optional(self.pool())
                    .await?)
            }

            async fn set_routing_rules(
                &self,
                account_id: Uuid,
                rules: &str,
                at: Ts,
                audit: &AuditEvent,
            ) -> StoreResult<()> {
                let mut tx = self.pool().begin().await?;
                sqlx::query(
                    "INSERT INTO routing_rules (account_id, rules, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (account_id) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at",
                )
                .bind(account_id)
                .bind(rules)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                write_audit::<Db>(&mut tx, audit).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn record_failover(
                &self,
                payment_id: Uuid,
                expected_version: i64,
                processor: &str,
                t: &$crate::store::TransactionRecord,
                job: Option<&$crate::store::NewJob>,
                at: Ts,
            ) -> StoreResult<bool> {
                let mut tx = self.pool().begin().await?;
                let moved = sqlx::query(
                    "UPDATE payments SET processor = $3, version = version + 1, updated_at = $4 \
                     WHERE id = $1 AND version = $2 AND status = $5",
                )
                .bind(payment_id)
                .bind(expected_version)
                .bind(processor)
                .bind(at)
                .bind($crate::model::payment::PaymentStatus::Processing.as_str())
                .execute(&mut *tx)
                .await?;
                if moved.rows_affected() != 1 {
                    return Ok(false);
                }
                $crate::store::payment_records::write_transaction::<Db>(&mut tx, t).await?;
                if let Some(job) = job {
                    $crate::store::jobs::write_job::<Db>(&mut tx, job, at).await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn set_network_transaction_id(&self, payment_id: Uuid, id: &str) -> StoreResult<()> {
                sqlx::query("UPDATE payments SET network_transaction_id = $2 WHERE id = $1")
                    .bind(payment_id)
                    .bind(id)
                    .execute(self.pool())
                    .await?;
                Ok(())
            }

            async fn get_network_transaction_id(&self, payment_id: Uuid) -> StoreResult<Option<String>> {
                let found: Option<Option<String>> =
                    sqlx::query_scalar("SELECT network_transaction_id FROM payments WHERE id = $1")
                        .bind(payment_id)
                        .fetch_optional(self.pool())
                        .await?;
                Ok(found.flatten())
            }

            async fn record_pending(
                &self,
                t: &$crate::store::TransactionRecord,
                refund_id: Option<Uuid>,
                awaiting: Option<&str>,
            ) -> StoreResult<()> {
                let mut tx = self.pool().begin().await?;
                if let Some(awaiting) = awaiting {
                    let still: Option<String> =
                        sqlx::query_scalar("SELECT status FROM payments WHERE id = $1")
                            .bind(t.payment_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if still.as_deref() != Some(awaiting) {
                        return Ok(());
                    }
                }
                if let (Some(refund_id), Some(reference)) = (refund_id, &t.processor_reference) {
                    let set = sqlx::query(
                        "UPDATE refunds SET processor_reference = $2 WHERE id = $1 AND status = $3",
                    )
                    .bind(refund_id)
                    .bind(reference)
                    .bind($crate::model::payment::RefundStatus::Processing.as_str())
                    .execute(&mut *tx)
                    .await?;
                    if set.rows_affected() != 1 {
                        return Ok(());
                    }
                }
                let seen: Option<Uuid> = sqlx::query_scalar(
                    "SELECT id FROM payment_transactions WHERE payment_id = $1 AND kind = $2 \
                     AND status = $3 AND processor_reference = $4",
                )
                .bind(t.payment_id)
                .bind(&t.kind)
                .bind(&t.status)
                .bind(&t.processor_reference)
                .fetch_optional(&mut *tx)
                .await?;
                if seen.is_none() {
                    $crate::store::payment_records::write_transaction::<Db>(&mut tx, t).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn refund_by_processor_reference(
                &self,
                payment_id: Uuid,
                reference: &str,
            ) -> StoreResult<Option<Uuid>> {
                Ok(sqlx::query_scalar(
                    "SELECT id FROM refunds WHERE payment_id = $1 AND processor_reference = $2",
                )
                .bind(payment_id)
                .bind(reference)
                .fetch_optional(self.pool())
                .await?)
            }
        }
        };
    };
}

pub(crate) use impl_processor_store;
