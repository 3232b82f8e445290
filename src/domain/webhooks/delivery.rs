//! Sending: the `webhook.deliver` job posts one outbox row to its webhook, signed, and records the
//! outcome. Only a 200 counts; anything else (another status, a redirect, a timeout, a refused
//! connection or destination) is retried with exponential backoff and jitter until the deadline, then
//! recorded as failed. A row waits while an earlier row of the same webhook and object is pending, so
//! that deliveries per object follow the order of its changes, whichever worker or node runs them.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use serde::Deserialize;
use uuid::Uuid;
use zeroize::Zeroizing;

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};

use super::breaker::{Breakers, Refusal, Slot};
use super::registry::key_aad;
use crate::config::WebhookSettings;
use crate::connectors::webhook::{destination, SendFailure, WebhookSender};
use crate::jobs::{JobError, JobHandler, Ran};
use crate::store::{
    CarriedEvent, DeliveryOutcomes, DeliveryStatus, DynStore, EarlierPending, FinishedDelivery,
    Job, NewJob, RetriedDelivery, Ts, WebhookDelivery, WebhookRecord, CARRIED_EVENTS_JOB,
};
use crate::vault::Vault;

pub const DELIVERY_JOB: &str = "webhook.deliver";
/// The retry delay never grows past this (the deadline still ends the retries).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// How long a row waits before looking again when an earlier row of its object is being sent.
const WAIT_STEP: Duration = Duration::from_millis(50);
/// How long a row waits before looking again when its destination already has its share of sends.
const BUSY_STEP: Duration = Duration::from_millis(100);
/// How often a run waiting for a send slot of a busy destination looks again, within `BUSY_STEP`.
const SLOT_POLL: Duration = Duration::from_millis(2);
/// How many more due delivery jobs a run takes in with its own.
const ABSORB: i64 = 63;
/// How long a delivery job has been due before its run sends: a run whose job is younger waits the
/// rest, then takes in the jobs due meanwhile. While events keep coming, one run then sends those of
/// the last 50 ms with one claim and one commit of outcomes, where a run per commit of the API cost a
/// claim and a commit of its own for each (queued with the API's for the database; on SQLite, its one
/// writer). A backlog, due for longer, is sent without waiting.
const DELIVERY_PACE: Duration = Duration::from_millis(50);

/// A webhook as one run sends to it: its URL checked and its signing key opened once for all of the
/// run's rows to it, rather than for each row.
struct Target {
    webhook: WebhookRecord,
    /// `host:port` (the breakers' key); none when the address guard refused the URL.
    destination: Option<String>,
    /// The URL the address guard let through, or why not.
    url: Result<reqwest::Url, String>,
    /// The signing key, or why it did not open.
    key: Result<Zeroizing<Vec<u8>>, String>,
}

/// The rows of one (webhook, object) in a run, in order, with their webhook.
type Chain = (Arc<Target>, Vec<WebhookDelivery>);

/// What became of one row in a run.
enum Outcome {
    Delivered(WebhookDelivery),
    /// A failed attempt, tried again at `next`.
    Retried {
        d: WebhookDelivery,
        attempts: i32,
        next: Ts,
        reason: String,
    },
    /// Not tried now (its destination busy or paused, or an earlier event of its object pending).
    Postponed(WebhookDelivery, Ts),
    /// Failed for good: its deadline passed.
    Failed {
        d: WebhookDelivery,
        attempts: i32,
        reason: String,
    },
    /// Its webhook was removed.
    Cancelled(WebhookDelivery),
}

impl Outcome {
    fn delivery(&self) -> &WebhookDelivery {
        match self {
            Outcome::Delivered(d)
            | Outcome::Retried { d, .. }
            | Outcome::Postponed(d, _)
            | Outcome::Failed { d, .. }
            | Outcome::Cancelled(d) => d,
        }
    }

