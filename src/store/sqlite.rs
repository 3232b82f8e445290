//! The embedded default: one SQLite file in WAL mode with `synchronous=FULL`, so that an answered write
//! survives a kill -9 or a power cut. Its `SqlBackend` writes token batches as one script on a
//! connection of their own; `Ts` is stored as INTEGER microseconds.

use std::collections::HashSet;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous,
};
use sqlx::{Decode, Encode, QueryBuilder, Sqlite, SqlitePool, Type};
use uuid::Uuid;

use super::audit::push_audit_insert;
use super::backend::{impl_sql_store, SqlBackend, SqlDb, INSERT_CHUNK};
use super::jobs::{push_job_insert, push_jobs_retire};
use super::payment_records::{
    batch_answers, plain_steps, push_payment_insert, push_payments_update, push_transaction_insert,
    DayDeltas,
};
use super::tokens::{day_counts, push_token_insert};
use super::webhook_records::{
    carrying_job, push_carried_insert, push_outbox_insert, push_outbox_jobs,
};
use super::{
    AuditEvent, Backend, DynStore, Fence, OpenError, OutboxRecord, PaymentChange, PaymentWrite,
    StoreResult, TokenRecord, Ts,
};

pub struct SqliteStore {
    pool: SqlitePool,
    /// One connection for the token and payment batches and the other frequent writes (`writer`): SQLite
    /// takes one writer at a time anyway, and a connection of their own keeps its page and statement
    /// caches warm between batches.
    batch_writer: SqlitePool,
    /// The writer connection as the token batches keep it from one batch to the next (see
    /// `WRITER_HOLD`).
    token_hold: Arc<tokio::sync::Mutex<Option<Held>>>,
}

/// The writer connection kept by the token batches, and since when.
struct Held {
    conn: PoolConnection<Sqlite>,
    since: Instant,
}

/// How long the token batches keep the writer connection from one batch to the next. Given back to
/// the pool after each batch, it cost the next batch 0.15–0.27 ms to get it back at 16 connections
/// (sqlx tests a connection on its thread before it releases it: a hop there and back, between batches
/// of 0.5–1 ms). Kept, the other users of that connection (the payment writer, the job workers' small
/// writes, the checkpointer) wait at most this long for it, then have it in the order they asked. It
/// goes back sooner when the token writer has nothing queued (`token_batches_idle`), and in any case
/// when this time is up, whether or not another batch comes.
const WRITER_HOLD: Duration = Duration::from_millis(5);

impl SqliteStore {
    /// The writer connection for a token batch: the one kept from the last batch while its time lasts,
    /// else one from the pool, kept from now on (and given back by a timer when its time is up).
    async fn token_writer(&self, kept: Option<Held>) -> StoreResult<Held> {
        if let Some(held) = kept {
            if held.since.elapsed() < WRITER_HOLD {
                return Ok(held);
            }
            // Given back first, so that whoever waits for it has it before this batch.
            drop(held);
        }
        let held = Held {
            conn: self.batch_writer.acquire().await?,
            since: Instant::now(),
        };
        let (hold, since) = (Arc::clone(&self.token_hold), held.since);
        tokio::spawn(async move {
            tokio::time::sleep(WRITER_HOLD).await;
            let mut hold = hold.lock().await;
            if hold.as_ref().is_some_and(|held| held.since == since) {
                hold.take();
            }
        });
        Ok(held)
    }
}

impl SqlBackend for SqliteStore {
    type DB = Sqlite;
    const BACKEND: Backend = Backend::Sqlite;
    const MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");
    // SQLite takes one writer at a time: the claim's guarded UPDATE is enough.
    const CLAIM_LOCK: &'static str = "";
    const IDS_OF: (&'static str, &'static str) = ("IN (", ")");
    // One writer at a time: one shard.
    const SHARD: &'static str = "0";
    const PLAN_EACH_CALL: bool = false;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn writer(&self) -> &SqlitePool {
        &self.batch_writer
    }

