//! Sending: the `webhook.deliver` job posts one outbox row to its webhook, signed, and records the
//! outcome. Only a 200 counts; anything else (another status, a redirect, a timeout, a refused
//! connection or destination) is retried with exponential backoff and jitter until the deadline, then
//! recorded as failed. A row waits while an earlier row of the same webhook and object is pending, so
//! that deliveries per object follow the order of its changes, whichever worker or node runs them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::breaker::{Breakers, Refusal};
use super::registry::key_aad;
use crate::config::WebhookSettings;
use crate::connectors::webhook::{destination_of, SendFailure, WebhookSender};
use crate::jobs::{JobError, JobHandler, Ran};
use crate::store::{DeliveryStatus, DynStore, Job, NewJob, Ts, WebhookDelivery, WebhookRecord};
use crate::vault::Vault;

pub const DELIVERY_JOB: &str = "webhook.deliver";
/// The retry delay never grows past this (the deadline still ends the retries).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// How long a row waits before looking again when an earlier row of its object is being sent.
const WAIT_STEP: Duration = Duration::from_millis(50);
/// How long a row waits before looking again when its destination already has its share of sends.
const BUSY_STEP: Duration = Duration::from_millis(100);

#[derive(Serialize, Deserialize)]
struct Payload {
    delivery_id: Uuid,
}

/// The job that delivers outbox row `delivery_id`. The deadline, not the job's attempts, ends retries.
pub(super) fn job(delivery_id: Uuid, at: Ts) -> NewJob {
    NewJob {
        id: Uuid::new_v4(),
        kind: DELIVERY_JOB.to_owned(),
        payload: serde_json::json!({ "delivery_id": delivery_id }).to_string(),
        max_attempts: i32::MAX,
        run_at: at,
        lease: None,
    }
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
    sender: WebhookSender,
    settings: WebhookSettings,
    breakers: Breakers,
}

impl Deliverer {
    pub fn new(
        store: DynStore,
        vault: Arc<Vault>,
        settings: WebhookSettings,
    ) -> Result<Self, reqwest::Error> {
        let sender = WebhookSender::new(settings.timeout, settings.allow_link_local)?;
        let breakers = Breakers::new(
            settings.destination_concurrency,
            settings.breaker_timeouts,
            settings.breaker_cooldown,
        );
        Ok(Self {
            store,
            vault,
            sender,
            settings,
            breakers,
        })
    }

