//! Webhooks and the outbox on both backends: webhooks listed until removed, the outbox committed or
//! rolled back with the change that writes it, deliveries retried in order, finished once and purged.

use strongroom::store::{
    Action, AuditEvent, DeliveryOutcomes, OutboxRecord, StoreError, TokenRecord, Ts,
    WebhookDelivery, WebhookRecord,
};
use uuid::Uuid;

use super::{
    account, at, audited, outbox, payment, same, store_with_account, store_with_webhook, t0, token,
    trail, webhook, with_audit,
};
use crate::support::on_both_backends;
use crate::support::Backend;

on_both_backends!(
    webhooks_are_listed_oldest_first_until_removed,
    a_webhook_is_added_with_its_audit_row_and_a_refused_one_writes_none,
    a_webhook_is_removed_with_its_audit_row_once,
    the_outbox_is_committed_with_a_token_batch,
    the_outbox_is_rolled_back_with_its_token_batch,
    carried_events_become_rows_when_recorded_or_before_a_later_event,
    deletions_and_payments_write_their_outbox_only_when_they_happen,
    deliveries_are_retried_in_order_and_finished_once,
    deliveries_that_ended_are_purged_and_pending_ones_kept,
    the_purge_goes_on_past_its_first_window_and_a_pending_delivery_ahead,
    a_run_records_every_outcome_with_its_jobs_end_once_and_only_under_its_claim,
    deliveries_pending_before_the_object_time_index_still_wait_for_one_another,
);

#[allow(clippy::type_complexity)]
fn columns(w: &WebhookRecord) -> (Uuid, Uuid, &str, &str, &[u8], Ts, Option<Ts>) {
    (
        w.id,
        w.account_id,
        &w.url,
        &w.events,
        &w.sealed_key,
        w.created_at,
        w.removed_at,
    )
}

async fn webhooks_are_listed_oldest_first_until_removed(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let other = account("other");
    super::insert_account(&store, &other).await;
    let (first, second, elsewhere) = (
        webhook(a.id, at(t0(), 1)),
        webhook(a.id, at(t0(), 2)),
        webhook(other.id, at(t0(), 3)),
    );
    for w in [&second, &first, &elsewhere] {
        store
            .insert_webhook(w, &super::noted(super::Action::WebhookAdd))
            .await
            .unwrap();
    }
    let read = store.get_webhook(first.id).await.unwrap().unwrap();
    assert_eq!(columns(&read), columns(&first));
    assert!(store.get_webhook(Uuid::new_v4()).await.unwrap().is_none());
    let ids = |ws: Vec<WebhookRecord>| ws.iter().map(|w| w.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_webhooks(Some(a.id)).await.unwrap()),
        [first.id, second.id]
    );
    assert_eq!(
        ids(store.list_webhooks(None).await.unwrap()),
        [first.id, second.id, elsewhere.id]
    );

    assert!(store
        .remove_webhook(
            first.id,
            at(t0(), 9),
            &super::noted(super::Action::WebhookRemove)
        )
        .await
        .unwrap());
    assert!(!store
        .remove_webhook(
            first.id,
            at(t0(), 10),
            &super::noted(super::Action::WebhookRemove)
        )
        .await
        .unwrap());
    assert!(!store
        .remove_webhook(
            Uuid::new_v4(),
            at(t0(), 10),
            &super::noted(super::Action::WebhookRemove)
        )
        .await
        .unwrap());
    assert_eq!(
        store
            .get_webhook(first.id)
            .await
            .unwrap()
            .unwrap()
            .removed_at,
        Some(at(t0(), 9))
    );
    assert_eq!(
        ids(store.list_webhooks(Some(a.id)).await.unwrap()),
        [second.id]
    );
    assert_eq!(
        ids(store.list_webhooks(None).await.unwrap()),
        [second.id, elsewhere.id]
    );
    store.close().await;
}