    fn payment_page_sql(from: &str, next: usize) -> String {
        super::page_json::sqlite::payment_page(from, next)
    }

    fn token_page_sql(from: &str, order: &str, next: usize) -> String {
        super::page_json::sqlite::token_page(from, order, next)
    }

    /// A batch of payment writes whose steps are all plain (no refund in them, one per payment), on the
    /// token writer's connection, as at most two scripts: `BEGIN IMMEDIATE`, the new payments with their
    /// rows, and the steps' guarded `UPDATE … RETURNING`; then, for the steps that went through, their
    /// rows, the day counts and `COMMIT`. Two trips to SQLite's connection thread and one fsync, where the
    /// shared path makes a trip per statement; a batch of new payments alone takes one trip.
    async fn write_payment_batch(&self, writes: &[PaymentWrite]) -> Option<StoreResult<Vec<bool>>> {
        let steps = plain_steps(writes)?;
        let mut conn = match self.batch_writer.acquire().await {
            Ok(conn) => conn,
            Err(err) => return Some(Err(err.into())),
        };
        let written = write_payment_script(&mut conn, writes, &steps).await;
        if written.is_err() && sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
            conn.close_on_drop();
        }
        Some(written.map_err(Into::into))
    }

    /// `VACUUM INTO` reads one snapshot (a read transaction), so writers go on while it copies and the
    /// copy holds exactly what was committed when it began.
    async fn backup_into(&self, path: &std::path::Path) -> StoreResult<()> {
        let target = path
            .to_str()
            .ok_or_else(|| super::StoreError::Other("the backup path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn close_pools(&self) {
        // A kept writer connection would hold the pool's close up.
        self.token_hold.lock().await.take();
        self.batch_writer.close().await;
        self.pool.close().await;
    }

    /// Nothing to do: with no `sqlite_stat1` table, SQLite's planner goes by the schema alone and takes
    /// the indexes the statements are written for, however large the tables grow.
    async fn refresh_stale_statistics(&self) -> Result<Vec<String>, sqlx::Error> {
        Ok(Vec::new())
    }

    /// The whole batch as one multi-statement script (`BEGIN IMMEDIATE; …; COMMIT`), so that it costs one
    /// trip to SQLite's connection thread and one fsync. On failure the open transaction is rolled back.
    /// `outbox` (webhook deliveries and their jobs) joins the same script, hence the same commit, and so
    /// does the batch's one upsert of `token_day_counts` (cheaper than a trigger's upsert per token).
    async fn insert_token_batch(
        &self,
        batch: &[(TokenRecord, AuditEvent)],
        outbox: &[OutboxRecord],
    ) -> StoreResult<()> {
        let mut script = sqlx::QueryBuilder::<Sqlite>::new("BEGIN IMMEDIATE; ");
        for chunk in batch.chunks(INSERT_CHUNK) {
            push_token_insert(&mut script, chunk);
            script.push("; ");
            push_audit_insert(&mut script, chunk.iter().map(|(_, audit)| audit));
            script.push("; ");
        }
        let counts = day_counts(batch);
        if !counts.is_empty() {
            script.push("INSERT INTO token_day_counts (account_id, day, shard, n) ");
            script.push_values(&counts, |mut row, (account, day, n)| {
                row.push_bind(*account)
                    .push_bind(*day)
                    .push_unseparated(", 0")
                    .push_bind(*n);
            });
            script.push(" ON CONFLICT (account_id, day, shard) DO UPDATE SET n = n + excluded.n; ");
        }
        let carrying = carrying_job(outbox);
        if let Some(carrying) = &carrying {
            push_job_insert(&mut script, [(&carrying.job, carrying.at)]);
            script.push("; ");
            push_carried_insert(&mut script, carrying);
            script.push("; ");
        }
        script.push("COMMIT;");
        let mut hold = self.token_hold.lock().await;
        let Held { mut conn, since } = self.token_writer(hold.take()).await?;
        match script.build().execute(&mut *conn).await {
            Ok(_) => {
                *hold = Some(Held { conn, since });
                Ok(())
            }
            // Not kept after a failure: the pool tests it before anyone else has it.
            Err(err) => {
                if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                    conn.close_on_drop();
                }
                Err(err.into())
            }
        }
    }

    fn token_batches_idle(&self) {
        // Called between batches: the lock can only be taken by the timer or a close, each of which
        // gives the connection back anyway.
        if let Ok(mut hold) = self.token_hold.try_lock() {
            hold.take();
        }
    }
}

