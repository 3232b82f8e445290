//! Records of webhooks and of their deliveries as stored, and the SQL that writes the outbox: the rows
//! a change adds, inside the change's own transaction, so that a committed change is always notified and
//! a rolled-back one never is. `write_outbox` is used by every change that notifies.

use std::fmt;

use serde::{Deserialize, Serialize};
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::backend::{SqlDb, SqlText, INSERT_CHUNK};
use super::jobs::push_job_insert;
use super::{NewJob, Ts};

crate::model::string_enum! {
    /// Where a delivery stands: `pending` until a 200 (`delivered`), the deadline (`failed`) or the
    /// removal of its webhook (`cancelled`).
    pub enum DeliveryStatus {
        Pending = "pending",
        Delivered = "delivered",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

/// A webhook: where an account's events go. The signing key is only ever stored sealed.
#[derive(Clone, sqlx::FromRow)]
pub struct WebhookRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub url: String,
    /// Comma list of event types.
    pub events: String,
    /// The signing key sealed under the account's data key, bound to the webhook id.
    pub sealed_key: Vec<u8>,
    pub created_at: Ts,
    pub removed_at: Option<Ts>,
}

impl fmt::Debug for WebhookRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRecord")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("sealed_key", &"****")
            .field("removed_at", &self.removed_at)
            .finish()
    }
}

/// One event for one webhook, to be written in the transaction of the change it reports, together
/// with the job that delivers it. Built by the webhook fan-out above the store.
#[derive(Clone, Debug)]
pub struct OutboxRecord {
    /// The delivery's id (one per event and webhook).
    pub id: Uuid,
    /// The event's id, the `id` of the body (the same for every webhook that gets the event).
    pub event_id: Uuid,
    pub webhook_id: Uuid,
    pub account_id: Uuid,
    /// The token, payment, refund or import the event is about; deliveries are ordered per object.
    pub object_id: Uuid,
    /// When that object was created: the pending deliveries are indexed by it before the object's id,
    /// so that the rows of new objects go to the index's end rather than to a random page of it.
    pub object_created_at: Ts,
    pub event_type: String,
    /// The exact JSON that is sent and signed.
    pub body: String,
    pub created_at: Ts,
    pub job: NewJob,
}

/// A delivery as stored: `pending` until a 200 (`delivered`), the deadline (`failed`) or the removal
/// of its webhook (`cancelled`).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct WebhookDelivery {
    pub seq: i64,
    pub id: Uuid,
    pub event_id: Uuid,
    pub webhook_id: Uuid,
    pub account_id: Uuid,
    pub object_id: Uuid,
    /// See `OutboxRecord::object_created_at`; none for rows that ended before it was kept.
    pub object_created_at: Option<Ts>,
    pub event_type: String,
    pub body: String,
    pub created_at: Ts,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Ts,
    pub last_error: Option<String>,
    pub finished_at: Option<Ts>,
}

pub(crate) const WEBHOOK_COLUMNS: &str =
    "id, account_id, url, events, sealed_key, created_at, removed_at";

pub(crate) const DELIVERY_COLUMNS: &str = "seq, id, event_id, webhook_id, account_id, object_id, \
     object_created_at, event_type, body, created_at, status, attempts, next_attempt_at, last_error, \
     finished_at";

/// Appends `INSERT INTO webhook_deliveries (…) VALUES (…), …` for `rows` to `query`.
pub(crate) fn push_outbox_insert<'a, DB>(query: &mut QueryBuilder<'a, DB>, rows: &'a [OutboxRecord])
where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    Ts: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    query.push(
        "INSERT INTO webhook_deliveries (id, event_id, webhook_id, account_id, object_id, \
         object_created_at, event_type, body, created_at, next_attempt_at, status, attempts) ",
    );
    query.push_values(rows, |mut row, r| {
        row.push_bind(r.id)
            .push_bind(r.event_id)
            .push_bind(r.webhook_id)
            .push_bind(r.account_id)
            .push_bind(r.object_id)
            .push_bind(r.object_created_at)
            .push_bind(r.event_type.as_str())
            .push_bind(r.body.as_str())
            .push_bind(r.created_at)
            .push_bind(r.created_at)
            .push(SqlText(DeliveryStatus::Pending.as_str()))
            .push("0");
    });
}

