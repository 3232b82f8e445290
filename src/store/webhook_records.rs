//! Records of webhooks and of their deliveries as stored, and the SQL that writes the outbox: the rows
//! a change adds, inside the change's own transaction, so that a committed change is always notified and
//! a rolled-back one never is.

use std::fmt;

use uuid::Uuid;

use super::{NewJob, Ts};

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
/// with the job that delivers it. Build them with `domain::webhooks::Webhooks`.
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
     event_type, body, created_at, status, attempts, next_attempt_at, last_error, finished_at";

/// Appends `INSERT INTO webhook_deliveries (…) VALUES (…), …` for `rows` to `query`.
pub(crate) fn push_outbox_insert<'a, DB>(
    query: &mut sqlx::QueryBuilder<'a, DB>,
    rows: &'a [OutboxRecord],
) where
    DB: sqlx::Database,
    Uuid: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Ts: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    query.push(
        "INSERT INTO webhook_deliveries (id, event_id, webhook_id, account_id, object_id, event_type, \
         body, created_at, next_attempt_at, status, attempts) ",
    );
    query.push_values(rows, |mut row, r| {
        row.push_bind(r.id)
            .push_bind(r.event_id)
            .push_bind(r.webhook_id)
            .push_bind(r.account_id)
            .push_bind(r.object_id)
            .push_bind(r.event_type.as_str())
            .push_bind(r.body.as_str())
            .push_bind(r.created_at)
            .push_bind(r.created_at)
            .push("'pending'")
            .push("0");
    });
}

/// Appends `INSERT INTO jobs (…) VALUES (…), …` for the delivery jobs of `rows` to `query`.
pub(crate) fn push_outbox_jobs<'a, DB>(
    query: &mut sqlx::QueryBuilder<'a, DB>,
    rows: &'a [OutboxRecord],
) where
    DB: sqlx::Database,
    Uuid: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Ts: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i32: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    query.push(
        "INSERT INTO jobs (id, kind, payload, max_attempts, run_at, created_at, updated_at, status, \
         attempts) ",
    );
    query.push_values(rows, |mut row, r| {
        row.push_bind(r.job.id)
            .push_bind(r.job.kind.as_str())
            .push_bind(r.job.payload.as_str())
            .push_bind(r.job.max_attempts)
            .push_bind(r.job.run_at)
            .push_bind(r.created_at)
            .push_bind(r.created_at)
            .push("'queued'")
            .push("0");
    });
}

/// The helper every backend's `Store` impl gets (see `sql::impl_store!`): writes the outbox rows of a
/// change inside its transaction. Other changes that notify (an import's end) call it the same way.
macro_rules! webhook_helpers {
    ($db:ty) => {
        /// The outbox rows of a change (webhook deliveries and their jobs), inside its transaction.
        pub(crate) async fn write_outbox(
            tx: &mut sqlx::Transaction<'_, $db>,
            rows: &[$crate::store::OutboxRecord],
        ) -> Result<(), sqlx::Error> {
            for chunk in rows.chunks($crate::store::sql::INSERT_CHUNK) {
                let mut insert = sqlx::QueryBuilder::<$db>::new("");
                $crate::store::push_outbox_insert(&mut insert, chunk);
                insert.build().execute(&mut **tx).await?;
                let mut jobs = sqlx::QueryBuilder::<$db>::new("");
                $crate::store::push_outbox_jobs(&mut jobs, chunk);
                jobs.build().execute(&mut **tx).await?;
            }
            Ok(())
        }
    };
}
pub(crate) use webhook_helpers;
