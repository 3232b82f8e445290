//! Webhooks: signed notifications of an account's token, payment, refund and import events, delivered
//! at least once. A change that causes an event writes the event's outbox rows (one delivery per
//! subscribed webhook, each with its job) in its own transaction; `delivery` sends them, in order per
//! (webhook, object), and `guard` keeps them away from link-local and metadata addresses.
//!
//! Which webhooks an account has is read through a short cache (`webhook_cache_seconds`, 2 s), so that
//! a change of an account without webhooks costs one in-memory lookup. A webhook therefore receives
//! every event built from `created_at + cache window` on; events of the window before may miss it.

mod breaker;
mod delivery;
pub(crate) mod registry;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use uuid::Uuid;

pub use delivery::{Deliverer, DELIVERY_JOB};
pub use registry::{add_webhook, remove_webhook, SigningKey, WebhookError};

use super::objects::{self, stored};
use super::payments::{state, PaymentError};
use super::InternalError;
use crate::config::WebhookSettings;
use crate::jobs::{JobError, JobHandler};
use crate::model::payment::{Payment, PaymentStatus, Refund, RefundStatus};
use crate::store::{
    DynStore, OutboxRecord, PaymentChange, PaymentRecord, RefundRecord, StoreError, StoreResult,
    TokenRecord, Ts, CARRIED_EVENTS_JOB, PAYLOAD_EVENTS_JOB,
};
use crate::vault::Vault;

/// Every event a webhook can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    TokenCreated,
    TokenUpdated,
    TokenDeleted,
    PaymentProcessing,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentSettled,
    PaymentFailed,
    PaymentVoided,
    PaymentRefunded,
    RefundProcessing,
    RefundCompleted,
    RefundFailed,
    ImportFinished,
    ImportAborted,
}

impl EventType {
    pub const ALL: [EventType; 15] = [
        EventType::TokenCreated,
        EventType::TokenUpdated,
        EventType::TokenDeleted,
        EventType::PaymentProcessing,
        EventType::PaymentAuthorized,
        EventType::PaymentCaptured,
        EventType::PaymentSettled,
        EventType::PaymentFailed,
        EventType::PaymentVoided,
        EventType::PaymentRefunded,
        EventType::RefundProcessing,
        EventType::RefundCompleted,
        EventType::RefundFailed,
        EventType::ImportFinished,
        EventType::ImportAborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TokenCreated => "token.created",
            EventType::TokenUpdated => "token.updated",
            EventType::TokenDeleted => "token.deleted",
            EventType::PaymentProcessing => "payment.processing",
            EventType::PaymentAuthorized => "payment.authorized",
            EventType::PaymentCaptured => "payment.captured",
            EventType::PaymentSettled => "payment.settled",
            EventType::PaymentFailed => "payment.failed",
            EventType::PaymentVoided => "payment.voided",
            EventType::PaymentRefunded => "payment.refunded",
            EventType::RefundProcessing => "refund.processing",
            EventType::RefundCompleted => "refund.completed",
            EventType::RefundFailed => "refund.failed",
            EventType::ImportFinished => "import.finished",
            EventType::ImportAborted => "import.aborted",
        }
    }

    /// The key of the body that holds the object: `token`, `payment`, `refund` or `import`.
    pub fn object(self) -> &'static str {
        self.as_str().split('.').next().unwrap_or("object")
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == text)
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of event types.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct EventSet(u32);

impl fmt::Debug for EventSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventSet({})", self.to_db())
    }
}

