//! PostgreSQL, for several stateless nodes on one database: its `SqlBackend` (job claiming with
//! `FOR UPDATE SKIP LOCKED`, the one-statement token and payment batches) and the encoding of `Ts` as
//! TIMESTAMPTZ.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{
    PgArgumentBuffer, PgConnectOptions, PgConnection, PgPoolOptions, PgQueryResult, PgTypeInfo,
    PgValueRef,
};
use sqlx::{Connection, Decode, Encode, PgPool, Postgres, QueryBuilder, Type};
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

use super::backend::{impl_sql_store, SqlBackend, SqlDb, SqlText, INSERT_CHUNK};
use super::payment_records::{batch_answers, plain_steps, PAYMENT_COLUMNS, TRANSACTION_COLUMNS};
use super::tokens::{day_counts, TOKEN_COLUMNS};
use super::webhook_records::{carrying_job, push_carried_insert};
use super::{
    day_of, AuditEvent, Backend, DeliveryStatus, DynStore, Fence, JobStatus, NewJob, OpenError,
    OutboxRecord, PaymentChange, PaymentRecord, PaymentWrite, StoreResult, TokenRecord, Ts,
};

pub struct PgStore {
    pool: PgPool,
    /// The connections the group-commit writers keep between their batches: the token writer's and
    /// the payment writer's (`WriterSlot`).
    token_writer: Mutex<Option<HeldConnection>>,
    payment_writer: Mutex<Option<HeldConnection>>,
}

/// A pool connection kept by one of the writers, which run one batch at a time.
///
/// sqlx sends a `Sync` round trip on every acquire (its liveness test) and another on every release:
/// two extra trips to the database per batch besides the statement itself, and a wait in the pool's
/// queue behind the requests' reads. Taken as it is, a connection used less than
/// `WRITER_IDLE_CHECK` ago goes straight to the statement; one idle longer is tested first, within
/// the pool's acquire timeout, as the pool would. A batch that fails gives its connection back to the
/// pool, which tests it and closes it if broken; one unanswered within `writer_deadline` is closed;
/// either way the next batch acquires one afresh.
struct HeldConnection {
    conn: PoolConnection<Postgres>,
    used: Instant,
    taken: Instant,
}

const WRITER_IDLE_CHECK: Duration = Duration::from_secs(1);
/// A kept connection goes back to the pool after this long, so that the pool's own lifetime limit
/// (which closes connections older than 30 minutes) applies to it too.
const WRITER_KEEP_AT_MOST: Duration = Duration::from_secs(10 * 60);

/// A writer's connection for one batch, out of its slot, with the deadline its statement runs within.
/// `settle` puts it back for the next batch after an answer; after an error it goes back to the pool
/// and the slot stays empty; unanswered, it is closed.
struct WriterSlot<'a> {
    slot: MutexGuard<'a, Option<HeldConnection>>,
    held: HeldConnection,
    deadline: Duration,
}

impl WriterSlot<'_> {
    fn conn(&mut self) -> &mut PgConnection {
        &mut self.held.conn
    }

    /// The outcome of the batch's statement, `answer` being it run under `tokio::time::timeout` with
    /// `deadline`. Unanswered, the database or the network to it hangs: whether the statement
    /// committed is unknown, as with a connection that broke, and the callers get 503.
    fn settle<T>(
        self,
        answer: Result<Result<T, sqlx::Error>, tokio::time::error::Elapsed>,
    ) -> StoreResult<T> {
        match answer {
            Ok(Ok(done)) => {
                let Self {
                    mut slot, mut held, ..
                } = self;
                held.used = Instant::now();
                *slot = Some(held);
                Ok(done)
            }
            Ok(Err(err)) => Err(err.into()),
            Err(_) => {
                let mut held = self.held;
                held.conn.close_on_drop();
                Err(super::StoreError::Unavailable(format!(
                    "the database did not answer a write within {} ms",
                    self.deadline.as_millis()
                )))
            }
        }
    }
}

impl PgStore {
    /// How long a writer's statement may go unanswered (four times the pool's acquire timeout: 6 s by
    /// default). A batch takes milliseconds; one waiting longer waits on a database or network that
    /// hangs, and without a limit would hold its writer, and every request queued behind it, until the
    /// operating system gave the connection up (minutes).
    fn writer_deadline(&self) -> Duration {
        self.pool.options().get_acquire_timeout() * 4
    }

    /// The connection of the writer whose slot is `slot`, tested first if it was idle (see
    /// `HeldConnection`), or one acquired from the pool.
    async fn writer_conn<'a>(
        &self,
        slot: &'a Mutex<Option<HeldConnection>>,
    ) -> Result<WriterSlot<'a>, sqlx::Error> {
        let mut slot = slot.lock().await;
        if slot
            .as_ref()
            .is_some_and(|held| held.taken.elapsed() > WRITER_KEEP_AT_MOST)
        {
            slot.take();
        }
        if let Some(held) = slot.as_mut() {
            if held.used.elapsed() > WRITER_IDLE_CHECK {
                let limit = self.pool.options().get_acquire_timeout();
                let alive = tokio::time::timeout(limit, held.conn.ping()).await;
                if !matches!(alive, Ok(Ok(()))) {
                    held.conn.close_on_drop();
                    slot.take();
                }
            }
        }
        let held = match slot.take() {
            Some(held) => held,
            None => HeldConnection {
                conn: self.pool.acquire().await?,
                used: Instant::now(),
                taken: Instant::now(),
            },
        };
        Ok(WriterSlot {
            slot,
            held,
            deadline: self.writer_deadline(),
        })
    }
}

