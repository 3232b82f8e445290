//! Payments: `PaymentStore` and its SQL. A payment moves only from the version it was read at, and
//! every write keeps the per-day counts (which serve `total_items`) in the same transaction.

use async_trait::async_trait;
use uuid::Uuid;

use super::{
    AuditEvent, NewJob, OutboxRecord, PaymentChange, PaymentFilter, PaymentListing, PaymentRecord,
    PaymentWrite, RefundRecord, StoreResult, TransactionRecord, Ts,
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
    /// Makes many writes of many payments in one transaction (one durable commit), the day counts
    /// they change added up and written once each; answers per write whether it was made (a change
    /// of a payment that moved on is not, and writes nothing).
    async fn write_payments(&self, writes: &[PaymentWrite]) -> StoreResult<Vec<bool>>;
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
    ) -> StoreResult<Vec<PaymentListing>>;
    /// The rows `list_payments_between` answers, as one JSON array (text) of their public objects
    /// (`model::payment::Payment`), built by the database: a page costs one value to read, not a row
    /// of many columns per payment.
    async fn payment_page_json(
        &self,
        filter: &PaymentFilter,
        lower: Option<Ts>,
        upper: Option<Ts>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<String>;
    async fn get_refund(&self, account_id: Uuid, id: Uuid) -> StoreResult<Option<RefundRecord>>;
    async fn list_refunds(&self, payment_id: Uuid) -> StoreResult<Vec<RefundRecord>>;
    async fn list_transactions(&self, payment_id: Uuid) -> StoreResult<Vec<TransactionRecord>>;
}

