//! The durable job table on both backends: claiming in order, leases held and renewed only by their
//! owner, taken over once expired, and finished jobs purged.

use strongroom::store::{JobStatus, Ts};

use super::{at, job, same, t0};
use crate::support::{held, on_both_backends};
use crate::support::{Backend, TestDb};

on_both_backends!(
    a_job_is_enqueued_queued_and_read_back_exactly,
    the_due_job_of_a_listed_kind_is_claimed_once_in_run_order,
    a_lease_is_renewed_and_completed_only_by_its_owner,
    a_rescheduled_job_runs_again_at_its_time_and_a_failed_one_never,
    an_expired_lease_is_taken_over_and_the_old_owner_is_fenced_out,
    every_claim_is_a_new_generation_and_an_older_one_is_fenced_out_even_for_its_owner,
    jobs_that_ended_are_purged_and_others_kept,
    due_jobs_of_a_kind_are_claimed_together_and_ended_together_only_under_every_claim,
);

async fn a_job_is_enqueued_queued_and_read_back_exactly(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let new = job("import.run", t0());
    let before = Ts::now();
    store.enqueue_job(&new).await.unwrap();
    let read = store.get_job(new.id).await.unwrap().unwrap();
    assert_eq!(
        (
            read.id,
            read.kind.as_str(),
            read.payload.as_str(),
            read.status,
            read.attempts,
            read.max_attempts,
            read.run_at,
        ),
        (
            new.id,
            "import.run",
            new.payload.as_str(),
            JobStatus::Queued,
            0,
            5,
            new.run_at
        )
    );
    assert_eq!(
        (read.lease_owner, read.lease_expires_at, read.last_error),
        (None, None, None)
    );
    assert_eq!(read.created_at, read.updated_at);
    assert!(read.created_at >= before && read.created_at <= Ts::now());
    assert!(store.get_job(uuid::Uuid::new_v4()).await.unwrap().is_none());
    store.close().await;
}

async fn the_due_job_of_a_listed_kind_is_claimed_once_in_run_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let now = at(t0(), 100);
    let later = job("a", at(t0(), 20));
    let first = job("a", at(t0(), 10));
    let other_kind = job("b", at(t0(), 5));
    let not_due = job("a", at(t0(), 200));
    for j in [&later, &first, &other_kind, &not_due] {
        store.enqueue_job(j).await.unwrap();
    }
    assert!(store
        .claim_next_job(&[], "w1", now, at(now, 30))
        .await
        .unwrap()
        .is_none());

    let claimed = store
        .claim_next_job(&["a"], "w1", now, at(now, 30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            claimed.id,
            claimed.status,
            claimed.attempts,
            claimed.lease_owner.as_deref(),
            claimed.lease_expires_at,
            claimed.updated_at,
        ),
        (
            first.id,
            JobStatus::Running,
            1,
            Some("w1"),
            Some(at(now, 30)),
            now
        )
    );
    same(&claimed, &store.get_job(first.id).await.unwrap().unwrap());
    let second = store
        .claim_next_job(&["a"], "w2", now, at(now, 30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.id, later.id);
    assert!(store
        .claim_next_job(&["a"], "w3", now, at(now, 30))
        .await
        .unwrap()
        .is_none());
    let b = store
        .claim_next_job(&["x", "b"], "w3", now, at(now, 30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.id, other_kind.id);
    store.close().await;
}

async fn a_lease_is_renewed_and_completed_only_by_its_owner(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let now = at(t0(), 100);
    let j = job("a", t0());
    store.enqueue_job(&j).await.unwrap();
    store
        .claim_next_job(&["a"], "w1", now, at(now, 30))
        .await
        .unwrap()
        .unwrap();

    assert!(!store
        .renew_job_lease(&held(&store, j.id, "w2").await, at(now, 60), at(now, 1))
        .await
        .unwrap());
    assert!(store
        .renew_job_lease(&held(&store, j.id, "w1").await, at(now, 60), at(now, 1))
        .await
        .unwrap());
    let renewed = store.get_job(j.id).await.unwrap().unwrap();
    assert_eq!(
        (renewed.lease_expires_at, renewed.updated_at),
        (Some(at(now, 60)), at(now, 1))
    );

    assert!(!store
        .complete_job(&held(&store, j.id, "w2").await, at(now, 2))
        .await
        .unwrap());
    assert!(store
        .complete_job(&held(&store, j.id, "w1").await, at(now, 2))
        .await
        .unwrap());
    let done = store.get_job(j.id).await.unwrap().unwrap();
    assert_eq!(
        (
            done.status,
            done.lease_owner,
            done.lease_expires_at,
            done.updated_at,
            done.attempts
        ),
        (JobStatus::Done, None, None, at(now, 2), 1)
    );
    assert!(!store
        .complete_job(&held(&store, j.id, "w1").await, at(now, 3))
        .await
        .unwrap());
    assert!(!store
        .renew_job_lease(&held(&store, j.id, "w1").await, at(now, 90), at(now, 3))
        .await
        .unwrap());
    store.close().await;
}

async fn a_rescheduled_job_runs_again_at_its_time_and_a_failed_one_never(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let now = at(t0(), 100);
    let j = job("a", t0());
    store.enqueue_job(&j).await.unwrap();
    store
        .claim_next_job(&["a"], "w1", now, at(now, 30))
        .await
        .unwrap()
        .unwrap();
    assert!(!store
        .reschedule_job(
            &held(&store, j.id, "w2").await,
            at(now, 50),
            "not mine",
            at(now, 1)
        )
        .await
        .unwrap());
    assert!(store
        .reschedule_job(
            &held(&store, j.id, "w1").await,
            at(now, 50),
            "HTTP 503",
            at(now, 1)
        )
        .await
        .unwrap());
    let queued = store.get_job(j.id).await.unwrap().unwrap();
    assert_eq!(
        (
            queued.status,
            queued.run_at,
            queued.last_error.as_deref(),
            queued.lease_owner,
            queued.lease_expires_at,
            queued.updated_at,
        ),
        (
            JobStatus::Queued,
            at(now, 50),
            Some("HTTP 503"),
            None,
            None,
            at(now, 1)
        )
    );
    assert!(store
        .claim_next_job(&["a"], "w1", at(now, 49), at(now, 80))
        .await
        .unwrap()
        .is_none());
    let again = store
        .claim_next_job(&["a"], "w2", at(now, 50), at(now, 80))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id, again.attempts), (j.id, 2));

    assert!(!store
        .fail_job(&held(&store, j.id, "w1").await, "not mine", at(now, 51))
        .await
        .unwrap());
    assert!(store
        .fail_job(
            &held(&store, j.id, "w2").await,
            "card declined",
            at(now, 51)
        )
        .await
        .unwrap());
    let failed = store.get_job(j.id).await.unwrap().unwrap();
    assert_eq!(
        (
            failed.status,
            failed.last_error.as_deref(),
            failed.lease_owner,
            failed.updated_at
        ),
        (JobStatus::Failed, Some("card declined"), None, at(now, 51))
    );
    assert!(store
        .claim_next_job(&["a"], "w3", at(now, 999), at(now, 1_030))
        .await
        .unwrap()
        .is_none());
    store.close().await;
}