impl SqlBackend for PgStore {
    type DB = Postgres;
    const BACKEND: Backend = Backend::Postgres;
    const MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");
    const CLAIM_LOCK: &'static str = "FOR UPDATE SKIP LOCKED";
    const IDS_OF: (&'static str, &'static str) = ("= ANY(ARRAY(", "))");
    // A shard per database session (pool connection), as the token counts' triggers do.
    const SHARD: &'static str = "pg_backend_pid() % 16";
    const PLAN_EACH_CALL: bool = true;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn payment_page_sql(from: &str, next: usize) -> String {
        super::page_json::postgres::payment_page(from, next)
    }

    fn token_page_sql(from: &str, order: &str, next: usize) -> String {
        super::page_json::postgres::token_page(from, order, next)
    }

    /// A batch of payment writes whose steps are all plain (no refund in them, one per payment: see
    /// `plain_steps`) as one statement whose text does not grow with its size (`push_payment_batch`): the new
    /// payments with their rows, the steps' guarded `UPDATE … RETURNING`, the applied steps' rows, and
    /// the day counts, in one round trip and one commit (a single statement is its own transaction),
    /// prepared and planned once per connection. The shared path costs a trip per statement, each of
    /// a text that varies with the number of rows.
    async fn write_payment_batch(&self, writes: &[PaymentWrite]) -> Option<StoreResult<Vec<bool>>> {
        let steps = plain_steps(writes)?;
        if writes.is_empty() {
            return Some(Ok(Vec::new()));
        }
        let mut statement = QueryBuilder::<Postgres>::new("");
        push_payment_batch(&mut statement, writes, &steps, Ts::now());
        let mut conn = match self.writer_conn(&self.payment_writer).await {
            Ok(conn) => conn,
            Err(err) => return Some(Err(err.into())),
        };
        let answer = tokio::time::timeout(
            conn.deadline,
            statement.build_query_as::<(Uuid,)>().fetch_all(conn.conn()),
        )
        .await;
        let updated: HashSet<Uuid> = match conn.settle(answer) {
            Ok(rows) => rows.into_iter().map(|(id,)| id).collect(),
            Err(err) => return Some(Err(err)),
        };
        Some(Ok(batch_answers(writes, &updated)))
    }

    async fn backup_into(&self, _path: &std::path::Path) -> StoreResult<()> {
        Err(super::StoreError::Other(
            "PostgreSQL is backed up with its own tools (pg_dump, or base backups with WAL archiving); see the README".into(),
        ))
    }

    async fn close_pools(&self) {
        // Closing waits for every connection to come back: the writers' first.
        self.token_writer.lock().await.take();
        self.payment_writer.lock().await.take();
        self.pool.close().await;
    }

    /// The tables of this schema with more rows inserted, updated or deleted since their last `ANALYZE`
    /// (ours or autovacuum's) than 500 plus the rows they had then: a growing table is analyzed each time
    /// it doubles, a few times in its life, and only a plan made on an empty table is at stake (a table
    /// analyzed at some size keeps its index probes as it grows). Autovacuum's own rule is 50 plus a
    /// tenth, so where it runs this finds nothing left to do. `SKIP_LOCKED`: a table another session
    /// (another node, autovacuum) is analyzing right now is left to it.
    async fn refresh_stale_statistics(&self) -> Result<Vec<String>, sqlx::Error> {
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
             WHERE s.schemaname = current_schema() \
             AND s.n_mod_since_analyze > 500 + GREATEST(c.reltuples, 0) ORDER BY s.relname",
        )
        .fetch_all(&self.pool)
        .await?;
        if !stale.is_empty() {
            let tables: Vec<String> = stale
                .iter()
                .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
                .collect();
            sqlx::query(&format!("ANALYZE (SKIP_LOCKED) {}", tables.join(", ")))
                .execute(&self.pool)
                .await?;
        }
        Ok(stale)
    }

    /// The whole batch is one statement of one text whatever its size: the columns go as arrays
    /// (`UNNEST`), so that each connection prepares and plans it once, and the tokens, their day counts
    /// (one upsert per account and day, in the session's shard), their audit events and the delivery
    /// job carrying their webhook events (with its `carried_events` row) are written by one round trip,
    /// atomically.
    async fn insert_token_batch(
        &self,
        batch: &[(TokenRecord, AuditEvent)],
        outbox: &[OutboxRecord],
    ) -> StoreResult<()> {
        let counts = day_counts(batch);
        let carrying = carrying_job(outbox);
        let mut statement = sqlx::QueryBuilder::<Postgres>::new("");
        push_token_batch(&mut statement, batch, &counts);
        let mut with = With { started: true };
        if let Some(carrying) = &carrying {
            push_jobs_cte(
                &mut statement,
                &mut with,
                "new_delivery_jobs",
                &[(None, &carrying.job, carrying.at)],
                None,
            );
            // Its key is checked at the statement's end, when the job's row is there.
            with.next(&mut statement, "new_carried_events");
            push_carried_insert(&mut statement, carrying);
            statement.push(")");
        }
        statement.push(" SELECT 1");
        let mut conn = self.writer_conn(&self.token_writer).await?;
        let answer =
            tokio::time::timeout(conn.deadline, statement.build().execute(conn.conn())).await;
        conn.settle(answer)?;
        Ok(())
    }
}

