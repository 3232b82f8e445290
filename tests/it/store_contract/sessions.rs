//! The session store on both backends: allowed origins round-trip with their audit rows and are removed
//! once; a token session is found by the hash of its id and completed once, never after it expired.

use std::time::Duration;

use strongroom::store::{Action, OriginRecord, SessionRecord, Ts};
use uuid::Uuid;

use super::{audited, store_with_account, t0, trail};
use crate::support::{on_both_backends, Backend};

on_both_backends!(
    origins_round_trip_are_found_by_text_and_are_removed_once,
    a_session_is_completed_once_and_never_after_it_expired,
);

async fn origins_round_trip_are_found_by_text_and_are_removed_once(backend: Backend) {
    let (_db, store, acme) = store_with_account(backend).await;
    let origin = OriginRecord {
        id: Uuid::new_v4(),
        account_id: acme.id,
        origin: "https://shop.example".into(),
        created_at: t0(),
        removed_at: None,
    };
    store
        .insert_origin(&origin, &audited(acme.id, Action::OriginAdd, origin.id))
        .await
        .unwrap();
    assert_eq!(
        store.get_origin(origin.id).await.unwrap(),
        Some(origin.clone())
    );
    assert_eq!(
        store.list_origins(Some(acme.id)).await.unwrap(),
        vec![origin.clone()]
    );
    assert!(store
        .origin_allowed_anywhere("https://shop.example")
        .await
        .unwrap());
    assert!(!store
        .origin_allowed_anywhere("https://evil.example")
        .await
        .unwrap());
    let removal = audited(acme.id, Action::OriginRemove, origin.id);
    assert!(store
        .remove_origin(origin.id, t0(), &removal)
        .await
        .unwrap());
    assert!(!store
        .remove_origin(origin.id, t0(), &removal)
        .await
        .unwrap());
    assert!(store.list_origins(None).await.unwrap().is_empty());
    assert!(!store
        .origin_allowed_anywhere("https://shop.example")
        .await
        .unwrap());
    assert_eq!(
        trail(&store, acme.id).await,
        [
            (Action::OriginAdd, Some(origin.id.to_string())),
            (Action::OriginRemove, Some(origin.id.to_string())),
        ]
    );
}

async fn a_session_is_completed_once_and_never_after_it_expired(backend: Backend) {
    let (_db, store, acme) = store_with_account(backend).await;
    let now = Ts::now();
    let session = |hash: u8, expires_at: Ts| SessionRecord {
        id_hash: vec![hash; 32],
        account_id: acme.id,
        kind: "tokenize".into(),
        token_id: None,
        bypass_identification: true,
        token_expiration_secs: Some(60),
        created_at: now,
        expires_at,
        completed_at: None,
    };
    let open = session(1, now.plus(Duration::from_secs(600)));
    let stale = session(2, now.minus(Duration::from_secs(1)));
    store.insert_session(&open).await.unwrap();
    store.insert_session(&stale).await.unwrap();
    assert_eq!(
        store.get_session(&[1; 32]).await.unwrap(),
        Some(open.clone())
    );
    assert_eq!(store.get_session(&[3; 32]).await.unwrap(), None);

    let token = Uuid::new_v4();
    let at = Ts::now();
    assert!(store.complete_session(&[1; 32], token, at).await.unwrap());
    assert!(!store
        .complete_session(&[1; 32], Uuid::new_v4(), at)
        .await
        .unwrap());
    let done = store.get_session(&[1; 32]).await.unwrap().unwrap();
    assert_eq!((done.completed_at, done.token_id), (Some(at), Some(token)));
    assert!(!store.complete_session(&[2; 32], token, at).await.unwrap());

    // Only sessions that ended before the cut-off are purged.
    assert_eq!(store.purge_sessions(now).await.unwrap(), 1);
    assert_eq!(store.get_session(&[2; 32]).await.unwrap(), None);
    assert!(store.get_session(&[1; 32]).await.unwrap().is_some());
}