/// The outbox rows of a change (webhook deliveries and their jobs), inside its transaction. Nothing is
/// run for an empty outbox, so that changes nobody listens to pay nothing.
pub(crate) async fn write_outbox<DB>(
    conn: &mut DB::Connection,
    rows: &[OutboxRecord],
) -> Result<(), sqlx::Error>
where
    DB: SqlDb,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> Ts: Encode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
{
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut insert = QueryBuilder::<DB>::new("");
        push_outbox_insert(&mut insert, chunk);
        DB::execute_built(conn, &mut insert).await?;
        let mut jobs = QueryBuilder::<DB>::new("");
        push_outbox_jobs(&mut jobs, chunk);
        DB::execute_built(conn, &mut jobs).await?;
    }
    Ok(())
}

/// Appends `INSERT INTO jobs (…) VALUES (…)` for the delivery job of `rows` to `query`: one job for
/// them all (a lone row keeps its own), whose payload lists their ids (`{"delivery_ids": […]}`), so that
/// a batch of changes adds one job row rather than one per event, and one run of the job sends them all
/// and records their outcomes in one commit. What is not delivered then gets a job of its own.
pub(crate) fn push_outbox_jobs<'a, DB>(query: &mut QueryBuilder<'a, DB>, rows: &'a [OutboxRecord])
where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    Ts: Encode<'a, DB> + Type<DB>,
    i32: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
{
    let Some(first) = rows.first() else {
        return;
    };
    if rows.len() == 1 {
        push_job_insert(query, [(&first.job, first.created_at)]);
        return;
    }
    let (job, created_at) = shared_delivery_job(first, rows);
    query.push(
        "INSERT INTO jobs (id, kind, payload, max_attempts, run_at, created_at, updated_at, status, \
         attempts, lease_owner, lease_expires_at, lease_generation) VALUES (",
    );
    let mut values = query.separated(", ");
    values
        .push_bind(job.id)
        .push_bind(job.kind)
        .push_bind(job.payload)
        .push_bind(job.max_attempts)
        .push_bind(job.run_at)
        .push_bind(created_at)
        .push_bind(created_at)
        .push(SqlText(super::JobStatus::Queued.as_str()))
        .push("0")
        .push("NULL")
        .push("NULL")
        .push("0");
    query.push(")");
}

/// The one delivery job of several outbox rows (not leased), with when it was created: the kind and
/// attempts of the first row's job, the earliest time, and the rows' ids as its payload.
fn shared_delivery_job(first: &OutboxRecord, rows: &[OutboxRecord]) -> (NewJob, Ts) {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let payload = serde_json::json!({ "delivery_ids": ids }).to_string();
    job_of_rows(first, rows, first.job.kind.clone(), payload)
}

/// One job (not leased) of `kind` with `payload` for `rows`, with when it was created: the rows'
/// earliest time, which is also when it runs, and the attempts of the first row's job.
fn job_of_rows(
    first: &OutboxRecord,
    rows: &[OutboxRecord],
    kind: String,
    payload: String,
) -> (NewJob, Ts) {
    let created_at = rows
        .iter()
        .map(|r| r.created_at)
        .min()
        .unwrap_or(first.created_at);
    let job = NewJob {
        id: NewJob::new_id(),
        kind,
        payload,
        max_attempts: first.job.max_attempts,
        run_at: created_at,
        lease: None,
    };
    (job, created_at)
}

/// A still-pending delivery queued before `of_id` for the same webhook and object.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EarlierPending {
    pub of_id: Uuid,
    pub seq: i64,
    pub event_id: Uuid,
    pub next_attempt_at: Ts,
}

/// A failed attempt of a delivery: its attempts so far, when to try again and why it failed.
#[derive(Clone, Debug)]
pub struct RetriedDelivery {
    pub id: Uuid,
    pub attempts: i32,
    pub next_attempt_at: Ts,
    pub error: String,
}

/// A delivery ended for good without a 200: `failed` (its deadline passed) or `cancelled`.
#[derive(Clone, Debug)]
pub struct FinishedDelivery {
    pub id: Uuid,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub error: Option<String>,
}

