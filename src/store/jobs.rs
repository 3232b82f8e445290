//! The durable job table: `JobStore` and its SQL. A worker leases a job, renews the lease while it
//! works, and every later write of the job is fenced on the lease it still holds. `write_job` is the
//! one writer of job rows, used by every change that enqueues one in its own transaction.

use async_trait::async_trait;
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::backend::{placeholders, SqlDb, SqlText};
use super::{StoreResult, Ts};

crate::model::string_enum! {
    /// Where a job stands: `queued` until leased, `running` while leased, then `done` or `failed`
    /// (or `queued` again when rescheduled).
    pub enum JobStatus {
        Queued = "queued",
        Running = "running",
        Done = "done",
        Failed = "failed",
    }
}

impl TryFrom<String> for JobStatus {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value
            .parse()
            .map_err(|_| format!("unknown job status `{value}`"))
    }
}

/// A row of the durable job table.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Job {
    pub id: Uuid,
    pub kind: String,
    pub payload: String,
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: Ts,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Ts>,
    pub last_error: Option<String>,
    pub created_at: Ts,
    pub updated_at: Ts,
    /// Bumped by every claim: which run of the job holds the lease.
    pub lease_generation: i64,
}

impl Job {
    /// The fence of this claim of the job: what its run's writes are guarded by.
    pub fn fence(&self) -> Fence {
        Fence {
            job: self.id,
            owner: self.lease_owner.clone().unwrap_or_default(),
            generation: self.lease_generation,
        }
    }
}

/// One claim of a job: the job, the worker that claimed it and the lease generation of that claim. A
/// fenced write is made only while the job still runs under this very claim, checked in the write's own
/// transaction (whose first statement locks the job's row), so a run that lost its lease writes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub job: Uuid,
    pub owner: String,
    pub generation: i64,
}

#[derive(Clone, Debug)]
pub struct NewJob {
    pub id: Uuid,
    pub kind: String,
    pub payload: String,
    pub max_attempts: i32,
    pub run_at: Ts,
    /// Written already leased to this owner (a job inserted alone, by `write_job`): no worker takes it
    /// until the lease expires unless its owner gives it up, so the owner does the work itself and the job
    /// runs only if the owner dies (stops renewing).
    pub lease: Option<JobLease>,
}

impl NewJob {
    /// A new job's id. Job ids never leave the server (the API's ids are UUIDv4), so they are
    /// time-ordered (UUIDv7): a new job's key lands at the end of the `jobs` primary key, next to the
    /// jobs just written and just retired, instead of on a random page of it. A payment writes and
    /// retires jobs at every step, so a group commit then dirties one or two index pages where random
    /// keys dirtied one page per job.
    pub fn new_id() -> Uuid {
        Uuid::now_v7()
    }
}

/// The lease a job is written with: its owner and until when.
#[derive(Clone, Debug)]
pub struct JobLease {
    pub owner: String,
    pub until: Ts,
}

