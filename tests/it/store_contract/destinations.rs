//! The destination store on both backends: entries round-trip exactly with their audit rows, lists hold
//! only the live entries of the account asked for (oldest first), and an entry is removed once.

use strongroom::store::{Action, DestinationRecord, Ts};
use uuid::Uuid;

use super::{account, audited, insert_account, noted, store_with_account, t0, trail};
use crate::support::{on_both_backends, Backend};

on_both_backends!(
    destinations_round_trip_and_list_per_account,
    a_destination_is_removed_once_and_leaves_the_list,
);

fn destination(account_id: Uuid, url: &str, created_at: Ts) -> DestinationRecord {
    DestinationRecord {
        id: Uuid::new_v4(),
        account_id,
        url: url.into(),
        created_at,
        removed_at: None,
    }
}

async fn destinations_round_trip_and_list_per_account(backend: Backend) {
    let (_db, store, acme) = store_with_account(backend).await;
    let other = account("other");
    insert_account(&store, &other).await;
    let first = destination(acme.id, "https://api.example.com/v1/", t0());
    let second = destination(
        acme.id,
        "https://pay.example.org/",
        t0().plus(std::time::Duration::from_secs(1)),
    );
    let foreign = destination(other.id, "https://api.example.net/", t0());
    for d in [&second, &first, &foreign] {
        store
            .insert_destination(d, &audited(d.account_id, Action::DestinationAdd, d.id))
            .await
            .unwrap();
    }
    assert_eq!(
        trail(&store, acme.id).await,
        [
            (Action::DestinationAdd, Some(second.id.to_string())),
            (Action::DestinationAdd, Some(first.id.to_string())),
        ]
    );
    assert_eq!(
        store.get_destination(first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.get_destination(Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(
        store.list_destinations(Some(acme.id)).await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    let all = store.list_destinations(None).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.contains(&foreign));
    store.close().await;
}

async fn a_destination_is_removed_once_and_leaves_the_list(backend: Backend) {
    let (_db, store, acme) = store_with_account(backend).await;
    let d = destination(acme.id, "https://api.example.com/v1/", t0());
    store
        .insert_destination(&d, &noted(Action::DestinationAdd))
        .await
        .unwrap();
    let at = t0().plus(std::time::Duration::from_secs(5));
    let removal = audited(acme.id, Action::DestinationRemove, d.id);
    assert!(store.remove_destination(d.id, at, &removal).await.unwrap());
    assert!(!store.remove_destination(d.id, at, &removal).await.unwrap());
    assert!(!store
        .remove_destination(Uuid::new_v4(), at, &removal)
        .await
        .unwrap());
    // Only the removal that happened is in the trail.
    assert_eq!(
        trail(&store, acme.id).await,
        [(Action::DestinationRemove, Some(d.id.to_string()))]
    );
    assert_eq!(
        store.list_destinations(Some(acme.id)).await.unwrap(),
        vec![]
    );
    let removed = store.get_destination(d.id).await.unwrap().unwrap();
    assert_eq!(removed.removed_at, Some(at));
    store.close().await;
}