impl EventSet {
    /// A comma list of event types; `token.*` stands for every event of tokens, `*` for all.
    pub fn parse_list(text: &str) -> Result<Self, String> {
        let mut set = EventSet::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let matched: Vec<EventType> = match item.strip_suffix(".*") {
                _ if item == "*" => EventType::ALL.to_vec(),
                Some(object) => EventType::ALL
                    .into_iter()
                    .filter(|e| e.object() == object)
                    .collect(),
                None => EventType::parse(item).into_iter().collect(),
            };
            if matched.is_empty() {
                return Err(format!(
                    "unknown event type `{item}`; known: {}",
                    EventType::ALL.map(EventType::as_str).join(", ")
                ));
            }
            matched.into_iter().for_each(|e| set.0 |= e.bit());
        }
        if set.0 == 0 {
            return Err("name at least one event type".into());
        }
        Ok(set)
    }

    /// The stored comma list; types this build does not know are skipped.
    pub fn from_db(text: &str) -> Self {
        let bits = text
            .split(',')
            .filter_map(EventType::parse)
            .fold(0, |bits, e| bits | e.bit());
        EventSet(bits)
    }

    pub fn contains(self, event: EventType) -> bool {
        self.0 & event.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = EventType> {
        EventType::ALL
            .into_iter()
            .filter(move |e| self.contains(*e))
    }

    pub fn to_db(self) -> String {
        self.iter()
            .map(EventType::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Why the outbox rows of an event could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] InternalError),
}

impl From<EventError> for PaymentError {
    fn from(err: EventError) -> Self {
        match err {
            EventError::Store(e) => PaymentError::Store(e),
            EventError::Internal(e) => PaymentError::Internal(e),
        }
    }
}

/// A job whose events could not be built is tried again, as when the store fails.
impl From<EventError> for JobError {
    fn from(err: EventError) -> Self {
        JobError::Retry(err.to_string())
    }
}

/// How an import ended, for `import.finished` and `import.aborted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    Finished,
    Aborted,
}

/// The body of an event: `{id, created_at, event_type, <object>: {...}}`, in that order.
struct Body<'a, T> {
    id: Uuid,
    created_at: Ts,
    event: EventType,
    object: &'a T,
}

impl<T: Serialize> Serialize for Body<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("created_at", &self.created_at)?;
        map.serialize_entry("event_type", self.event.as_str())?;
        map.serialize_entry(self.event.object(), self.object)?;
        map.end()
    }
}

/// The webhooks of one account as last read, and when.
type Subscriptions = Arc<Vec<(Uuid, EventSet)>>;

/// Builds the outbox rows of events, for the accounts that have webhooks for them.
/// Also holds the delivery job handler, which the server's workers run.
pub struct Webhooks {
    store: DynStore,
    public_url: String,
    cache_ttl: Duration,
    cache: RwLock<HashMap<Uuid, (Instant, Subscriptions)>>,
    deliverer: Arc<Deliverer>,
}

impl Webhooks {
    /// `public_url` starts the links in objects (a token's `card_art_url`), as in API answers.
    pub fn new(
        store: DynStore,
        vault: Arc<Vault>,
        public_url: String,
        settings: &WebhookSettings,
    ) -> anyhow::Result<Self> {
        let deliverer = Deliverer::new(store.clone(), vault, settings.clone())?;
        Ok(Self {
            store,
            public_url,
            cache_ttl: settings.cache_ttl,
            cache: RwLock::new(HashMap::new()),
            deliverer: Arc::new(deliverer),
        })
    }

    /// The `webhook.deliver` job handler.
    pub fn deliverer(&self) -> Arc<dyn JobHandler> {
        self.deliverer.clone()
    }

    /// The handlers of the delivery jobs that carry their events (`store::CARRIED_EVENTS_JOB`, and
    /// `store::PAYLOAD_EVENTS_JOB` as an earlier version wrote them).
    pub fn carried_deliverers(&self) -> [Arc<dyn JobHandler>; 2] {
        [CARRIED_EVENTS_JOB, PAYLOAD_EVENTS_JOB]
            .map(|kind| Arc::new(delivery::CarriedDeliverer(self.deliverer.clone(), kind)) as _)
    }