#[async_trait]
pub trait JobStore {
    async fn enqueue_job(&self, job: &NewJob) -> StoreResult<()>;
    /// Leases the oldest runnable job of one of `kinds`: queued and due, or running with an expired lease.
    async fn claim_next_job(
        &self,
        kinds: &[&str],
        owner: &str,
        now: Ts,
        lease_until: Ts,
    ) -> StoreResult<Option<Job>>;
    /// Leases up to `limit` more queued, due jobs of `kind` to `owner` at once (oldest first): a run
    /// that can do several jobs' work together (webhook deliveries) takes them with its own.
    async fn claim_due_jobs(
        &self,
        kind: &str,
        owner: &str,
        now: Ts,
        lease_until: Ts,
        limit: i64,
    ) -> StoreResult<Vec<Job>>;
    /// Extends a lease still held under `fence`; false if it was lost.
    async fn renew_job_lease(&self, fence: &Fence, lease_until: Ts, now: Ts) -> StoreResult<bool>;
    /// Marks done a job still held under `fence`; false (writing nothing) if the lease was lost.
    async fn complete_job(&self, fence: &Fence, now: Ts) -> StoreResult<bool>;
    /// Puts a job still held under `fence` back in the queue, due at once, after a step that went well:
    /// the claim of this run is not counted as an attempt.
    async fn continue_job(&self, fence: &Fence, now: Ts) -> StoreResult<bool>;
    /// Puts a job still held under `fence` back in the queue to run at `run_at`, recording why.
    async fn reschedule_job(
        &self,
        fence: &Fence,
        run_at: Ts,
        error: &str,
        now: Ts,
    ) -> StoreResult<bool>;
    /// Gives up for good on a job still held under `fence`.
    async fn fail_job(&self, fence: &Fence, error: &str, now: Ts) -> StoreResult<bool>;
    async fn get_job(&self, id: Uuid) -> StoreResult<Option<Job>>;
    /// Jobs queued or running, oldest first (`strongroom job list`).
    async fn list_unfinished_jobs(&self, limit: i64) -> StoreResult<Vec<Job>>;
    /// Deletes jobs that ended (done or failed) before `before`.
    async fn purge_finished_jobs(&self, before: Ts) -> StoreResult<u64>;
}

pub(crate) const JOB_COLUMNS: &str =
    "id, kind, payload, status, attempts, max_attempts, run_at, lease_owner, \
     lease_expires_at, last_error, created_at, updated_at, lease_generation";

/// Appends `INSERT INTO jobs (…) VALUES (…), …` for `rows` (each job with its creation time) to `query`:
/// the only text that inserts jobs, whether one is enqueued alone or many join a batch's statement.
pub(crate) fn push_job_insert<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    rows: impl IntoIterator<Item = (&'a NewJob, Ts)>,
) where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    Ts: Encode<'a, DB> + Type<DB>,
    i32: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    query.push(
        "INSERT INTO jobs (id, kind, payload, max_attempts, run_at, created_at, updated_at, status, \
         attempts, lease_owner, lease_expires_at, lease_generation) ",
    );
    query.push_values(rows, |mut row, (job, created_at)| {
        row.push_bind(job.id)
            .push_bind(job.kind.as_str())
            .push_bind(job.payload.as_str())
            .push_bind(job.max_attempts)
            .push_bind(job.run_at)
            .push_bind(created_at)
            .push_bind(created_at);
        match &job.lease {
            // Written already leased: the first claim of the job, made by its writer (generation 1, no
            // attempt used).
            Some(lease) => {
                row.push(SqlText(JobStatus::Running.as_str()))
                    .push("0")
                    .push_bind(lease.owner.as_str())
                    .push_bind(lease.until)
                    .push("1");
            }
            None => {
                row.push(SqlText(JobStatus::Queued.as_str()))
                    .push("0")
                    .push("NULL")
                    .push("NULL")
                    .push("0");
            }
        }
    });
}

/// Appends one `DELETE FROM jobs` of the jobs `fences` retire, each only while it is queued or still
/// held under its fence's claim (a worker that took it over keeps it).
pub(crate) fn push_jobs_retire<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    fences: impl IntoIterator<Item = &'a Fence>,
) where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    query.push("DELETE FROM jobs WHERE ");
    for (i, fence) in fences.into_iter().enumerate() {
        if i > 0 {
            query.push(" OR ");
        }
        query
            .push("(id = ")
            .push_bind(fence.job)
            .push(" AND (status = 'queued' OR (status = 'running' AND lease_owner = ")
            .push_bind(fence.owner.as_str())
            .push(" AND lease_generation = ")
            .push_bind(fence.generation)
            .push(")))");
    }
}

