//! Token imports on both backends (`ImportStore`): one active import per account, outcomes counted once
//! per payment method while the import runs, an end made once at the counters read, and the business
//! keys that name imported tokens.

use strongroom::store::{Action, ImportFailure, ImportOutcome, ImportRecord, StoreError, Ts};
use uuid::Uuid;

use super::{
    at, audited, job, outbox, store_with_account, store_with_webhook, t0, token, trail, with_audit,
};
use crate::support::on_both_backends;
use crate::support::Backend;

on_both_backends!(
    an_import_is_stored_with_its_job_and_one_runs_per_account,
    an_import_is_created_with_its_audit_row_and_a_refused_one_writes_none,
    an_audited_end_writes_its_row_only_when_the_import_ends,
    imports_are_listed_newest_first_and_counted,
    outcomes_are_counted_once_per_payment_method_while_the_import_runs,
    an_import_ends_once_at_the_counters_it_read,
    a_job_run_that_lost_its_lease_writes_nothing_to_its_import,
    business_keys_name_the_tokens_an_import_made,
);

fn import(account_id: Uuid, created_at: Ts) -> ImportRecord {
    ImportRecord {
        id: Uuid::new_v4(),
        account_id,
        provider: "stripe".into(),
        status: "preparing".into(),
        sealed_api_key: Some(vec![1; 40]),
        sealed_ingest_key: Some(vec![2; 40]),
        ingest_key_digest: Some(vec![3; 32]),
        position: None,
        attempts: 0,
        successes: 0,
        failures: 0,
        created_at,
        updated_at: created_at,
        finished_at: None,
    }
}

#[allow(clippy::type_complexity)]
fn columns(
    i: &ImportRecord,
) -> (
    (
        Uuid,
        Uuid,
        &str,
        &str,
        Option<&[u8]>,
        Option<&[u8]>,
        Option<&[u8]>,
    ),
    (Option<&str>, i64, i64, i64, Ts, Ts, Option<Ts>),
) {
    (
        (
            i.id,
            i.account_id,
            &i.provider,
            &i.status,
            i.sealed_api_key.as_deref(),
            i.sealed_ingest_key.as_deref(),
            i.ingest_key_digest.as_deref(),
        ),
        (
            i.position.as_deref(),
            i.attempts,
            i.successes,
            i.failures,
            i.created_at,
            i.updated_at,
            i.finished_at,
        ),
    )
}

fn ok(pm: &str) -> ImportOutcome {
    ImportOutcome {
        payment_method: pm.into(),
        failure: None,
    }
}

fn failed(pm: &str, reason: &str) -> ImportOutcome {
    ImportOutcome {
        payment_method: pm.into(),
        failure: Some(ImportFailure {
            reason: reason.into(),
            context: format!("{{\"payment_method\":\"{pm}\"}}"),
        }),
    }
}

async fn an_import_is_stored_with_its_job_and_one_runs_per_account(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let first = import(a.id, t0());
    let run = job("import.run", t0());
    store
        .insert_import(&first, &run, &super::noted(super::Action::ImportCreate))
        .await
        .unwrap();
    let read = store.get_import(first.id).await.unwrap().unwrap();
    assert_eq!(columns(&read), columns(&first));
    assert!(store.get_job(run.id).await.unwrap().is_some());
    assert!(store.get_import(Uuid::new_v4()).await.unwrap().is_none());

    let second = import(a.id, at(t0(), 1));
    let second_run = job("import.run", t0());
    let err = store
        .insert_import(
            &second,
            &second_run,
            &super::noted(super::Action::ImportCreate),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert!(store.get_import(second.id).await.unwrap().is_none());
    assert!(store.get_job(second_run.id).await.unwrap().is_none());

    assert!(store
        .end_import(first.id, None, "aborted", 0, None, &[], None, at(t0(), 2))
        .await
        .unwrap());
    store
        .insert_import(
            &second,
            &second_run,
            &super::noted(super::Action::ImportCreate),
        )
        .await
        .unwrap();
    store.close().await;
}

async fn imports_are_listed_newest_first_and_counted(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let record = import(a.id, at(t0(), i));
        store
            .insert_import(
                &record,
                &job("import.run", t0()),
                &super::noted(super::Action::ImportCreate),
            )
            .await
            .unwrap();
        store
            .end_import(
                record.id,
                None,
                "aborted",
                0,
                None,
                &[],
                None,
                at(t0(), i + 1),
            )
            .await
            .unwrap();
        ids.push(record.id);
    }
    let listed = |rows: Vec<ImportRecord>| rows.iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(
        listed(store.list_imports(a.id, 10, 0).await.unwrap()),
        [ids[2], ids[1], ids[0]]
    );
    assert_eq!(
        listed(store.list_imports(a.id, 1, 1).await.unwrap()),
        [ids[1]]
    );
    assert_eq!(store.count_imports(a.id).await.unwrap(), 3);
    assert_eq!(store.count_imports(Uuid::new_v4()).await.unwrap(), 0);
    store.close().await;
}