/// What one run of a delivery job did, recorded in one commit together with the job's end.
#[derive(Clone, Debug, Default)]
pub struct DeliveryOutcomes {
    /// Answered 200: `delivered`, with one more attempt.
    pub delivered: Vec<Uuid>,
    pub retried: Vec<RetriedDelivery>,
    pub finished: Vec<FinishedDelivery>,
    /// The jobs that send again, each at its time, what was neither delivered nor finished.
    pub jobs: Vec<NewJob>,
    /// Carried events (`CarriedEvent`) as this run left them, written as rows: inserted, or, where a
    /// later event of the object wrote the row first (`write_carried_rows`), applied to it while it
    /// is pending.
    pub written: Vec<WebhookDelivery>,
}

/// A `token.created` event that a token batch writes into its delivery job's payload
/// (`{"events": […]}`, see `carrying_job`) rather than as a row of `webhook_deliveries`: a row costs
/// the batch's commit a page of the table and of each of its three indexes, while the batch writes
/// its one job row either way and the payload adds only bytes. Its row is written by the run that
/// sends it, with what became of it, or before that by a later event of its token
/// (`write_carried_rows`), which must wait for it. Only first events of their objects are carried, so
/// that no event is ever waited for by one that is not yet a row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CarriedEvent {
    pub id: Uuid,
    pub event_id: Uuid,
    pub webhook_id: Uuid,
    pub account_id: Uuid,
    pub object_id: Uuid,
    /// Microseconds since the epoch, as SQLite stores `Ts`.
    pub object_created_at: i64,
    pub event_type: String,
    pub body: String,
    pub created_at: i64,
}

impl CarriedEvent {
    fn of(row: &OutboxRecord) -> Self {
        Self {
            id: row.id,
            event_id: row.event_id,
            webhook_id: row.webhook_id,
            account_id: row.account_id,
            object_id: row.object_id,
            object_created_at: row.object_created_at.micros(),
            event_type: row.event_type.clone(),
            body: row.body.clone(),
            created_at: row.created_at.micros(),
        }
    }

    /// The row it stands for, pending and never tried (`seq` 0: not written yet); none for a time out
    /// of range, which this server never writes.
    pub fn pending(&self) -> Option<WebhookDelivery> {
        let created_at = Ts::from_micros(self.created_at)?;
        Some(WebhookDelivery {
            seq: 0,
            id: self.id,
            event_id: self.event_id,
            webhook_id: self.webhook_id,
            account_id: self.account_id,
            object_id: self.object_id,
            object_created_at: Some(Ts::from_micros(self.object_created_at)?),
            event_type: self.event_type.clone(),
            body: self.body.clone(),
            created_at,
            status: DeliveryStatus::Pending.as_str().to_owned(),
            attempts: 0,
            next_attempt_at: created_at,
            last_error: None,
            finished_at: None,
        })
    }
}

/// The kind of the delivery jobs that carry their events in `carried_events`: a kind of its own, so
/// that a server of an earlier version (a node not yet upgraded, or after a rollback), which would find
/// no events in such a job and end it, never claims one; they wait for a server that sends them.
pub const CARRIED_EVENTS_JOB: &str = "webhook.deliver_carried";

/// The kind of the delivery jobs that an earlier version wrote with their events in their payload
/// (`{"events": […]}`): still sent, and still found by `CARRIED_PAYLOADS_SQL`.
pub const PAYLOAD_EVENTS_JOB: &str = "webhook.deliver_events";

/// The events a delivery job's payload carries.
#[derive(Serialize, Deserialize)]
pub struct CarriedEvents {
    pub events: Vec<CarriedEvent>,
}

/// The one delivery job of a token batch: the job, when it was created, and the events it carries.
pub(crate) struct CarryingJob {
    pub job: NewJob,
    pub at: Ts,
    /// `{"events": […]}` (`CarriedEvents`), for `carried_events`: the job's own payload is `{}`.
    pub events: String,
}

/// The one delivery job of a token batch's `rows` (its `token.created` events), with the events it
/// carries (written to `carried_events` with it, see `push_carried_insert`) and when it was created
/// (the earliest row's time); none for no rows.
pub(crate) fn carrying_job(rows: &[OutboxRecord]) -> Option<CarryingJob> {
    let first = rows.first()?;
    let events = CarriedEvents {
        events: rows.iter().map(CarriedEvent::of).collect(),
    };
    // Serialising ids, numbers and strings cannot fail.
    let events = serde_json::to_string(&events).unwrap_or_default();
    let (job, at) = job_of_rows(first, rows, CARRIED_EVENTS_JOB.to_owned(), "{}".to_owned());
    Some(CarryingJob { job, at, events })
}