/// `SqliteStore::write_payment_batch`'s scripts; the caller rolls back on an error.
async fn write_payment_script(
    conn: &mut SqliteConnection,
    writes: &[PaymentWrite],
    steps: &[(&PaymentChange, Option<&Fence>)],
) -> Result<Vec<bool>, sqlx::Error> {
    let now = Ts::now();
    let mut deltas = DayDeltas::default();
    let (mut payments, mut jobs, mut outbox, mut audits) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for write in writes {
        if let PaymentWrite::Insert {
            payment,
            job,
            outbox: rows,
            audit,
        } = write
        {
            deltas.insert(payment);
            payments.push(payment);
            jobs.extend(job.iter().map(|job| (job, now)));
            outbox.extend(rows.iter().cloned());
            audits.extend(audit.iter());
        }
    }
    let mut script = QueryBuilder::<Sqlite>::new("BEGIN IMMEDIATE; ");
    for chunk in payments.chunks(INSERT_CHUNK) {
        push_payment_insert(&mut script, chunk.iter().copied());
        script.push("; ");
    }
    for chunk in jobs.chunks(INSERT_CHUNK) {
        push_job_insert(&mut script, chunk.iter().copied());
        script.push("; ");
    }
    push_outbox(&mut script, &outbox);
    for chunk in audits.chunks(INSERT_CHUNK) {
        push_audit_insert(&mut script, chunk.iter().copied());
        script.push("; ");
    }
    if steps.is_empty() {
        deltas.push_upserts(&mut script, <SqliteStore as SqlBackend>::SHARD);
        script.push("COMMIT;");
        script.build().execute(&mut *conn).await?;
        return Ok(vec![true; writes.len()]);
    }
    for chunk in steps.chunks(INSERT_CHUNK) {
        push_payments_update(&mut script, chunk.iter().map(|(change, _)| *change));
        script.push("; ");
    }
    let updated: HashSet<Uuid> = script
        .build_query_as::<(Uuid,)>()
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(id,)| id)
        .collect();
    drop(script);
    let applied: Vec<_> = steps
        .iter()
        .filter(|(change, _)| updated.contains(&change.payment.id))
        .collect();
    let transactions: Vec<_> = applied
        .iter()
        .filter_map(|(c, _)| c.transaction.as_ref())
        .collect();
    let jobs: Vec<_> = applied
        .iter()
        .filter_map(|(c, _)| c.job.as_ref().map(|job| (job, now)))
        .collect();
    let retired: Vec<_> = applied.iter().filter_map(|(_, fence)| *fence).collect();
    let outbox: Vec<OutboxRecord> = applied
        .iter()
        .flat_map(|(c, _)| c.outbox.iter().cloned())
        .collect();
    for (change, _) in &applied {
        if change.previous_status != change.payment.status {
            deltas.count(&change.payment, &change.previous_status, -1);
            deltas.count(&change.payment, &change.payment.status, 1);
        }
    }
    let mut script = QueryBuilder::<Sqlite>::new("");
    for chunk in transactions.chunks(INSERT_CHUNK) {
        push_transaction_insert(&mut script, chunk.iter().copied());
        script.push("; ");
    }
    for chunk in jobs.chunks(INSERT_CHUNK) {
        push_job_insert(&mut script, chunk.iter().copied());
        script.push("; ");
    }
    for chunk in retired.chunks(INSERT_CHUNK) {
        push_jobs_retire(&mut script, chunk.iter().copied());
        script.push("; ");
    }
    push_outbox(&mut script, &outbox);
    deltas.push_upserts(&mut script, <SqliteStore as SqlBackend>::SHARD);
    script.push("COMMIT;");
    script.build().execute(&mut *conn).await?;
    Ok(batch_answers(writes, &updated))
}

