//! Idempotency records: counting an account's recent records, bounded by the cap being checked.

use std::time::Duration;

use strongroom::store::Ts;

use super::{account, insert_account};
use crate::support::{on_both_backends, Backend, TestDb};

on_both_backends!(recent_idempotency_records_are_counted_per_account_up_to_a_bound);

async fn recent_idempotency_records_are_counted_per_account_up_to_a_bound(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let (a, b) = (account("a"), account("b"));
    insert_account(&store, &a).await;
    insert_account(&store, &b).await;
    let now = Ts::now();
    let old = now.minus(Duration::from_secs(25 * 3600));
    for (key, at) in [("k1", now), ("k2", now), ("k3", now), ("old", old)] {
        assert!(store
            .insert_idempotency_claim(a.id, key, b"hash", at)
            .await
            .unwrap());
    }
    store
        .insert_idempotency_claim(b.id, "k1", b"hash", now)
        .await
        .unwrap();
    let since = now.minus(Duration::from_secs(24 * 3600));
    assert_eq!(
        store
            .count_idempotency_records(a.id, since, 100)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .count_idempotency_records(a.id, since, 2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .count_idempotency_records(b.id, since, 100)
            .await
            .unwrap(),
        1
    );
}
