//! The durable job table: leased claiming, take-over of expired leases, and finished jobs staying finished.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use strongroom::jobs::{enqueue, JobError, JobHandler, Ran, Step, Worker};
use strongroom::store::{Job, JobStatus, Ts};

use crate::support::{held, on_both_backends, Backend, TestDb};

on_both_backends!(
    two_workers_never_hold_the_same_job,
    an_expired_lease_is_taken_over_and_the_old_holder_cannot_finish_it,
    a_finished_job_is_never_run_again,
    a_retryable_failure_is_rescheduled_until_its_attempts_run_out,
    parallel_workers_run_every_job_exactly_once,
    a_job_run_in_steps_is_queued_again_without_using_its_attempts,
    a_pool_claims_only_its_own_kinds,
);

/// Counts how often each job ran; fails the jobs whose payload says so.
#[derive(Default)]
struct Recorder {
    runs: Mutex<HashMap<uuid::Uuid, u32>>,
}

#[async_trait]
impl JobHandler for Recorder {
    fn kind(&self) -> &'static str {
        "test.record"
    }
    async fn run(&self, job: &Job) -> Result<Ran, JobError> {
        let runs = {
            let mut runs = self.runs.lock().unwrap();
            let count = runs.entry(job.id).or_default();
            *count += 1;
            *count
        };
        tokio::time::sleep(Duration::from_millis(2)).await;
        match job.payload.as_str() {
            "\"retry\"" => Err(JobError::Retry("asked to retry".into())),
            // A long job in three steps.
            "\"steps\"" if runs < 3 => Ok(Ran::Continue),
            _ => Ok(Ran::Done),
        }
    }
}

async fn two_workers_never_hold_the_same_job(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let id = enqueue(&store, "test.record", &"one", 3).await.unwrap();
    let now = Ts::now();
    let lease = now.plus(Duration::from_secs(30));
    let a = store
        .claim_next_job(&["test.record"], "worker-a", now, lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.id, a.status, a.attempts), (id, JobStatus::Running, 1));
    assert!(store
        .claim_next_job(&["test.record"], "worker-b", Ts::now(), lease)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .claim_next_job(&["other.kind"], "worker-b", Ts::now(), lease)
        .await
        .unwrap()
        .is_none());
    store.close().await;
}

async fn an_expired_lease_is_taken_over_and_the_old_holder_cannot_finish_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let id = enqueue(&store, "test.record", &"one", 3).await.unwrap();
    let now = Ts::now();
    store
        .claim_next_job(
            &["test.record"],
            "worker-a",
            now,
            now.plus(Duration::from_millis(20)),
        )
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;

    let now = Ts::now();
    let taken = store
        .claim_next_job(
            &["test.record"],
            "worker-b",
            now,
            now.plus(Duration::from_secs(30)),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (taken.id, taken.lease_owner.as_deref(), taken.attempts),
        (id, Some("worker-b"), 2)
    );
    assert!(!store
        .renew_job_lease(
            &held(&store, id, "worker-a").await,
            now.plus(Duration::from_secs(30)),
            now
        )
        .await
        .unwrap());
    assert!(!store
        .complete_job(&held(&store, id, "worker-a").await, Ts::now())
        .await
        .unwrap());
    assert!(store
        .complete_job(&held(&store, id, "worker-b").await, Ts::now())
        .await
        .unwrap());
    assert_eq!(
        store.get_job(id).await.unwrap().unwrap().status,
        JobStatus::Done
    );
    store.close().await;
}

async fn a_finished_job_is_never_run_again(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let recorder = Arc::new(Recorder::default());
    let worker = Worker::new(
        store.clone(),
        vec![recorder.clone()],
        Duration::from_millis(50),
    );
    let id = enqueue(&store, "test.record", &"once", 3).await.unwrap();
    assert_eq!(worker.step().await.unwrap(), Step::Completed(id));
    tokio::time::sleep(Duration::from_millis(100)).await; // well past the old lease
    assert_eq!(worker.step().await.unwrap(), Step::Idle);
    let other = Worker::new(
        store.clone(),
        vec![recorder.clone()],
        Duration::from_millis(50),
    );
    assert_eq!(other.step().await.unwrap(), Step::Idle);
    assert_eq!(recorder.runs.lock().unwrap().get(&id), Some(&1));
    assert_eq!(
        store
            .purge_finished_jobs(Ts::now().minus(Duration::from_secs(3600)))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .purge_finished_jobs(Ts::now().plus(Duration::from_secs(1)))
            .await
            .unwrap(),
        1
    );
    assert!(store.get_job(id).await.unwrap().is_none());
    store.close().await;
}

