//! Accounts, API keys and idempotency records on both backends.

use std::time::Duration;

use strongroom::domain::accounts::generate_api_key;
use strongroom::store::{Action, FeatureSet, StoreError, Ts};
use uuid::Uuid;

use super::{account, audited, noted, trail};
use crate::support::on_both_backends;
use crate::support::{Backend, TestDb};

on_both_backends!(
    accounts_and_keys_round_trip_exactly,
    an_account_is_created_with_its_first_key_and_their_audit_rows_in_one_commit,
    an_account_refused_by_a_constraint_leaves_no_key_and_no_audit_row,
    a_key_is_created_with_its_audit_row,
    a_key_for_a_missing_account_is_refused_by_a_constraint,
    the_default_account_is_bootstrapped_once,
    a_key_is_revoked_once,
    an_idempotency_key_is_claimed_by_one_request_at_a_time,
    an_expired_or_abandoned_idempotency_record_can_be_reclaimed,
);

async fn accounts_and_keys_round_trip_exactly(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = account("acme");
    let (initial, _) = generate_api_key(a.id, "initial");
    store.insert_account(&a, &initial, &[]).await.unwrap();
    let read = store.get_account(a.id).await.unwrap().unwrap();
    assert_eq!(
        (read.id, read.name.as_str(), read.created_at),
        (a.id, "acme", a.created_at)
    );
    assert_eq!(read.features, FeatureSet::all());
    assert!(store.get_account(Uuid::new_v4()).await.unwrap().is_none());

    let (key, _) = generate_api_key(a.id, "ci");
    store
        .insert_api_key(&key, &noted(Action::ApiKeyCreate))
        .await
        .unwrap();
    let joined = store.get_key_with_account(key.id).await.unwrap().unwrap();
    assert_eq!((joined.key_id, joined.account_id), (key.id, a.id));
    assert_eq!(joined.secret_digest, key.secret_digest);
    let labels: Vec<String> = store
        .list_api_keys(a.id)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.label)
        .collect();
    assert_eq!(labels.len(), 2);
    assert!(labels.contains(&"initial".to_owned()) && labels.contains(&"ci".to_owned()));
    store.close().await;
}

async fn an_account_is_created_with_its_first_key_and_their_audit_rows_in_one_commit(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = account("acme");
    let (key, _) = generate_api_key(a.id, "initial");
    let audit = [
        audited(a.id, Action::AccountCreate, a.id),
        audited(a.id, Action::ApiKeyCreate, key.id),
    ];
    store.insert_account(&a, &key, &audit).await.unwrap();
    assert!(store.get_account(a.id).await.unwrap().is_some());
    assert!(store.get_api_key(key.id).await.unwrap().is_some());
    assert_eq!(
        trail(&store, a.id).await,
        [
            (Action::AccountCreate, Some(a.id.to_string())),
            (Action::ApiKeyCreate, Some(key.id.to_string())),
        ]
    );
    store.close().await;
}