/// Inserts one job, on a connection or inside the caller's transaction.
pub(crate) async fn write_job<DB>(
    conn: &mut DB::Connection,
    job: &NewJob,
    created_at: Ts,
) -> Result<(), sqlx::Error>
where
    DB: SqlDb,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> Ts: Encode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    let mut insert = QueryBuilder::<DB>::new("");
    push_job_insert(&mut insert, [(job, created_at)]);
    DB::execute_built(conn, &mut insert).await?;
    Ok(())
}

/// The guard of every write fenced on a claim (`$1` the job, `$2` its owner, `$3` the generation): the
/// job still runs under that very claim.
pub(crate) const FENCE_GUARD: &str =
    "id = $1 AND lease_owner = $2 AND lease_generation = $3 AND status = 'running'";

/// The first statement of a fenced transaction: true (one row) only if the fence still holds its job,
/// and it locks the job's row until the transaction ends (PostgreSQL's row lock; SQLite's write lock),
/// so no claim can take the job over between this check and the commit. False: roll back.
pub(crate) const HOLD_FENCE_SQL: &str = "UPDATE jobs SET lease_generation = lease_generation \
     WHERE id = $1 AND lease_owner = $2 AND lease_generation = $3 AND status = 'running'";

/// Takes over an expired lease first (rare, and its job has waited longest), else the queued job due
/// first. Two lookups, each walking its own partial index in order and stopping at the first row: one
/// `OR` over both made the database collect and sort every due job on each claim, which a backlog of
/// webhook deliveries turned into seconds. The statuses are written into the text (`SqlText`), as the
/// partial indexes' predicates must be named for the lookups to use them.
pub(crate) fn claim_sql(kinds: usize, claim_lock: &str) -> String {
    format!(
        "UPDATE jobs SET status = {running}, lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, \
         lease_generation = lease_generation + 1, updated_at = $3 \
         WHERE id = COALESCE( \
             (SELECT id FROM jobs WHERE status = {running} AND lease_expires_at < $3 AND kind IN ({kinds}) \
              ORDER BY lease_expires_at LIMIT 1 {claim_lock}), \
             (SELECT id FROM jobs WHERE status = {queued} AND run_at <= $3 AND kind IN ({kinds}) \
              ORDER BY run_at, id LIMIT 1 {claim_lock})) \
           AND (status = {queued} OR lease_expires_at < $3) \
         RETURNING {JOB_COLUMNS}",
        kinds = placeholders(4, kinds),
        running = SqlText(JobStatus::Running.as_str()),
        queued = SqlText(JobStatus::Queued.as_str()),
    )
}

/// Whether a job of `kinds` is due: a read that takes no lock. On SQLite an `UPDATE` takes the one
/// write lock even when it matches nothing, so an idle worker's poll would queue behind (and hold up)
/// the token and payment writers; SQLite workers look with this first and claim only when it says yes.
pub(crate) fn due_sql(kinds: usize) -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = {running} AND lease_expires_at < $1 \
                        AND kind IN ({kinds})) \
             OR EXISTS (SELECT 1 FROM jobs WHERE status = {queued} AND run_at <= $1 AND kind IN ({kinds}))",
        kinds = placeholders(2, kinds),
        running = SqlText(JobStatus::Running.as_str()),
        queued = SqlText(JobStatus::Queued.as_str()),
    )
}