    /// The row as this outcome leaves it at `now`, with the job that sends it again if it stays
    /// pending: what is recorded of a carried event, which has no row yet.
    fn row(&self, now: Ts) -> (WebhookDelivery, Option<NewJob>) {
        let mut row = self.delivery().clone();
        let mut end = |status: DeliveryStatus, attempts: i32, error: Option<&str>| {
            row.status = status.as_str().to_owned();
            row.attempts = attempts;
            row.last_error = error.map(str::to_owned).or(row.last_error.take());
            row.finished_at = Some(now);
        };
        let again = match self {
            Outcome::Delivered(d) => {
                end(
                    DeliveryStatus::Delivered,
                    d.attempts.saturating_add(1),
                    None,
                );
                None
            }
            Outcome::Failed {
                attempts, reason, ..
            } => {
                end(DeliveryStatus::Failed, *attempts, Some(reason));
                None
            }
            Outcome::Cancelled(d) => {
                end(DeliveryStatus::Cancelled, d.attempts, Some(WEBHOOK_REMOVED));
                None
            }
            Outcome::Retried {
                attempts,
                next,
                reason,
                ..
            } => {
                row.attempts = *attempts;
                row.last_error = Some(reason.clone());
                Some(*next)
            }
            Outcome::Postponed(_, at) => Some(*at),
        };
        let job = again.map(|at| {
            row.next_attempt_at = at;
            self::job(row.id, at)
        });
        (row, job)
    }
}

/// Why a delivery was cancelled.
const WEBHOOK_REMOVED: &str = "the webhook was removed";

/// A delivery job's payload: one outbox row (`delivery_id`: a lone event, or one sent again), the
/// rows written in one commit (`delivery_ids`, see `store::webhook_records::push_outbox_jobs`), or the
/// events of a token batch carried in the payload itself (`events`, see `store::CarriedEvent`).
#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    delivery_id: Option<Uuid>,
    #[serde(default)]
    delivery_ids: Vec<Uuid>,
    #[serde(default)]
    events: Vec<CarriedEvent>,
}

impl Payload {
    /// Adds the payload's rows to `ids` and its carried events to `carried`.
    fn take(self, ids: &mut Vec<Uuid>, carried: &mut Vec<CarriedEvent>) {
        ids.extend(self.delivery_id.into_iter().chain(self.delivery_ids));
        carried.extend(self.events);
    }
}

/// The job that delivers outbox row `delivery_id`. The deadline, not the job's attempts, ends retries.
pub(super) fn job(delivery_id: Uuid, at: Ts) -> NewJob {
    NewJob {
        id: NewJob::new_id(),
        kind: DELIVERY_JOB.to_owned(),
        payload: serde_json::json!({ "delivery_id": delivery_id }).to_string(),
        max_attempts: i32::MAX,
        run_at: at,
        lease: None,
    }
}

/// What is left of `DELIVERY_PACE` for a job due at `due`, at `now`.
fn pace_wait(due: Ts, now: Ts) -> Duration {
    let due_for = u64::try_from(now.micros() - due.micros()).unwrap_or(0);
    DELIVERY_PACE.saturating_sub(Duration::from_micros(due_for))
}

/// The delay before retry number `attempt` (1 after the first failure): `base · 2^(attempt-1)`, plus up
/// to a quarter of jitter so that a receiver coming back is not hit by every retry at once.
pub fn retry_delay(base: Duration, attempt: i32) -> Duration {
    let exp = attempt.clamp(1, 31) as u32 - 1;
    let delay = base
        .checked_mul(1u32 << exp.min(30))
        .unwrap_or(MAX_RETRY_DELAY)
        .min(MAX_RETRY_DELAY);
    delay.mul_f64(1.0 + rand::thread_rng().gen_range(0.0..0.25))
}

/// The `webhook.deliver` job handler.
pub struct Deliverer {
    store: DynStore,
    vault: Arc<Vault>,
    sends: Arc<Sends>,
}

