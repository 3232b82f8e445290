//! Payments on both backends: stored with their job and day counts, changed only at the version read
//! (with their transactions, refunds and job, or not at all), counted per day and listed in windows.

use strongroom::store::{
    day_of, Action, AuditEvent, PaymentChange, PaymentFilter, PaymentListing, PaymentRecord,
    PaymentWrite, RefundRecord, TransactionRecord,
};
use uuid::Uuid;

use super::{
    account, at, audited, job, noted, outbox, payment, same, store_with_account, t0, trail, webhook,
};
use crate::support::on_both_backends;
use crate::support::Backend;

on_both_backends!(
    a_payment_is_stored_with_its_job_and_read_back_exactly,
    a_change_applies_only_at_the_version_it_read,
    a_refund_is_finished_only_from_processing,
    day_counts_follow_inserts_and_status_moves,
    a_seed_batch_is_written_with_its_audit_row_and_a_refused_one_writes_none,
    payments_are_listed_newest_first_within_a_window,
    a_batch_of_writes_commits_together_and_a_stale_change_in_it_writes_nothing,
    a_batch_with_a_bad_write_is_refused_whole,
    steps_of_many_payments_in_one_batch_each_apply_only_at_their_version,
    new_payments_and_plain_steps_in_one_batch_write_only_what_went_through,
    a_page_built_by_the_database_is_the_page_the_rust_mapping_builds,
);

const DAY: u64 = 86_400;

fn filter(account_id: Uuid) -> PaymentFilter {
    PaymentFilter {
        account_id,
        ..PaymentFilter::default()
    }
}

/// A change of `p` to `status` at version + 1, with nothing else.
fn change(p: &PaymentRecord, status: &str) -> PaymentChange {
    let mut next = p.clone();
    next.version = p.version + 1;
    next.status = status.into();
    next.updated_at = at(p.updated_at, 1);
    PaymentChange {
        payment: next,
        expected_version: p.version,
        previous_status: p.status.clone(),
        transaction: None,
        new_refund: None,
        finished_refund: None,
        job: None,
        outbox: Vec::new(),
        network_transaction_id: None,
    }
}

fn refund(p: &PaymentRecord, status: &str) -> RefundRecord {
    RefundRecord {
        id: Uuid::new_v4(),
        payment_id: p.id,
        account_id: p.account_id,
        created_at: at(p.created_at, 5),
        updated_at: at(p.created_at, 5),
        amount: 300,
        currency_code: p.currency_code.clone(),
        status: status.into(),
        reference: Some("refund-1".into()),
        failure_details: None,
    }
}

async fn a_payment_is_stored_with_its_job_and_read_back_exactly(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let mut p = payment(a.id, t0(), "processing", "EUR");
    p.capture_requested = Some(1_000);
    p.recurring_frequency = Some(30);
    p.recurring_expiry = Some("2030-12".into());
    p.initial_payment_id = Some(Uuid::new_v4());
    let recovery = job("payment.authorize", at(t0(), 60));
    store
        .insert_payment(&p, Some(&recovery), &[])
        .await
        .unwrap();
    same(&store.get_payment(a.id, p.id).await.unwrap().unwrap(), &p);
    assert!(store
        .get_payment(Uuid::new_v4(), p.id)
        .await
        .unwrap()
        .is_none());
    let stored_job = store.get_job(recovery.id).await.unwrap().unwrap();
    assert_eq!(
        (stored_job.kind.as_str(), stored_job.run_at),
        ("payment.authorize", recovery.run_at)
    );
    let plain = payment(a.id, t0(), "failed", "EUR");
    store.insert_payment(&plain, None, &[]).await.unwrap();
    same(
        &store.get_payment(a.id, plain.id).await.unwrap().unwrap(),
        &plain,
    );
    store.close().await;
}