/// Appends `INSERT INTO carried_events (job_id, events) VALUES (…)` for `carrying`, after its job's
/// insert in the same transaction.
pub(crate) fn push_carried_insert<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    carrying: &'a CarryingJob,
) where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    query
        .push("INSERT INTO carried_events (job_id, events) VALUES (")
        .push_bind(carrying.job.id)
        .push(", ")
        .push_bind(carrying.events.as_str())
        .push(")");
}

/// Appends `INSERT INTO webhook_deliveries (…) VALUES (…), …` of whole delivery rows (all but `seq`)
/// to `query`; the caller adds its `ON CONFLICT` clause.
pub(crate) fn push_delivery_rows<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    rows: &'a [WebhookDelivery],
) where
    DB: Database,
    Uuid: Encode<'a, DB> + Type<DB>,
    Ts: Encode<'a, DB> + Type<DB>,
    Option<Ts>: Encode<'a, DB> + Type<DB>,
    i32: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
{
    query.push(
        "INSERT INTO webhook_deliveries (id, event_id, webhook_id, account_id, object_id, \
         object_created_at, event_type, body, created_at, status, attempts, next_attempt_at, last_error, \
         finished_at) ",
    );
    query.push_values(rows, |mut row, d| {
        row.push_bind(d.id)
            .push_bind(d.event_id)
            .push_bind(d.webhook_id)
            .push_bind(d.account_id)
            .push_bind(d.object_id)
            .push_bind(d.object_created_at)
            .push_bind(d.event_type.as_str())
            .push_bind(d.body.as_str())
            .push_bind(d.created_at)
            .push_bind(d.status.as_str())
            .push_bind(d.attempts)
            .push_bind(d.next_attempt_at)
            .push_bind(d.last_error.as_deref())
            .push_bind(d.finished_at);
    });
}

/// Before a later event of an object is written (in the same transaction), the events of the object
/// still carried by an unfinished delivery job become pending rows (`carried_rows`), so that the later
/// event waits for them as for any earlier row; the job still sends them, and finding their rows
/// written, its run applies its outcomes to them. This reads the events that may carry them: of the
/// unfinished jobs of kind `$1` (`CARRIED_EVENTS_JOB`; the partial indexes of queued and of running
/// jobs) their `carried_events`, and of those of kind `$3` (`PAYLOAD_EVENTS_JOB`) their payloads,
/// those naming the object (`$2`, `carried_pattern`). A rare path: a token changes only when deleted
/// or when its security code is dropped.
pub(crate) const CARRIED_PAYLOADS_SQL: &str = "\
     SELECT c.events FROM jobs j JOIN carried_events c ON c.job_id = j.id \
     WHERE j.kind = $1 AND j.status = 'queued' AND c.events LIKE $2 \
     UNION ALL SELECT c.events FROM jobs j JOIN carried_events c ON c.job_id = j.id \
     WHERE j.kind = $1 AND j.status = 'running' AND c.events LIKE $2 \
     UNION ALL SELECT payload FROM jobs WHERE kind = $3 AND status = 'queued' AND payload LIKE $2 \
     UNION ALL SELECT payload FROM jobs WHERE kind = $3 AND status = 'running' AND payload LIKE $2";

/// The `LIKE` pattern of `CARRIED_PAYLOADS_SQL` for `object_id`.
pub(crate) fn carried_pattern(object_id: Uuid) -> String {
    format!("%\"object_id\":\"{object_id}\"%")
}

/// The events of `object_id` in `payloads`, as pending rows to insert (`ON CONFLICT (id) DO NOTHING`:
/// a run may have written one meanwhile).
pub(crate) fn carried_rows(payloads: &[String], object_id: Uuid) -> Vec<WebhookDelivery> {
    payloads
        .iter()
        .filter_map(|p| serde_json::from_str::<CarriedEvents>(p).ok())
        .flat_map(|carried| carried.events)
        .filter(|e| e.object_id == object_id)
        .filter_map(|e| e.pending())
        .collect()
}