/// What a run's sends need, on the sending thread (`WebhookSender::on_send_thread`).
struct Sends {
    sender: WebhookSender,
    settings: WebhookSettings,
    breakers: Breakers,
}

/// A run's chains by destination (`host:port`; none for a URL the address guard refused).
type ByDestination = HashMap<Option<String>, Vec<Chain>>;

impl Deliverer {
    pub fn new(
        store: DynStore,
        vault: Arc<Vault>,
        settings: WebhookSettings,
    ) -> anyhow::Result<Self> {
        let sender = WebhookSender::new(
            settings.timeout,
            settings.allow_link_local,
            settings.sender_nice,
        )?;
        let breakers = Breakers::new(
            settings.destination_concurrency,
            settings.breaker_timeouts,
            settings.breaker_cooldown,
        );
        Ok(Self {
            store,
            vault,
            sends: Arc::new(Sends {
                sender,
                settings,
                breakers,
            }),
        })
    }

    /// Sends the job's pending deliveries and records every outcome, with the job's end, in one commit:
    /// a batch of events costs the database one read of its rows and one write, whatever its size. What
    /// was not delivered (a failed attempt, a busy or paused destination, an earlier event of the same
    /// object still pending) gets a job of its own at its time.
    async fn deliver(&self, job: &Job) -> Result<Ran, JobError> {
        let payload: Payload = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::Fatal(format!("bad payload: {e}")))?;
        let (mut ids, mut carried) = (Vec::new(), Vec::new());
        payload.take(&mut ids, &mut carried);
        // Due just now, the job waits out the pace for the events that follow it (`DELIVERY_PACE`).
        tokio::time::sleep(pace_wait(job.run_at, Ts::now())).await;
        // The other due delivery jobs join this run: their rows go out with its own and every outcome
        // is recorded in the one commit, so that a backlog of small jobs (one per token batch) costs a
        // claim and an end per run rather than per job.
        let mut jobs = vec![job.clone()];
        for more in self.absorb(job).await {
            match serde_json::from_str::<Payload>(&more.payload) {
                Ok(p) => p.take(&mut ids, &mut carried),
                // Ended with the run: a payload this server cannot read never will be.
                Err(err) => {
                    tracing::error!(job = %more.id, error = %err, "a webhook delivery job with a bad payload is dropped")
                }
            }
            jobs.push(more);
        }
        let _renewer = AbortOnDrop(self.keep_leased(&jobs[1..]));
        // Token batches' jobs keep their events beside them (a job an earlier version wrote, in its
        // payload, taken above).
        let carriers: Vec<Uuid> = jobs
            .iter()
            .filter(|j| j.kind == CARRIED_EVENTS_JOB)
            .map(|j| j.id)
            .collect();
        if !carriers.is_empty() {
            for events in self.store.carried_events(&carriers).await? {
                match serde_json::from_str::<Payload>(&events) {
                    Ok(p) => p.take(&mut ids, &mut carried),
                    Err(err) => {
                        tracing::error!(error = %err, "a delivery job's carried events could not be read; they are dropped")
                    }
                }
            }
        }
        // A carried event whose row a later event of its object wrote meanwhile is sent as that row
        // (if it is still pending); the others are sent as they are carried, and written with their
        // outcomes (`unwritten`).
        ids.extend(carried.iter().map(|e| e.id));
        let mut rows = self.store.get_webhook_deliveries(&ids).await?;
        let written: HashSet<Uuid> = rows.iter().map(|d| d.id).collect();
        let mut unwritten = HashSet::new();
        for e in &carried {
            if written.contains(&e.id) || !unwritten.insert(e.id) {
                continue;
            }
            match e.pending() {
                Some(d) => rows.push(d),
                None => {
                    tracing::error!(delivery = %e.id, "a carried webhook event with a time out of range is dropped")
                }
            }
        }
        let rows: Vec<WebhookDelivery> = rows
            .into_iter()
            .filter(|d| d.status == DeliveryStatus::Pending.as_str())
            .collect();
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut webhooks: HashMap<Uuid, Option<Arc<Target>>> = HashMap::new();
        for d in &rows {
            if let Entry::Vacant(slot) = webhooks.entry(d.webhook_id) {
                let webhook = self.store.get_webhook(d.webhook_id).await?;
                let target = match webhook.filter(|w| w.removed_at.is_none()) {
                    Some(webhook) => Some(Arc::new(self.target(webhook).await)),
                    None => None,
                };
                slot.insert(target);
            }
        }
        // Earlier pending rows of the same object that this run does not send hold back its rows after them.
        let in_run: HashSet<i64> = rows.iter().map(|d| d.seq).collect();
        // A carried event is the first of its object: nothing comes before it.
        let live: Vec<Uuid> = rows
            .iter()
            .filter(|d| webhooks.get(&d.webhook_id).is_some_and(Option::is_some))
            .filter(|d| !unwritten.contains(&d.id))
            .map(|d| d.id)
            .collect();
        let mut held_back: HashMap<Uuid, EarlierPending> = HashMap::new();
        if !live.is_empty() {
            for e in self.store.earlier_pending_deliveries(&live).await? {
                if in_run.contains(&e.seq) {
                    continue;
                }
                let earliest = held_back.entry(e.of_id).or_insert_with(|| e.clone());
                if e.seq < earliest.seq {
                    *earliest = e;
                }
            }
        }
        // Chains: the rows of one (webhook, object), in seq order, sent one after the other; chains go
        // to their destination with at most `destination_concurrency` in flight (the breakers count
        // sends of every run on this node).
        let mut chains: Vec<(Option<String>, Chain)> = Vec::new();
        let mut chain_of: HashMap<(Uuid, Uuid), usize> = HashMap::new();
        for d in rows {
            let Some(Some(target)) = webhooks.get(&d.webhook_id) else {
                outcomes.push(Outcome::Cancelled(d));
                continue;
            };
            let key = (d.webhook_id, d.object_id);
            match chain_of.get(&key) {
                Some(&at) => chains[at].1 .1.push(d),
                None => {
                    chain_of.insert(key, chains.len());
                    chains.push((target.destination.clone(), (target.clone(), vec![d])));
                }
            }
        }
        let mut by_destination = ByDestination::new();
        for (destination, chain) in chains {
            by_destination.entry(destination).or_default().push(chain);
        }
        let sends = Arc::clone(&self.sends);
        let sent = self
            .sends
            .sender
            .on_send_thread(async move { sends.send_all(by_destination, &held_back).await })
            .await
            .map_err(JobError::Retry)?;
        outcomes.extend(sent);
        self.record(&jobs, outcomes, &unwritten).await
    }

    /// Leases more due delivery jobs of the run's own kind to its owner, until its own lease ends.
    async fn absorb(&self, job: &Job) -> Vec<Job> {
        let (Some(owner), Some(until)) = (job.lease_owner.as_deref(), job.lease_expires_at) else {
            return Vec::new();
        };
        let claimed = self
            .store
            .claim_due_jobs(&job.kind, owner, Ts::now(), until, ABSORB);
        match crate::metrics::timed("claim_due_jobs", claimed).await {
            Ok(jobs) => jobs,
            Err(err) => {
                tracing::warn!(error = %err, "could not take more due webhook deliveries into a run");
                Vec::new()
            }
        }
    }

    /// Renews the leases of the jobs a run took in (the worker renews its own job's) every third of
    /// the lease, so that a long run keeps them all.
    fn keep_leased(&self, jobs: &[Job]) -> Option<tokio::task::JoinHandle<()>> {
        let now = Ts::now();
        let until = jobs.first()?.lease_expires_at?;
        let lease = Duration::from_micros(u64::try_from(until.micros() - now.micros()).ok()?);
        let fences: Vec<_> = jobs.iter().map(Job::fence).collect();
        let store = self.store.clone();
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let now = Ts::now();
                for fence in &fences {
                    if let Err(err) = store.renew_job_lease(fence, now.plus(lease), now).await {
                        tracing::warn!(job = %fence.job, error = %err, "could not renew a webhook delivery job's lease");
                    }
                }
            }
        }))
    }

    /// Records the run's outcomes and its jobs' ends in one commit, then counts them in the metrics.
    /// The rows of `unwritten` (carried events) are written with their outcomes.
    async fn record(
        &self,
        jobs: &[Job],
        outcomes: Vec<Outcome>,
        unwritten: &HashSet<Uuid>,
    ) -> Result<Ran, JobError> {
        let mut record = DeliveryOutcomes::default();
        let now = Ts::now();
        for outcome in &outcomes {
            if unwritten.contains(&outcome.delivery().id) {
                let (row, job) = outcome.row(now);
                record.written.push(row);
                record.jobs.extend(job);
                continue;
            }
            match outcome {
                Outcome::Delivered(d) => record.delivered.push(d.id),
                Outcome::Retried {
                    d,
                    attempts,
                    next,
                    reason,
                } => {
                    record.retried.push(RetriedDelivery {
                        id: d.id,
                        attempts: *attempts,
                        next_attempt_at: *next,
                        error: reason.clone(),
                    });
                    record.jobs.push(self::job(d.id, *next));
                }
                Outcome::Postponed(d, at) => record.jobs.push(self::job(d.id, *at)),
                Outcome::Failed {
                    d,
                    attempts,
                    reason,
                } => record.finished.push(FinishedDelivery {
                    id: d.id,
                    status: DeliveryStatus::Failed,
                    attempts: *attempts,
                    error: Some(reason.clone()),
                }),
                Outcome::Cancelled(d) => record.finished.push(FinishedDelivery {
                    id: d.id,
                    status: DeliveryStatus::Cancelled,
                    attempts: d.attempts,
                    error: Some(WEBHOOK_REMOVED.to_owned()),
                }),
            }
        }
        let fences: Vec<_> = jobs.iter().map(Job::fence).collect();
        let recorded = self.store.record_delivery_outcomes(&fences, &record, now);
        if !crate::metrics::timed("record_delivery_outcomes", recorded).await? {
            return Err(JobError::Retry(
                "a lease of the run was lost before its outcomes were recorded".to_owned(),
            ));
        }
        let m = crate::metrics::metrics();
        for outcome in &outcomes {
            match outcome {
                Outcome::Delivered(d) => {
                    m.webhook_delivery("delivered");
                    let lag = (now.micros() - d.created_at.micros()).max(0) as f64 / 1e6;
                    m.webhook_lag.observe(lag);
                }
                Outcome::Retried { .. } => m.webhook_delivery("retried"),
                Outcome::Failed { .. } => m.webhook_delivery("failed"),
                Outcome::Postponed(..) | Outcome::Cancelled(_) => {}
            }
        }
        Ok(Ran::Finished)
    }

    /// A webhook ready for a run's sends: its URL checked and its signing key opened.
    async fn target(&self, webhook: WebhookRecord) -> Target {
        let url = self.sends.sender.checked_url(&webhook.url);
        let destination = match &url {
            Ok(url) => destination(url),
            Err(_) => None,
        };
        let key = self
            .vault
            .open_bytes(
                webhook.account_id,
                &key_aad(webhook.id),
                &webhook.sealed_key,
            )
            .await
            .map_err(|e| format!("the signing key did not open: {e}"));
        Target {
            webhook,
            destination,
            url,
            key,
        }
    }
}

