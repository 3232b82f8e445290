//! The processor storage contract on both backends: live names are unique per account and reusable after
//! removal, removal wipes the sealed secrets once, rules are replaced whole, and a failover moves a
//! payment only from the version it was read at, writing its attempt in the same transaction; a pending
//! answer (Adyen's `received`) is recorded once, only while its payment or refund still waits for it.

use strongroom::store::{
    Action, PaymentChange, ProcessorRecord, RefundRecord, StoreError, TransactionRecord, Ts,
};
use uuid::Uuid;

use super::{account, audited, insert_account, noted, store_with_account, t0, trail};
use crate::support::{on_both_backends, payment, spawn_app, Backend, TestDb};

on_both_backends!(
    processors_and_rules_round_trip,
    a_failover_moves_a_payment_only_from_the_version_read,
    a_pending_answer_is_recorded_once_and_only_while_awaited,
);

fn processor(account_id: Uuid, name: &str) -> ProcessorRecord {
    ProcessorRecord {
        id: Uuid::new_v4(),
        account_id,
        name: name.into(),
        kind: "stripe".into(),
        settings: r#"{"api_base":"https://api.stripe.com","timeout_ms":30000}"#.into(),
        sealed_secrets: Some(vec![1, 2, 3]),
        created_at: Ts::now(),
        removed_at: None,
    }
}

async fn processors_and_rules_round_trip(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let account = account("acme");
    insert_account(&store, &account).await;
    let first = processor(account.id, "stripe-eu");
    store
        .insert_processor(&first, &audited(account.id, Action::ProcessorAdd, first.id))
        .await
        .unwrap();
    let err = store
        .insert_processor(
            &processor(account.id, "stripe-eu"),
            &noted(Action::ProcessorAdd),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    let second = processor(account.id, "stripe-us");
    store
        .insert_processor(&second, &noted(Action::ProcessorAdd))
        .await
        .unwrap();
    let listed: Vec<_> = store
        .list_processors(Some(account.id))
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(listed, ["stripe-eu", "stripe-us"]);
    assert!(store
        .list_processors(Some(Uuid::new_v4()))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.list_processors(None).await.unwrap().len(), 2);

    assert!(store
        .remove_processor(
            first.id,
            Ts::now(),
            &audited(account.id, Action::ProcessorRemove, first.id)
        )
        .await
        .unwrap());
    assert!(!store
        .remove_processor(
            first.id,
            Ts::now(),
            &audited(account.id, Action::ProcessorRemove, first.id)
        )
        .await
        .unwrap());
    // The refused insert and the second removal wrote nothing to the account's trail.
    assert_eq!(
        trail(&store, account.id).await,
        [
            (Action::ProcessorAdd, Some(first.id.to_string())),
            (Action::ProcessorRemove, Some(first.id.to_string())),
        ]
    );
    let removed = store.get_processor(first.id).await.unwrap().unwrap();
    assert!(removed.sealed_secrets.is_none() && removed.removed_at.is_some());
    store
        .insert_processor(
            &processor(account.id, "stripe-eu"),
            &noted(Action::ProcessorAdd),
        )
        .await
        .unwrap();

    assert_eq!(store.get_routing_rules(account.id).await.unwrap(), None);
    store
        .set_routing_rules(account.id, "[1]", Ts::now(), &noted(Action::RouteSet))
        .await
        .unwrap();
    store
        .set_routing_rules(account.id, "[2]", Ts::now(), &noted(Action::RouteSet))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_routing_rules(account.id)
            .await
            .unwrap()
            .as_deref(),
        Some("[2]")
    );
    store.close().await;
}