/// Checks that `event` is stored as a new pending delivery with its queued job.
async fn assert_written(store: &strongroom::store::DynStore, event: &OutboxRecord) {
    let d = store.get_webhook_delivery(event.id).await.unwrap().unwrap();
    assert_eq!(
        (
            d.id,
            d.event_id,
            d.webhook_id,
            d.account_id,
            d.object_id,
            d.event_type.as_str(),
            d.body.as_str(),
            d.created_at,
        ),
        (
            event.id,
            event.event_id,
            event.webhook_id,
            event.account_id,
            event.object_id,
            event.event_type.as_str(),
            event.body.as_str(),
            event.created_at,
        )
    );
    assert_eq!(
        (
            d.status.as_str(),
            d.attempts,
            d.next_attempt_at,
            d.last_error,
            d.finished_at
        ),
        ("pending", 0, event.created_at, None, None)
    );
    let job = job_of(store, event)
        .await
        .expect("a queued job delivers the row");
    // Written alone, the row keeps its own job; written with others, one job of the commit names them
    // all (`delivery_ids`).
    let payload: serde_json::Value = serde_json::from_str(&job.payload).unwrap();
    if payload.get("delivery_id").is_some() {
        assert_eq!(
            (job.id, job.payload.as_str()),
            (event.job.id, event.job.payload.as_str())
        );
    } else {
        assert!(
            payload["delivery_ids"].as_array().unwrap().len() > 1,
            "{payload}"
        );
    }
    assert_eq!(
        (
            job.kind.as_str(),
            job.status,
            job.attempts,
            job.max_attempts,
            job.run_at,
            job.created_at,
            job.updated_at,
        ),
        (
            event.job.kind.as_str(),
            strongroom::store::JobStatus::Queued,
            0,
            event.job.max_attempts,
            event.job.run_at,
            event.created_at,
            event.created_at,
        )
    );
}

/// The unfinished job whose payload names `event`'s delivery, if any.
async fn job_of(
    store: &strongroom::store::DynStore,
    event: &OutboxRecord,
) -> Option<strongroom::store::Job> {
    let id = event.id.to_string();
    for job in store.list_unfinished_jobs(10_000).await.unwrap() {
        let carried = store.carried_events(&[job.id]).await.unwrap();
        if job.payload.contains(&id) || carried.iter().any(|events| events.contains(&id)) {
            return Some(job);
        }
    }
    None
}

async fn assert_not_written(store: &strongroom::store::DynStore, event: &OutboxRecord) {
    assert!(store
        .get_webhook_delivery(event.id)
        .await
        .unwrap()
        .is_none());
    assert!(store.get_job(event.job.id).await.unwrap().is_none());
    assert!(job_of(store, event).await.is_none());
}

/// Inserts `batch` without events, then writes `events` as rows with their jobs in one commit, as a
/// later change of the first token does (`insert_tokens` carries its events in a job instead: see
/// `carried_events_become_rows_when_recorded_or_before_a_later_event`).
async fn insert_with_rows(
    store: &strongroom::store::DynStore,
    batch: &[(TokenRecord, AuditEvent)],
    events: &[OutboxRecord],
) {
    store.insert_tokens(batch, &[]).await.unwrap();
    let t = &batch[0].0;
    let audit = audited(t.account_id, Action::TokenConsume, t.id);
    assert!(store
        .touch_token(t.account_id, t.id, t.created_at, &audit, events)
        .await
        .unwrap());
}

/// The unfinished job carrying `event` and the events it carries (in `carried_events`, `{"events":
/// […]}`; the job's own payload is `{}`).
async fn carrier_of(
    store: &strongroom::store::DynStore,
    event: &OutboxRecord,
) -> (strongroom::store::Job, Vec<strongroom::store::CarriedEvent>) {
    let job = job_of(store, event).await.expect("a job carries the event");
    assert_eq!(job.payload, "{}");
    let texts = store.carried_events(&[job.id]).await.unwrap();
    assert_eq!(texts.len(), 1);
    let carried: strongroom::store::CarriedEvents = serde_json::from_str(&texts[0]).unwrap();
    (job, carried.events)
}