async fn a_retryable_failure_is_rescheduled_until_its_attempts_run_out(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let worker = Worker::new(
        store.clone(),
        vec![Arc::new(Recorder::default())],
        Duration::from_secs(30),
    );
    let id = enqueue(&store, "test.record", &"retry", 2).await.unwrap();
    assert_eq!(worker.step().await.unwrap(), Step::Rescheduled(id));
    let job = store.get_job(id).await.unwrap().unwrap();
    assert_eq!(
        (job.status, job.attempts, job.last_error.as_deref()),
        (JobStatus::Queued, 1, Some("asked to retry"))
    );
    assert!(
        job.run_at > Ts::now(),
        "backoff puts the retry in the future"
    );
    assert_eq!(worker.step().await.unwrap(), Step::Idle, "not due yet");

    // Make it due now and let the last attempt fail for good.
    let now = Ts::now();
    let claimed = store
        .claim_next_job(
            &["test.record"],
            "impatient",
            job.run_at,
            job.run_at.plus(Duration::from_secs(1)),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .reschedule_job(
            &held(&store, claimed.id, "impatient").await,
            now,
            "made due",
            now
        )
        .await
        .unwrap());
    assert_eq!(worker.step().await.unwrap(), Step::Failed(id));
    assert_eq!(
        store.get_job(id).await.unwrap().unwrap().status,
        JobStatus::Failed
    );
    store.close().await;
}

async fn parallel_workers_run_every_job_exactly_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let recorder = Arc::new(Recorder::default());
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(enqueue(&store, "test.record", &n, 3).await.unwrap());
    }
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let worker = Worker::new(
            store.clone(),
            vec![recorder.clone()],
            Duration::from_secs(30),
        );
        tasks.push(tokio::spawn(async move {
            while worker.step().await.unwrap() != Step::Idle {}
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let runs = recorder.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), ids.len());
    assert!(ids.iter().all(|id| runs.get(id) == Some(&1)), "{runs:?}");
    store.close().await;
}

async fn a_job_run_in_steps_is_queued_again_without_using_its_attempts(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let recorder = Arc::new(Recorder::default());
    let worker = Worker::new(
        store.clone(),
        vec![recorder.clone()],
        Duration::from_secs(30),
    );
    // One attempt only: were a step counted as one, the second step could never be claimed.
    let id = enqueue(&store, "test.record", &"steps", 1).await.unwrap();
    for _ in 0..2 {
        assert_eq!(worker.step().await.unwrap(), Step::Continued(id));
        let job = store.get_job(id).await.unwrap().unwrap();
        assert_eq!(
            (job.status, job.attempts, job.lease_owner),
            (JobStatus::Queued, 0, None)
        );
    }
    assert_eq!(worker.step().await.unwrap(), Step::Completed(id));
    assert_eq!(worker.step().await.unwrap(), Step::Idle);
    assert_eq!(recorder.runs.lock().unwrap().get(&id), Some(&3));
    store.close().await;
}

/// A second handler kind, so that two pools can be told apart.
struct Other;

#[async_trait]
impl JobHandler for Other {
    fn kind(&self) -> &'static str {
        "test.other"
    }
    async fn run(&self, _job: &Job) -> Result<Ran, JobError> {
        Ok(Ran::Done)
    }
}

async fn a_pool_claims_only_its_own_kinds(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let recorder = Arc::new(Recorder::default());
    let records = Worker::new(
        store.clone(),
        vec![recorder.clone()],
        Duration::from_secs(30),
    );
    let others = Worker::new(
        store.clone(),
        vec![Arc::new(Other)],
        Duration::from_secs(30),
    );
    // A backlog of one kind queued first, then one job of the other.
    let mut backlog = Vec::new();
    for _ in 0..5 {
        backlog.push(enqueue(&store, "test.record", &"one", 3).await.unwrap());
    }
    let other = enqueue(&store, "test.other", &"one", 3).await.unwrap();
    assert_eq!(others.step().await.unwrap(), Step::Completed(other));
    assert_eq!(others.step().await.unwrap(), Step::Idle);
    for id in &backlog {
        assert_eq!(
            store.get_job(*id).await.unwrap().unwrap().status,
            JobStatus::Queued
        );
    }
    for _ in 0..5 {
        assert!(matches!(records.step().await.unwrap(), Step::Completed(_)));
    }
    assert_eq!(records.step().await.unwrap(), Step::Idle);
    store.close().await;
}
