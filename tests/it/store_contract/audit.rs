//! The audit trail on both backends: newest first per account, and every `Action` stored as its
//! exact string.

use std::time::Duration;

use strongroom::store::{Action, AuditEvent};
use uuid::Uuid;

use crate::support::on_both_backends;
use crate::support::{Backend, TestDb};

on_both_backends!(
    audit_events_list_newest_first_per_account,
    every_action_is_stored_as_its_exact_string,
);

async fn audit_events_list_newest_first_per_account(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = Uuid::new_v4();
    for action in [
        Action::AccountCreate,
        Action::ApiKeyCreate,
        Action::ApiKeyRevoke,
    ] {
        store
            .insert_audit_event(&AuditEvent::new(Some(a), "test", action, None, "success"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    store
        .insert_audit_event(&AuditEvent::new(
            Some(Uuid::new_v4()),
            "test",
            Action::WebhookAdd,
            None,
            "success",
        ))
        .await
        .unwrap();
    let events = store.list_audit_events(a, 10).await.unwrap();
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["api_key.revoke", "api_key.create", "account.create"]
    );
    store.close().await;
}

async fn every_action_is_stored_as_its_exact_string(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = Uuid::new_v4();
    for &action in Action::ALL {
        store
            .insert_audit_event(&AuditEvent::new(
                Some(a),
                "test",
                action,
                Some(action.as_str().to_owned()),
                "success",
            ))
            .await
            .unwrap();
    }
    let mut events = store.list_audit_events(a, 100).await.unwrap();
    events.reverse();
    let stored: Vec<_> = events
        .iter()
        .map(|e| (e.action, e.target.as_deref().unwrap(), e.actor.as_str()))
        .collect();
    let expected: Vec<_> = Action::ALL
        .iter()
        .map(|&a| (a, a.as_str(), "test"))
        .collect();
    assert_eq!(stored, expected);
    let strings: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(
        strings,
        [
            "account.create",
            "api_key.create",
            "api_key.revoke",
            "token.create",
            "token.delete",
            "token.consume",
            "token.read_card",
            "webhook.add",
            "webhook.remove",
            "import.create",
            "import.abort",
            "master_key.rotate",
            "payments.seed",
            "token.forward",
            "destination.add",
            "destination.remove",
            "processor.add",
            "processor.remove",
            "route.set",
            "processor.notification_refuse",
            "request.refuse",
            "import.open_stripe_key",
            "import.end",
            "origin.add",
            "origin.remove",
            "token_session.complete",
            "master_key.init",
            "master_key.retire",
            "data_key.rotate_start",
            "data_key.rotate_end",
            "master_key.file_refuse",
        ]
    );
    store.close().await;
}