/// Appends `WITH new_tokens AS (…), new_counts AS (…), new_audit AS (…)` writing `batch` and `counts`
/// (see `day_counts`) from arrays; the caller ends the statement.
fn push_token_batch<'a>(
    statement: &mut sqlx::QueryBuilder<'a, Postgres>,
    batch: &'a [(TokenRecord, AuditEvent)],
    counts: &[(uuid::Uuid, i64, i64)],
) {
    let tokens = || batch.iter().map(|(t, _)| t);
    let audits = || batch.iter().map(|(_, a)| a);
    statement.push(format!(
        "WITH new_tokens AS (INSERT INTO tokens ({TOKEN_COLUMNS}) SELECT * FROM UNNEST("
    ));
    let mut columns = statement.separated(", ");
    columns.push_bind(tokens().map(|t| t.id).collect::<Vec<_>>());
    columns.push_unseparated("::uuid[]");
    columns.push_bind(tokens().map(|t| t.account_id).collect::<Vec<_>>());
    columns.push_unseparated("::uuid[]");
    columns.push_bind(
        tokens()
            .map(|t| t.created_at.datetime())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(tokens().map(|t| t.expiry_month).collect::<Vec<_>>());
    columns.push_bind(tokens().map(|t| t.expiry_year).collect::<Vec<_>>());
    columns.push_bind(
        tokens()
            .map(|t| t.cardholder_name.as_deref())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.issuer_identification_number.as_str())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.masked_account_number.as_str())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.account_number_last_four.as_str())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.account_number_length)
            .collect::<Vec<_>>(),
    );
    columns.push_bind(tokens().map(|t| t.scheme.as_str()).collect::<Vec<_>>());
    columns.push_bind(tokens().map(|t| t.status.as_str()).collect::<Vec<_>>());
    columns.push_bind(
        tokens()
            .map(|t| t.fingerprint.as_slice())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.sealed_card.as_slice())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.business_key.as_deref())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.import_provider.as_deref())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        tokens()
            .map(|t| t.expires_at.map(|at| at.datetime()))
            .collect::<Vec<_>>(),
    );
    columns.push_bind(tokens().map(|t| t.keyed_id).collect::<Vec<_>>());
    statement.push(
        ") RETURNING 1), new_counts AS (INSERT INTO token_day_counts (account_id, day, shard, n) \
         SELECT account_id, day, pg_backend_pid() % 16, n FROM UNNEST(",
    );
    let mut columns = statement.separated(", ");
    columns.push_bind(counts.iter().map(|c| c.0).collect::<Vec<_>>());
    columns.push_unseparated("::uuid[]");
    columns.push_bind(counts.iter().map(|c| c.1).collect::<Vec<_>>());
    columns.push_bind(counts.iter().map(|c| c.2).collect::<Vec<_>>());
    statement.push(
        ") AS c (account_id, day, n) \
         ON CONFLICT (account_id, day, shard) DO UPDATE SET n = token_day_counts.n + excluded.n \
         RETURNING 1), new_audit AS (INSERT INTO audit_events \
         (at, account_id, actor, action, target, outcome, remote_addr, request_id, node) SELECT * FROM UNNEST(",
    );
    let mut columns = statement.separated(", ");
    columns.push_bind(audits().map(|a| a.at.datetime()).collect::<Vec<_>>());
    columns.push_bind(audits().map(|a| a.account_id).collect::<Vec<_>>());
    columns.push_unseparated("::uuid[]");
    columns.push_bind(audits().map(|a| a.actor.as_str()).collect::<Vec<_>>());
    columns.push_bind(audits().map(|a| a.action.as_str()).collect::<Vec<_>>());
    columns.push_bind(audits().map(|a| a.target.as_deref()).collect::<Vec<_>>());
    columns.push_bind(audits().map(|a| a.outcome.as_str()).collect::<Vec<_>>());
    columns.push_bind(
        audits()
            .map(|a| a.remote_addr.as_deref())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(
        audits()
            .map(|a| a.request_id.as_deref())
            .collect::<Vec<_>>(),
    );
    columns.push_bind(audits().map(|a| a.node.as_deref()).collect::<Vec<_>>());
    statement.push(") RETURNING 1)");
}