async fn outcomes_are_counted_once_per_payment_method_while_the_import_runs(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let record = import(a.id, t0());
    store
        .insert_import(
            &record,
            &job("import.run", t0()),
            &super::noted(super::Action::ImportCreate),
        )
        .await
        .unwrap();
    let batch = [ok("pm_1"), failed("pm_2", "card_expired"), ok("pm_1")];
    assert!(!store
        .record_import_outcomes(
            record.id,
            None,
            &batch,
            Some("{\"after\":\"pm_2\"}"),
            at(t0(), 1)
        )
        .await
        .unwrap());
    assert_eq!(store.count_import_failures(record.id).await.unwrap(), 0);

    assert!(store
        .mark_import_running(record.id, None, at(t0(), 2))
        .await
        .unwrap());
    assert!(!store
        .mark_import_running(record.id, None, at(t0(), 3))
        .await
        .unwrap());
    assert!(store
        .record_import_outcomes(
            record.id,
            None,
            &batch,
            Some("{\"after\":\"pm_2\"}"),
            at(t0(), 4)
        )
        .await
        .unwrap());
    let read = store.get_import(record.id).await.unwrap().unwrap();
    assert_eq!(
        (
            read.status.as_str(),
            read.attempts,
            read.successes,
            read.failures,
            read.position.as_deref(),
            read.updated_at
        ),
        (
            "running",
            2,
            1,
            1,
            Some("{\"after\":\"pm_2\"}"),
            at(t0(), 4)
        )
    );

    // A retried page counts only what it had not counted, and no position keeps the last one.
    let retry = [
        failed("pm_2", "card_expired"),
        failed("pm_3", "no_card"),
        ok("pm_4"),
    ];
    assert!(store
        .record_import_outcomes(record.id, None, &retry, None, at(t0(), 5))
        .await
        .unwrap());
    let read = store.get_import(record.id).await.unwrap().unwrap();
    assert_eq!(
        (
            read.attempts,
            read.successes,
            read.failures,
            read.position.as_deref()
        ),
        (4, 2, 2, Some("{\"after\":\"pm_2\"}"))
    );
    let failures = store.list_import_failures(record.id, 10, 0).await.unwrap();
    let expected: Vec<_> = [&batch[1], &retry[1]]
        .iter()
        .map(|o| o.failure.clone().unwrap())
        .collect();
    assert_eq!(failures, expected);
    assert_eq!(
        store.list_import_failures(record.id, 1, 1).await.unwrap(),
        expected[1..]
    );
    assert_eq!(store.count_import_failures(record.id).await.unwrap(), 2);
    let mut counted = store
        .counted_payment_methods(record.id, &["pm_1".into(), "pm_4".into(), "pm_9".into()])
        .await
        .unwrap();
    counted.sort();
    assert_eq!(counted, ["pm_1", "pm_4"]);
    store.close().await;
}