macro_rules! impl_payment_store {
    ($store:ty) => {
        const _: () = {
            use uuid::Uuid;
            use $crate::model::payment::RefundStatus;
            use $crate::store::audit::write_audits;
            use $crate::store::backend::{SqlBackend, INSERT_CHUNK};
            use $crate::store::jobs::{push_job_insert, push_jobs_retire, write_job};
            use $crate::store::payment_records::{
                count_add, day_counts_sql, parse_day_counts, payment_filter, push_payment_insert, push_payments_update, total_add, DayDeltas, PAYMENT_COLUMNS, PAYMENT_LISTING_COLUMNS,
                REFUND_COLUMNS, TRANSACTION_COLUMNS,
            };
            use $crate::store::webhook_records::write_outbox;
            use $crate::store::{
                day_of, AuditEvent, NewJob, OutboxRecord, PaymentChange, PaymentFilter, PaymentListing, PaymentRecord, PaymentStore,
                PaymentWrite, RefundRecord, StoreResult, TransactionRecord, Ts,
            };

            type Db = <$store as SqlBackend>::DB;

            async fn add_day_count(
                conn: &mut <Db as sqlx::Database>::Connection,
                (account, day, status, currency): (Uuid, i64, &str, &str),
                n: i64,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(&count_add(<$store as SqlBackend>::SHARD))
                    .bind(account)
                    .bind(day)
                    .bind(status)
                    .bind(currency)
                    .bind(n)
                    .execute(conn)
                    .await?;
                Ok(())
            }

            type Conn = <Db as sqlx::Database>::Connection;

            /// The count rows a commit changes, each once, in key order (so that concurrent commits of
            /// several nodes take the rows' locks in the same order), last in the transaction so that
            /// PostgreSQL holds those hot rows' locks only for the commit itself.
            async fn write_deltas(conn: &mut Conn, deltas: &DayDeltas) -> Result<(), sqlx::Error> {
                for ((account, day, status, currency), n) in &deltas.counts {
                    if *n != 0 {
                        add_day_count(&mut *conn, (*account, *day, status, currency), *n).await?;
                    }
                }
                let total_add = total_add(<$store as SqlBackend>::SHARD);
                for ((account, day), n) in &deltas.totals {
                    if *n != 0 {
                        sqlx::query(&total_add).bind(*account).bind(*day).bind(*n).execute(&mut *conn).await?;
                    }
                }
                Ok(())
            }

            /// New payment rows, their jobs, webhook rows and audit rows, in multi-row statements; their
            /// counts go to `deltas`.
            async fn write_inserts(
                conn: &mut Conn,
                rows: &[PaymentRecord],
                jobs: &[&NewJob],
                outbox: &[OutboxRecord],
                audits: &[AuditEvent],
                deltas: &mut DayDeltas,
            ) -> Result<(), sqlx::Error> {
                for chunk in rows.chunks(INSERT_CHUNK) {
                    let mut insert = sqlx::QueryBuilder::<Db>::new("");
                    push_payment_insert(&mut insert, chunk);
                    insert.build().execute(&mut *conn).await?;
                }
                for p in rows {
                    deltas.insert(p);
                }
                let now = Ts::now();
                for chunk in jobs.chunks(INSERT_CHUNK) {
                    let mut insert = sqlx::QueryBuilder::<Db>::new("");
                    push_job_insert(&mut insert, chunk.iter().map(|job| (*job, now)));
                    insert.build().execute(&mut *conn).await?;
                }
                for chunk in outbox.chunks(INSERT_CHUNK) {
                    write_outbox::<Db>(&mut *conn, chunk).await?;
                }
                for chunk in audits.chunks(INSERT_CHUNK) {
                    write_audits::<Db>(&mut *conn, chunk).await?;
                }
                Ok(())
            }

            /// One step, on a connection inside a transaction; false (and nothing written, as long as
            /// the caller rolls back a refund that moved on) if the payment or its refund moved on.
            async fn write_change(conn: &mut Conn, c: &PaymentChange, retire_job: Option<&$crate::store::Fence>) -> Result<bool, sqlx::Error> {
                if !update_payment(&mut *conn, c).await? {
                    return Ok(false);
                }
                write_change_rows(&mut *conn, c, retire_job).await
            }

            /// The rows of the plain steps of a batch (no refund in them) whose payment rows were
            /// updated, written together after those updates: each kind in multi-row statements.
            #[derive(Default)]
            struct StepRows<'a> {
                transactions: Vec<&'a TransactionRecord>,
                jobs: Vec<&'a NewJob>,
                retired: Vec<&'a $crate::store::Fence>,
                outbox: Vec<OutboxRecord>,
            }

            impl<'a> StepRows<'a> {
                fn add(&mut self, c: &'a PaymentChange, retire_job: Option<&'a $crate::store::Fence>) {
                    self.transactions.extend(c.transaction.iter());
                    self.jobs.extend(c.job.iter());
                    self.retired.extend(retire_job);
                    self.outbox.extend(c.outbox.iter().cloned());
                }

                async fn write(&self, conn: &mut Conn) -> Result<(), sqlx::Error> {
                    $crate::store::payment_records::write_transactions::<Db>(&mut *conn, &self.transactions).await?;
                    let now = Ts::now();
                    for chunk in self.jobs.chunks(INSERT_CHUNK) {
                        let mut insert = sqlx::QueryBuilder::<Db>::new("");
                        push_job_insert(&mut insert, chunk.iter().map(|job| (*job, now)));
                        insert.build().execute(&mut *conn).await?;
                    }
                    // Each job only while queued, or still held under the claim that retires it.
                    for chunk in self.retired.chunks(INSERT_CHUNK) {
                        let mut delete = sqlx::QueryBuilder::<Db>::new("");
                        push_jobs_retire(&mut delete, chunk.iter().copied());
                        delete.build().execute(&mut *conn).await?;
                    }
                    write_outbox::<Db>(&mut *conn, &self.outbox).await
                }
            }

            /// The payment row of a step, moved only from the version it was read at: false if it moved on.
            async fn update_payment(conn: &mut Conn, c: &PaymentChange) -> Result<bool, sqlx::Error> {
                let p = &c.payment;
                let updated = sqlx::query(
                    "UPDATE payments SET version = $3, updated_at = $4, status = $5, amount_authorized = $6, \
                     amount_captured = $7, amount_voided = $8, amount_refunded = $9, amount_refund_reserved = $10, \
                     capture_requested = $11, processor_reference = $12, failure_details = $13, \
                     network_transaction_id = COALESCE($14, network_transaction_id) \
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
                .bind(&c.network_transaction_id)
                .execute(&mut *conn)
                .await?;
                Ok(updated.rows_affected() == 1)
            }

            /// The payment rows of many steps, each of a different payment, in multi-row statements,
            /// each moved only from the version it was read at: the ids of those that were.
            async fn update_payments(conn: &mut Conn, steps: &[&PaymentChange]) -> Result<std::collections::HashSet<Uuid>, sqlx::Error> {
                let mut updated = std::collections::HashSet::with_capacity(steps.len());
                for chunk in steps.chunks(INSERT_CHUNK) {
                    let mut update = sqlx::QueryBuilder::<Db>::new("");
                    push_payments_update(&mut update, chunk.iter().copied());
                    let ids: Vec<(Uuid,)> = update.build_query_as().fetch_all(&mut *conn).await?;
                    updated.extend(ids.into_iter().map(|(id,)| id));
                }
                Ok(updated)
            }

            /// The rows of a step whose payment row was updated: the refund it finishes (false if that
            /// moved on: the caller rolls back), its transaction, new refund, job, retired job, webhooks.
            async fn write_change_rows(conn: &mut Conn, c: &PaymentChange, retire_job: Option<&$crate::store::Fence>) -> Result<bool, sqlx::Error> {
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
                    .execute(&mut *conn)
                    .await?;
                    if done.rows_affected() != 1 {
                        return Ok(false);
                    }
                }
                if let Some(t) = &c.transaction {
                    $crate::store::payment_records::write_transaction::<Db>(&mut *conn, t).await?;
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
                        .execute(&mut *conn)
                        .await?;
                }
                if let Some(job) = &c.job {
                    write_job::<Db>(&mut *conn, job, Ts::now()).await?;
                }
                if let Some(fence) = retire_job {
                    sqlx::query(
                        "DELETE FROM jobs WHERE id = $1 AND (status = 'queued' \
                         OR (status = 'running' AND lease_owner = $2 AND lease_generation = $3))",
                    )
                    .bind(fence.job)
                    .bind(fence.owner.as_str())
                    .bind(fence.generation)
                    .execute(&mut *conn)
                        .await?;
                }
                write_outbox::<Db>(&mut *conn, &c.outbox).await?;
                Ok(true)
            }

            /// A batch of writes in one transaction: answers, per write, whether it was made.
            async fn write_batch(store: &$store, writes: &[PaymentWrite]) -> StoreResult<Vec<bool>> {
                let mut tx = store.writer().begin().await?;
                let mut deltas = DayDeltas::default();
                let mut done = Vec::with_capacity(writes.len());
                let mut rows = Vec::new();
                let mut jobs = Vec::new();
                let mut outbox = Vec::new();
                let mut audits = Vec::new();
                for write in writes {
                    if let PaymentWrite::Insert { payment, job, outbox: o, audit } = write {
                        rows.push(payment.clone());
                        jobs.extend(job.iter());
                        outbox.extend(o.iter().cloned());
                        audits.extend(audit.iter().cloned());
                    }
                }
                write_inserts(&mut *tx, &rows, &jobs, &outbox, &audits, &mut deltas).await?;
                // The plain steps' payment rows are updated one by one, in order (each against the
                // version it was read at); their other rows follow together.
                let mut step_rows = StepRows::default();
                // The plain steps of payments no other step of the batch touches: their payment rows
                // in one statement (the others, in order, one by one).
                let mut steps_of = std::collections::HashMap::<Uuid, usize>::new();
                for write in writes {
                    if let PaymentWrite::Change { change, .. } = write {
                        *steps_of.entry(change.payment.id).or_default() += 1;
                    }
                }
                let alone = |c: &PaymentChange| {
                    c.finished_refund.is_none() && c.new_refund.is_none() && steps_of.get(&c.payment.id) == Some(&1)
                };
                let together: Vec<&PaymentChange> = writes
                    .iter()
                    .filter_map(|write| match write {
                        PaymentWrite::Change { change, .. } if alone(change) => Some(change),
                        _ => None,
                    })
                    .collect();
                let updated = update_payments(&mut *tx, &together).await?;
                for write in writes {
                    let made = match write {
                        PaymentWrite::Insert { .. } => true,
                        PaymentWrite::Change { change, retire_job } => {
                            // A refund that moved on must undo its payment's update: only that rare
                            // step pays for a savepoint.
                            let made = if change.finished_refund.is_none() && change.new_refund.is_none() {
                                let made = if alone(change) {
                                    updated.contains(&change.payment.id)
                                } else {
                                    update_payment(&mut *tx, change).await?
                                };
                                if made {
                                    step_rows.add(change, retire_job.as_ref());
                                }
                                made
                            } else if change.finished_refund.is_some() {
                                let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
                                let made = write_change(&mut *savepoint, change, retire_job.as_ref()).await?;
                                if made {
                                    savepoint.commit().await?;
                                }
                                made
                            } else {
                                write_change(&mut *tx, change, retire_job.as_ref()).await?
                            };
                            if made && change.previous_status != change.payment.status {
                                deltas.count(&change.payment, &change.previous_status, -1);
                                deltas.count(&change.payment, &change.payment.status, 1);
                            }
                            made
                        }
                    };
                    done.push(made);
                }
                step_rows.write(&mut *tx).await?;
                write_deltas(&mut *tx, &deltas).await?;
                tx.commit().await?;
                Ok(done)
            }

            #[async_trait::async_trait]
            impl PaymentStore for $store {
                async fn insert_payment(&self, p: &PaymentRecord, job: Option<&NewJob>, outbox: &[OutboxRecord]) -> StoreResult<()> {
                    let write = PaymentWrite::Insert {
                        payment: p.clone(),
                        job: job.cloned(),
                        outbox: outbox.to_vec(),
                        audit: None,
                    };
                    write_batch(self, std::slice::from_ref(&write)).await?;
                    Ok(())
                }

                async fn insert_payments(&self, rows: &[PaymentRecord], audit: Option<&AuditEvent>) -> StoreResult<()> {
                    let mut tx = self.writer().begin().await?;
                    let mut deltas = DayDeltas::default();
                    write_inserts(&mut *tx, rows, &[], &[], audit.map(std::slice::from_ref).unwrap_or(&[]), &mut deltas).await?;
                    write_deltas(&mut *tx, &deltas).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn write_payments(&self, writes: &[PaymentWrite]) -> StoreResult<Vec<bool>> {
                    if let Some(done) = <$store as SqlBackend>::write_payment_batch(self, writes).await {
                        return done;
                    }
                    write_batch(self, writes).await
                }

                async fn get_payment(&self, account_id: Uuid, id: Uuid) -> StoreResult<Option<PaymentRecord>> {
                    let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1 AND account_id = $2");
                    Ok(sqlx::query_as(&sql).bind(id).bind(account_id).fetch_optional(self.pool()).await?)
                }

                async fn apply_payment_change(&self, c: &PaymentChange) -> StoreResult<bool> {
                    let write = PaymentWrite::Change { change: c.clone(), retire_job: None };
                    Ok(write_batch(self, std::slice::from_ref(&write)).await?.first() == Some(&true))
                }

                async fn payment_day_counts(&self, f: &PaymentFilter) -> StoreResult<Vec<(i64, i64)>> {
                    let (filter, _) = payment_filter(f, "day", 2);
                    let table = if f.statuses.is_empty() && f.currencies.is_empty() {
                        "payment_day_totals"
                    } else {
                        "payment_day_counts"
                    };
                    let sql = day_counts_sql(
                        &format!("SELECT day, SUM(n) AS n FROM {table}{filter} GROUP BY day HAVING SUM(n) > 0"),
                        "DESC",
                    );
                    let mut query = sqlx::query_scalar::<_, String>(&sql).bind(f.account_id);
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
                    parse_day_counts(&query.fetch_one(self.pool()).await?)
                }

                async fn list_payments_between(
                    &self,
                    f: &PaymentFilter,
                    lower: Option<Ts>,
                    upper: Option<Ts>,
                    limit: i64,
                    offset: i64,
                ) -> StoreResult<Vec<PaymentListing>> {
                    let window = PaymentFilter { from: lower, until: upper, ..f.clone() };
                    let (filter, next) = payment_filter(&window, "created_at", 2);
                    let sql = format!(
                        "SELECT {PAYMENT_LISTING_COLUMNS} FROM payments{filter} ORDER BY created_at DESC, id DESC \
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

                async fn payment_page_json(
                    &self,
                    f: &PaymentFilter,
                    lower: Option<Ts>,
                    upper: Option<Ts>,
                    limit: i64,
                    offset: i64,
                ) -> StoreResult<String> {
                    let window = PaymentFilter { from: lower, until: upper, ..f.clone() };
                    let (filter, next) = payment_filter(&window, "created_at", 2);
                    let sql = <$store as SqlBackend>::payment_page_sql(&format!("payments{filter}"), next);
                    let mut query = sqlx::query_scalar::<_, String>(&sql).bind(f.account_id);
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
                    Ok(query.bind(limit).bind(offset).fetch_one(self.pool()).await?)
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