    async fn subscriptions(&self, account_id: Uuid) -> StoreResult<Subscriptions> {
        let cached = self
            .cache
            .read()
            .ok()
            .and_then(|c| c.get(&account_id).cloned());
        if let Some((read_at, subs)) = cached {
            if read_at.elapsed() < self.cache_ttl {
                return Ok(subs);
            }
        }
        let read_at = Instant::now();
        let subs: Subscriptions = Arc::new(
            self.store
                .list_webhooks(Some(account_id))
                .await?
                .into_iter()
                .map(|w| (w.id, EventSet::from_db(&w.events)))
                .collect(),
        );
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(account_id, (read_at, subs.clone()));
        }
        Ok(subs)
    }

    /// Whether some webhook of the account subscribes to `event` (as of the cache window).
    pub async fn subscribed(&self, account_id: Uuid, event: EventType) -> StoreResult<bool> {
        let subs = self.subscriptions(account_id).await?;
        Ok(subs.iter().any(|(_, events)| events.contains(event)))
    }

    /// The outbox rows of `event` about `object_id` (created at `object_created_at`, the same for every
    /// event of the object): one per webhook of the account subscribed to it, none (and `object` never
    /// built) if there is no such webhook. Write them in the transaction of the change that causes the
    /// event.
    pub async fn outbox_rows<T: Serialize>(
        &self,
        account_id: Uuid,
        event: EventType,
        (object_id, object_created_at): (Uuid, Ts),
        object: impl FnOnce() -> T,
    ) -> Result<Vec<OutboxRecord>, EventError> {
        self.outbox_rows_of(account_id, event, (object_id, object_created_at), || {
            Ok(object())
        })
        .await
    }

    /// As `outbox_rows`, for an object whose building can fail.
    async fn outbox_rows_of<T: Serialize>(
        &self,
        account_id: Uuid,
        event: EventType,
        (object_id, object_created_at): (Uuid, Ts),
        object: impl FnOnce() -> Result<T, EventError>,
    ) -> Result<Vec<OutboxRecord>, EventError> {
        let subs = self.subscriptions(account_id).await?;
        let hooks: Vec<Uuid> = subs
            .iter()
            .filter(|(_, events)| events.contains(event))
            .map(|(id, _)| *id)
            .collect();
        if hooks.is_empty() {
            return Ok(Vec::new());
        }
        let created_at = Ts::now();
        let body = Body {
            id: crate::new_id(),
            created_at,
            event,
            object: &object()?,
        };
        let text = serde_json::to_string(&body)
            .map_err(|e| InternalError::Encode("a webhook event body", e))?;
        Ok(hooks
            .into_iter()
            .map(|webhook_id| {
                // A delivery's id never leaves the server (receivers see the event's id): time-ordered
                // (UUIDv7), so that its unique index grows at its end, as the jobs' does, instead of
                // taking a random page of it per row in every commit.
                let id = Uuid::now_v7();
                OutboxRecord {
                    id,
                    event_id: body.id,
                    webhook_id,
                    account_id,
                    object_id,
                    object_created_at,
                    event_type: event.as_str().to_owned(),
                    body: text.clone(),
                    created_at,
                    job: delivery::job(id, created_at),
                }
            })
            .collect())
    }

    /// `token.created|updated|deleted` with the token as `GET /tokens/{id}` shows it.
    pub async fn token_event(
        &self,
        event: EventType,
        token: &TokenRecord,
    ) -> Result<Vec<OutboxRecord>, EventError> {
        self.outbox_rows_of(
            token.account_id,
            event,
            (token.id, token.created_at),
            || Ok(objects::token(token.clone(), &self.public_url)?),
        )
        .await
    }

    /// `payment.processing` for a payment just created.
    pub async fn payment_created(
        &self,
        p: &PaymentRecord,
    ) -> Result<Vec<OutboxRecord>, EventError> {
        let events = state::PAYMENT_START.1.iter().map(|e| (*e, None)).collect();
        self.payment_events(p, events).await
    }

    /// The events of one step of a payment, as the payments' state machine (`payments::state`) gives
    /// them: its move, then a refund accepted (`refund.processing`) or answered (`refund.completed`
    /// with `payment.refunded` and the grown refunded amount, or `refund.failed`).
    pub async fn payment_change(&self, c: &PaymentChange) -> Result<Vec<OutboxRecord>, EventError> {
        let from: PaymentStatus = stored(&c.previous_status)?;
        let to: PaymentStatus = stored(&c.payment.status)?;
        let mut events: Vec<(EventType, Option<&RefundRecord>)> = state::payment_events(from, to)
            .iter()
            .map(|e| (*e, None))
            .collect();
        for r in c.new_refund.iter().chain(&c.finished_refund) {
            let status: RefundStatus = stored(&r.status)?;
            let about = |e: &EventType| (*e, (e.object() == "refund").then_some(r));
            events.extend(state::refund_events(status).iter().map(about));
        }
        self.payment_events(&c.payment, events).await
    }

    /// The outbox rows of `events`, in order, each about the payment (`None`) or one of its refunds. The
    /// objects are built only for events some webhook of the account subscribes to.
    async fn payment_events(
        &self,
        p: &PaymentRecord,
        events: Vec<(EventType, Option<&RefundRecord>)>,
    ) -> Result<Vec<OutboxRecord>, EventError> {
        let mut rows = Vec::new();
        for (event, refund) in events {
            if !self.subscribed(p.account_id, event).await? {
                continue;
            }
            rows.extend(match refund {
                None => {
                    let payment = Payment::try_from(p.clone())?;
                    self.outbox_rows(p.account_id, event, (p.id, p.created_at), || payment)
                        .await?
                }
                Some(r) => {
                    let refund = Refund::try_from(r.clone())?;
                    self.outbox_rows(p.account_id, event, (r.id, r.created_at), || refund)
                        .await?
                }
            });
        }
        Ok(rows)
    }

    /// `import.finished|aborted`, with `import` as `GET /tokens/imports/{id}` shows it after the change
    /// (status, `finished_at`, counters; the Stripe key `[REDACTED]`). The import code calls this just
    /// before the transaction that ends the import, passes the rows to its store method, and that method
    /// writes them with `Self::write_outbox(&mut tx, rows)` before committing, only if the import really
    /// moved (a refused move rolls back, and so sends nothing).
    pub async fn import_event<T: Serialize>(
        &self,
        account_id: Uuid,
        outcome: ImportOutcome,
        (import_id, import_created_at): (Uuid, Ts),
        import: &T,
    ) -> Result<Vec<OutboxRecord>, EventError> {
        let event = match outcome {
            ImportOutcome::Finished => EventType::ImportFinished,
            ImportOutcome::Aborted => EventType::ImportAborted,
        };
        self.outbox_rows(account_id, event, (import_id, import_created_at), || import)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lists_accept_wildcards_and_refuse_unknown_types() {
        let set = EventSet::parse_list("token.*, payment.captured").unwrap();
        assert_eq!(
            set.to_db(),
            "token.created,token.updated,token.deleted,payment.captured"
        );
        assert_eq!(EventSet::parse_list("*").unwrap().iter().count(), 15);
        assert!(EventSet::parse_list("payment.capturd")
            .unwrap_err()
            .starts_with("unknown event type `payment.capturd`"));
        assert!(EventSet::parse_list(" , ").is_err());
    }

    #[test]
    fn a_body_has_its_fields_in_order_with_the_object_under_its_kind() {
        let body = Body {
            id: Uuid::nil(),
            created_at: Ts::from_micros(0).unwrap(),
            event: EventType::RefundCompleted,
            object: &serde_json::json!({"id": "r"}),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"id":"00000000-0000-0000-0000-000000000000","created_at":"1970-01-01T00:00:00Z","event_type":"refund.completed","refund":{"id":"r"}}"#
        );
    }
}
