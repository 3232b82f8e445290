//! Accounts, API keys and idempotency records on both backends.

use std::time::Duration;

use strongroom::domain::accounts::generate_api_key;
use strongroom::store::{FeatureSet, StoreError, Ts};
use uuid::Uuid;

use super::account;
use crate::support::on_both_backends;
use crate::support::{Backend, TestDb};

on_both_backends!(
    accounts_and_keys_round_trip_exactly,
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
    store.insert_account(&a).await.unwrap();
    let read = store.get_account(a.id).await.unwrap().unwrap();
    assert_eq!(
        (read.id, read.name.as_str(), read.created_at),
        (a.id, "acme", a.created_at)
    );
    assert_eq!(read.features, FeatureSet::all());
    assert!(store.get_account(Uuid::new_v4()).await.unwrap().is_none());

    let (key, _) = generate_api_key(a.id, "ci");
    store.insert_api_key(&key).await.unwrap();
    let joined = store.get_key_with_account(key.id).await.unwrap().unwrap();
    assert_eq!((joined.key_id, joined.account_id), (key.id, a.id));
    assert_eq!(joined.secret_digest, key.secret_digest);
    assert_eq!(store.list_api_keys(a.id).await.unwrap().len(), 1);
    store.close().await;
}

async fn a_key_for_a_missing_account_is_refused_by_a_constraint(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let (key, _) = generate_api_key(Uuid::new_v4(), "orphan");
    let err = store.insert_api_key(&key).await.unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    store.close().await;
}

async fn the_default_account_is_bootstrapped_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let first = account("default");
    let (key, _) = generate_api_key(first.id, "default");
    assert!(store.bootstrap_default_account(&first, &key).await.unwrap());
    let second = account("default");
    let (key2, _) = generate_api_key(second.id, "default");
    assert!(!store
        .bootstrap_default_account(&second, &key2)
        .await
        .unwrap());
    assert_eq!(store.list_accounts().await.unwrap().len(), 1);
    store.close().await;
}

async fn a_key_is_revoked_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = account("acme");
    store.insert_account(&a).await.unwrap();
    let (key, _) = generate_api_key(a.id, "ci");
    store.insert_api_key(&key).await.unwrap();
    assert!(store.revoke_api_key(key.id, Ts::now()).await.unwrap());
    assert!(!store.revoke_api_key(key.id, Ts::now()).await.unwrap());
    assert!(store
        .get_api_key(key.id)
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    store.close().await;
}

async fn an_idempotency_key_is_claimed_by_one_request_at_a_time(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = account("acme");
    store.insert_account(&a).await.unwrap();
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
    store.insert_account(&other).await.unwrap();
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
    store.insert_account(&a).await.unwrap();
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