/// Appends the webhook rows `outbox` and their delivery jobs to a script.
fn push_outbox<'a>(script: &mut QueryBuilder<'a, Sqlite>, outbox: &'a [OutboxRecord]) {
    for chunk in outbox.chunks(INSERT_CHUNK) {
        push_outbox_insert(script, chunk);
        script.push("; ");
        push_outbox_jobs(script, chunk);
        script.push("; ");
    }
}

/// The settings of every connection to the database file at `url`.
fn connect_options(url: &str) -> Result<SqliteConnectOptions, OpenError> {
    Ok(SqliteConnectOptions::from_str(url)
        .map_err(|e| OpenError::Invalid(e.to_string()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        // No memory-mapped reads: every commit of another connection makes each reader unmap and map
        // the whole file again on its next read, a TLB shoot-down on every core per read.
        .pragma("mmap_size", "0")
        // A deleted card's pages are overwritten with zeros, not left in free pages of the file.
        .pragma("secure_delete", "ON")
        // No checkpoint on the commit path (by default the commit that takes the WAL past 1000 pages
        // copies it into the database file and syncs it while its callers wait): the background
        // checkpointer below does it instead.
        .pragma("wal_autocheckpoint", "0")
        // The WAL file keeps its size when it is started over; one that grew past this (while a long
        // reader held the checkpointer back) is cut back to it by the first commit after the restart.
        .pragma("journal_size_limit", "134217728"))
}

pub async fn open(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<DynStore, OpenError> {
    let options = connect_options(url)?;
    // A large WAL left by a process that ended without its last connection closing (a kill, a crash,
    // a bulk load) is read back into the WAL index by the first connection that opens the file, which
    // can take longer than the pool's acquire timeout. One connection outside the pool does that (and
    // copies what it can into the database file) first, with no time limit: a start that takes as long
    // as the recovery needs, instead of one that fails with "pool timed out".
    {
        use sqlx::{ConnectOptions, Connection};
        let mut first = options
            .connect()
            .await
            .map_err(|e| OpenError::Connect(e.to_string()))?;
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut first)
            .await
            .map_err(|e| OpenError::Connect(e.to_string()))?;
        let _ = first.close().await;
    }
    // No ping before each use: an embedded connection cannot have been dropped by a server, and the
    // ping is a round trip to the connection's worker thread on every query.
    let pool = SqlitePoolOptions::new()
        .test_before_acquire(false)
        .max_connections(max_connections.max(1))
        .acquire_timeout(acquire_timeout)
        .connect_with(options.clone())
        .await
        .map_err(|e| OpenError::Connect(e.to_string()))?;
    let batch_writer = SqlitePoolOptions::new()
        .test_before_acquire(false)
        .max_connections(1)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options.clone());
    tokio::spawn(checkpoint(
        pool.clone(),
        batch_writer.clone(),
        options,
        CHECKPOINTS,
    ));
    Ok(Arc::new(SqliteStore {
        pool,
        batch_writer,
        token_hold: Arc::default(),
    }))
}

/// How the background checkpointer runs: how often, from what size the WAL is started over, and how
/// long a forced restart waits for readers.
#[derive(Clone, Copy)]
struct Checkpoints {
    every: Duration,
    restart_at_frames: i64,
    restart_wait: Duration,
}

/// Four rounds a second; a WAL of 16,384 frames (64 MiB of 4 KiB pages) or more is started over; a
/// forced restart (at four times that) waits at most 10 ms for readers. Twenty rounds a second, tried,
/// flushed less per round and lowered p99 with a webhook's rows in every token batch, but cost
/// tokenization at 64 connections without one (README, "Storage").
const CHECKPOINTS: Checkpoints = Checkpoints {
    every: Duration::from_millis(250),
    restart_at_frames: 16_384,
    restart_wait: Duration::from_millis(10),
};

/// Copies committed WAL frames into the database file, off every writer's commit path, until the
/// store is closed. A PASSIVE round waits for no one: frames still read by an open reader wait for the
/// next round. But SQLite starts the WAL over from its head only when a write transaction begins with
/// every frame copied, which never happens under a steady stream of commits: the file grew by every page
/// every commit wrote for as long as the stream lasted (a gigabyte in seven seconds of tokenization,
/// each append a new block of the file system). So a round that finds the WAL at `restart_at_frames`
/// or more runs a second PASSIVE checkpoint, then takes the writer's connection (`writer`, which the
/// frequent writes queue for) and runs a third on it: with no write in progress it copies the few
/// frames committed since the second and syncs (the writers waited 1–7 ms for it, measured while
/// tokenizing at 16 connections; 0.6–25 ms, mean 6–8, with webhook rows in the batches, its two syncs
/// waiting behind the load's I/O), and the next write transaction starts the WAL over, unless a reader
/// still reads an older snapshot from it (then a later round tries again). Should that keep failing
/// until the WAL holds four times `restart_at_frames`, a RESTART checkpoint forces it: it holds the
/// writer lock and waits up to `restart_wait` (its connection's busy timeout) for the readers to leave.
/// (A RESTART on every round, tried first, took tokenization's p99 at 16 connections from 4–5 ms to
/// 8–18 ms: its busy handler sleeps 1, 2, 5… ms at a time while it holds the writer lock.) The other
/// checkpoints run on a connection of their own, with that short busy timeout.
///
/// SQLite syncs the database file only after a checkpoint that copied the WAL to its end, which under
/// a steady stream of commits is rarely any but the third, on the writer's connection: the pages the
/// rounds before it copied piled up unwritten in the page cache, and that sync wrote them all while the
/// writers waited, 5–40 ms and more as the database grew (traced while tokenizing at 16 connections; it
/// set tokenization's p99). So before the third, or a forced RESTART, this task syncs the database file
/// itself (`sync_database_file`), and SQLite's own sync finds little left to write.
async fn checkpoint(
    pool: SqlitePool,
    writer: SqlitePool,
    options: SqliteConnectOptions,
    plan: Checkpoints,
) {
    use sqlx::ConnectOptions;
    let mut every = tokio::time::interval(plan.every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let options = options.busy_timeout(plan.restart_wait);
    let mut conn: Option<SqliteConnection> = None;
    let mut file: Option<Arc<std::fs::File>> = None;
    loop {
        every.tick().await;
        if pool.is_closed() {
            return finish(conn, file, &pool, &writer).await;
        }
        let round = async {
            let conn = match &mut conn {
                Some(conn) => conn,
                empty => empty.insert(options.connect().await?),
            };
            let passive = "PRAGMA wal_checkpoint(PASSIVE)";
            let (_, frames, _): (i64, i64, i64) =
                sqlx::query_as(passive).fetch_one(&mut *conn).await?;
            if frames >= 4 * plan.restart_at_frames {
                sync_database_file(&mut file, options.get_filename()).await;
                sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                    .execute(&mut *conn)
                    .await?;
            } else if frames >= plan.restart_at_frames {
                // Once more on this connection first: it copies what was committed during the first
                // copy (tens of frames instead of thousands), so that the writer waits for less.
                sqlx::query(passive).execute(&mut *conn).await?;
                sync_database_file(&mut file, options.get_filename()).await;
                let mut writer = writer.acquire().await?;
                sqlx::query(passive).execute(&mut *writer).await?;
            }
            Ok::<_, sqlx::Error>(())
        };
        if let Err(err) = round.await {
            // `close_pools` closes the writer's pool first: a round that wanted it then is shutdown.
            if pool.is_closed() || writer.is_closed() {
                return finish(conn, file, &pool, &writer).await;
            }
            conn = None;
            tracing::warn!(error = %err, "WAL checkpoint failed; retried next round");
        }
    }
}

/// Writes out to the disk what the checkpoints copied into the database file (see `checkpoint`), on a
/// blocking thread. The file is opened on first use and kept open until `finish`.
async fn sync_database_file(file: &mut Option<Arc<std::fs::File>>, path: &std::path::Path) {
    let opened = match file {
        Some(opened) => Arc::clone(opened),
        None => match std::fs::File::open(path) {
            Ok(opened) => Arc::clone(file.insert(Arc::new(opened))),
            Err(err) => {
                tracing::warn!(error = %err, "could not open the database file to sync it before a WAL restart");
                return;
            }
        },
    };
    let synced = tokio::task::spawn_blocking(move || opened.sync_all()).await;
    if let Err(err) = synced
        .map_err(std::io::Error::other)
        .and_then(|synced| synced)
    {
        tracing::warn!(error = %err, "could not sync the database file before a WAL restart");
    }
}

/// Ends the checkpointer of a closing store. Closing any descriptor of a file drops every POSIX lock
/// the process holds on it, SQLite's included: the database file opened for `sync_database_file` is
/// closed only after the checkpointer's own connection and every connection of both pools (`close`
/// waits for them, and may be called again).
async fn finish(
    conn: Option<SqliteConnection>,
    file: Option<Arc<std::fs::File>>,
    pool: &SqlitePool,
    writer: &SqlitePool,
) {
    use sqlx::Connection;
    if let Some(conn) = conn {
        let _ = conn.close().await;
    }
    if file.is_some() {
        writer.close().await;
        pool.close().await;
    }
    drop(file);
}

impl_sql_store!(SqliteStore);

impl SqlDb for Sqlite {
    fn execute_built<'c>(
        conn: &'c mut SqliteConnection,
        query: &'c mut QueryBuilder<'_, Sqlite>,
    ) -> impl Future<Output = Result<SqliteQueryResult, sqlx::Error>> + Send + 'c {
        query.build().execute(conn)
    }
}