async fn the_outbox_is_committed_with_a_token_batch(backend: Backend) {
    let (_db, store, a, hook) = store_with_webhook(backend).await;
    // Carried by one job whatever the batch's size, written as no rows.
    for size in [1, 250] {
        let batch: Vec<_> = (0..size)
            .map(|i| with_audit(token(a.id, at(t0(), i))))
            .collect();
        let events: Vec<_> = batch
            .iter()
            .map(|(t, _)| outbox(&hook, t.id, at(t0(), size)))
            .collect();
        store.insert_tokens(&batch, &events).await.unwrap();
        for (t, _) in &batch {
            assert!(store.get_token(a.id, t.id, None).await.unwrap().is_some());
        }
        let (job, carried) = carrier_of(&store, &events[0]).await;
        assert_eq!(job.kind, strongroom::store::CARRIED_EVENTS_JOB);
        assert_eq!(job.status, strongroom::store::JobStatus::Queued);
        assert_eq!(job.run_at, events[0].created_at);
        let carried: Vec<_> = carried.iter().map(|e| e.pending().unwrap()).collect();
        assert_eq!(carried.len(), events.len());
        for (c, e) in carried.iter().zip(&events) {
            assert_eq!(
                (c.id, c.event_id, c.webhook_id, c.account_id, c.object_id),
                (e.id, e.event_id, e.webhook_id, e.account_id, e.object_id)
            );
            assert_eq!(
                (c.object_created_at, c.created_at, c.status.as_str()),
                (Some(e.object_created_at), e.created_at, "pending")
            );
            assert_eq!((&c.event_type, &c.body), (&e.event_type, &e.body));
        }
        let ids: Vec<_> = events.iter().map(|e| e.id).collect();
        assert!(store.get_webhook_deliveries(&ids).await.unwrap().is_empty());
    }
    store.close().await;
}

async fn carried_events_become_rows_when_recorded_or_before_a_later_event(backend: Backend) {
    let (_db, store, a, hook) = store_with_webhook(backend).await;
    let batch: Vec<_> = (0..3)
        .map(|i| with_audit(token(a.id, at(t0(), i))))
        .collect();
    let events: Vec<_> = batch
        .iter()
        .map(|(t, _)| outbox(&hook, t.id, at(t0(), 1)))
        .collect();
    store.insert_tokens(&batch, &events).await.unwrap();
    let (_, carried) = carrier_of(&store, &events[0]).await;
    let now = at(t0(), 10);
    let job = store
        .claim_next_job(
            &[strongroom::store::CARRIED_EVENTS_JOB],
            "w1",
            now,
            at(now, 30),
        )
        .await
        .unwrap()
        .unwrap();

    // The second token is deleted with a later event while its first is still carried: the first
    // becomes a pending row before the later one, which waits for it.
    let later = outbox(&hook, batch[1].0.id, at(t0(), 2));
    let audit = audited(a.id, Action::TokenDelete, batch[1].0.id);
    assert!(store
        .delete_token(
            a.id,
            batch[1].0.id,
            batch[1].0.created_at,
            &audit,
            std::slice::from_ref(&later)
        )
        .await
        .unwrap());
    let first = store
        .get_webhook_delivery(events[1].id)
        .await
        .unwrap()
        .expect("the carried event became a row");
    same(
        &first,
        &WebhookDelivery {
            seq: first.seq,
            ..carried[1].pending().unwrap()
        },
    );
    let held = store.earlier_pending_deliveries(&[later.id]).await.unwrap();
    assert_eq!(
        held.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        [events[1].event_id]
    );
    assert!(store
        .get_webhook_delivery(events[0].id)
        .await
        .unwrap()
        .is_none());

    // The run records its outcomes: rows for the first and third, the second's row updated.
    let ended = |i: usize, status: &str, attempts: i32| WebhookDelivery {
        status: status.into(),
        attempts,
        finished_at: (status != "pending").then_some(now),
        next_attempt_at: if status == "pending" {
            at(now, 5)
        } else {
            carried[i].pending().unwrap().next_attempt_at
        },
        last_error: (status == "pending").then(|| "the receiver answered 500".to_owned()),
        ..carried[i].pending().unwrap()
    };
    let outcomes = DeliveryOutcomes {
        written: vec![
            ended(0, "delivered", 1),
            ended(1, "delivered", 1),
            ended(2, "pending", 1),
        ],
        ..DeliveryOutcomes::default()
    };
    assert!(store
        .record_delivery_outcomes(&[job.fence()], &outcomes, now)
        .await
        .unwrap());
    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
    let rows = store.get_webhook_deliveries(&ids).await.unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|d| {
            (
                d.id,
                d.status.as_str(),
                d.attempts,
                d.finished_at,
                d.last_error.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (events[1].id, "delivered", 1, Some(now), None),
            (events[0].id, "delivered", 1, Some(now), None),
            (
                events[2].id,
                "pending",
                1,
                None,
                Some("the receiver answered 500")
            ),
        ]
    );
    assert!(store
        .earlier_pending_deliveries(&[later.id])
        .await
        .unwrap()
        .is_empty());

    // An outcome recorded again (a run taken over after a lost lease) changes no row that ended.
    let again = DeliveryOutcomes {
        written: vec![ended(1, "failed", 7)],
        ..DeliveryOutcomes::default()
    };
    assert!(store
        .record_delivery_outcomes(&[], &again, now)
        .await
        .unwrap());
    let d = store
        .get_webhook_delivery(events[1].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.status.as_str(), d.attempts), ("delivered", 1));

    // A token whose events were all recorded is deleted without writing any of them again.
    let gone = outbox(&hook, batch[0].0.id, at(t0(), 3));
    let audit = audited(a.id, Action::TokenDelete, batch[0].0.id);
    assert!(store
        .delete_token(
            a.id,
            batch[0].0.id,
            batch[0].0.created_at,
            &audit,
            std::slice::from_ref(&gone)
        )
        .await
        .unwrap());
    assert!(store
        .earlier_pending_deliveries(&[gone.id])
        .await
        .unwrap()
        .is_empty());
    // The events stay beside their job, which ended, until the job is purged with them.
    assert_eq!(
        store.get_job(job.id).await.unwrap().unwrap().status,
        strongroom::store::JobStatus::Done
    );
    assert_eq!(store.carried_events(&[job.id]).await.unwrap().len(), 1);
    store.purge_finished_jobs(at(now, 60)).await.unwrap();
    assert!(store.get_job(job.id).await.unwrap().is_none());
    assert!(store.carried_events(&[job.id]).await.unwrap().is_empty());
    store.close().await;
}