    async fn deliver(&self, job: &Job) -> Result<(), JobError> {
        let payload: Payload = serde_json::from_str(&job.payload)
            .map_err(|e| JobError::Fatal(format!("bad payload: {e}")))?;
        let Some(d) = self.store.get_webhook_delivery(payload.delivery_id).await? else {
            return Ok(());
        };
        if d.status != DeliveryStatus::Pending.as_str() {
            return Ok(());
        }
        let webhook = match self.store.get_webhook(d.webhook_id).await? {
            Some(w) if w.removed_at.is_none() => w,
            _ => {
                let error = Some("the webhook was removed");
                let attempts = d.attempts;
                let now = Ts::now();
                self.store
                    .finish_webhook_delivery(
                        d.id,
                        DeliveryStatus::Cancelled.as_str(),
                        attempts,
                        error,
                        now,
                    )
                    .await?;
                return Ok(());
            }
        };
        if let Some(earlier) = self
            .store
            .pending_delivery_before(d.webhook_id, d.object_id, d.seq)
            .await?
        {
            let due = earlier.next_attempt_at.micros() - Ts::now().micros();
            let wait = Duration::from_micros(u64::try_from(due).unwrap_or(0)) + WAIT_STEP;
            return Err(JobError::RetryAfter(
                wait,
                format!(
                    "waits for the earlier event {} of its object",
                    earlier.event_id
                ),
            ));
        }
        // A URL that does not parse has no destination to share: its send fails on its own.
        let destination = destination_of(&webhook.url);
        let slot = match destination
            .as_deref()
            .map(|dest| self.breakers.acquire(dest))
        {
            None => None,
            Some(Ok(slot)) => Some(slot),
            // Postponed without counting an attempt: the receiver was not tried.
            Some(Err(Refusal::Busy)) => {
                let jitter = rand::thread_rng().gen_range(0..50);
                return Err(JobError::RetryAfter(
                    BUSY_STEP + Duration::from_millis(jitter),
                    "its destination already has its share of deliveries in flight".to_owned(),
                ));
            }
            Some(Err(Refusal::Open { wait, timeouts })) => {
                return Err(JobError::RetryAfter(
                    wait,
                    format!("its destination timed out {timeouts} times in a row; paused"),
                ));
            }
        };
        let attempts = d.attempts.saturating_add(1);
        let outcome = self.send(&webhook, &d).await;
        if let (Some(slot), Some(dest)) = (slot, destination.as_deref()) {
            let timed_out = outcome.as_ref().err().is_some_and(|f| f.timed_out);
            if self.breakers.settle(slot, timed_out) {
                tracing::warn!(webhook = %webhook.id, destination = %dest,
                    cooldown_s = self.settings.breaker_cooldown.as_secs(),
                    "webhook destination keeps timing out: its deliveries are paused");
            }
        }
        let now = Ts::now();
        let reason = match outcome.map_err(|f| f.reason) {
            Ok(()) => {
                self.store
                    .finish_webhook_delivery(
                        d.id,
                        DeliveryStatus::Delivered.as_str(),
                        attempts,
                        None,
                        now,
                    )
                    .await?;
                let m = crate::metrics::metrics();
                m.webhook_delivery("delivered");
                let lag = (now.micros() - d.created_at.micros()).max(0) as f64 / 1e6;
                m.webhook_lag.observe(lag);
                return Ok(());
            }
            Err(reason) => reason,
        };
        let deadline = d.created_at.plus(self.settings.deadline);
        let left =
            Duration::from_micros(u64::try_from(deadline.micros() - now.micros()).unwrap_or(0));
        if left.is_zero() {
            tracing::warn!(delivery = %d.id, webhook = %webhook.id, event = %d.event_id, attempts,
                error = %reason, "webhook delivery failed for good: its deadline passed");
            self.store
                .finish_webhook_delivery(
                    d.id,
                    DeliveryStatus::Failed.as_str(),
                    attempts,
                    Some(&reason),
                    now,
                )
                .await?;
            crate::metrics::metrics().webhook_delivery("failed");
            return Err(JobError::Fatal(reason));
        }
        let delay = retry_delay(self.settings.retry_base, attempts).min(left);
        tracing::warn!(delivery = %d.id, webhook = %webhook.id, event = %d.event_id, attempts,
            error = %reason, retry_in_ms = delay.as_millis() as u64, "webhook delivery failed; it will be retried");
        self.store
            .record_delivery_attempt(d.id, attempts, now.plus(delay), &reason)
            .await?;
        crate::metrics::metrics().webhook_delivery("retried");
        Err(JobError::RetryAfter(delay, reason))
    }

    /// One attempt: `Ok` only for a 200; otherwise why not (never the URL's secrets or the body).
    async fn send(&self, webhook: &WebhookRecord, d: &WebhookDelivery) -> Result<(), SendFailure> {
        let key = self
            .vault
            .open_bytes(
                webhook.account_id,
                &key_aad(webhook.id),
                &webhook.sealed_key,
            )
            .await
            .map_err(|e| SendFailure::from(format!("the signing key did not open: {e}")))?;
        self.sender.post(&webhook.url, &key, &d.body).await
    }
}

#[async_trait]
impl JobHandler for Deliverer {
    fn kind(&self) -> &'static str {
        DELIVERY_JOB
    }

    async fn run(&self, job: &Job) -> Result<Ran, JobError> {
        self.deliver(job).await.map(|()| Ran::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