/// Appends the CTE `name` inserting `jobs` (step, job, created at) from arrays, as `push_job_insert`
/// writes them: a job written leased is its writer's first claim of it. With `applied` (a condition on
/// `j.step`), the jobs of a step are written only if it holds; jobs without a step always are.
fn push_jobs_cte<'a>(
    statement: &mut QueryBuilder<'a, Postgres>,
    with: &mut With,
    name: &str,
    jobs: &[(Option<Uuid>, &'a NewJob, Ts)],
    applied: Option<&str>,
) {
    with.next(statement, name);
    statement.push(format!(
        "INSERT INTO jobs (id, kind, payload, max_attempts, run_at, created_at, \
         updated_at, status, attempts, lease_owner, lease_expires_at, lease_generation) \
         SELECT j.id, j.kind, j.payload, j.max_attempts, j.run_at, j.created_at, j.created_at, \
         CASE WHEN j.lease_owner IS NULL THEN {queued} ELSE {running} END, 0, j.lease_owner, \
         j.lease_until, CASE WHEN j.lease_owner IS NULL THEN 0 ELSE 1 END FROM UNNEST(",
        queued = SqlText(JobStatus::Queued.as_str()),
        running = SqlText(JobStatus::Running.as_str()),
    ));
    let js = || jobs.iter().map(|(_, job, _)| *job);
    Arrays::new(statement)
        .push(jobs.iter().map(|(step, _, _)| *step).collect(), "uuid")
        .push(js().map(|j| j.id).collect(), "uuid")
        .push(js().map(|j| j.kind.as_str()).collect(), "text")
        .push(js().map(|j| j.payload.as_str()).collect(), "text")
        .push(js().map(|j| j.max_attempts).collect(), "int4")
        .push(js().map(|j| j.run_at.datetime()).collect(), "timestamptz")
        .push(
            jobs.iter().map(|(_, _, at)| at.datetime()).collect(),
            "timestamptz",
        )
        .push(
            js().map(|j| j.lease.as_ref().map(|l| l.owner.as_str()))
                .collect(),
            "text",
        )
        .push(
            js().map(|j| j.lease.as_ref().map(|l| l.until.datetime()))
                .collect(),
            "timestamptz",
        );
    statement.push(
        ") AS j (step, id, kind, payload, max_attempts, run_at, created_at, lease_owner, lease_until)",
    );
    if let Some(applied) = applied {
        statement.push(format!(" WHERE j.step IS NULL OR {applied}"));
    }
    statement.push(")");
}

/// Columns bound as arrays (`$n::type[]`, comma-separated), for an `UNNEST(…)`: one parameter each
/// whatever the number of rows, so the text and the count of parameters stay the same.
struct Arrays<'q, 'a> {
    query: &'q mut QueryBuilder<'a, Postgres>,
    first: bool,
}

impl<'q, 'a> Arrays<'q, 'a> {
    fn new(query: &'q mut QueryBuilder<'a, Postgres>) -> Self {
        Self { query, first: true }
    }

    fn push<T>(&mut self, values: Vec<T>, ty: &str) -> &mut Self
    where
        Vec<T>: 'a + Encode<'a, Postgres> + Type<Postgres>,
    {
        if !self.first {
            self.query.push(", ");
        }
        self.first = false;
        self.query.push_bind(values).push(format!("::{ty}[]"));
        self
    }

    /// The columns of webhook rows that `webhook_deliveries` takes from the change (`id, event_id,
    /// webhook_id, account_id, object_id, object_created_at, event_type, body, created_at`), in that
    /// order.
    fn deliveries<I>(&mut self, rows: impl Fn() -> I) -> &mut Self
    where
        I: Iterator<Item = &'a OutboxRecord>,
    {
        self.push(rows().map(|o| o.id).collect(), "uuid")
            .push(rows().map(|o| o.event_id).collect(), "uuid")
            .push(rows().map(|o| o.webhook_id).collect(), "uuid")
            .push(rows().map(|o| o.account_id).collect(), "uuid")
            .push(rows().map(|o| o.object_id).collect(), "uuid")
            .push(
                rows().map(|o| o.object_created_at.datetime()).collect(),
                "timestamptz",
            )
            .push(rows().map(|o| o.event_type.as_str()).collect(), "text")
            .push(rows().map(|o| o.body.as_str()).collect(), "text")
            .push(
                rows().map(|o| o.created_at.datetime()).collect(),
                "timestamptz",
            )
    }
}

/// Appends the one statement of `PgStore::write_payment_batch`: it answers the ids of the payments
/// whose step (`steps`, each of a different payment, none of a payment the batch inserts) went through.
///
/// Every row a step writes carries its payment's id (`step`), and is written only if that id is among
/// those the guarded `UPDATE` returned (`updated`); the rows of new payments carry none and are always
/// written. All CTEs read one snapshot, which is enough because a batch neither steps a payment it
/// inserts nor retires a job it inserts; rows changed meanwhile by other sessions are re-checked by
/// the `UPDATE` and the `DELETE` as they lock them, as in the shared path. The webhook rows keep the
/// shared path's order (the new payments' first) and its delivery jobs (one per up to `INSERT_CHUNK`
/// rows of each group, a lone row keeping its own); the day counts are added up per row, zero sums
/// skipped, in key order, in the session's shard.
fn push_payment_batch<'a>(
    statement: &mut QueryBuilder<'a, Postgres>,
    writes: &'a [PaymentWrite],
    steps: &[(&'a PaymentChange, Option<&'a Fence>)],
    now: Ts,
) {
    let mut payments = Vec::new();
    let mut audits = Vec::new();
    // (step, job)
    let mut jobs: Vec<(Option<Uuid>, &NewJob)> = Vec::new();
    // (group: 0 the new payments', 1 the steps'; step, row)
    let mut outbox: Vec<(i32, Option<Uuid>, &OutboxRecord)> = Vec::new();
    // (step, payment, status, n): a change of the count of the payment's account, day and currency in
    // that status.
    let mut counts: Vec<(Option<Uuid>, &PaymentRecord, &str, i64)> = Vec::new();
    for write in writes {
        if let PaymentWrite::Insert {
            payment: p,
            job,
            outbox: rows,
            audit,
        } = write
        {
            payments.push(p);
            jobs.extend(job.iter().map(|job| (None, job)));
            outbox.extend(rows.iter().map(|row| (0, None, row)));
            audits.extend(audit.iter());
            counts.push((None, p, &p.status, 1));
        }
    }
    let mut transactions = Vec::new();
    let mut retired = Vec::new();
    for (c, fence) in steps {
        let (p, step) = (&c.payment, Some(c.payment.id));
        transactions.extend(c.transaction.iter().map(|t| (p.id, t)));
        jobs.extend(c.job.iter().map(|job| (step, job)));
        retired.extend(fence.map(|fence| (p.id, fence)));
        outbox.extend(c.outbox.iter().map(|row| (1, step, row)));
        if c.previous_status != p.status {
            counts.push((step, p, &c.previous_status, -1));
            counts.push((step, p, &p.status, 1));
        }
    }

    // Only the CTEs that have rows to write are in the text (a handful of shapes, each prepared once
    // per connection): an empty one still costs its plan nodes' start and end on every execution.
    let mut with = With::default();
    // Whether a step's row goes in: its step went through (none did where the batch has no step).
    let applied = |column: &str| {
        if steps.is_empty() {
            "FALSE".to_owned()
        } else {
            format!("{column} IN (SELECT id FROM updated)")
        }
    };
    if !payments.is_empty() {
        with.next(statement, "new_payments");
        statement.push(format!(
            "INSERT INTO payments ({PAYMENT_COLUMNS}) SELECT * FROM UNNEST("
        ));
        let ps = || payments.iter().copied();
        Arrays::new(statement)
            .push(ps().map(|p| p.id).collect(), "uuid")
            .push(ps().map(|p| p.account_id).collect(), "uuid")
            .push(ps().map(|p| p.version).collect(), "int8")
            .push(
                ps().map(|p| p.created_at.datetime()).collect(),
                "timestamptz",
            )
            .push(
                ps().map(|p| p.updated_at.datetime()).collect(),
                "timestamptz",
            )
            .push(ps().map(|p| p.use_case.as_str()).collect(), "text")
            .push(ps().map(|p| p.status.as_str()).collect(), "text")
            .push(ps().map(|p| p.currency_code.as_str()).collect(), "text")
            .push(ps().map(|p| p.reference.as_str()).collect(), "text")
            .push(ps().map(|p| p.capture_mode.as_str()).collect(), "text")
            .push(ps().map(|p| p.amount_requested).collect(), "int8")
            .push(ps().map(|p| p.amount_authorized).collect(), "int8")
            .push(ps().map(|p| p.amount_captured).collect(), "int8")
            .push(ps().map(|p| p.amount_voided).collect(), "int8")
            .push(ps().map(|p| p.amount_refunded).collect(), "int8")
            .push(ps().map(|p| p.amount_refund_reserved).collect(), "int8")
            .push(ps().map(|p| p.capture_requested).collect(), "int8")
            .push(ps().map(|p| p.token_id).collect(), "uuid")
            .push(ps().map(|p| p.source.as_str()).collect(), "text")
            .push(ps().map(|p| p.flow_matrix_rule.as_str()).collect(), "text")
            .push(ps().map(|p| p.processor.as_str()).collect(), "text")
            .push(
                ps().map(|p| p.processor_reference.as_deref()).collect(),
                "text",
            )
            .push(ps().map(|p| p.failure_details.as_deref()).collect(), "text")
            .push(ps().map(|p| p.initial_payment_id).collect(), "uuid")
            .push(ps().map(|p| p.recurring_frequency).collect(), "int4")
            .push(
                ps().map(|p| p.recurring_expiry.as_deref()).collect(),
                "text",
            )
            .push(ps().map(|p| p.metadata.as_deref()).collect(), "text");
        statement.push("))");
    }

    // Each payment row moves only from the version its step read.
    if !steps.is_empty() {
        with.next(statement, "updated");
        statement.push(
        "UPDATE payments SET version = s.version, updated_at = s.updated_at, \
         status = s.status, amount_authorized = s.amount_authorized, \
         amount_captured = s.amount_captured, amount_voided = s.amount_voided, \
         amount_refunded = s.amount_refunded, amount_refund_reserved = s.amount_refund_reserved, \
         capture_requested = s.capture_requested, processor_reference = s.processor_reference, \
         failure_details = s.failure_details, \
         network_transaction_id = COALESCE(s.network_transaction_id, payments.network_transaction_id) \
         FROM UNNEST(",
    );
        let cs = || steps.iter().map(|(c, _)| *c);
        Arrays::new(statement)
            .push(cs().map(|c| c.payment.id).collect(), "uuid")
            .push(cs().map(|c| c.expected_version).collect(), "int8")
            .push(cs().map(|c| c.payment.version).collect(), "int8")
            .push(
                cs().map(|c| c.payment.updated_at.datetime()).collect(),
                "timestamptz",
            )
            .push(cs().map(|c| c.payment.status.as_str()).collect(), "text")
            .push(cs().map(|c| c.payment.amount_authorized).collect(), "int8")
            .push(cs().map(|c| c.payment.amount_captured).collect(), "int8")
            .push(cs().map(|c| c.payment.amount_voided).collect(), "int8")
            .push(cs().map(|c| c.payment.amount_refunded).collect(), "int8")
            .push(
                cs().map(|c| c.payment.amount_refund_reserved).collect(),
                "int8",
            )
            .push(cs().map(|c| c.payment.capture_requested).collect(), "int8")
            .push(
                cs().map(|c| c.payment.processor_reference.as_deref())
                    .collect(),
                "text",
            )
            .push(
                cs().map(|c| c.payment.failure_details.as_deref()).collect(),
                "text",
            )
            .push(
                cs().map(|c| c.network_transaction_id.as_deref()).collect(),
                "text",
            );
        statement.push(
        ") AS s (id, expected_version, version, updated_at, status, amount_authorized, \
         amount_captured, amount_voided, amount_refunded, amount_refund_reserved, capture_requested, \
         processor_reference, failure_details, network_transaction_id) \
         WHERE payments.id = s.id AND payments.version = s.expected_version RETURNING payments.id)",
    );
    }

    if !transactions.is_empty() {
        with.next(statement, "new_transactions");
        statement.push(format!(
        "INSERT INTO payment_transactions ({TRANSACTION_COLUMNS}) \
         SELECT t.id, t.payment_id, t.created_at, t.kind, t.status, t.amount, t.processor_reference, \
         t.message, t.processor FROM UNNEST("
    ));
        let ts = || transactions.iter().map(|(_, t)| *t);
        Arrays::new(statement)
            .push(transactions.iter().map(|(step, _)| *step).collect(), "uuid")
            .push(ts().map(|t| t.id).collect(), "uuid")
            .push(ts().map(|t| t.payment_id).collect(), "uuid")
            .push(
                ts().map(|t| t.created_at.datetime()).collect(),
                "timestamptz",
            )
            .push(ts().map(|t| t.kind.as_str()).collect(), "text")
            .push(ts().map(|t| t.status.as_str()).collect(), "text")
            .push(ts().map(|t| t.amount).collect(), "int8")
            .push(
                ts().map(|t| t.processor_reference.as_deref()).collect(),
                "text",
            )
            .push(ts().map(|t| t.message.as_deref()).collect(), "text")
            .push(ts().map(|t| t.processor.as_deref()).collect(), "text");
        statement.push(
        ") AS t (step, id, payment_id, created_at, kind, status, amount, processor_reference, message, \
         processor) WHERE t.step IN (SELECT id FROM updated))",
    );
    }

    if !jobs.is_empty() {
        let jobs: Vec<_> = jobs.iter().map(|(step, job)| (*step, *job, now)).collect();
        push_jobs_cte(
            statement,
            &mut with,
            "new_jobs",
            &jobs,
            Some(&applied("j.step")),
        );
    }

    // As `push_jobs_retire`: each job only while queued, or still held under the retiring claim.
    if !retired.is_empty() {
        with.next(statement, "retired");
        statement.push("DELETE FROM jobs USING UNNEST(");
        let fs = || retired.iter().map(|(_, fence)| *fence);
        Arrays::new(statement)
            .push(retired.iter().map(|(step, _)| *step).collect(), "uuid")
            .push(fs().map(|f| f.job).collect(), "uuid")
            .push(fs().map(|f| f.owner.as_str()).collect(), "text")
            .push(fs().map(|f| f.generation).collect(), "int8");
        statement.push(format!(
            ") AS r (step, job, owner, generation) WHERE jobs.id = r.job \
         AND r.step IN (SELECT id FROM updated) AND (jobs.status = {queued} \
         OR (jobs.status = {running} AND jobs.lease_owner = r.owner \
         AND jobs.lease_generation = r.generation)) RETURNING 1)",
            queued = SqlText(JobStatus::Queued.as_str()),
            running = SqlText(JobStatus::Running.as_str()),
        ));
    }

    if !audits.is_empty() {
        with.next(statement, "new_audit");
        statement.push(
            "INSERT INTO audit_events \
         (at, account_id, actor, action, target, outcome, remote_addr, request_id, node) \
         SELECT * FROM UNNEST(",
        );
        let au = || audits.iter().copied();
        Arrays::new(statement)
            .push(au().map(|a| a.at.datetime()).collect(), "timestamptz")
            .push(au().map(|a| a.account_id).collect(), "uuid")
            .push(au().map(|a| a.actor.as_str()).collect(), "text")
            .push(au().map(|a| a.action.as_str()).collect(), "text")
            .push(au().map(|a| a.target.as_deref()).collect(), "text")
            .push(au().map(|a| a.outcome.as_str()).collect(), "text")
            .push(au().map(|a| a.remote_addr.as_deref()).collect(), "text")
            .push(au().map(|a| a.request_id.as_deref()).collect(), "text")
            .push(au().map(|a| a.node.as_deref()).collect(), "text");
        statement.push("))");
    }

    // The webhook rows written, numbered within their group (`rn`), in the order given.
    if !outbox.is_empty() {
        with.next(statement, "outbox");
        statement.push(
            "SELECT o.*, row_number() OVER (PARTITION BY o.grp ORDER BY o.ord) AS rn FROM UNNEST(",
        );
        let os = || outbox.iter().map(|(_, _, row)| *row);
        Arrays::new(statement)
            .push(outbox.iter().map(|(group, _, _)| *group).collect(), "int4")
            .push(outbox.iter().map(|(_, step, _)| *step).collect(), "uuid")
            .deliveries(os)
            .push(os().map(|o| o.job.id).collect(), "uuid")
            .push(os().map(|o| o.job.kind.as_str()).collect(), "text")
            .push(os().map(|o| o.job.payload.as_str()).collect(), "text")
            .push(os().map(|o| o.job.max_attempts).collect(), "int4")
            .push(
                os().map(|o| o.job.run_at.datetime()).collect(),
                "timestamptz",
            )
            .push(
                os().map(|o| o.job.lease.as_ref().map(|l| l.owner.as_str()))
                    .collect(),
                "text",
            )
            .push(
                os().map(|o| o.job.lease.as_ref().map(|l| l.until.datetime()))
                    .collect(),
                "timestamptz",
            )
            // The id of the job of a group's chunk, should this row be the first of several in it.
            .push(os().map(|_| crate::new_id()).collect(), "uuid");
        statement.push(format!(
        ") WITH ORDINALITY AS o (grp, step, id, event_id, webhook_id, account_id, object_id, \
         object_created_at, event_type, body, created_at, job_id, job_kind, job_payload, \
         job_max_attempts, job_run_at, job_lease_owner, job_lease_until, chunk_job_id, ord) \
         WHERE o.step IS NULL OR {applied_o}), \
         new_deliveries AS (INSERT INTO webhook_deliveries (id, event_id, webhook_id, account_id, \
         object_id, object_created_at, event_type, body, created_at, next_attempt_at, status, attempts) \
         SELECT id, event_id, webhook_id, account_id, object_id, object_created_at, event_type, body, \
         created_at, created_at, {pending}, 0 FROM outbox ORDER BY grp, ord), \
         delivery_chunks AS (SELECT grp, MIN(rn) AS first, COUNT(*) AS n, MIN(created_at) AS at, \
         '{{\"delivery_ids\":[' || string_agg('\"' || id::text || '\"', ',' ORDER BY rn) || ']}}' AS payload \
         FROM outbox GROUP BY grp, (rn - 1) / {INSERT_CHUNK}), \
         new_delivery_jobs AS (INSERT INTO jobs (id, kind, payload, max_attempts, run_at, created_at, \
         updated_at, status, attempts, lease_owner, lease_expires_at, lease_generation) \
         SELECT CASE WHEN c.n = 1 THEN f.job_id ELSE f.chunk_job_id END, f.job_kind, \
         CASE WHEN c.n = 1 THEN f.job_payload ELSE c.payload END, f.job_max_attempts, \
         CASE WHEN c.n = 1 THEN f.job_run_at ELSE c.at END, c.at, c.at, \
         CASE WHEN c.n = 1 AND f.job_lease_owner IS NOT NULL THEN {running} ELSE {queued} END, 0, \
         CASE WHEN c.n = 1 THEN f.job_lease_owner END, CASE WHEN c.n = 1 THEN f.job_lease_until END, \
         CASE WHEN c.n = 1 AND f.job_lease_owner IS NOT NULL THEN 1 ELSE 0 END \
         FROM delivery_chunks AS c JOIN outbox AS f ON f.grp = c.grp AND f.rn = c.first)",
        pending = SqlText(DeliveryStatus::Pending.as_str()),
        queued = SqlText(JobStatus::Queued.as_str()),
        running = SqlText(JobStatus::Running.as_str()),
        applied_o = applied("o.step"),
    ));
    }

    // Each count row once (PostgreSQL affects a row at most once per statement), in key order; the
    // counts after the retired jobs and before the totals, as the shared path takes their locks.
    // PostgreSQL runs the CTEs the main query does not read in no documented order (in fact the last
    // written first), so each waits for the one before it: a one-time filter that reads it whole.
    if !counts.is_empty() {
        with.next(statement, "new_counts");
        statement.push(
            "INSERT INTO payment_day_counts (account_id, day, status, currency_code, shard, n) \
         SELECT d.account_id, d.day, d.status, d.currency_code, pg_backend_pid() % 16, \
         CAST(SUM(d.n) AS BIGINT) FROM UNNEST(",
        );
        Arrays::new(statement)
            .push(counts.iter().map(|c| c.0).collect(), "uuid")
            .push(counts.iter().map(|c| c.1.account_id).collect(), "uuid")
            .push(
                counts.iter().map(|c| day_of(c.1.created_at)).collect(),
                "int8",
            )
            .push(counts.iter().map(|c| c.2).collect(), "text")
            .push(
                counts.iter().map(|c| c.1.currency_code.as_str()).collect(),
                "text",
            )
            .push(counts.iter().map(|c| c.3).collect(), "int8");
        statement.push(format!(
            ") AS d (step, account_id, day, status, currency_code, n) \
         WHERE (d.step IS NULL OR {}) {} \
         GROUP BY d.account_id, d.day, d.status, d.currency_code HAVING SUM(d.n) <> 0 \
         ORDER BY d.account_id, d.day, d.status COLLATE \"C\", d.currency_code COLLATE \"C\" \
         ON CONFLICT (account_id, status, currency_code, day, shard) \
         DO UPDATE SET n = payment_day_counts.n + excluded.n RETURNING 1)",
            applied("d.step"),
            if retired.is_empty() {
                ""
            } else {
                "AND (SELECT COUNT(*) FROM retired) >= 0"
            },
        ));
    }
    if !payments.is_empty() {
        with.next(statement, "new_totals");
        statement.push(
            "INSERT INTO payment_day_totals (account_id, day, shard, n) \
         SELECT account_id, day, pg_backend_pid() % 16, COUNT(*) FROM UNNEST(",
        );
        Arrays::new(statement)
            .push(payments.iter().map(|p| p.account_id).collect(), "uuid")
            .push(
                payments.iter().map(|p| day_of(p.created_at)).collect(),
                "int8",
            );
        // Every new payment counts in its status: `new_counts` is there.
        statement.push(
            ") AS t (account_id, day) WHERE (SELECT COUNT(*) FROM new_counts) >= 0 \
         GROUP BY account_id, day ORDER BY account_id, day \
         ON CONFLICT (account_id, day, shard) DO UPDATE SET n = payment_day_totals.n + excluded.n)",
        );
    }
    statement.push(if steps.is_empty() {
        " SELECT NULL::uuid WHERE FALSE"
    } else {
        " SELECT id FROM updated"
    });
}