async fn an_import_ends_once_at_the_counters_it_read(backend: Backend) {
    let (_db, store, a, hook) = store_with_webhook(backend).await;
    let record = import(a.id, t0());
    store
        .insert_import(
            &record,
            &job("import.run", t0()),
            &super::noted(super::Action::ImportCreate),
        )
        .await
        .unwrap();
    assert!(!store
        .end_import(record.id, None, "finished", 0, None, &[], None, at(t0(), 1))
        .await
        .unwrap());
    store
        .mark_import_running(record.id, None, at(t0(), 2))
        .await
        .unwrap();
    store
        .record_import_outcomes(record.id, None, &[ok("pm_1")], None, at(t0(), 3))
        .await
        .unwrap();

    let stale = outbox(&hook, record.id, at(t0(), 4));
    assert!(!store
        .end_import(
            record.id,
            None,
            "finished",
            0,
            None,
            std::slice::from_ref(&stale),
            None,
            at(t0(), 4)
        )
        .await
        .unwrap());
    assert!(store
        .get_webhook_delivery(stale.id)
        .await
        .unwrap()
        .is_none());

    let why = ImportFailure {
        reason: "provider_unavailable".into(),
        context: "{}".into(),
    };
    let ended = outbox(&hook, record.id, at(t0(), 5));
    assert!(store
        .end_import(
            record.id,
            None,
            "finished",
            1,
            Some(&why),
            std::slice::from_ref(&ended),
            None,
            at(t0(), 5)
        )
        .await
        .unwrap());
    let read = store.get_import(record.id).await.unwrap().unwrap();
    assert_eq!(
        (
            read.status.as_str(),
            read.sealed_api_key,
            read.sealed_ingest_key,
            read.ingest_key_digest,
            read.finished_at,
            read.updated_at,
        ),
        ("finished", None, None, None, Some(at(t0(), 5)), at(t0(), 5))
    );
    assert_eq!(
        store.list_import_failures(record.id, 10, 0).await.unwrap(),
        [why]
    );
    assert!(store
        .get_webhook_delivery(ended.id)
        .await
        .unwrap()
        .is_some());
    assert!(!store
        .end_import(record.id, None, "aborted", 1, None, &[], None, at(t0(), 6))
        .await
        .unwrap());
    assert!(!store
        .record_import_outcomes(record.id, None, &[ok("pm_2")], None, at(t0(), 7))
        .await
        .unwrap());
    store.close().await;
}