macro_rules! impl_job_store {
    ($store:ty) => {
        const _: () = {
            use uuid::Uuid;
            use $crate::store::backend::{SqlBackend, SqlText};
            use $crate::store::jobs::{claim_sql, due_sql, write_job, Fence, FENCE_GUARD, JOB_COLUMNS};
            use $crate::store::{Job, JobStatus, JobStore, NewJob, StoreResult, Ts};

            type Db = <$store as SqlBackend>::DB;

            /// Whether a claim of `kinds` may find a job: on SQLite a lock-free look first (see `due_sql`),
            /// elsewhere always (the claim itself is cheap there).
            async fn may_be_due(store: &$store, kinds: &[&str], now: Ts) -> StoreResult<bool> {
                if <$store as SqlBackend>::BACKEND != $crate::store::Backend::Sqlite {
                    return Ok(true);
                }
                let sql = due_sql(kinds.len());
                let mut due = sqlx::query_scalar::<_, bool>(&sql).bind(now);
                for kind in kinds {
                    due = due.bind(*kind);
                }
                Ok(due.fetch_one(store.pool()).await?)
            }

            #[async_trait::async_trait]
            impl JobStore for $store {
                async fn enqueue_job(&self, job: &NewJob) -> StoreResult<()> {
                    let mut conn = self.writer().acquire().await?;
                    Ok(write_job::<Db>(&mut conn, job, Ts::now()).await?)
                }

                async fn claim_next_job(&self, kinds: &[&str], owner: &str, now: Ts, lease_until: Ts) -> StoreResult<Option<Job>> {
                    if kinds.is_empty() {
                        return Ok(None);
                    }
                    if !may_be_due(self, kinds, now).await? {
                        return Ok(None);
                    }
                    let sql = claim_sql(kinds.len(), <Self as SqlBackend>::CLAIM_LOCK);
                    let mut query = sqlx::query_as(&sql).bind(owner).bind(lease_until).bind(now);
                    for kind in kinds {
                        query = query.bind(*kind);
                    }
                    Ok(query.fetch_optional(self.writer()).await?)
                }

                async fn claim_due_jobs(&self, kind: &str, owner: &str, now: Ts, lease_until: Ts, limit: i64) -> StoreResult<Vec<Job>> {
                    if !may_be_due(self, &[kind], now).await? {
                        return Ok(Vec::new());
                    }
                    // No second `status = 'queued'` outside the sub-select: the rows it returns are
                    // queued and locked (PostgreSQL re-checks a row changed meanwhile before locking it;
                    // SQLite runs the statement under its one write lock), and on PostgreSQL that
                    // condition let the planner look the ids up in `jobs_ready` (see `IDS_OF`).
                    let sql = format!(
                        "UPDATE jobs SET status = {running}, lease_owner = $1, lease_expires_at = $2, \
                         attempts = attempts + 1, lease_generation = lease_generation + 1, updated_at = $3 \
                         WHERE id {open}SELECT id FROM jobs WHERE status = {queued} AND run_at <= $3 AND kind = $4 \
                                      ORDER BY run_at, id LIMIT $5 {lock}{close} \
                         RETURNING {JOB_COLUMNS}",
                        running = SqlText(JobStatus::Running.as_str()),
                        queued = SqlText(JobStatus::Queued.as_str()),
                        lock = <Self as SqlBackend>::CLAIM_LOCK,
                        open = <Self as SqlBackend>::IDS_OF.0,
                        close = <Self as SqlBackend>::IDS_OF.1,
                    );
                    Ok(sqlx::query_as(&sql)
                        .bind(owner)
                        .bind(lease_until)
                        .bind(now)
                        .bind(kind)
                        .bind(limit)
                        .fetch_all(self.writer())
                        .await?)
                }

                async fn renew_job_lease(&self, fence: &Fence, lease_until: Ts, now: Ts) -> StoreResult<bool> {
                    let sql = format!("UPDATE jobs SET lease_expires_at = $4, updated_at = $5 WHERE {FENCE_GUARD}");
                    let done = sqlx::query(&sql)
                        .bind(fence.job)
                        .bind(fence.owner.as_str())
                        .bind(fence.generation)
                        .bind(lease_until)
                        .bind(now)
                        .execute(self.writer())
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn complete_job(&self, fence: &Fence, now: Ts) -> StoreResult<bool> {
                    let sql = format!(
                        "UPDATE jobs SET status = $5, lease_owner = NULL, lease_expires_at = NULL, updated_at = $4 \
                         WHERE {FENCE_GUARD}"
                    );
                    let done = sqlx::query(&sql)
                        .bind(fence.job)
                        .bind(fence.owner.as_str())
                        .bind(fence.generation)
                        .bind(now)
                        .bind(JobStatus::Done.as_str())
                        .execute(self.writer())
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn continue_job(&self, fence: &Fence, now: Ts) -> StoreResult<bool> {
                    let sql = format!(
                        "UPDATE jobs SET status = $5, run_at = $4, attempts = attempts - 1, lease_owner = NULL, \
                         lease_expires_at = NULL, updated_at = $4 WHERE {FENCE_GUARD}"
                    );
                    let done = sqlx::query(&sql)
                        .bind(fence.job)
                        .bind(fence.owner.as_str())
                        .bind(fence.generation)
                        .bind(now)
                        .bind(JobStatus::Queued.as_str())
                        .execute(self.writer())
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn reschedule_job(&self, fence: &Fence, run_at: Ts, error: &str, now: Ts) -> StoreResult<bool> {
                    let sql = format!(
                        "UPDATE jobs SET status = $7, run_at = $4, last_error = $5, lease_owner = NULL, \
                         lease_expires_at = NULL, updated_at = $6 WHERE {FENCE_GUARD}"
                    );
                    let done = sqlx::query(&sql)
                        .bind(fence.job)
                        .bind(fence.owner.as_str())
                        .bind(fence.generation)
                        .bind(run_at)
                        .bind(error)
                        .bind(now)
                        .bind(JobStatus::Queued.as_str())
                        .execute(self.writer())
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn fail_job(&self, fence: &Fence, error: &str, now: Ts) -> StoreResult<bool> {
                    let sql = format!(
                        "UPDATE jobs SET status = $6, last_error = $4, lease_owner = NULL, lease_expires_at = NULL, \
                         updated_at = $5 WHERE {FENCE_GUARD}"
                    );
                    let done = sqlx::query(&sql)
                        .bind(fence.job)
                        .bind(fence.owner.as_str())
                        .bind(fence.generation)
                        .bind(error)
                        .bind(now)
                        .bind(JobStatus::Failed.as_str())
                        .execute(self.writer())
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn get_job(&self, id: Uuid) -> StoreResult<Option<Job>> {
                    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
                    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(self.pool()).await?)
                }

                async fn list_unfinished_jobs(&self, limit: i64) -> StoreResult<Vec<Job>> {
                    let sql = format!(
                        "SELECT {JOB_COLUMNS} FROM jobs WHERE status NOT IN ($1, $2) ORDER BY created_at, id LIMIT $3"
                    );
                    Ok(sqlx::query_as(&sql)
                        .bind(JobStatus::Done.as_str())
                        .bind(JobStatus::Failed.as_str())
                        .bind(limit)
                        .fetch_all(self.pool())
                        .await?)
                }

                async fn purge_finished_jobs(&self, before: Ts) -> StoreResult<u64> {
                    let done = sqlx::query("DELETE FROM jobs WHERE status IN ($2, $3) AND updated_at < $1")
                        .bind(before)
                        .bind(JobStatus::Done.as_str())
                        .bind(JobStatus::Failed.as_str())
                        .execute(self.writer())
                        .await?;
                    Ok(done.rows_affected())
                }
            }
        };
    };
}

pub(crate) use impl_job_store;

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim's lookups walk `jobs_leased` and `jobs_ready` only if they name those partial indexes'
    /// predicates as literals (a bound status matches neither).
    #[test]
    fn the_claim_names_the_partial_indexes_predicates_as_literals() {
        let sql = claim_sql(2, "");
        assert!(
            sql.contains("WHERE status = 'running' AND lease_expires_at < $3"),
            "{sql}"
        );
        assert!(
            sql.contains("WHERE status = 'queued' AND run_at <= $3"),
            "{sql}"
        );
        assert_eq!(SqlText("it's").to_string(), "'it''s'");
    }
}