async fn an_expired_lease_is_taken_over_and_the_old_owner_is_fenced_out(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let now = at(t0(), 100);
    let j = job("a", t0());
    store.enqueue_job(&j).await.unwrap();
    store
        .claim_next_job(&["a"], "w1", now, at(now, 10))
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .claim_next_job(&["a"], "w2", at(now, 9), at(now, 40))
        .await
        .unwrap()
        .is_none());

    let stolen = store
        .claim_next_job(&["a"], "w2", at(now, 11), at(now, 40))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            stolen.id,
            stolen.lease_owner.as_deref(),
            stolen.attempts,
            stolen.lease_expires_at
        ),
        (j.id, Some("w2"), 2, Some(at(now, 40)))
    );
    assert!(!store
        .renew_job_lease(&held(&store, j.id, "w1").await, at(now, 50), at(now, 12))
        .await
        .unwrap());
    assert!(!store
        .complete_job(&held(&store, j.id, "w1").await, at(now, 12))
        .await
        .unwrap());
    assert!(!store
        .reschedule_job(
            &held(&store, j.id, "w1").await,
            at(now, 60),
            "late",
            at(now, 12)
        )
        .await
        .unwrap());
    assert!(!store
        .fail_job(&held(&store, j.id, "w1").await, "late", at(now, 12))
        .await
        .unwrap());
    assert!(store
        .complete_job(&held(&store, j.id, "w2").await, at(now, 13))
        .await
        .unwrap());
    store.close().await;
}

async fn jobs_that_ended_are_purged_and_others_kept(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let now = at(t0(), 100);
    let (done, failed, running, queued) = (
        job("a", at(t0(), 1)),
        job("a", at(t0(), 2)),
        job("a", at(t0(), 3)),
        job("a", at(now, 1_000)),
    );
    for j in [&done, &failed, &running, &queued] {
        store.enqueue_job(j).await.unwrap();
    }
    for owner in ["w1", "w2", "w3"] {
        store
            .claim_next_job(&["a"], owner, now, at(now, 30))
            .await
            .unwrap()
            .unwrap();
    }
    assert!(store
        .complete_job(&held(&store, done.id, "w1").await, at(now, 5))
        .await
        .unwrap());
    assert!(store
        .fail_job(&held(&store, failed.id, "w2").await, "gave up", at(now, 6))
        .await
        .unwrap());

    assert_eq!(store.purge_finished_jobs(at(now, 5)).await.unwrap(), 0);
    assert_eq!(store.purge_finished_jobs(at(now, 7)).await.unwrap(), 2);
    for (j, kept) in [
        (&done, false),
        (&failed, false),
        (&running, true),
        (&queued, true),
    ] {
        assert_eq!(store.get_job(j.id).await.unwrap().is_some(), kept);
    }
    assert_eq!(store.purge_finished_jobs(Ts::now()).await.unwrap(), 0);
    store.close().await;
}

