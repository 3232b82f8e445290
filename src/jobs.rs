//! The durable job queue's worker: claims one job at a time under a lease, renews the lease while the
//! handler runs, and records the outcome. Handlers must make every step idempotent, since a job whose
//! worker died is taken over by another once its lease expires and runs again from its saved position.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::store::{DynStore, Job, NewJob, StoreError, StoreResult, Ts};

/// How a handler's run ended when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth trying again later (with backoff), until the job's attempts run out.
    #[error("{0}")]
    Retry(String),
    /// Worth trying again after this delay, which the handler chose (a webhook's own retry schedule,
    /// or waiting for an earlier delivery of the same object); counted like `Retry`.
    #[error("{1}")]
    RetryAfter(std::time::Duration, String),
    /// Trying again cannot help.
    #[error("{0}")]
    Fatal(String),
}

impl From<StoreError> for JobError {
    fn from(err: StoreError) -> Self {
        JobError::Retry(err.to_string())
    }
}

/// How a handler's run ended when it succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// The job is done.
    Done,
    /// One step of a long job is done and its position saved: the job goes back to the queue, due at
    /// once, without counting as an attempt, so that the worker is free for whatever waited meanwhile.
    Continue,
    /// The job is done, and the handler already marked it so in its own last write, fenced on this run's
    /// claim (one commit for the outcome and the job's end).
    Finished,
}

#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// The `kind` of the jobs this handler runs.
    fn kind(&self) -> &'static str;
    async fn run(&self, job: &Job) -> Result<Ran, JobError>;
}

/// Why a job could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The payload would not encode as JSON.
    #[error("could not encode the job payload: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Adds a job to the queue, to run as soon as a worker is free.
pub async fn enqueue(
    store: &DynStore,
    kind: &str,
    payload: &impl Serialize,
    max_attempts: i32,
) -> Result<Uuid, EnqueueError> {
    let id = NewJob::new_id();
    let payload = serde_json::to_string(payload)?;
    store
        .enqueue_job(&NewJob {
            id,
            kind: kind.to_owned(),
            payload,
            max_attempts,
            run_at: Ts::now(),
            lease: None,
        })
        .await?;
    Ok(id)
}

/// What one step of a worker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No job was due.
    Idle,
    Completed(Uuid),
    /// The job ran one step and was queued again for the next.
    Continued(Uuid),
    /// The job failed and was put back in the queue for a later attempt.
    Rescheduled(Uuid),
    /// The job failed for good.
    Failed(Uuid),
    /// The lease ran out while the handler worked and another worker took the job; its result was dropped.
    LeaseLost(Uuid),
}

#[derive(Clone)]
pub struct Worker {
    store: DynStore,
    owner: String,
    handlers: Arc<HashMap<&'static str, Arc<dyn JobHandler>>>,
    lease: Duration,
}