// `Ts` is stored as INTEGER microseconds: exact, and sorts as it should.
impl Type<Sqlite> for Ts {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &sqlx::sqlite::SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for Ts {
    fn encode_by_ref(
        &self,
        buf: &mut Vec<sqlx::sqlite::SqliteArgumentValue<'q>>,
    ) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<'q, Sqlite>>::encode(self.micros(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let micros = <i64 as Decode<'r, Sqlite>>::decode(value)?;
        Ts::from_micros(micros).ok_or_else(|| format!("timestamp out of range: {micros}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under a steady stream of commits the WAL is started over once it reaches the restart size, so
    /// its file stays near that size: 3,000 commits of a row of its own page each would leave a WAL of
    /// at least 3,000 frames if it were never started over (about 9,000 were seen); a restart at 256
    /// frames keeps it under 1,536. Nothing committed is lost on the way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_steady_stream_of_commits_keeps_the_wal_small() {
        const COMMITS: i64 = 3_000;
        const FRAME: u64 = 4_096 + 24;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("steady.db");
        let options = connect_options(&format!("sqlite://{}", path.display())).unwrap();
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .unwrap();
        sqlx::query("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        let plan = Checkpoints {
            every: Duration::from_millis(10),
            restart_at_frames: 256,
            restart_wait: Duration::from_millis(10),
        };
        let checkpointer = tokio::spawn(checkpoint(pool.clone(), pool.clone(), options, plan));
        let wal = dir.path().join("steady.db-wal");
        let mut largest = 0;
        for _ in 0..COMMITS {
            sqlx::query("INSERT INTO rows (body) VALUES (zeroblob(3000))")
                .execute(&pool)
                .await
                .unwrap();
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM rows")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        checkpointer.await.unwrap();
        assert_eq!(stored, COMMITS);
        assert!(
            largest < 1_536 * FRAME,
            "the WAL grew to {largest} bytes ({} frames)",
            largest / FRAME
        );
    }
}