async fn the_outbox_is_rolled_back_with_its_token_batch(backend: Backend) {
    let (_db, store, a, hook) = store_with_webhook(backend).await;
    for size in [1, 250] {
        let mut batch: Vec<_> = (0..size)
            .map(|i| with_audit(token(a.id, at(t0(), i))))
            .collect();
        batch.push(batch[0].clone());
        let events: Vec<_> = batch
            .iter()
            .map(|(t, _)| outbox(&hook, t.id, at(t0(), 1)))
            .collect();
        let err = store.insert_tokens(&batch, &events).await.unwrap_err();
        assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
        assert_not_written(&store, &events[0]).await;
        assert_not_written(&store, &events[events.len() - 1]).await;
    }
    assert!(store
        .list_webhook_deliveries(hook.id, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.list_audit_events(a.id, 10).await.unwrap().is_empty());
    store.close().await;
}

async fn deletions_and_payments_write_their_outbox_only_when_they_happen(backend: Backend) {
    let (_db, store, a, hook) = store_with_webhook(backend).await;
    let t = with_audit(token(a.id, t0()));
    store
        .insert_tokens(std::slice::from_ref(&t), &[])
        .await
        .unwrap();
    let audit = AuditEvent::new(
        Some(a.id),
        "test",
        Action::TokenDelete,
        Some(t.0.id.to_string()),
        "success",
    );
    let deleted = outbox(&hook, t.0.id, at(t0(), 1));
    assert!(store
        .delete_token(
            a.id,
            t.0.id,
            t.0.created_at,
            &audit,
            std::slice::from_ref(&deleted)
        )
        .await
        .unwrap());
    assert_written(&store, &deleted).await;
    let again = outbox(&hook, t.0.id, at(t0(), 2));
    assert!(!store
        .delete_token(
            a.id,
            t.0.id,
            t.0.created_at,
            &audit,
            std::slice::from_ref(&again)
        )
        .await
        .unwrap());
    assert_not_written(&store, &again).await;

    let p = payment(a.id, t0(), "processing", "EUR");
    let created = outbox(&hook, p.id, at(t0(), 3));
    store
        .insert_payment(&p, None, std::slice::from_ref(&created))
        .await
        .unwrap();
    assert_written(&store, &created).await;
    let twice = outbox(&hook, p.id, at(t0(), 4));
    let err = store
        .insert_payment(&p, None, std::slice::from_ref(&twice))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert_not_written(&store, &twice).await;
    store.close().await;
}

async fn deliveries_are_retried_in_order_and_finished_once(backend: Backend) {
    let (_db, store, a, hook) = store_with_webhook(backend).await;
    let t = with_audit(token(a.id, t0()));
    let object = t.0.id;
    let (first, second) = (
        outbox(&hook, object, at(t0(), 1)),
        outbox(&hook, object, at(t0(), 2)),
    );
    insert_with_rows(
        &store,
        std::slice::from_ref(&t),
        &[first.clone(), second.clone()],
    )
    .await;
    let d1 = store.get_webhook_delivery(first.id).await.unwrap().unwrap();
    let d2 = store
        .get_webhook_delivery(second.id)
        .await
        .unwrap()
        .unwrap();
    assert!(d1.seq < d2.seq);
    same(
        &store.pending_delivery_before(&d2).await.unwrap().unwrap(),
        &d1,
    );
    assert!(store.pending_delivery_before(&d1).await.unwrap().is_none());
    assert!(store
        .pending_delivery_before(&WebhookDelivery {
            object_id: Uuid::new_v4(),
            ..d2.clone()
        })
        .await
        .unwrap()
        .is_none());

    assert!(store
        .record_delivery_attempt(first.id, 1, at(t0(), 60), "HTTP 503")
        .await
        .unwrap());
    let retried = store.get_webhook_delivery(first.id).await.unwrap().unwrap();
    assert_eq!(
        (
            retried.attempts,
            retried.next_attempt_at,
            retried.last_error.as_deref(),
            retried.status.as_str()
        ),
        (1, at(t0(), 60), Some("HTTP 503"), "pending")
    );

    assert!(store
        .finish_webhook_delivery(first.id, "delivered", 2, None, at(t0(), 61))
        .await
        .unwrap());
    let delivered = store.get_webhook_delivery(first.id).await.unwrap().unwrap();
    assert_eq!(
        (
            delivered.status.as_str(),
            delivered.attempts,
            delivered.last_error.as_deref(),
            delivered.finished_at
        ),
        ("delivered", 2, Some("HTTP 503"), Some(at(t0(), 61)))
    );
    assert!(!store
        .finish_webhook_delivery(first.id, "failed", 3, Some("late"), at(t0(), 62))
        .await
        .unwrap());
    assert!(!store
        .record_delivery_attempt(first.id, 3, at(t0(), 90), "late")
        .await
        .unwrap());
    assert!(store.pending_delivery_before(&d2).await.unwrap().is_none());

    assert!(store
        .finish_webhook_delivery(
            second.id,
            "cancelled",
            0,
            Some("webhook removed"),
            at(t0(), 63)
        )
        .await
        .unwrap());
    let cancelled = store
        .get_webhook_delivery(second.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (cancelled.status.as_str(), cancelled.last_error.as_deref()),
        ("cancelled", Some("webhook removed"))
    );
    let listed: Vec<_> = store
        .list_webhook_deliveries(hook.id, 10)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(listed, [second.id, first.id]);
    let newest: Vec<_> = store
        .list_webhook_deliveries(hook.id, 1)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(newest, [second.id]);
    store.close().await;
}

async fn deliveries_that_ended_are_purged_and_pending_ones_kept(backend: Backend) {
    let (_db, store, a, hook) = store_with_webhook(backend).await;
    let t = with_audit(token(a.id, t0()));
    let events: Vec<_> = (0..3).map(|i| outbox(&hook, t.0.id, at(t0(), i))).collect();
    insert_with_rows(&store, std::slice::from_ref(&t), &events).await;
    store
        .finish_webhook_delivery(events[0].id, "delivered", 1, None, at(t0(), 10))
        .await
        .unwrap();
    store
        .finish_webhook_delivery(events[1].id, "failed", 5, Some("gave up"), at(t0(), 20))
        .await
        .unwrap();

    assert_eq!(
        store.purge_webhook_deliveries(at(t0(), 10)).await.unwrap(),
        0
    );
    assert_eq!(
        store.purge_webhook_deliveries(at(t0(), 11)).await.unwrap(),
        1
    );
    assert!(store
        .get_webhook_delivery(events[0].id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.purge_webhook_deliveries(Ts::now()).await.unwrap(), 1);
    assert!(store
        .get_webhook_delivery(events[1].id)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_webhook_delivery(events[2].id)
        .await
        .unwrap()
        .is_some());
    store.close().await;
}

async fn the_purge_goes_on_past_its_first_window_and_a_pending_delivery_ahead(backend: Backend) {
    // The purge reads the oldest deliveries a window (1,000) at a time: the oldest one still pending,
    // then more ended ones than a window holds, then one that ended too recently.
    let (_db, store, a, hook) = store_with_webhook(backend).await;
    let t = with_audit(token(a.id, t0()));
    let events: Vec<_> = (0..1152)
        .map(|i| outbox(&hook, t.0.id, at(t0(), i)))
        .collect();
    insert_with_rows(&store, std::slice::from_ref(&t), &events).await;
    let ended = |range: std::ops::Range<usize>| DeliveryOutcomes {
        delivered: events[range].iter().map(|e| e.id).collect(),
        ..DeliveryOutcomes::default()
    };
    assert!(store
        .record_delivery_outcomes(&[], &ended(1..1151), at(t0(), 2000))
        .await
        .unwrap());
    assert!(store
        .record_delivery_outcomes(&[], &ended(1151..1152), at(t0(), 4000))
        .await
        .unwrap());

    assert_eq!(
        store
            .purge_webhook_deliveries(at(t0(), 3000))
            .await
            .unwrap(),
        1150
    );
    let left: Vec<Uuid> = store
        .list_webhook_deliveries(hook.id, 2000)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(left, [events[1151].id, events[0].id]);
    store.close().await;
}

async fn a_webhook_is_added_with_its_audit_row_and_a_refused_one_writes_none(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let hook = webhook(a.id, t0());
    store
        .insert_webhook(&hook, &audited(a.id, Action::WebhookAdd, hook.id))
        .await
        .unwrap();
    assert!(store.get_webhook(hook.id).await.unwrap().is_some());
    let added = [(Action::WebhookAdd, Some(hook.id.to_string()))];
    assert_eq!(trail(&store, a.id).await, added);

    // The same id again is refused by the primary key, and its audit row with it.
    let err = store
        .insert_webhook(&hook, &audited(a.id, Action::WebhookAdd, hook.id))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert_eq!(trail(&store, a.id).await, added);
    store.close().await;
}

async fn a_webhook_is_removed_with_its_audit_row_once(backend: Backend) {
    let (_db, store, a, hook) = store_with_webhook(backend).await;
    let remove = audited(a.id, Action::WebhookRemove, hook.id);
    assert!(store
        .remove_webhook(hook.id, at(t0(), 1), &remove)
        .await
        .unwrap());
    assert!(!store
        .remove_webhook(hook.id, at(t0(), 2), &remove)
        .await
        .unwrap());
    assert_eq!(
        trail(&store, a.id).await,
        [(Action::WebhookRemove, Some(hook.id.to_string()))]
    );
    store.close().await;
}

async fn a_run_records_every_outcome_with_its_jobs_end_once_and_only_under_its_claim(
    backend: Backend,
) {
    use strongroom::store::{
        DeliveryOutcomes, DeliveryStatus, FinishedDelivery, JobStatus, RetriedDelivery,
    };
    let (_db, store, a, hook) = store_with_webhook(backend).await;
    let batch: Vec<_> = (0..3)
        .map(|i| with_audit(token(a.id, at(t0(), i))))
        .collect();
    let mut events: Vec<_> = batch
        .iter()
        .map(|(t, _)| outbox(&hook, t.id, at(t0(), 1)))
        .collect();
    // A later event of the first token, written on its own: the first row holds it back.
    let later = outbox(&hook, batch[0].0.id, at(t0(), 2));
    insert_with_rows(&store, &batch, &events).await;
    insert_with_rows(
        &store,
        &[with_audit(token(a.id, at(t0(), 5)))],
        std::slice::from_ref(&later),
    )
    .await;
    events.push(later.clone());
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let rows = store.get_webhook_deliveries(&ids).await.unwrap();
    assert_eq!(rows.iter().map(|d| d.id).collect::<Vec<_>>(), ids);
    let earlier = store.earlier_pending_deliveries(&ids).await.unwrap();
    assert_eq!(
        earlier
            .iter()
            .map(|e| (e.of_id, e.event_id))
            .collect::<Vec<_>>(),
        [(later.id, events[0].event_id)]
    );

    // The one job of the three rows written together.
    let now = at(t0(), 10);
    let job = store
        .claim_next_job(&["webhook.deliver"], "w1", now, at(now, 30))
        .await
        .unwrap()
        .unwrap();
    assert!(job.payload.contains("delivery_ids"), "{}", job.payload);
    let retry = strongroom::store::NewJob {
        id: Uuid::new_v4(),
        kind: "webhook.deliver".into(),
        payload: format!("{{\"delivery_id\":\"{}\"}}", events[1].id),
        max_attempts: 1,
        run_at: at(now, 5),
        lease: None,
    };
    let outcomes = DeliveryOutcomes {
        delivered: vec![events[0].id],
        retried: vec![RetriedDelivery {
            id: events[1].id,
            attempts: 1,
            next_attempt_at: at(now, 5),
            error: "the receiver answered 500".into(),
        }],
        finished: vec![FinishedDelivery {
            id: events[2].id,
            status: DeliveryStatus::Cancelled,
            attempts: 0,
            error: Some("the webhook was removed".into()),
        }],
        jobs: vec![retry.clone()],
        written: Vec::new(),
    };
    assert!(store
        .record_delivery_outcomes(&[job.fence()], &outcomes, now)
        .await
        .unwrap());
    let rows = store.get_webhook_deliveries(&ids).await.unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|d| {
            (
                d.status.as_str(),
                d.attempts,
                d.next_attempt_at,
                d.finished_at,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("delivered", 1, at(t0(), 1), Some(now)),
            ("pending", 1, at(now, 5), None),
            ("cancelled", 0, at(t0(), 1), Some(now)),
            ("pending", 0, at(t0(), 2), None),
        ]
    );
    assert_eq!(
        rows[1].last_error.as_deref(),
        Some("the receiver answered 500")
    );
    assert_eq!(
        store.get_job(job.id).await.unwrap().unwrap().status,
        JobStatus::Done
    );
    assert_eq!(
        store.get_job(retry.id).await.unwrap().unwrap().status,
        JobStatus::Queued
    );
    // The first row delivered, nothing holds the later one back any more.
    assert!(store
        .earlier_pending_deliveries(&ids)
        .await
        .unwrap()
        .is_empty());

    // The claim ended with that record: a second one under it writes nothing.
    let again = DeliveryOutcomes {
        delivered: vec![events[1].id],
        jobs: vec![strongroom::store::NewJob {
            id: Uuid::new_v4(),
            ..retry.clone()
        }],
        ..DeliveryOutcomes::default()
    };
    assert!(!store
        .record_delivery_outcomes(&[job.fence()], &again, at(now, 1))
        .await
        .unwrap());
    let d = store
        .get_webhook_delivery(events[1].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.status.as_str(), d.attempts), ("pending", 1));
    assert!(store.get_job(again.jobs[0].id).await.unwrap().is_none());
    store.close().await;
}

/// Runs `$body` with `$pool` bound to a pool of its own on the database at `$url` (SQLite's file made
/// if missing), then closes it: the same statements on either backend's pool type.
macro_rules! with_pool {
    ($backend:expr, $url:expr, |$pool:ident| $body:block) => {
        match $backend {
            Backend::Sqlite => {
                let options: sqlx::sqlite::SqliteConnectOptions = $url.parse().unwrap();
                let $pool = sqlx::SqlitePool::connect_with(options.create_if_missing(true))
                    .await
                    .unwrap();
                $body
                $pool.close().await;
            }
            Backend::Postgres => {
                let $pool = sqlx::PgPool::connect($url).await.unwrap();
                $body
                $pool.close().await;
            }
        }
    };
}

/// Applies the migrations of `backend` numbered below `before` to the empty database at `url`, as an
/// older release left it.
pub(super) async fn migrate_up_to(backend: Backend, url: &str, before: &str) {
    let dir = tempfile::tempdir().unwrap();
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        });
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < before {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    with_pool!(backend, url, |pool| {
        migrator.run(&pool).await.unwrap();
    });
}