impl Worker {
    pub fn new(store: DynStore, handlers: Vec<Arc<dyn JobHandler>>, lease: Duration) -> Self {
        let handlers = handlers.into_iter().map(|h| (h.kind(), h)).collect();
        Self {
            store,
            owner: format!("worker-{}", crate::new_id()),
            handlers: Arc::new(handlers),
            lease,
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims and runs at most one due job.
    pub async fn step(&self) -> StoreResult<Step> {
        let kinds: Vec<&str> = self.handlers.keys().copied().collect();
        let now = Ts::now();
        let Some(job) = crate::metrics::timed(
            "claim_next_job",
            self.store
                .claim_next_job(&kinds, &self.owner, now, now.plus(self.lease)),
        )
        .await?
        else {
            return Ok(Step::Idle);
        };
        let Some(handler) = self.handlers.get(job.kind.as_str()).cloned() else {
            self.store
                .fail_job(&job.fence(), "no handler for this job kind", Ts::now())
                .await?;
            return Ok(Step::Failed(job.id));
        };
        let span =
            tracing::info_span!("job", id = %job.id, kind = %job.kind, attempt = job.attempts);
        let handler_kind = handler.kind();
        let result = self
            .run_with_renewal(handler, &job)
            .instrument(span.clone())
            .await;
        let now = Ts::now();
        let id = job.id;
        let fence = job.fence();
        let result = match result {
            Some(result) => result,
            None => {
                span.in_scope(|| {
                    tracing::warn!("job lease was lost to another worker; its run was stopped")
                });
                crate::metrics::metrics().job_finished(handler_kind, "lease_lost");
                return Ok(Step::LeaseLost(id));
            }
        };
        // What the run means for the job, and whether this worker still held it to record that.
        let (step, recorded) = match &result {
            Ok(Ran::Done) => (
                Step::Completed(id),
                self.store.complete_job(&fence, now).await?,
            ),
            Ok(Ran::Finished) => (Step::Completed(id), true),
            Ok(Ran::Continue) => (
                Step::Continued(id),
                self.store.continue_job(&fence, now).await?,
            ),
            Err(JobError::Retry(msg)) if job.attempts < job.max_attempts => {
                let run_at = now.plus(backoff(job.attempts));
                (
                    Step::Rescheduled(id),
                    self.store.reschedule_job(&fence, run_at, msg, now).await?,
                )
            }
            Err(JobError::RetryAfter(delay, msg)) if job.attempts < job.max_attempts => (
                Step::Rescheduled(id),
                self.store
                    .reschedule_job(&fence, now.plus(*delay), msg, now)
                    .await?,
            ),
            Err(err) => (
                Step::Failed(id),
                self.store.fail_job(&fence, &err.to_string(), now).await?,
            ),
        };
        span.in_scope(|| match &result {
            Ok(Ran::Done | Ran::Finished) => tracing::debug!(recorded, "job finished"),
            Ok(Ran::Continue) => tracing::debug!(recorded, "job step finished"),
            // The handler chose its own schedule and logs what deserves a warning.
            Err(err @ JobError::RetryAfter(..)) => {
                tracing::debug!(recorded, error = %err, "job will run again later")
            }
            Err(err) => tracing::warn!(recorded, error = %err, "job did not succeed"),
        });
        if !recorded {
            span.in_scope(|| {
                tracing::warn!("job lease was lost to another worker; its result was dropped")
            });
        }
        let outcome = match (&step, recorded) {
            (_, false) => "lease_lost",
            (Step::Completed(_), _) => "completed",
            (Step::Rescheduled(_), _) => "rescheduled",
            _ => "failed",
        };
        crate::metrics::metrics().job_finished(handler_kind, outcome);
        Ok(if recorded { step } else { Step::LeaseLost(id) })
    }

    /// Runs the handler while a side task keeps the lease fresh. The renewer that finds the lease lost
    /// (another worker claimed the job: this node was paused or cut off past its lease) stops the handler
    /// at its next await, and the run ends as `None`: nothing of it is recorded. Whatever the handler
    /// writes before it is stopped is fenced by the store on the claim it ran under.
    async fn run_with_renewal(
        &self,
        handler: Arc<dyn JobHandler>,
        job: &Job,
    ) -> Option<Result<Ran, JobError>> {
        let store = self.store.clone();
        let lease = self.lease;
        let fence = job.fence();
        let lost = CancellationToken::new();
        let lease_lost = lost.clone();
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let now = Ts::now();
                match store.renew_job_lease(&fence, now.plus(lease), now).await {
                    Ok(true) => {}
                    Ok(false) => {
                        lease_lost.cancel();
                        break;
                    }
                    Err(err) => {
                        tracing::warn!(job = %fence.job, error = %err, "could not renew job lease")
                    }
                }
            }
        });
        let _renewer = AbortOnDrop(renewer);
        // Its own task, so that a handler that panics fails the job instead of the worker.
        let job = job.clone();
        let mut run = tokio::spawn(async move { handler.run(&job).await });
        tokio::select! {
            joined = &mut run => Some(match joined {
                Ok(result) => result,
                Err(_) => Err(JobError::Retry("the job handler panicked".into())),
            }),
            _ = lost.cancelled() => {
                run.abort();
                None
            }
        }
    }

    /// Steps until `shutdown` fires, sleeping `poll` between empty looks.
    pub async fn run(self, poll: Duration, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let idle = match self.step().await {
                Ok(Step::Idle) => true,
                Ok(_) => false,
                Err(err) => {
                    tracing::warn!(error = %err, "job worker could not reach the store");
                    true
                }
            };
            if idle {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(poll) => {}
                }
            }
        }
    }
}

/// Stops the lease renewer however the run ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Exponential backoff with jitter: about 1 s, 2 s, 4 s … capped at one hour.
pub fn backoff(attempt: i32) -> Duration {
    let exp = attempt.clamp(1, 13) as u32 - 1;
    let base = Duration::from_secs(1u64 << exp).min(Duration::from_secs(3600));
    let jitter = rand::thread_rng().gen_range(0.0..0.25);
    base.mul_f64(1.0 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) >= Duration::from_secs(1) && backoff(1) < Duration::from_secs(2));
        assert!(backoff(3) >= Duration::from_secs(4));
        assert!(backoff(40) <= Duration::from_secs(4500));
    }
}