async fn business_keys_name_the_tokens_an_import_made(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let imported = |key: &str, provider: &str| {
        let mut t = token(a.id, t0());
        t.business_key = Some(key.into());
        t.import_provider = Some(provider.into());
        with_audit(t)
    };
    let batch = vec![
        imported("pm_1", "stripe"),
        imported("pm_2", "stripe"),
        imported("pm_3", "other"),
    ];
    store.insert_tokens(&batch, &[]).await.unwrap();
    let mut found = store
        .existing_business_keys(
            a.id,
            "stripe",
            &["pm_2".into(), "pm_1".into(), "pm_3".into(), "pm_9".into()],
        )
        .await
        .unwrap();
    found.sort();
    assert_eq!(found, ["pm_1", "pm_2"]);
    assert!(store
        .existing_business_keys(Uuid::new_v4(), "stripe", &["pm_1".into()])
        .await
        .unwrap()
        .is_empty());
    let read = store
        .get_token_by_business_key(a.id, "stripe", "pm_2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.id, batch[1].0.id);
    assert!(store
        .get_token_by_business_key(a.id, "stripe", "pm_3")
        .await
        .unwrap()
        .is_none());
    let err = store
        .insert_tokens(&[imported("pm_1", "stripe")], &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    store.close().await;
}

async fn an_import_is_created_with_its_audit_row_and_a_refused_one_writes_none(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let first = import(a.id, t0());
    store
        .insert_import(
            &first,
            &job("import.run", t0()),
            &audited(a.id, Action::ImportCreate, first.id),
        )
        .await
        .unwrap();
    let created = [(Action::ImportCreate, Some(first.id.to_string()))];
    assert_eq!(trail(&store, a.id).await, created);

    // A second active import is refused by `token_imports_one_active`, and its audit row with it.
    let second = import(a.id, at(t0(), 1));
    let err = store
        .insert_import(
            &second,
            &job("import.run", t0()),
            &audited(a.id, Action::ImportCreate, second.id),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert_eq!(trail(&store, a.id).await, created);
    store.close().await;
}

async fn an_audited_end_writes_its_row_only_when_the_import_ends(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let record = import(a.id, t0());
    store
        .insert_import(
            &record,
            &job("import.run", t0()),
            &super::noted(Action::ImportCreate),
        )
        .await
        .unwrap();
    let abort = audited(a.id, Action::ImportAbort, record.id);
    // Refused: the counters read (1) are not where the import stands (0).
    assert!(!store
        .end_import(
            record.id,
            None,
            "aborted",
            1,
            None,
            &[],
            Some(&abort),
            at(t0(), 1)
        )
        .await
        .unwrap());
    assert!(trail(&store, a.id).await.is_empty());

    assert!(store
        .end_import(
            record.id,
            None,
            "aborted",
            0,
            None,
            &[],
            Some(&abort),
            at(t0(), 2)
        )
        .await
        .unwrap());
    let aborted = [(Action::ImportAbort, Some(record.id.to_string()))];
    assert_eq!(trail(&store, a.id).await, aborted);

    // Refused: it ended already.
    assert!(!store
        .end_import(
            record.id,
            None,
            "aborted",
            0,
            None,
            &[],
            Some(&abort),
            at(t0(), 3)
        )
        .await
        .unwrap());
    assert_eq!(trail(&store, a.id).await, aborted);
    store.close().await;
}

/// Issue 13: a node paused past its lease resumes after another took the import's job over; every write
/// it then makes under its old claim (outcomes, position, end, the job's finish) is refused.
async fn a_job_run_that_lost_its_lease_writes_nothing_to_its_import(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let record = import(a.id, t0());
    let run_job = job("import.run", t0());
    store
        .insert_import(
            &record,
            &run_job,
            &super::noted(super::Action::ImportCreate),
        )
        .await
        .unwrap();
    let now = at(t0(), 100);
    let paused = store
        .claim_next_job(&["import.run"], "node-a", now, at(now, 10))
        .await
        .unwrap()
        .unwrap();
    let old = paused.fence();
    assert!(store
        .mark_import_running(record.id, Some(&old), at(now, 1))
        .await
        .unwrap());
    assert!(store
        .record_import_outcomes(
            record.id,
            Some(&old),
            &[ok("pm_1")],
            Some("{\"p\":1}"),
            at(now, 2)
        )
        .await
        .unwrap());

    // Node A's lease runs out; node B claims the job.
    let taken = store
        .claim_next_job(&["import.run"], "node-b", at(now, 11), at(now, 40))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((taken.id, taken.lease_generation), (run_job.id, 2));
    let new = taken.fence();

    // Node A resumes: nothing it writes lands.
    assert!(!store
        .record_import_outcomes(
            record.id,
            Some(&old),
            &[failed("pm_2", "source_error")],
            Some("{\"p\":2}"),
            at(now, 12)
        )
        .await
        .unwrap());
    assert!(!store
        .end_import(
            record.id,
            Some(&old),
            "finished",
            1,
            None,
            &[],
            None,
            at(now, 12)
        )
        .await
        .unwrap());
    assert!(!store.complete_job(&old, at(now, 12)).await.unwrap());
    let read = store.get_import(record.id).await.unwrap().unwrap();
    assert_eq!(
        (
            read.status.as_str(),
            read.attempts,
            read.successes,
            read.failures,
            read.position.as_deref()
        ),
        ("running", 1, 1, 0, Some("{\"p\":1}"))
    );
    assert_eq!(store.count_import_failures(record.id).await.unwrap(), 0);
    assert!(store
        .counted_payment_methods(record.id, &["pm_2".into()])
        .await
        .unwrap()
        .is_empty());

    // Node B, holding the job, carries on and ends it.
    assert!(store
        .record_import_outcomes(
            record.id,
            Some(&new),
            &[ok("pm_2")],
            Some("{\"p\":2}"),
            at(now, 13)
        )
        .await
        .unwrap());
    assert!(store
        .end_import(
            record.id,
            Some(&new),
            "finished",
            2,
            None,
            &[],
            None,
            at(now, 14)
        )
        .await
        .unwrap());
    assert!(store.complete_job(&new, at(now, 15)).await.unwrap());
    let read = store.get_import(record.id).await.unwrap().unwrap();
    assert_eq!(
        (
            read.status.as_str(),
            read.attempts,
            read.successes,
            read.failures
        ),
        ("finished", 2, 2, 0)
    );
    store.close().await;
}