impl Sends {
    /// Sends the chains, destinations side by side, at most `destination_concurrency` chains of one
    /// destination at once.
    async fn send_all(
        &self,
        by_destination: ByDestination,
        held_back: &HashMap<Uuid, EarlierPending>,
    ) -> Vec<Outcome> {
        let sends = by_destination
            .into_iter()
            .map(|(destination, chains)| async move {
                let destination = destination.as_deref();
                stream::iter(chains)
                    .map(|(target, chain)| self.send_chain(destination, target, chain, held_back))
                    .buffer_unordered(self.settings.destination_concurrency.max(1))
                    .collect::<Vec<Vec<Outcome>>>()
                    .await
            });
        join_all(sends)
            .await
            .into_iter()
            .flatten()
            .flatten()
            .collect()
    }

    /// Sends a chain's rows in order; once one is not delivered, the rest wait until after its next try.
    async fn send_chain(
        &self,
        destination: Option<&str>,
        target: Arc<Target>,
        chain: Vec<WebhookDelivery>,
        held_back: &HashMap<Uuid, EarlierPending>,
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(chain.len());
        let mut wait_until: Option<(Ts, String)> = None;
        for d in chain {
            // Not only the chain's first row: a row of the object may lie between two of this run's
            // (queued after the first, and taken by another run), and the rows after it wait for it.
            if wait_until.is_none() {
                wait_until = held_back.get(&d.id).map(|earlier| {
                    (
                        Ts::from_micros(earlier.next_attempt_at.micros().max(Ts::now().micros()))
                            .unwrap_or_else(Ts::now)
                            .plus(WAIT_STEP),
                        format!(
                            "waits for the earlier event {} of its object",
                            earlier.event_id
                        ),
                    )
                });
            }
            if let Some((at, why)) = &wait_until {
                tracing::debug!(delivery = %d.id, reason = %why, "webhook delivery postponed");
                outcomes.push(Outcome::Postponed(d, *at));
                continue;
            }
            let outcome = self.send_one(destination, &target, d).await;
            wait_until = match &outcome {
                Outcome::Retried { next, .. } => Some((
                    next.plus(WAIT_STEP),
                    "an earlier event of its object failed".into(),
                )),
                Outcome::Postponed(_, at) => Some((
                    at.plus(WAIT_STEP),
                    "an earlier event of its object waits".into(),
                )),
                Outcome::Failed { .. } => None,
                Outcome::Delivered(_) | Outcome::Cancelled(_) => None,
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    /// One attempt of one row, under its destination's breaker.
    async fn send_one(
        &self,
        destination: Option<&str>,
        target: &Target,
        d: WebhookDelivery,
    ) -> Outcome {
        let webhook = &target.webhook;
        // A URL the address guard refused has no destination to share: its send fails on its own.
        let slot = match destination {
            None => None,
            Some(dest) => match self.slot(dest).await {
                Ok(slot) => Some(slot),
                // Postponed without counting an attempt: the receiver was not tried.
                Err(Refusal::Busy) => {
                    let jitter = Duration::from_millis(rand::thread_rng().gen_range(0..50));
                    return Outcome::Postponed(d, Ts::now().plus(BUSY_STEP + jitter));
                }
                Err(Refusal::Open { wait, timeouts }) => {
                    tracing::debug!(delivery = %d.id, timeouts, "its destination keeps timing out; paused");
                    return Outcome::Postponed(d, Ts::now().plus(wait));
                }
            },
        };
        let attempts = d.attempts.saturating_add(1);
        let outcome = self.send(target, &d).await;
        if let (Some(slot), Some(dest)) = (slot, destination) {
            let timed_out = outcome.as_ref().err().is_some_and(|f| f.timed_out);
            if self.breakers.settle(slot, timed_out) {
                tracing::warn!(webhook = %webhook.id, destination = %dest,
                    cooldown_s = self.settings.breaker_cooldown.as_secs(),
                    "webhook destination keeps timing out: its deliveries are paused");
            }
        }
        let now = Ts::now();
        let reason = match outcome.map_err(|f| f.reason) {
            Ok(()) => return Outcome::Delivered(d),
            Err(reason) => reason,
        };
        let deadline = d.created_at.plus(self.settings.deadline);
        let left =
            Duration::from_micros(u64::try_from(deadline.micros() - now.micros()).unwrap_or(0));
        if left.is_zero() {
            tracing::warn!(delivery = %d.id, webhook = %webhook.id, event = %d.event_id, attempts,
                error = %reason, "webhook delivery failed for good: its deadline passed");
            return Outcome::Failed {
                d,
                attempts,
                reason,
            };
        }
        let delay = retry_delay(self.settings.retry_base, attempts).min(left);
        tracing::warn!(delivery = %d.id, webhook = %webhook.id, event = %d.event_id, attempts,
            error = %reason, retry_in_ms = delay.as_millis() as u64, "webhook delivery failed; it will be retried");
        Outcome::Retried {
            d,
            attempts,
            next: now.plus(delay),
            reason,
        }
    }

    /// A send slot for `destination`; while it is busy with sends of other runs, looks again for up to
    /// `BUSY_STEP` before giving up (so that two runs for one receiver take turns rather than postpone).
    async fn slot(&self, destination: &str) -> Result<Slot, Refusal> {
        let waited = std::time::Instant::now();
        loop {
            match self.breakers.acquire(destination) {
                Err(Refusal::Busy) if waited.elapsed() < BUSY_STEP => {
                    tokio::time::sleep(SLOT_POLL).await
                }
                other => return other,
            }
        }
    }

    /// One attempt: `Ok` only for a 200; otherwise why not (never the URL's secrets or the body).
    async fn send(&self, target: &Target, d: &WebhookDelivery) -> Result<(), SendFailure> {
        let url = target
            .url
            .as_ref()
            .map_err(|e| SendFailure::from(e.clone()))?;
        let key = target
            .key
            .as_ref()
            .map_err(|e| SendFailure::from(e.clone()))?;
        self.sender.post(url, key, &d.body).await
    }
}

/// Aborts the lease renewer of a run's extra jobs however the run ends.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

#[async_trait]
impl JobHandler for Deliverer {
    fn kind(&self) -> &'static str {
        DELIVERY_JOB
    }

    async fn run(&self, job: &Job) -> Result<Ran, JobError> {
        self.deliver(job).await
    }
}

/// The handler of the delivery jobs that carry their events, of one kind (`CARRIED_EVENTS_JOB`, or
/// `PAYLOAD_EVENTS_JOB` as an earlier version wrote them), run by the same `Deliverer`: a run takes in
/// other due jobs of its own kind only.
pub struct CarriedDeliverer(pub Arc<Deliverer>, pub &'static str);

#[async_trait]
impl JobHandler for CarriedDeliverer {
    fn kind(&self) -> &'static str {
        self.1
    }

    async fn run(&self, job: &Job) -> Result<Ran, JobError> {
        self.0.deliver(job).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_waits_until_its_job_has_been_due_for_the_pace() {
        let now = Ts::now();
        let ago = |ms: i64| Ts::from_micros(now.micros() - ms * 1000).unwrap();
        assert_eq!(pace_wait(now, now), DELIVERY_PACE);
        assert_eq!(
            pace_wait(ago(20), now),
            DELIVERY_PACE - Duration::from_millis(20)
        );
        assert_eq!(pace_wait(ago(50), now), Duration::ZERO);
        assert_eq!(pace_wait(ago(5000), now), Duration::ZERO);
        // A job due later than now (a clock step between nodes) waits the pace, no more.
        assert_eq!(
            pace_wait(now.plus(Duration::from_secs(9)), now),
            DELIVERY_PACE
        );
    }

    #[test]
    fn retry_delays_double_and_stop_growing_at_an_hour() {
        let base = Duration::from_millis(100);
        let first = retry_delay(base, 1);
        assert!(first >= base && first < base.mul_f64(1.25));
        let fourth = retry_delay(base, 4);
        assert!(fourth >= Duration::from_millis(800) && fourth < Duration::from_millis(1000));
        assert!(retry_delay(base, 30) <= MAX_RETRY_DELAY.mul_f64(1.25));
    }
}