async fn deliveries_pending_before_the_object_time_index_still_wait_for_one_another(
    backend: Backend,
) {
    let db = crate::support::TestDb::new(backend).await;
    migrate_up_to(backend, &db.url, "0019").await;
    let store = strongroom::store::open(&db.url, 4, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let a = account("acme");
    super::insert_account(&store, &a).await;
    let hook = webhook(a.id, t0());
    store
        .insert_webhook(&hook, &super::noted(super::Action::WebhookAdd))
        .await
        .unwrap();
    // A token that still exists, created at t0 + 1 s, and an object that is gone (a deleted token).
    // Its row is written as that release wrote it (this release's writer has columns it had not).
    let t = with_audit(token(a.id, at(t0(), 1)));
    let (kept, gone) = (t.0.id, Uuid::new_v4());
    // Deliveries as the releases before `object_created_at` wrote them: (object, id, status, time).
    let rows = [
        (kept, Uuid::now_v7(), "delivered", at(t0(), 5)),
        (kept, Uuid::now_v7(), "pending", at(t0(), 6)),
        (kept, Uuid::now_v7(), "pending", at(t0(), 7)),
        (gone, Uuid::now_v7(), "pending", at(t0(), 8)),
        (gone, Uuid::now_v7(), "pending", at(t0(), 9)),
    ];
    with_pool!(backend, db.url.as_str(), |pool| {
        sqlx::query(
            "INSERT INTO tokens (id, account_id, created_at, expiry_month, expiry_year, \
             issuer_identification_number, masked_account_number, account_number_last_four, \
             account_number_length, scheme, status, fingerprint, sealed_card) \
             VALUES ($1, $2, $3, 12, 2030, '42424242', '42424242******42', '4242', 16, 'visa', 'active', $4, $5)",
        )
        .bind(kept)
        .bind(a.id)
        .bind(t.0.created_at)
        .bind(&t.0.fingerprint)
        .bind(&t.0.sealed_card)
        .execute(&pool)
        .await
        .unwrap();
        for (object, id, status, created) in &rows {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, event_id, webhook_id, account_id, object_id, \
                 event_type, body, created_at, next_attempt_at, status, attempts) \
                 VALUES ($1, $2, $3, $4, $5, 'token.created', '{}', $6, $6, $7, 0)",
            )
            .bind(*id)
            .bind(Uuid::new_v4())
            .bind(hook.id)
            .bind(a.id)
            .bind(*object)
            .bind(*created)
            .bind(*status)
            .execute(&pool)
            .await
            .unwrap();
        }
    });

    store.migrate().await.unwrap();
    let ids: Vec<Uuid> = rows.iter().map(|(_, id, _, _)| *id).collect();
    let found = store.get_webhook_deliveries(&ids).await.unwrap();
    let keys: Vec<Option<Ts>> = found.iter().map(|d| d.object_created_at).collect();
    // The pending rows of the token take its creation time, those of the gone object their earliest
    // own; a row that had ended keeps none.
    assert_eq!(
        keys,
        [
            None,
            Some(at(t0(), 1)),
            Some(at(t0(), 1)),
            Some(at(t0(), 8)),
            Some(at(t0(), 8))
        ]
    );
    same(
        &store
            .pending_delivery_before(&found[2])
            .await
            .unwrap()
            .unwrap(),
        &found[1],
    );
    same(
        &store
            .pending_delivery_before(&found[4])
            .await
            .unwrap()
            .unwrap(),
        &found[3],
    );
    assert!(store
        .pending_delivery_before(&found[1])
        .await
        .unwrap()
        .is_none());

    // A new event of the token, written by this release, waits for the token's older rows.
    let later = OutboxRecord {
        object_created_at: t.0.created_at,
        ..outbox(&hook, kept, at(t0(), 10))
    };
    let audit = super::noted(super::Action::TokenDelete);
    assert!(store
        .delete_token(
            a.id,
            kept,
            t.0.created_at,
            &audit,
            std::slice::from_ref(&later)
        )
        .await
        .unwrap());
    let later = store.get_webhook_delivery(later.id).await.unwrap().unwrap();
    same(
        &store
            .pending_delivery_before(&later)
            .await
            .unwrap()
            .unwrap(),
        &found[1],
    );
    let earlier = store.earlier_pending_deliveries(&[later.id]).await.unwrap();
    let mut seqs: Vec<i64> = earlier.iter().map(|e| e.seq).collect();
    seqs.sort();
    assert_eq!(seqs, [found[1].seq, found[2].seq]);
    store.close().await;
}
