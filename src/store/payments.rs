//! Payments: `PaymentStore` and its SQL. A payment moves only from the version it was read at, and
//! every write keeps the per-day counts (which serve `total_items`) in the same transaction.

use async_trait::async_trait;
use uuid::Uuid;

use super::{
    AuditEvent, NewJob, OutboxRecord, PaymentChange, PaymentFilter, PaymentRecord, RefundRecord,
    StoreResult, TransactionRecord, Ts,
};

#[async_trait]
pub trait PaymentStore {
    /// Inserts a new payment with its day count, its job if given, and `outbox` (the webhook rows of its
    /// creation), in one transaction.
    async fn insert_payment(
        &self,
        payment: &PaymentRecord,
        job: Option<&NewJob>,
        outbox: &[OutboxRecord],
    ) -> StoreResult<()>;
    /// Inserts many payments (with their day counts) in one transaction, for seeding, with `audit` if
    /// given (a seed audits the whole run with its last batch).
    async fn insert_payments(
        &self,
        payments: &[PaymentRecord],
        audit: Option<&AuditEvent>,
    ) -> StoreResult<()>;
    async fn get_payment(&self, account_id: Uuid, id: Uuid) -> StoreResult<Option<PaymentRecord>>;
    /// Applies a change atomically; false if the payment moved on since it was read.
    async fn apply_payment_change(&self, change: &PaymentChange) -> StoreResult<bool>;
    /// Matching payments per UTC day, newest day first.
    async fn payment_day_counts(&self, filter: &PaymentFilter) -> StoreResult<Vec<(i64, i64)>>;
    /// Matching payments created in `[lower, upper)`, newest first (ties by id), skipping `offset`.
    async fn list_payments_between(
        &self,
        filter: &PaymentFilter,
        lower: Option<Ts>,
        upper: Option<Ts>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<PaymentRecord>>;
    async fn get_refund(&self, account_id: Uuid, id: Uuid) -> StoreResult<Option<RefundRecord>>;
    async fn list_refunds(&self, payment_id: Uuid) -> StoreResult<Vec<RefundRecord>>;
    async fn list_transactions(&self, payment_id: Uuid) -> StoreResult<Vec<TransactionRecord>>;
}

macro_rules! impl_payment_store {
    ($store:ty) => {
        const _: () = {
            use uuid::Uuid;
            use $crate::model::payment::RefundStatus;
            use $crate::store::audit::write_audit;
            use $crate::store::backend::{SqlBackend, INSERT_CHUNK};
            use $crate::store::jobs::write_job;
            use $crate::store::payment_records::{
                day_count_deltas, day_total_deltas, payment_filter, push_payment_insert, COUNT_ADD,
                PAYMENT_COLUMNS, REFUND_COLUMNS, TOTAL_ADD, TRANSACTION_COLUMNS,
            };
            use $crate::store::webhook_records::write_outbox;
            use $crate::store::{
                day_of, AuditEvent, NewJob, OutboxRecord, PaymentChange, PaymentFilter, PaymentRecord, PaymentStore,
                RefundRecord, StoreResult, TransactionRecord, Ts,
            };

            type Db = <$store as SqlBackend>::DB;

            async fn add_day_count(
                conn: &mut <Db as sqlx::Database>::Connection,
                (account, day, status, currency): (Uuid, i64, &str, &str),
                n: i64,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(COUNT_ADD)
                    .bind(account)
                    .bind(day)
                    .bind(status)
                    .bind(currency)
                    .bind(n)
                    .execute(conn)
                    .await?;
                Ok(())
            }

            /// Payment rows with their day counts and totals, inside the caller's transaction.
            async fn write_payments(tx: &mut sqlx::Transaction<'_, Db>, rows: &[PaymentRecord]) -> Result<(), sqlx::Error> {
                for chunk in rows.chunks(INSERT_CHUNK) {
                    let mut insert = sqlx::QueryBuilder::<Db>::new("");
                    push_payment_insert(&mut insert, chunk);
                    insert.build().execute(&mut **tx).await?;
                }
                for ((account, day, status, currency), n) in day_count_deltas(rows) {
                    add_day_count(tx, (account, day, &status, &currency), n).await?;
                }
                for ((account, day), n) in day_total_deltas(rows) {
                    sqlx::query(TOTAL_ADD)
                        .bind(account)
                        .bind(day)
                        .bind(n)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }

            #[async_trait::async_trait]
            impl PaymentStore for $store {
                async fn insert_payment(&self, p: &PaymentRecord, job: Option<&NewJob>, outbox: &[OutboxRecord]) -> StoreResult<()> {
                    let mut tx = self.pool().begin().await?;
                    write_payments(&mut tx, std::slice::from_ref(p)).await?;
                    if let Some(job) = job {
                        write_job::<Db>(&mut tx, job, Ts::now()).await?;
                    }
                    write_outbox::<Db>(&mut tx, outbox).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn insert_payments(&self, rows: &[PaymentRecord], audit: Option<&AuditEvent>) -> StoreResult<()> {
                    let mut tx = self.pool().begin().await?;
                    write_payments(&mut tx, rows).await?;
                    if let Some(audit) = audit {
                        write_audit::<Db>(&mut tx, audit).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn get_payment(&self, account_id: Uuid, id: Uuid) -> StoreResult<Option<PaymentRecord>> {
                    let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1 AND account_id = $2");
                    Ok(sqlx::query_as(&sql).bind(id).bind(account_id).fetch_optional(self.pool()).await?)
                }

                async fn apply_payment_change(&self, c: &PaymentChange) -> StoreResult<bool> {
                    let p = &c.payment;
                    let mut tx = self.pool().begin().await?;
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
                        let day = day_of(p.created_at);
                        for (status, delta) in [(&c.previous_status, -1i64), (&p.status, 1i64)] {
                            add_day_count(&mut tx, (p.account_id, day, status, &p.currency_code), delta).await?;
                        }
                    }
                    if let Some(t) = &c.transaction {
                        $crate::store::payment_records::write_transaction::<Db>(&mut tx, t).await?;
                    }
                    if let Some(r) = &c.new_refund {
                        let sql = format!(
                            "INSERT INTO refunds ({REFUND_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
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
                             WHERE id = $1 AND status = $5",
                        )
                        .bind(r.id)
                        .bind(&r.status)
                        .bind(r.updated_at)
                        .bind(&r.failure_details)
                        .bind(RefundStatus::Processing.as_str())
                        .execute(&mut *tx)
                        .await?;
                        if done.rows_affected() != 1 {
                            return Ok(false);
                        }
                    }
                    if let Some(id) = &c.network_transaction_id {
                        sqlx::query("UPDATE payments SET network_transaction_id = $2 WHERE id = $1")
                            .bind(p.id)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    if let Some(job) = &c.job {
                        write_job::<Db>(&mut tx, job, Ts::now()).await?;
                    }
                    write_outbox::<Db>(&mut tx, &c.outbox).await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn payment_day_counts(&self, f: &PaymentFilter) -> StoreResult<Vec<(i64, i64)>> {
                    let (filter, _) = payment_filter(f, "day", 2);
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
                        query = query.bind(day_of(from));
                    }
                    if let Some(until) = f.until {
                        query = query.bind(day_of(until));
                    }
                    for s in &f.statuses {
                        query = query.bind(s);
                    }
                    for c in &f.currencies {
                        query = query.bind(c);
                    }
                    Ok(query.fetch_all(self.pool()).await?)
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
                    let (filter, next) = payment_filter(&window, "created_at", 2);
                    let sql = format!(
                        "SELECT {PAYMENT_COLUMNS} FROM payments{filter} ORDER BY created_at DESC, id DESC \
                         LIMIT ${next} OFFSET ${}",
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
                    Ok(query.bind(limit).bind(offset).fetch_all(self.pool()).await?)
                }

                async fn get_refund(&self, account_id: Uuid, id: Uuid) -> StoreResult<Option<RefundRecord>> {
                    let sql = format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1 AND account_id = $2");
                    Ok(sqlx::query_as(&sql).bind(id).bind(account_id).fetch_optional(self.pool()).await?)
                }

                async fn list_refunds(&self, payment_id: Uuid) -> StoreResult<Vec<RefundRecord>> {
                    let sql = format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE payment_id = $1 ORDER BY created_at, id");
                    Ok(sqlx::query_as(&sql).bind(payment_id).fetch_all(self.pool()).await?)
                }

                async fn list_transactions(&self, payment_id: Uuid) -> StoreResult<Vec<TransactionRecord>> {
                    let sql = format!(
                        "SELECT {TRANSACTION_COLUMNS} FROM payment_transactions WHERE payment_id = $1 \
                         ORDER BY created_at, id"
                    );
                    Ok(sqlx::query_as(&sql).bind(payment_id).fetch_all(self.pool()).await?)
                }
            }
        };
    };
}

pub(crate) use impl_payment_store;