async fn an_account_refused_by_a_constraint_leaves_no_key_and_no_audit_row(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = account("acme");
    let (key, _) = generate_api_key(a.id, "initial");
    store.insert_account(&a, &key, &[]).await.unwrap();

    // The same account id again: the account insert is refused, and the key and audit rows with it.
    let (second_key, _) = generate_api_key(a.id, "second");
    let audit = [
        audited(a.id, Action::AccountCreate, a.id),
        audited(a.id, Action::ApiKeyCreate, second_key.id),
    ];
    let err = store
        .insert_account(&a, &second_key, &audit)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert!(store.get_api_key(second_key.id).await.unwrap().is_none());
    assert!(trail(&store, a.id).await.is_empty());

    // A key that collides after the account was written undoes the account too.
    let b = account("beta");
    let (dup, _) = generate_api_key(b.id, "initial");
    let dup = strongroom::store::ApiKeyRecord { id: key.id, ..dup };
    let err = store
        .insert_account(&b, &dup, &[audited(b.id, Action::AccountCreate, b.id)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert!(store.get_account(b.id).await.unwrap().is_none());
    assert!(trail(&store, b.id).await.is_empty());
    store.close().await;
}

async fn a_key_is_created_with_its_audit_row(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = account("acme");
    super::insert_account(&store, &a).await;
    let (key, _) = generate_api_key(a.id, "ci");
    store
        .insert_api_key(&key, &audited(a.id, Action::ApiKeyCreate, key.id))
        .await
        .unwrap();
    assert_eq!(
        trail(&store, a.id).await,
        [(Action::ApiKeyCreate, Some(key.id.to_string()))]
    );
    store.close().await;
}

async fn a_key_for_a_missing_account_is_refused_by_a_constraint(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let missing = Uuid::new_v4();
    let (key, _) = generate_api_key(missing, "orphan");
    let err = store
        .insert_api_key(&key, &audited(missing, Action::ApiKeyCreate, key.id))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert!(trail(&store, missing).await.is_empty());
    store.close().await;
}

async fn the_default_account_is_bootstrapped_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let first = account("default");
    let (key, _) = generate_api_key(first.id, "default");
    assert!(store
        .bootstrap_default_account(
            &first,
            &key,
            &[audited(first.id, Action::AccountCreate, first.id)]
        )
        .await
        .unwrap());
    let second = account("default");
    let (key2, _) = generate_api_key(second.id, "default");
    assert!(!store
        .bootstrap_default_account(
            &second,
            &key2,
            &[audited(second.id, Action::AccountCreate, second.id)]
        )
        .await
        .unwrap());
    assert_eq!(store.list_accounts().await.unwrap().len(), 1);
    assert_eq!(
        trail(&store, first.id).await,
        [(Action::AccountCreate, Some(first.id.to_string()))]
    );
    assert!(trail(&store, second.id).await.is_empty());
    store.close().await;
}

async fn a_key_is_revoked_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = account("acme");
    super::insert_account(&store, &a).await;
    let (key, _) = generate_api_key(a.id, "ci");
    store
        .insert_api_key(&key, &noted(Action::ApiKeyCreate))
        .await
        .unwrap();
    let revoke = audited(a.id, Action::ApiKeyRevoke, key.id);
    assert!(store
        .revoke_api_key(key.id, Ts::now(), &revoke)
        .await
        .unwrap());
    assert!(!store
        .revoke_api_key(key.id, Ts::now(), &revoke)
        .await
        .unwrap());
    assert!(store
        .get_api_key(key.id)
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    // The revoke that changed something wrote its row; the refused one wrote none.
    assert_eq!(
        trail(&store, a.id).await,
        [(Action::ApiKeyRevoke, Some(key.id.to_string()))]
    );
    store.close().await;
}

async fn an_idempotency_key_is_claimed_by_one_request_at_a_time(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = account("acme");
    super::insert_account(&store, &a).await;
    let now = Ts::now();
    assert!(store
        .insert_idempotency_claim(a.id, "k1", b"hash-a", now)
        .await
        .unwrap());
    assert!(!store
        .insert_idempotency_claim(a.id, "k1", b"hash-a", now)
        .await
        .unwrap());
    let pending = store
        .get_idempotency_record(a.id, "k1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (pending.response_status, pending.request_hash.as_slice()),
        (None, &b"hash-a"[..])
    );

    // Only the claim that holds the key may record its answer.
    let other_claim = now.plus(Duration::from_secs(1));
    store
        .save_idempotent_response(a.id, "k1", other_claim, 201, b"late")
        .await
        .unwrap();
    store
        .delete_idempotency_record(a.id, "k1", other_claim)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_idempotency_record(a.id, "k1")
            .await
            .unwrap()
            .unwrap()
            .response_status,
        None
    );
    store
        .save_idempotent_response(a.id, "k1", now, 200, b"{\"ok\":true}")
        .await
        .unwrap();
    let done = store
        .get_idempotency_record(a.id, "k1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.response_status, Some(200));
    assert_eq!(done.response_body.as_deref(), Some(&b"{\"ok\":true}"[..]));

    let other = account("other");
    super::insert_account(&store, &other).await;
    assert!(
        store
            .insert_idempotency_claim(other.id, "k1", b"hash-b", now)
            .await
            .unwrap(),
        "keys are per account"
    );
    store.close().await;
}

async fn an_expired_or_abandoned_idempotency_record_can_be_reclaimed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = account("acme");
    super::insert_account(&store, &a).await;
    let old = Ts::now().minus(Duration::from_secs(600));
    store
        .insert_idempotency_claim(a.id, "fresh", b"h", Ts::now())
        .await
        .unwrap();
    store
        .insert_idempotency_claim(a.id, "abandoned", b"h", old)
        .await
        .unwrap();
    let now = Ts::now();
    let (expired_before, abandoned_before) = (
        now.minus(Duration::from_secs(86_400)),
        now.minus(Duration::from_secs(300)),
    );
    assert!(!store
        .reclaim_idempotency_record(a.id, "fresh", b"h2", now, expired_before, abandoned_before)
        .await
        .unwrap());
    assert!(store
        .reclaim_idempotency_record(
            a.id,
            "abandoned",
            b"h2",
            now,
            expired_before,
            abandoned_before
        )
        .await
        .unwrap());
    assert_eq!(
        store
            .get_idempotency_record(a.id, "abandoned")
            .await
            .unwrap()
            .unwrap()
            .request_hash,
        b"h2"
    );

    assert_eq!(
        store
            .purge_idempotency_records(now.plus(Duration::from_secs(1)))
            .await
            .unwrap(),
        2
    );
    store.close().await;
}