async fn every_claim_is_a_new_generation_and_an_older_one_is_fenced_out_even_for_its_owner(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let now = at(t0(), 100);
    let j = job("a", t0());
    store.enqueue_job(&j).await.unwrap();
    assert_eq!(
        store.get_job(j.id).await.unwrap().unwrap().lease_generation,
        0
    );
    let first = store
        .claim_next_job(&["a"], "w1", now, at(now, 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.lease_generation, 1);
    // The same worker name claims the expired job again: a new run, a new fence.
    let second = store
        .claim_next_job(&["a"], "w1", at(now, 11), at(now, 40))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (second.lease_generation, second.lease_owner.as_deref()),
        (2, Some("w1"))
    );
    let old = first.fence();
    assert!(!store
        .renew_job_lease(&old, at(now, 50), at(now, 12))
        .await
        .unwrap());
    assert!(!store.complete_job(&old, at(now, 12)).await.unwrap());
    assert!(!store
        .reschedule_job(&old, at(now, 60), "late", at(now, 12))
        .await
        .unwrap());
    assert!(!store.fail_job(&old, "late", at(now, 12)).await.unwrap());
    let read = store.get_job(j.id).await.unwrap().unwrap();
    assert_eq!(
        (read.status, read.lease_expires_at, read.last_error),
        (JobStatus::Running, Some(at(now, 40)), None)
    );
    assert!(store
        .renew_job_lease(&second.fence(), at(now, 70), at(now, 13))
        .await
        .unwrap());
    assert!(store
        .complete_job(&second.fence(), at(now, 14))
        .await
        .unwrap());
    assert_eq!(
        store.get_job(j.id).await.unwrap().unwrap().status,
        JobStatus::Done
    );
    store.close().await;
}

/// A webhook delivery run takes the other due jobs of its kind in with its own (`claim_due_jobs`) and
/// ends them all with its outcomes in one commit, fenced on every claim.
async fn due_jobs_of_a_kind_are_claimed_together_and_ended_together_only_under_every_claim(
    backend: Backend,
) {
    use strongroom::store::DeliveryOutcomes;
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let now = at(t0(), 100);
    let due: Vec<_> = (0..4).map(|i| job("a", at(t0(), 10 + i))).collect();
    let other_kind = job("b", at(t0(), 5));
    let not_due = job("a", at(t0(), 200));
    for j in due.iter().chain([&other_kind, &not_due]) {
        store.enqueue_job(j).await.unwrap();
    }
    // One already running under another claim is not taken.
    let running = store
        .claim_next_job(&["a"], "w0", now, at(now, 30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(running.id, due[0].id);

    let taken = store
        .claim_due_jobs("a", "w1", now, at(now, 30), 2)
        .await
        .unwrap();
    assert_eq!(
        taken.iter().map(|j| j.id).collect::<Vec<_>>(),
        [due[1].id, due[2].id],
        "the oldest due, at most the limit"
    );
    for j in &taken {
        assert_eq!(
            (
                j.status,
                j.lease_owner.as_deref(),
                j.lease_expires_at,
                j.lease_generation,
                j.attempts
            ),
            (JobStatus::Running, Some("w1"), Some(at(now, 30)), 1, 1)
        );
    }
    let rest = store
        .claim_due_jobs("a", "w1", now, at(now, 30), 10)
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|j| j.id).collect::<Vec<_>>(), [due[3].id]);
    assert!(store
        .claim_due_jobs("a", "w1", now, at(now, 30), 10)
        .await
        .unwrap()
        .is_empty());

    // One stale fence among them: nothing ends.
    let mut fences: Vec<_> = taken.iter().chain(&rest).map(|j| j.fence()).collect();
    let mut stale = running.fence();
    stale.generation += 1;
    let with_stale: Vec<_> = fences.iter().cloned().chain([stale]).collect();
    let nothing = DeliveryOutcomes::default();
    assert!(!store
        .record_delivery_outcomes(&with_stale, &nothing, now)
        .await
        .unwrap());
    for j in taken.iter().chain(&rest).chain([&running]) {
        assert_eq!(
            store.get_job(j.id).await.unwrap().unwrap().status,
            JobStatus::Running
        );
    }
    // Under every claim they all end, in one commit.
    fences.push(running.fence());
    assert!(store
        .record_delivery_outcomes(&fences, &nothing, now)
        .await
        .unwrap());
    for j in taken.iter().chain(&rest).chain([&running]) {
        let ended = store.get_job(j.id).await.unwrap().unwrap();
        assert_eq!((ended.status, ended.lease_owner), (JobStatus::Done, None));
    }
    assert_eq!(
        store.get_job(other_kind.id).await.unwrap().unwrap().status,
        JobStatus::Queued
    );
    assert_eq!(
        store.get_job(not_due.id).await.unwrap().unwrap().status,
        JobStatus::Queued
    );
    // Ended: a second record under the same claims writes nothing.
    assert!(!store
        .record_delivery_outcomes(&fences, &nothing, now)
        .await
        .unwrap());
    store.close().await;
}