async fn a_failover_moves_a_payment_only_from_the_version_read(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token_for("4242424242424242").await;
    let p = app.pay("one-off", &payment(&token, 1000, "manual")).await;
    let id: Uuid = p["id"].as_str().unwrap().parse().unwrap();
    let account = app.account_id().await;
    let store = app.store();
    let stored = store.get_payment(account, id).await.unwrap().unwrap();
    let attempt = TransactionRecord {
        id: Uuid::new_v4(),
        payment_id: id,
        created_at: Ts::now(),
        kind: "authorization".into(),
        status: "failed".into(),
        amount: 1000,
        processor_reference: None,
        message: Some("failed".into()),
        processor: Some("sandbox".into()),
    };
    // The payment is authorized, not processing: no failover moves it.
    assert!(!store
        .record_failover(id, stored.version, "other", &attempt, None, Ts::now())
        .await
        .unwrap());
    assert!(!store
        .record_failover(id, stored.version + 7, "other", &attempt, None, Ts::now())
        .await
        .unwrap());
    assert_eq!(store.list_transactions(id).await.unwrap().len(), 1);
    assert_eq!(store.get_network_transaction_id(id).await.unwrap(), None);
    store.set_network_transaction_id(id, "ntx1").await.unwrap();
    assert_eq!(
        store
            .get_network_transaction_id(id)
            .await
            .unwrap()
            .as_deref(),
        Some("ntx1")
    );
}

async fn a_pending_answer_is_recorded_once_and_only_while_awaited(backend: Backend) {
    let (_db, store, account) = store_with_account(backend).await;
    let p = super::payment(account.id, t0(), "capturing", "EUR");
    store.insert_payment(&p, None, &[]).await.unwrap();
    let pending = |kind: &str, reference: &str| TransactionRecord {
        id: Uuid::new_v4(),
        payment_id: p.id,
        created_at: Ts::now(),
        kind: kind.into(),
        status: "pending".into(),
        amount: 300,
        processor_reference: Some(reference.into()),
        message: None,
        processor: Some("adyen".into()),
    };
    let capture = pending("capture", "C1");
    store
        .record_pending(&capture, None, Some("capturing"))
        .await
        .unwrap();
    // A retried job's second answer, and an answer for a move the payment is not waiting for.
    store
        .record_pending(&pending("capture", "C1"), None, Some("capturing"))
        .await
        .unwrap();
    store
        .record_pending(&pending("void", "V1"), None, Some("voiding"))
        .await
        .unwrap();
    let listed = store.list_transactions(p.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, capture.id);

    // Two refunds: one processing, one already answered.
    let refund = |status: &str| RefundRecord {
        id: Uuid::new_v4(),
        payment_id: p.id,
        account_id: account.id,
        created_at: t0(),
        updated_at: t0(),
        amount: 300,
        currency_code: "EUR".into(),
        status: status.into(),
        reference: None,
        failure_details: None,
    };
    let mut current = p.clone();
    let mut refunds = Vec::new();
    for status in ["processing", "completed"] {
        let r = refund(status);
        let mut next = current.clone();
        next.version += 1;
        let change = PaymentChange {
            payment: next.clone(),
            expected_version: current.version,
            previous_status: current.status.clone(),
            transaction: None,
            new_refund: Some(r.clone()),
            finished_refund: None,
            job: None,
            outbox: Vec::new(),
            network_transaction_id: None,
        };
        assert!(store.apply_payment_change(&change).await.unwrap());
        current = next;
        refunds.push(r);
    }
    store
        .record_pending(&pending("refund", "R1"), Some(refunds[0].id), None)
        .await
        .unwrap();
    store
        .record_pending(&pending("refund", "R2"), Some(refunds[1].id), None)
        .await
        .unwrap();
    assert_eq!(
        store
            .refund_by_processor_reference(p.id, "R1")
            .await
            .unwrap(),
        Some(refunds[0].id)
    );
    assert_eq!(
        store
            .refund_by_processor_reference(p.id, "R2")
            .await
            .unwrap(),
        None
    );
    let other = Uuid::new_v4();
    assert_eq!(
        store
            .refund_by_processor_reference(other, "R1")
            .await
            .unwrap(),
        None
    );
    let kinds: Vec<_> = store
        .list_transactions(p.id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.kind, t.processor_reference))
        .collect();
    assert_eq!(
        kinds,
        [
            ("capture".to_owned(), Some("C1".to_owned())),
            ("refund".to_owned(), Some("R1".to_owned()))
        ]
    );
}