/// The `WITH a AS (…), b AS (…)` list of a statement built a CTE at a time.
#[derive(Default)]
struct With {
    started: bool,
}

impl With {
    /// Opens the CTE `name`: the caller writes its body and its closing parenthesis.
    fn next(&mut self, statement: &mut QueryBuilder<'_, Postgres>, name: &str) {
        statement.push(if self.started { ", " } else { "WITH " });
        statement.push(format_args!("{name} AS (").to_string());
        self.started = true;
    }
}

/// See `open`: in milliseconds, as PostgreSQL reads the setting.
const IDLE_IN_TRANSACTION_TIMEOUT_MS: &str = "10000";

pub async fn open(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<DynStore, OpenError> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| OpenError::Invalid(e.to_string()))?;
    // A node paused (or cut off) inside a transaction would hold its row locks for as long as it is
    // away: a job's row locked by a fenced write would never be claimed by another node. The server
    // ends such a session after this long idle in a transaction, rolling it back; none of ours waits
    // on anything but the database inside one.
    let options = options.options([(
        "idle_in_transaction_session_timeout",
        IDLE_IN_TRANSACTION_TIMEOUT_MS,
    )]);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(acquire_timeout)
        .connect_with(options)
        .await
        .map_err(|e| OpenError::Connect(e.to_string()))?;
    Ok(Arc::new(PgStore {
        pool,
        token_writer: Mutex::default(),
        payment_writer: Mutex::default(),
    }))
}

impl_sql_store!(PgStore);

impl SqlDb for Postgres {
    fn execute_built<'c>(
        conn: &'c mut PgConnection,
        query: &'c mut QueryBuilder<'_, Postgres>,
    ) -> impl Future<Output = Result<PgQueryResult, sqlx::Error>> + Send + 'c {
        query.build().execute(conn)
    }
}

// `Ts` is a TIMESTAMPTZ, which keeps microseconds: what `Ts` holds.
impl Type<Postgres> for Ts {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Ts {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.datetime(), buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Ts::from_datetime(<DateTime<Utc> as Decode<
            'r,
            Postgres,
        >>::decode(value)?))
    }
}
