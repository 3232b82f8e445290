//! Webhooks and their deliveries: `WebhookStore` and its SQL. The deliveries themselves are written by
//! the change they report (see `webhook_records::write_outbox`); here they are read, retried and ended.

use async_trait::async_trait;
use uuid::Uuid;

use super::{
    AuditEvent, DeliveryOutcomes, EarlierPending, Fence, StoreResult, Ts, WebhookDelivery,
    WebhookRecord,
};

#[async_trait]
pub trait WebhookStore {
    /// Inserts `webhook` with `audit` (its addition) in one commit.
    async fn insert_webhook(&self, webhook: &WebhookRecord, audit: &AuditEvent) -> StoreResult<()>;
    async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<WebhookRecord>>;
    /// Webhooks not removed, of one account or of all, oldest first.
    async fn list_webhooks(&self, account_id: Option<Uuid>) -> StoreResult<Vec<WebhookRecord>>;
    /// Marks the webhook removed and writes `audit` in the same transaction; false (and nothing written) if
    /// it does not exist or was removed already.
    async fn remove_webhook(&self, id: Uuid, at: Ts, audit: &AuditEvent) -> StoreResult<bool>;
    async fn get_webhook_delivery(&self, id: Uuid) -> StoreResult<Option<WebhookDelivery>>;
    /// The earliest still-pending delivery of `later`'s webhook and object queued before it, if any.
    async fn pending_delivery_before(
        &self,
        later: &WebhookDelivery,
    ) -> StoreResult<Option<WebhookDelivery>>;
    /// Records a failed attempt of a pending delivery and when to try again.
    async fn record_delivery_attempt(
        &self,
        id: Uuid,
        attempts: i32,
        next_attempt_at: Ts,
        error: &str,
    ) -> StoreResult<bool>;
    /// Ends a pending delivery as `delivered`, `failed` or `cancelled`.
    async fn finish_webhook_delivery(
        &self,
        id: Uuid,
        status: &str,
        attempts: i32,
        error: Option<&str>,
        at: Ts,
    ) -> StoreResult<bool>;
    /// The deliveries of `ids` that exist, in `seq` order.
    async fn get_webhook_deliveries(&self, ids: &[Uuid]) -> StoreResult<Vec<WebhookDelivery>>;
    /// For each delivery of `ids`, every still-pending delivery of the same webhook and object queued
    /// before it (one lookup for a whole batch instead of `pending_delivery_before` per row).
    async fn earlier_pending_deliveries(&self, ids: &[Uuid]) -> StoreResult<Vec<EarlierPending>>;
    /// The events that the delivery jobs of `jobs` carry (`carried_events`), each job's as
    /// `{"events": […]}` (`CarriedEvents`); a job without any has none.
    async fn carried_events(&self, jobs: &[Uuid]) -> StoreResult<Vec<String>>;
    /// Records what a run of delivery jobs did and ends the jobs (`done`), in one transaction fenced on
    /// their claims; false, writing nothing, if any claim was lost. Each delivery changes only while
    /// pending.
    async fn record_delivery_outcomes(
        &self,
        fences: &[Fence],
        outcomes: &DeliveryOutcomes,
        now: Ts,
    ) -> StoreResult<bool>;
    /// A webhook's deliveries, newest first.
    async fn list_webhook_deliveries(
        &self,
        webhook_id: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>>;
    /// Deletes deliveries that ended before `before` (see the implementation for the one case it
    /// leaves for later).
    async fn purge_webhook_deliveries(&self, before: Ts) -> StoreResult<u64>;
}

/// How many of the oldest deliveries one statement of the purge looks at.
pub(crate) const PURGE_WINDOW: i64 = 1000;

macro_rules! impl_webhook_store {
    ($store:ty) => {
        const _: () = {
            use uuid::Uuid;
            use $crate::store::audit::write_audit;
            use $crate::store::backend::{SqlBackend, SqlText, INSERT_CHUNK};
            use $crate::store::jobs::{push_job_insert, Fence};
            use $crate::store::webhook_records::{push_delivery_rows, DeliveryStatus, DELIVERY_COLUMNS, WEBHOOK_COLUMNS};
            use $crate::store::webhooks::PURGE_WINDOW;
            use $crate::store::{
                AuditEvent, DeliveryOutcomes, EarlierPending, JobStatus, StoreResult, Ts, WebhookDelivery,
                WebhookRecord, WebhookStore,
            };

            type Db = <$store as SqlBackend>::DB;

            #[async_trait::async_trait]
            impl WebhookStore for $store {
                async fn insert_webhook(&self, w: &WebhookRecord, audit: &AuditEvent) -> StoreResult<()> {
                    let mut tx = self.pool().begin().await?;
                    let sql = format!("INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
                    sqlx::query(&sql)
                        .bind(w.id)
                        .bind(w.account_id)
                        .bind(&w.url)
                        .bind(&w.events)
                        .bind(&w.sealed_key)
                        .bind(w.created_at)
                        .bind(w.removed_at)
                        .execute(&mut *tx)
                        .await?;
                    write_audit::<Db>(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<WebhookRecord>> {
                    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
                    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(self.pool()).await?)
                }

                async fn list_webhooks(&self, account_id: Option<Uuid>) -> StoreResult<Vec<WebhookRecord>> {
                    Ok(match account_id {
                        Some(account) => {
                            let sql = format!(
                                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE account_id = $1 AND removed_at IS NULL \
                                 ORDER BY created_at, id"
                            );
                            sqlx::query_as(&sql).bind(account).fetch_all(self.pool()).await?
                        }
                        None => {
                            let sql = format!(
                                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE removed_at IS NULL ORDER BY created_at, id"
                            );
                            sqlx::query_as(&sql).fetch_all(self.pool()).await?
                        }
                    })
                }

                async fn remove_webhook(&self, id: Uuid, at: Ts, audit: &AuditEvent) -> StoreResult<bool> {
                    let mut tx = self.pool().begin().await?;
                    let done =
                        sqlx::query("UPDATE webhooks SET removed_at = $2 WHERE id = $1 AND removed_at IS NULL")
                            .bind(id)
                            .bind(at)
                            .execute(&mut *tx)
                            .await?;
                    Ok($crate::store::audit::commit_if_one::<Db>(tx, done.rows_affected(), Some(audit), &[]).await?)
                }

                async fn get_webhook_delivery(&self, id: Uuid) -> StoreResult<Option<WebhookDelivery>> {
                    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1");
                    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(self.pool()).await?)
                }

                async fn pending_delivery_before(
                    &self,
                    later: &WebhookDelivery,
                ) -> StoreResult<Option<WebhookDelivery>> {
                    // Probes `webhook_deliveries_by_object`; the status is filtered from the rows.
                    let sql = format!(
                        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 \
                         AND object_created_at = $2 AND object_id = $3 AND seq < $4 AND status = {pending} \
                         ORDER BY seq LIMIT 1",
                        pending = SqlText(DeliveryStatus::Pending.as_str()),
                    );
                    Ok(sqlx::query_as(&sql)
                        .bind(later.webhook_id)
                        .bind(later.object_created_at)
                        .bind(later.object_id)
                        .bind(later.seq)
                        .fetch_optional(self.pool())
                        .await?)
                }

                async fn record_delivery_attempt(
                    &self,
                    id: Uuid,
                    attempts: i32,
                    next_attempt_at: Ts,
                    error: &str,
                ) -> StoreResult<bool> {
                    let done = sqlx::query(
                        "UPDATE webhook_deliveries SET attempts = $2, next_attempt_at = $3, last_error = $4 \
                         WHERE id = $1 AND status = $5",
                    )
                    .bind(id)
                    .bind(attempts)
                    .bind(next_attempt_at)
                    .bind(error)
                    .bind(DeliveryStatus::Pending.as_str())
                    .execute(self.writer())
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn finish_webhook_delivery(
                    &self,
                    id: Uuid,
                    status: &str,
                    attempts: i32,
                    error: Option<&str>,
                    at: Ts,
                ) -> StoreResult<bool> {
                    let done = sqlx::query(
                        "UPDATE webhook_deliveries SET status = $2, attempts = $3, \
                         last_error = COALESCE($4, last_error), finished_at = $5 \
                         WHERE id = $1 AND status = $6",
                    )
                    .bind(id)
                    .bind(status)
                    .bind(attempts)
                    .bind(error)
                    .bind(at)
                    .bind(DeliveryStatus::Pending.as_str())
                    .execute(self.writer())
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn get_webhook_deliveries(&self, ids: &[Uuid]) -> StoreResult<Vec<WebhookDelivery>> {
                    let mut found = Vec::with_capacity(ids.len());
                    for chunk in ids.chunks(INSERT_CHUNK) {
                        let mut query = sqlx::QueryBuilder::<Db>::new(format!(
                            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id IN ("
                        ));
                        let mut list = query.separated(", ");
                        for id in chunk {
                            list.push_bind(*id);
                        }
                        query.push(")");
                        found.extend(query.build_query_as::<WebhookDelivery>().fetch_all(self.pool()).await?);
                    }
                    found.sort_by_key(|d| d.seq);
                    Ok(found)
                }

                async fn carried_events(&self, jobs: &[Uuid]) -> StoreResult<Vec<String>> {
                    let mut found = Vec::with_capacity(jobs.len());
                    for chunk in jobs.chunks(INSERT_CHUNK) {
                        let mut query =
                            sqlx::QueryBuilder::<Db>::new("SELECT events FROM carried_events WHERE job_id IN (");
                        let mut list = query.separated(", ");
                        for id in chunk {
                            list.push_bind(*id);
                        }
                        query.push(")");
                        found.extend(query.build_query_scalar::<String>().fetch_all(self.pool()).await?);
                    }
                    Ok(found)
                }

                async fn earlier_pending_deliveries(&self, ids: &[Uuid]) -> StoreResult<Vec<EarlierPending>> {
                    let mut found = Vec::new();
                    for chunk in ids.chunks(INSERT_CHUNK) {
                        // On PostgreSQL the earlier rows are a lateral sub-select behind `OFFSET 0`, which
                        // the planner may not flatten into a join: it is run once per listed delivery,
                        // probing `webhook_deliveries_by_object` by webhook and object (the status is
                        // filtered from the rows). As a plain join (then on a pending index), with
                        // statistics taken while few rows were pending, it read the whole pending index
                        // and probed the listed ids for each entry: 1.7–2 s a run with 22,000 deliveries
                        // queued (seen in `bench/webhooks.sh`). SQLite plans from the schema alone.
                        let pending = SqlText(DeliveryStatus::Pending.as_str());
                        let earlier = if <Self as SqlBackend>::BACKEND == Backend::Postgres {
                            format!(
                                "CROSS JOIN LATERAL (SELECT e.seq, e.event_id, e.next_attempt_at \
                                 FROM webhook_deliveries e WHERE e.webhook_id = d.webhook_id \
                                 AND e.object_created_at = d.object_created_at AND e.object_id = d.object_id \
                                 AND e.seq < d.seq AND e.status = {pending} OFFSET 0) e"
                            )
                        } else {
                            format!(
                                "JOIN webhook_deliveries e ON e.webhook_id = d.webhook_id \
                                 AND e.object_created_at = d.object_created_at AND e.object_id = d.object_id \
                                 AND e.seq < d.seq AND e.status = {pending}"
                            )
                        };
                        let mut query = sqlx::QueryBuilder::<Db>::new(format!(
                            "SELECT d.id AS of_id, e.seq, e.event_id, e.next_attempt_at FROM webhook_deliveries d \
                             {earlier} WHERE d.id IN ("
                        ));
                        let mut list = query.separated(", ");
                        for id in chunk {
                            list.push_bind(*id);
                        }
                        query.push(")");
                        found.extend(query.build_query_as::<EarlierPending>().fetch_all(self.pool()).await?);
                    }
                    Ok(found)
                }

                async fn record_delivery_outcomes(
                    &self,
                    fences: &[Fence],
                    outcomes: &DeliveryOutcomes,
                    now: Ts,
                ) -> StoreResult<bool> {
                    let mut tx = self.writer().begin().await?;
                    // First, so that it locks the jobs' rows until the commit: no claim takes one over between.
                    for chunk in fences.chunks(INSERT_CHUNK) {
                        let mut end = sqlx::QueryBuilder::<Db>::new(format!(
                            "UPDATE jobs SET status = {done}, lease_owner = NULL, lease_expires_at = NULL, updated_at = ",
                            done = SqlText(JobStatus::Done.as_str()),
                        ));
                        end.push_bind(now).push(" WHERE status = 'running' AND (");
                        for (i, fence) in chunk.iter().enumerate() {
                            if i > 0 {
                                end.push(" OR ");
                            }
                            end.push("(id = ")
                                .push_bind(fence.job)
                                .push(" AND lease_owner = ")
                                .push_bind(fence.owner.as_str())
                                .push(" AND lease_generation = ")
                                .push_bind(fence.generation)
                                .push(")");
                        }
                        end.push(")");
                        if end.build().execute(&mut *tx).await?.rows_affected() != chunk.len() as u64 {
                            return Ok(false);
                        }
                    }
                    let pending = SqlText(DeliveryStatus::Pending.as_str());
                    for chunk in outcomes.delivered.chunks(INSERT_CHUNK) {
                        let mut query = sqlx::QueryBuilder::<Db>::new(format!(
                            "UPDATE webhook_deliveries SET status = {delivered}, attempts = attempts + 1, finished_at = ",
                            delivered = SqlText(DeliveryStatus::Delivered.as_str()),
                        ));
                        query.push_bind(now);
                        query.push(format!(" WHERE status = {pending} AND id IN ("));
                        let mut list = query.separated(", ");
                        for id in chunk {
                            list.push_bind(*id);
                        }
                        query.push(")");
                        query.build().execute(&mut *tx).await?;
                    }
                    for r in &outcomes.retried {
                        sqlx::query(
                            "UPDATE webhook_deliveries SET attempts = $2, next_attempt_at = $3, last_error = $4 \
                             WHERE id = $1 AND status = $5",
                        )
                        .bind(r.id)
                        .bind(r.attempts)
                        .bind(r.next_attempt_at)
                        .bind(r.error.as_str())
                        .bind(DeliveryStatus::Pending.as_str())
                        .execute(&mut *tx)
                        .await?;
                    }
                    for f in &outcomes.finished {
                        sqlx::query(
                            "UPDATE webhook_deliveries SET status = $2, attempts = $3, \
                             last_error = COALESCE($4, last_error), finished_at = $5 \
                             WHERE id = $1 AND status = $6",
                        )
                        .bind(f.id)
                        .bind(f.status.as_str())
                        .bind(f.attempts)
                        .bind(f.error.as_deref())
                        .bind(now)
                        .bind(DeliveryStatus::Pending.as_str())
                        .execute(&mut *tx)
                        .await?;
                    }
                    // Carried events: their rows, or what this run did applied to the rows that a later
                    // event of their object wrote meanwhile, while those are pending.
                    for chunk in outcomes.written.chunks(INSERT_CHUNK) {
                        let mut query = sqlx::QueryBuilder::<Db>::new("");
                        push_delivery_rows(&mut query, chunk);
                        query.push(format!(
                            " ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts, \
                             next_attempt_at = excluded.next_attempt_at, \
                             last_error = COALESCE(excluded.last_error, webhook_deliveries.last_error), \
                             finished_at = excluded.finished_at WHERE webhook_deliveries.status = {pending}"
                        ));
                        query.build().execute(&mut *tx).await?;
                    }
                    for chunk in outcomes.jobs.chunks(INSERT_CHUNK) {
                        let mut insert = sqlx::QueryBuilder::<Db>::new("");
                        push_job_insert(&mut insert, chunk.iter().map(|job| (job, now)));
                        insert.build().execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(true)
                }

                async fn list_webhook_deliveries(&self, webhook_id: Uuid, limit: i64) -> StoreResult<Vec<WebhookDelivery>> {
                    let sql = format!(
                        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 \
                         ORDER BY seq DESC LIMIT $2"
                    );
                    Ok(sqlx::query_as(&sql).bind(webhook_id).bind(limit).fetch_all(self.pool()).await?)
                }

                async fn purge_webhook_deliveries(&self, before: Ts) -> StoreResult<u64> {
                    // No index on `finished_at` (an outcome that changes no indexed column is a heap-only
                    // update on PostgreSQL, migration 0020): a delivery ends within its deadline of being
                    // written, so those ended long ago are the oldest rows. Windows of the oldest rows,
                    // along the primary key, each in a commit of its own, until one has none to drop.
                    // Rows still pending stay; more than a window of them ahead of ended ones would stop
                    // the purge there until they end.
                    let mut purged = 0;
                    loop {
                        let done = sqlx::query(
                            "DELETE FROM webhook_deliveries WHERE seq IN \
                             (SELECT seq FROM webhook_deliveries ORDER BY seq LIMIT $2) \
                             AND finished_at IS NOT NULL AND finished_at < $1",
                        )
                        .bind(before)
                        .bind(PURGE_WINDOW)
                        .execute(self.writer())
                        .await?;
                        if done.rows_affected() == 0 {
                            return Ok(purged);
                        }
                        purged += done.rows_affected();
                    }
                }
            }
        };
    };
}

pub(crate) use impl_webhook_store;