async fn a_change_applies_only_at_the_version_it_read(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let p = payment(a.id, t0(), "processing", "EUR");
    store.insert_payment(&p, None, &[]).await.unwrap();
    let mut authorize = change(&p, "authorized");
    authorize.payment.amount_authorized = 1_000;
    authorize.payment.processor_reference = Some("psp-1".into());
    let transaction = TransactionRecord {
        id: Uuid::new_v4(),
        payment_id: p.id,
        created_at: at(t0(), 1),
        kind: "authorization".into(),
        status: "succeeded".into(),
        amount: 1_000,
        processor_reference: Some("psp-1".into()),
        message: None,
        processor: Some("sandbox".into()),
    };
    authorize.transaction = Some(transaction.clone());
    let capture = job("payment.capture", at(t0(), 2));
    authorize.job = Some(capture.clone());
    assert!(store.apply_payment_change(&authorize).await.unwrap());
    same(
        &store.get_payment(a.id, p.id).await.unwrap().unwrap(),
        &authorize.payment,
    );
    same(
        &store.list_transactions(p.id).await.unwrap(),
        &vec![transaction],
    );
    assert!(store.get_job(capture.id).await.unwrap().is_some());

    // A second change made from the same read loses, and writes none of its rows.
    let mut stale = change(&p, "failed");
    stale.transaction = Some(TransactionRecord {
        id: Uuid::new_v4(),
        ..authorize.transaction.clone().unwrap()
    });
    stale.new_refund = Some(refund(&p, "processing"));
    stale.job = Some(job("payment.capture", at(t0(), 3)));
    assert!(!store.apply_payment_change(&stale).await.unwrap());
    assert_eq!(
        store
            .get_payment(a.id, p.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
    assert_eq!(store.list_transactions(p.id).await.unwrap().len(), 1);
    assert!(store.list_refunds(p.id).await.unwrap().is_empty());
    assert!(store
        .get_job(stale.job.as_ref().unwrap().id)
        .await
        .unwrap()
        .is_none());
    store.close().await;
}

async fn a_refund_is_finished_only_from_processing(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let p = payment(a.id, t0(), "captured", "EUR");
    store.insert_payment(&p, None, &[]).await.unwrap();
    let mut ask = change(&p, "captured");
    ask.payment.amount_refund_reserved = 300;
    let r = refund(&p, "processing");
    ask.new_refund = Some(r.clone());
    assert!(store.apply_payment_change(&ask).await.unwrap());
    same(&store.get_refund(a.id, r.id).await.unwrap().unwrap(), &r);
    assert!(store
        .get_refund(Uuid::new_v4(), r.id)
        .await
        .unwrap()
        .is_none());

    let mut finish = change(&ask.payment, "refunded");
    finish.payment.amount_refund_reserved = 0;
    finish.payment.amount_refunded = 300;
    let done = RefundRecord {
        status: "completed".into(),
        updated_at: at(t0(), 9),
        ..r.clone()
    };
    finish.finished_refund = Some(done.clone());
    assert!(store.apply_payment_change(&finish).await.unwrap());
    same(
        &store.list_refunds(p.id).await.unwrap(),
        &vec![done.clone()],
    );

    // Finishing it again is refused, and the payment change that came with it is undone.
    let again = PaymentChange {
        finished_refund: Some(RefundRecord {
            status: "failed".into(),
            ..done.clone()
        }),
        ..change(&finish.payment, "captured")
    };
    assert!(!store.apply_payment_change(&again).await.unwrap());
    same(
        &store.get_payment(a.id, p.id).await.unwrap().unwrap(),
        &finish.payment,
    );
    same(&store.get_refund(a.id, r.id).await.unwrap().unwrap(), &done);
    store.close().await;
}

async fn day_counts_follow_inserts_and_status_moves(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let other = account("other");
    super::insert_account(&store, &other).await;
    let (day1, day2) = (t0(), at(t0(), DAY));
    let first = payment(a.id, day1, "authorized", "EUR");
    store.insert_payment(&first, None, &[]).await.unwrap();
    store
        .insert_payments(
            &[
                payment(a.id, day1, "failed", "USD"),
                payment(a.id, day2, "authorized", "EUR"),
                payment(a.id, day2, "authorized", "USD"),
                payment(a.id, day2, "failed", "EUR"),
                payment(other.id, day2, "failed", "EUR"),
            ],
            None,
        )
        .await
        .unwrap();
    let (d1, d2) = (day_of(day1), day_of(day2));
    assert_eq!(
        store.payment_day_counts(&filter(a.id)).await.unwrap(),
        [(d2, 3), (d1, 2)]
    );
    let authorized = PaymentFilter {
        statuses: vec!["authorized".into()],
        ..filter(a.id)
    };
    assert_eq!(
        store.payment_day_counts(&authorized).await.unwrap(),
        [(d2, 2), (d1, 1)]
    );
    let euros_on_day2 = PaymentFilter {
        currencies: vec!["EUR".into()],
        from: Some(day2),
        until: Some(at(day2, DAY)),
        ..filter(a.id)
    };
    assert_eq!(
        store.payment_day_counts(&euros_on_day2).await.unwrap(),
        [(d2, 2)]
    );
    let day1_only = PaymentFilter {
        until: Some(day2),
        ..filter(a.id)
    };
    assert_eq!(
        store.payment_day_counts(&day1_only).await.unwrap(),
        [(d1, 2)]
    );

    // A status move shifts the count between statuses, not the day's total.
    assert!(store
        .apply_payment_change(&change(&first, "captured"))
        .await
        .unwrap());
    assert_eq!(
        store.payment_day_counts(&authorized).await.unwrap(),
        [(d2, 2)]
    );
    let captured = PaymentFilter {
        statuses: vec!["captured".into(), "failed".into()],
        ..filter(a.id)
    };
    assert_eq!(
        store.payment_day_counts(&captured).await.unwrap(),
        [(d2, 1), (d1, 2)]
    );
    assert_eq!(
        store.payment_day_counts(&filter(a.id)).await.unwrap(),
        [(d2, 3), (d1, 2)]
    );
    store.close().await;
}

async fn payments_are_listed_newest_first_within_a_window(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let rows: Vec<_> = (0..6)
        .map(|i| {
            let status = if i % 2 == 0 { "authorized" } else { "failed" };
            payment(a.id, at(t0(), i * 10), status, "EUR")
        })
        .collect();
    let mut twin = payment(a.id, rows[5].created_at, "failed", "USD");
    twin.id = Uuid::from_u128(rows[5].id.as_u128().wrapping_add(1));
    store.insert_payments(&rows, None).await.unwrap();
    store.insert_payment(&twin, None, &[]).await.unwrap();
    let ids = |ps: Vec<PaymentListing>| ps.iter().map(|p| p.id).collect::<Vec<_>>();

    let all = store
        .list_payments_between(&filter(a.id), None, None, 10, 0)
        .await
        .unwrap();
    let (newest, tie) = if twin.id > rows[5].id {
        (twin.id, rows[5].id)
    } else {
        (rows[5].id, twin.id)
    };
    assert_eq!(
        ids(all),
        [newest, tie, rows[4].id, rows[3].id, rows[2].id, rows[1].id, rows[0].id]
    );
    let window = store
        .list_payments_between(&filter(a.id), Some(at(t0(), 10)), Some(at(t0(), 40)), 10, 0)
        .await
        .unwrap();
    assert_eq!(ids(window), [rows[3].id, rows[2].id, rows[1].id]);
    let page = store
        .list_payments_between(&filter(a.id), Some(at(t0(), 10)), Some(at(t0(), 40)), 1, 1)
        .await
        .unwrap();
    assert_eq!(ids(page), [rows[2].id]);
    let failed_usd = PaymentFilter {
        statuses: vec!["failed".into()],
        currencies: vec!["USD".into()],
        ..filter(a.id)
    };
    assert_eq!(
        ids(store
            .list_payments_between(&failed_usd, None, None, 10, 0)
            .await
            .unwrap()),
        [twin.id]
    );
    let authorized = PaymentFilter {
        statuses: vec!["authorized".into()],
        ..filter(a.id)
    };
    let listed = store
        .list_payments_between(&authorized, Some(at(t0(), 20)), None, 10, 0)
        .await
        .unwrap();
    assert_eq!(ids(listed), [rows[4].id, rows[2].id]);
    store.close().await;
}

async fn a_seed_batch_is_written_with_its_audit_row_and_a_refused_one_writes_none(
    backend: Backend,
) {
    let (_db, store, a) = store_with_account(backend).await;
    let seed = |n: usize| {
        AuditEvent::new(
            Some(a.id),
            "test",
            Action::PaymentsSeed,
            Some(format!("{n} payments")),
            "success",
        )
    };
    let rows = [
        payment(a.id, t0(), "authorized", "EUR"),
        payment(a.id, t0(), "failed", "USD"),
    ];
    store.insert_payments(&rows, Some(&seed(2))).await.unwrap();
    let seeded = [(Action::PaymentsSeed, Some("2 payments".to_owned()))];
    assert_eq!(trail(&store, a.id).await, seeded);
    for p in &rows {
        assert!(store.get_payment(a.id, p.id).await.unwrap().is_some());
    }

    // A batch holding a payment already stored is refused whole, with its audit row.
    let again = [payment(a.id, t0(), "authorized", "EUR"), rows[0].clone()];
    let err = store
        .insert_payments(&again, Some(&seed(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, strongroom::store::StoreError::Constraint(_)),
        "{err:?}"
    );
    assert_eq!(trail(&store, a.id).await, seeded);
    assert!(store
        .get_payment(a.id, again[0].id)
        .await
        .unwrap()
        .is_none());
    store.close().await;
}

async fn a_batch_of_writes_commits_together_and_a_stale_change_in_it_writes_nothing(
    backend: Backend,
) {
    let (_db, store, a) = store_with_account(backend).await;
    let first = payment(a.id, t0(), "processing", "EUR");
    // Written leased to the node that authorizes (as payment creation does), which retires it with the
    // outcome's commit through its claim.
    let recovery = strongroom::store::NewJob {
        lease: Some(strongroom::store::JobLease {
            owner: "node-a".into(),
            until: at(t0(), 60),
        }),
        ..job("payment.authorize", at(t0(), 0))
    };
    let claim = |job: uuid::Uuid, owner: &str| strongroom::store::Fence {
        job,
        owner: owner.into(),
        generation: 1,
    };
    store
        .insert_payment(&first, Some(&recovery), &[])
        .await
        .unwrap();
    let second = payment(a.id, t0(), "processing", "EUR");
    let second_recovery = job("payment.authorize", at(t0(), 60));
    let read_card = AuditEvent::new(
        Some(a.id),
        "key:test",
        Action::TokenReadCard,
        Some(second.token_id.to_string()),
        "success",
    );
    let captured = change(&first, "captured");
    let stale = change(&first, "failed");
    let writes = [
        PaymentWrite::Insert {
            payment: second.clone(),
            job: Some(second_recovery.clone()),
            outbox: Vec::new(),
            audit: Some(read_card),
        },
        PaymentWrite::Change {
            change: captured.clone(),
            retire_job: Some(claim(recovery.id, "node-a")),
        },
        PaymentWrite::Change {
            change: stale,
            retire_job: None,
        },
    ];
    assert_eq!(
        store.write_payments(&writes).await.unwrap(),
        [true, true, false]
    );
    same(
        &store.get_payment(a.id, first.id).await.unwrap().unwrap(),
        &captured.payment,
    );
    same(
        &store.get_payment(a.id, second.id).await.unwrap().unwrap(),
        &second,
    );
    // The saved authorization retired its recovery job; the new payment's stays.
    assert!(store.get_job(recovery.id).await.unwrap().is_none());
    assert!(store.get_job(second_recovery.id).await.unwrap().is_some());
    assert_eq!(
        trail(&store, a.id).await,
        [(Action::TokenReadCard, Some(second.token_id.to_string()))]
    );
    let d = day_of(t0());
    let counted = |status: &str| PaymentFilter {
        statuses: vec![status.into()],
        ..filter(a.id)
    };
    assert_eq!(
        store
            .payment_day_counts(&counted("captured"))
            .await
            .unwrap(),
        [(d, 1)]
    );
    assert_eq!(
        store
            .payment_day_counts(&counted("processing"))
            .await
            .unwrap(),
        [(d, 1)]
    );
    assert!(store
        .payment_day_counts(&counted("failed"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.payment_day_counts(&filter(a.id)).await.unwrap(),
        [(d, 2)]
    );
    // A claim that is not the job's own retires nothing: the job stays for the worker that holds it.
    let third = payment(a.id, t0(), "processing", "EUR");
    let third_recovery = strongroom::store::NewJob {
        lease: Some(strongroom::store::JobLease {
            owner: "node-b".into(),
            until: at(t0(), 60),
        }),
        ..job("payment.authorize", at(t0(), 0))
    };
    store
        .insert_payment(&third, Some(&third_recovery), &[])
        .await
        .unwrap();
    let third_failed = change(&third, "failed");
    assert_eq!(
        store
            .write_payments(&[PaymentWrite::Change {
                change: third_failed,
                retire_job: Some(claim(third_recovery.id, "node-a")),
            }])
            .await
            .unwrap(),
        [true]
    );
    let kept = store.get_job(third_recovery.id).await.unwrap().unwrap();
    assert_eq!(kept.lease_owner.as_deref(), Some("node-b"));
    assert_eq!(kept.lease_generation, 1);
    store.close().await;
}

async fn a_batch_with_a_bad_write_is_refused_whole(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let stored = payment(a.id, t0(), "processing", "EUR");
    store.insert_payment(&stored, None, &[]).await.unwrap();
    let fresh = payment(a.id, t0(), "processing", "EUR");
    let insert = |p: &PaymentRecord| PaymentWrite::Insert {
        payment: p.clone(),
        job: None,
        outbox: Vec::new(),
        audit: None,
    };
    // The writer then writes each on its own, so that only the bad one fails.
    assert!(store
        .write_payments(&[insert(&fresh), insert(&stored)])
        .await
        .is_err());
    assert!(store.get_payment(a.id, fresh.id).await.unwrap().is_none());
    assert_eq!(
        store.payment_day_counts(&filter(a.id)).await.unwrap(),
        [(day_of(t0()), 1)]
    );
    store.close().await;
}

/// The steps of a batch that each touch a payment no other step touches are written together: each
/// still moves only from the version it read, with every field, its transaction, its job and the job it
/// retires, while a stale one among them writes nothing.
async fn steps_of_many_payments_in_one_batch_each_apply_only_at_their_version(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let claim = |job: uuid::Uuid| strongroom::store::Fence {
        job,
        owner: "node-a".into(),
        generation: 1,
    };
    let mut stored = Vec::new();
    for _ in 0..3 {
        let p = payment(a.id, t0(), "processing", "EUR");
        let recovery = strongroom::store::NewJob {
            lease: Some(strongroom::store::JobLease {
                owner: "node-a".into(),
                until: at(t0(), 60),
            }),
            ..job("payment.authorize", at(t0(), 0))
        };
        store
            .insert_payment(&p, Some(&recovery), &[])
            .await
            .unwrap();
        stored.push((p, recovery));
    }
    let step = |p: &PaymentRecord, status: &str, n: i64| {
        let mut c = change(p, status);
        c.payment.amount_authorized = 1000 + n;
        c.payment.amount_captured = 500 + n;
        c.payment.capture_requested = Some(500 + n);
        c.payment.processor_reference = Some(format!("ref-{n}"));
        c.payment.failure_details = (status == "failed").then(|| format!("[{n}]"));
        c.network_transaction_id = Some(format!("ntid-{n}"));
        c.transaction = Some(TransactionRecord {
            id: Uuid::new_v4(),
            payment_id: p.id,
            created_at: at(t0(), 2),
            kind: "authorization".into(),
            status: "succeeded".into(),
            amount: 1000 + n,
            processor_reference: Some(format!("ref-{n}")),
            message: None,
            processor: Some("sandbox".into()),
        });
        c.job = Some(job("payment.settle", at(t0(), 3600)));
        c
    };
    let captured = step(&stored[0].0, "captured", 0);
    let failed = step(&stored[1].0, "failed", 1);
    let mut stale = step(&stored[2].0, "captured", 2);
    stale.expected_version += 1;
    let writes = [
        PaymentWrite::Change {
            change: captured.clone(),
            retire_job: Some(claim(stored[0].1.id)),
        },
        PaymentWrite::Change {
            change: stale.clone(),
            retire_job: Some(claim(stored[2].1.id)),
        },
        PaymentWrite::Change {
            change: failed.clone(),
            retire_job: Some(claim(stored[1].1.id)),
        },
    ];
    assert_eq!(
        store.write_payments(&writes).await.unwrap(),
        [true, false, true]
    );
    for (made, n) in [(&captured, 0), (&failed, 1)] {
        let id = made.payment.id;
        same(
            &store.get_payment(a.id, id).await.unwrap().unwrap(),
            &made.payment,
        );
        assert_eq!(
            store.get_network_transaction_id(id).await.unwrap(),
            Some(format!("ntid-{n}"))
        );
        let transactions = store.list_transactions(id).await.unwrap();
        assert_eq!(transactions.len(), 1);
        assert_eq!(transactions[0].id, made.transaction.as_ref().unwrap().id);
        assert_eq!(transactions[0].amount, 1000 + n);
        let settle = made.job.as_ref().unwrap().id;
        assert!(store.get_job(settle).await.unwrap().is_some());
        assert!(store
            .get_job(stored[n as usize].1.id)
            .await
            .unwrap()
            .is_none());
    }
    // The stale step wrote nothing: not its payment row, transaction, job, nor the job it would retire.
    same(
        &store
            .get_payment(a.id, stored[2].0.id)
            .await
            .unwrap()
            .unwrap(),
        &stored[2].0,
    );
    assert_stale_step_wrote_nothing(&store, &stored[2], &stale).await;
    let d = day_of(t0());
    for (status, n) in [("captured", 1), ("failed", 1), ("processing", 1)] {
        let counted = PaymentFilter {
            statuses: vec![status.into()],
            ..filter(a.id)
        };
        assert_eq!(
            store.payment_day_counts(&counted).await.unwrap(),
            [(d, n)],
            "{status}"
        );
    }
    assert_eq!(
        store.payment_day_counts(&filter(a.id)).await.unwrap(),
        [(d, 3)]
    );
    store.close().await;
}

/// A batch such as the payment writer hands over under load: new payments (one with a leased recovery
/// job, a webhook row and an audit row, one of another day, status and currency) and plain steps of
/// other payments (one moving its status with webhook rows, one stale, one keeping its status), each
/// step with a transaction, a follow-up job and a job it retires. Everything of the new payments and of
/// the steps that went through is written, nothing of the stale one, and the day counts are exact.
async fn new_payments_and_plain_steps_in_one_batch_write_only_what_went_through(backend: Backend) {
    use strongroom::store::{Fence, JobLease, JobStatus, NewJob};

    let (_db, store, a) = store_with_account(backend).await;
    let hook = webhook(a.id, t0());
    store
        .insert_webhook(&hook, &noted(Action::WebhookAdd))
        .await
        .unwrap();
    let leased = |owner: &str| NewJob {
        lease: Some(JobLease {
            owner: owner.into(),
            until: at(t0(), 60),
        }),
        ..job("payment.authorize", at(t0(), 0))
    };
    let claim = |job: &NewJob| Fence {
        job: job.id,
        owner: "node-a".into(),
        generation: 1,
    };
    let mut stored = Vec::new();
    for _ in 0..3 {
        let p = payment(a.id, t0(), "processing", "EUR");
        let recovery = leased("node-a");
        store
            .insert_payment(&p, Some(&recovery), &[])
            .await
            .unwrap();
        stored.push((p, recovery));
    }
    let step = |p: &PaymentRecord, status: &str, n: i64| {
        let mut c = change(p, status);
        c.payment.amount_authorized = 1000 + n;
        c.payment.amount_captured = 1000 + n;
        c.payment.processor_reference = Some(format!("ref-{n}"));
        c.network_transaction_id = Some(format!("ntid-{n}"));
        c.transaction = Some(TransactionRecord {
            id: Uuid::new_v4(),
            payment_id: p.id,
            created_at: at(t0(), 2),
            kind: "authorization".into(),
            status: "succeeded".into(),
            amount: 1000 + n,
            processor_reference: Some(format!("ref-{n}")),
            message: None,
            processor: Some("sandbox".into()),
        });
        c.job = Some(job("payment.settle", at(t0(), 3600)));
        c
    };
    let mut captured = step(&stored[0].0, "captured", 0);
    captured.outbox = vec![
        outbox(&hook, stored[0].0.id, at(t0(), 3)),
        outbox(&hook, stored[0].0.id, at(t0(), 2)),
    ];
    let mut stale = step(&stored[1].0, "failed", 1);
    stale.expected_version += 1;
    stale.outbox = vec![outbox(&hook, stored[1].0.id, at(t0(), 2))];
    let kept = step(&stored[2].0, "processing", 2);
    let fresh = payment(a.id, at(t0(), 10), "processing", "EUR");
    let fresh_recovery = leased("node-b");
    let fresh_outbox = outbox(&hook, fresh.id, at(t0(), 10));
    let read_card = audited(a.id, Action::TokenReadCard, fresh.token_id);
    let other_day = payment(a.id, at(t0(), DAY), "captured", "USD");
    let writes = [
        PaymentWrite::Insert {
            payment: fresh.clone(),
            job: Some(fresh_recovery.clone()),
            outbox: vec![fresh_outbox.clone()],
            audit: Some(read_card),
        },
        PaymentWrite::Change {
            change: captured.clone(),
            retire_job: Some(claim(&stored[0].1)),
        },
        PaymentWrite::Change {
            change: stale.clone(),
            retire_job: Some(claim(&stored[1].1)),
        },
        PaymentWrite::Insert {
            payment: other_day.clone(),
            job: None,
            outbox: Vec::new(),
            audit: None,
        },
        PaymentWrite::Change {
            change: kept.clone(),
            retire_job: Some(claim(&stored[2].1)),
        },
    ];
    assert_eq!(
        store.write_payments(&writes).await.unwrap(),
        [true, true, false, true, true]
    );

    // The payment rows: new ones as given, applied steps moved, the stale one untouched.
    for p in [
        &fresh,
        &other_day,
        &captured.payment,
        &kept.payment,
        &stored[1].0,
    ] {
        same(&store.get_payment(a.id, p.id).await.unwrap().unwrap(), p);
    }
    // The applied steps' transactions, follow-up jobs and retired jobs; none of the stale step's.
    for made in [&captured, &kept] {
        let id = made.payment.id;
        let transactions = store.list_transactions(id).await.unwrap();
        assert_eq!(transactions.len(), 1);
        same(&transactions[0], made.transaction.as_ref().unwrap());
        let settle = store
            .get_job(made.job.as_ref().unwrap().id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(settle.status, JobStatus::Queued);
        assert_eq!((settle.lease_owner, settle.lease_generation), (None, 0));
    }
    assert!(store.get_job(stored[0].1.id).await.unwrap().is_none());
    assert!(store.get_job(stored[2].1.id).await.unwrap().is_none());
    assert_stale_step_wrote_nothing(&store, &stored[1], &stale).await;
    assert_eq!(
        store
            .get_network_transaction_id(kept.payment.id)
            .await
            .unwrap(),
        Some("ntid-2".into())
    );
    // The new payment's recovery job, written leased: its writer's first claim.
    let recovery = store.get_job(fresh_recovery.id).await.unwrap().unwrap();
    assert_eq!(recovery.status, JobStatus::Running);
    assert_eq!(recovery.lease_owner.as_deref(), Some("node-b"));
    assert_eq!(recovery.lease_expires_at, Some(at(t0(), 60)));
    assert_eq!((recovery.lease_generation, recovery.attempts), (1, 0));
    assert_eq!(
        trail(&store, a.id).await,
        [(Action::TokenReadCard, Some(fresh.token_id.to_string()))]
    );

    // Webhook rows: the new payment's (first), then the applied step's in their order; not the
    // stale step's. A lone row keeps its own job; the step's two share one listing them.
    let delivery = |id: Uuid| {
        let store = store.clone();
        async move { store.get_webhook_delivery(id).await.unwrap() }
    };
    assert!(delivery(stale.outbox[0].id).await.is_none());
    let first = delivery(fresh_outbox.id).await.unwrap();
    let second = delivery(captured.outbox[0].id).await.unwrap();
    let third = delivery(captured.outbox[1].id).await.unwrap();
    assert!(first.seq < second.seq && second.seq < third.seq);
    assert_eq!((third.status.as_str(), third.attempts), ("pending", 0));
    assert_eq!(third.next_attempt_at, captured.outbox[1].created_at);
    let own = store.get_job(fresh_outbox.job.id).await.unwrap().unwrap();
    assert_eq!(own.payload, fresh_outbox.job.payload);
    for row in captured.outbox.iter().chain(&stale.outbox) {
        assert!(store.get_job(row.job.id).await.unwrap().is_none());
    }
    let deliveries: Vec<_> = store
        .list_unfinished_jobs(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == "webhook.deliver" && j.id != own.id)
        .collect();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let shared = &deliveries[0];
    assert_eq!(
        shared.payload,
        serde_json::json!({ "delivery_ids": [captured.outbox[0].id, captured.outbox[1].id] })
            .to_string()
    );
    assert_eq!(shared.status, JobStatus::Queued);
    assert_eq!(
        (shared.run_at, shared.created_at),
        (at(t0(), 2), at(t0(), 2))
    );
    assert_eq!(shared.max_attempts, captured.outbox[0].job.max_attempts);

    // Day counts: three stored and one new in processing, one of them captured since; one new
    // captured (in USD) the next day; the stale step's failure not counted.
    let d = day_of(t0());
    let counted = |statuses: &[&str], currencies: &[&str]| PaymentFilter {
        statuses: statuses.iter().map(|s| s.to_string()).collect(),
        currencies: currencies.iter().map(|c| c.to_string()).collect(),
        ..filter(a.id)
    };
    for (f, expected) in [
        (counted(&["processing"], &[]), vec![(d, 3)]),
        (counted(&["captured"], &[]), vec![(d + 1, 1), (d, 1)]),
        (counted(&["failed"], &[]), vec![]),
        (counted(&[], &["USD"]), vec![(d + 1, 1)]),
        (counted(&[], &["EUR"]), vec![(d, 4)]),
        (filter(a.id), vec![(d + 1, 1), (d, 4)]),
    ] {
        assert_eq!(
            store.payment_day_counts(&f).await.unwrap(),
            expected,
            "{f:?}"
        );
    }
    let listed = store
        .list_payments_between(&filter(a.id), None, None, 100, 0)
        .await
        .unwrap();
    assert_eq!(listed.len(), 5);
    store.close().await;
}

/// `payment_page_json` (the database builds the objects) against `list_payments_between` mapped by
/// `Payment::try_from` (what `GET /payments/{id}` answers), on rows that cover every optional field
/// present and absent, zero and non-zero amounts, an old source without `cardholder_name`, and
/// instants with no fraction, whole milliseconds and microseconds.
async fn a_page_built_by_the_database_is_the_page_the_rust_mapping_builds(backend: Backend) {
    use strongroom::model::payment::Payment;
    use strongroom::store::Ts;

    let (_db, store, a) = store_with_account(backend).await;
    let base = t0().micros();
    let mut rows = Vec::new();
    for (i, frac) in [0i64, 123_000, 123_456, 1, 999_999, 500_000]
        .iter()
        .enumerate()
    {
        let created = Ts::from_micros(base + i as i64 * 3_600_000_000 + frac).unwrap();
        let mut p = payment(a.id, created, "captured", "EUR");
        p.use_case = ["ONE_OFF", "RECURRING", "SUBSEQUENT_RECURRING"][i % 3].into();
        p.amount_requested = 1_000 + i as i64;
        p.amount_authorized = if i % 2 == 0 { 1_000 } else { 0 };
        p.amount_captured = if i % 3 == 0 { 900 } else { 0 };
        p.amount_voided = if i == 4 { 1_004 } else { 0 };
        p.amount_refunded = if i == 3 { 250 } else { 0 };
        p.reference = format!("Order \"{i}\" é \\ <tab>\t");
        p.source = if i == 1 {
            "{\"type\":\"card\",\"expiry_month\":4,\"expiry_year\":2031,\"pan_type\":\"FPAN\"}"
                .into()
        } else {
            format!(
                "{{\"type\":\"card\",\"cardholder_name\":{},\"expiry_month\":4,\"expiry_year\":2031,\
                 \"masked_account_number\":\"424242XXXXXX4242\",\"pan_type\":\"FPAN\",\
                 \"issuer\":{{\"identification_number\":\"42424242\",\"scheme\":\"VISA\"}}}}",
                if i == 2 { "null".to_owned() } else { format!("\"Holder {i}\"") }
            )
        };
        p.metadata = (i % 2 == 1).then(|| format!("{{\"order\":\"{i}\",\"empty\":\"\"}}"));
        p.failure_details = (i == 5).then(|| {
            "[{\"classifier\":\"DECLINED\",\"message\":\"The issuer declined\",\"source\":\"processor\"}]".into()
        });
        p.initial_payment_id = (i == 2).then(Uuid::new_v4);
        p.recurring_frequency = (i == 1).then_some(30);
        p.recurring_expiry = (i == 1).then(|| "2031-12-31".to_owned());
        rows.push(p);
    }
    store.insert_payments(&rows, None).await.unwrap();

    for (limit, offset) in [(10, 0), (2, 1), (10, 6)] {
        let listed = store
            .list_payments_between(&filter(a.id), None, None, limit, offset)
            .await
            .unwrap();
        let by_rust: Vec<Payment> = listed
            .into_iter()
            .map(|p| Payment::try_from(p).unwrap())
            .collect();
        let by_rust = serde_json::to_value(&by_rust).unwrap();
        let by_db = store
            .payment_page_json(&filter(a.id), None, None, limit, offset)
            .await
            .unwrap();
        let by_db: serde_json::Value = serde_json::from_str(&by_db).unwrap();
        assert_eq!(by_db, by_rust, "limit {limit} offset {offset}");
    }
    let by_db: serde_json::Value = serde_json::from_str(
        &store
            .payment_page_json(&filter(a.id), None, None, 10, 0)
            .await
            .unwrap(),
    )
    .unwrap();
    // Not vacuous: every optional member shows up somewhere and is left out somewhere.
    let objects = by_db.as_array().unwrap();
    assert_eq!(objects.len(), 6);
    for key in [
        "metadata",
        "failure_details",
        "initial_payment_id",
        "recurring_frequency",
        "recurring_expiry",
    ] {
        assert!(
            objects.iter().any(|o| o.get(key).is_some()),
            "{key} somewhere"
        );
        assert!(
            objects.iter().any(|o| o.get(key).is_none()),
            "{key} left out somewhere"
        );
    }
    assert!(objects
        .iter()
        .any(|o| o["source"]["cardholder_name"].is_null()));
    store.close().await;
}

/// A stale step of the payment `stored` (with its recovery job) wrote nothing: no transaction, no
/// follow-up job, no network transaction id, and the recovery job it would have retired is still there.
async fn assert_stale_step_wrote_nothing(
    store: &strongroom::store::DynStore,
    stored: &(PaymentRecord, strongroom::store::NewJob),
    stale: &PaymentChange,
) {
    assert!(store
        .list_transactions(stored.0.id)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .get_job(stale.job.as_ref().unwrap().id)
        .await
        .unwrap()
        .is_none());
    assert!(store.get_job(stored.1.id).await.unwrap().is_some());
    assert_eq!(
        store.get_network_transaction_id(stored.0.id).await.unwrap(),
        None
    );
}
