//! Vault keys on both backends: an account's first keys are stored once, and keys wrapped by an older
//! master key are listed and rewrapped only from the version they were read at.

use strongroom::store::{
    AccountKeysRecord, Action, AuditEvent, DynStore, Reseal, SealedColumn, Ts,
};
use uuid::Uuid;

use super::{account, at, t0, token, trail, with_audit};
use crate::support::on_both_backends;
use crate::support::{Backend, TestDb};

on_both_backends!(
    an_accounts_first_keys_are_stored_once_and_read_back_exactly,
    keys_wrapped_by_an_older_master_are_listed_and_rewrapped_once,
    a_rewrap_writes_its_audit_row_only_when_it_happens,
    an_id_key_is_added_once_and_no_rewrap_read_before_it_drops_it,
    sealed_tokens_are_paged_by_creation_time_then_id_and_replaced_where_they_were_read,
);

fn keys(account_id: Uuid, master_version: i32, fill: u8) -> AccountKeysRecord {
    AccountKeysRecord {
        account_id,
        dek_version: 1,
        master_version,
        wrapped_dek: vec![fill; 60],
        wrapped_fingerprint_key: vec![fill.wrapping_add(1); 60],
        created_at: t0(),
        rewrapped_at: None,
        previous_dek_version: None,
        previous_wrapped_dek: None,
        wrapped_id_key: Some(vec![fill.wrapping_add(2); 60]),
    }
}

#[allow(clippy::type_complexity)]
fn columns(k: &AccountKeysRecord) -> (Uuid, i32, i32, &[u8], &[u8], Ts, Option<Ts>) {
    (
        k.account_id,
        k.dek_version,
        k.master_version,
        &k.wrapped_dek,
        &k.wrapped_fingerprint_key,
        k.created_at,
        k.rewrapped_at,
    )
}

async fn new_account(store: &DynStore) -> Uuid {
    let a = account("acme");
    super::insert_account(store, &a).await;
    a.id
}

async fn an_accounts_first_keys_are_stored_once_and_read_back_exactly(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = new_account(&store).await;
    let first = keys(a, 1, 1);
    assert!(store.insert_account_keys(&first).await.unwrap());
    assert!(!store.insert_account_keys(&keys(a, 1, 2)).await.unwrap());
    let read = store.get_account_keys(a).await.unwrap().unwrap();
    assert_eq!(columns(&read), columns(&first));
    assert!(store
        .get_account_keys(Uuid::new_v4())
        .await
        .unwrap()
        .is_none());
    store.close().await;
}

async fn keys_wrapped_by_an_older_master_are_listed_and_rewrapped_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let mut old = Vec::new();
    for fill in [1, 2] {
        let k = keys(new_account(&store).await, 1, fill);
        store.insert_account_keys(&k).await.unwrap();
        old.push(k);
    }
    let current = keys(new_account(&store).await, 2, 3);
    store.insert_account_keys(&current).await.unwrap();
    old.sort_by_key(|k| k.account_id);

    let listed = store.list_account_keys_wrapped_before(2, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(columns).collect::<Vec<_>>(),
        old.iter().map(columns).collect::<Vec<_>>()
    );
    let one = store.list_account_keys_wrapped_before(2, 1).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].account_id, old[0].account_id);
    assert!(store
        .list_account_keys_wrapped_before(1, 10)
        .await
        .unwrap()
        .is_empty());

    let rewrapped = AccountKeysRecord {
        master_version: 2,
        wrapped_dek: vec![8; 60],
        wrapped_fingerprint_key: vec![9; 60],
        rewrapped_at: Some(at(t0(), 60)),
        ..old[0].clone()
    };
    assert!(store
        .rewrap_account_keys(&rewrapped, 1, None)
        .await
        .unwrap());
    assert!(!store
        .rewrap_account_keys(&rewrapped, 1, None)
        .await
        .unwrap());
    let read = store
        .get_account_keys(old[0].account_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(columns(&read), columns(&rewrapped));
    let left = store.list_account_keys_wrapped_before(2, 10).await.unwrap();
    assert_eq!(
        left.iter().map(|k| k.account_id).collect::<Vec<_>>(),
        [old[1].account_id]
    );
    store.close().await;
}

async fn a_rewrap_writes_its_audit_row_only_when_it_happens(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = new_account(&store).await;
    let old = keys(a, 1, 1);
    store.insert_account_keys(&old).await.unwrap();
    let rewrapped = AccountKeysRecord {
        master_version: 2,
        rewrapped_at: Some(at(t0(), 60)),
        ..keys(a, 2, 5)
    };
    // A rotation's row names no account; this one does, so that the trail can be read back.
    let rotate = AuditEvent::new(
        Some(a),
        "test",
        Action::MasterKeyRotate,
        Some("v2".into()),
        "success",
    );
    // Refused: the keys are not wrapped by version 3.
    assert!(!store
        .rewrap_account_keys(&rewrapped, 3, Some(&rotate))
        .await
        .unwrap());
    assert!(trail(&store, a).await.is_empty());

    assert!(store
        .rewrap_account_keys(&rewrapped, 1, Some(&rotate))
        .await
        .unwrap());
    let rotated = [(Action::MasterKeyRotate, Some("v2".to_owned()))];
    assert_eq!(trail(&store, a).await, rotated);
    assert_eq!(
        store
            .get_account_keys(a)
            .await
            .unwrap()
            .unwrap()
            .master_version,
        2
    );

    // Refused: rewrapped already.
    assert!(!store
        .rewrap_account_keys(&rewrapped, 1, Some(&rotate))
        .await
        .unwrap());
    assert_eq!(trail(&store, a).await, rotated);
    store.close().await;
}

async fn an_id_key_is_added_once_and_no_rewrap_read_before_it_drops_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = new_account(&store).await;
    let without = AccountKeysRecord {
        wrapped_id_key: None,
        ..keys(a, 1, 1)
    };
    store.insert_account_keys(&without).await.unwrap();
    // Only under the master version it was read at, and only once.
    assert!(!store.add_account_id_key(a, 2, &[4; 60]).await.unwrap());
    assert!(store.add_account_id_key(a, 1, &[4; 60]).await.unwrap());
    assert!(!store.add_account_id_key(a, 1, &[5; 60]).await.unwrap());
    let read = store.get_account_keys(a).await.unwrap().unwrap();
    assert_eq!(read.wrapped_id_key, Some(vec![4; 60]));

    // A rewrap or a data-key rotation prepared from the record as it was before is refused ...
    let stale = AccountKeysRecord {
        master_version: 2,
        wrapped_dek: vec![8; 60],
        ..without.clone()
    };
    assert!(!store.rewrap_account_keys(&stale, 1, None).await.unwrap());
    let rotated = AccountKeysRecord {
        dek_version: 2,
        previous_dek_version: Some(1),
        previous_wrapped_dek: Some(without.wrapped_dek.clone()),
        ..stale.clone()
    };
    let audit = AuditEvent::new(Some(a), "test", Action::DataKeyRotateStart, None, "started");
    assert!(!store
        .begin_data_key_rotation(&rotated, 1, &audit)
        .await
        .unwrap());
    assert_eq!(
        store
            .get_account_keys(a)
            .await
            .unwrap()
            .unwrap()
            .wrapped_id_key,
        Some(vec![4; 60])
    );
    // ... and one from the record as it is carries the id key over.
    let fresh = AccountKeysRecord {
        master_version: 2,
        wrapped_id_key: Some(vec![6; 60]),
        ..read
    };
    assert!(store.rewrap_account_keys(&fresh, 1, None).await.unwrap());
    let read = store.get_account_keys(a).await.unwrap().unwrap();
    assert_eq!(
        (read.master_version, read.wrapped_id_key),
        (2, Some(vec![6; 60]))
    );
    store.close().await;
}

async fn sealed_tokens_are_paged_by_creation_time_then_id_and_replaced_where_they_were_read(
    backend: Backend,
) {
    const TOKENS: SealedColumn = SealedColumn {
        table: "tokens",
        id: "id",
        column: "sealed_card",
        account: "account_id",
    };
    let db = TestDb::new(backend).await;
    let store = db.open_store().await;
    let a = new_account(&store).await;
    // Three tokens share a creation time: the id orders them, and a page may end among them.
    let batch: Vec<_> = [1, 2, 2, 2, 3]
        .into_iter()
        .map(|s| with_audit(token(a, at(t0(), s))))
        .collect();
    store.insert_tokens(&batch, &[]).await.unwrap();
    let mut expected: Vec<_> = batch.iter().map(|(t, _)| (t.created_at, t.id)).collect();
    expected.sort();

    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let rows = store.list_sealed(TOKENS, a, after, 2).await.unwrap();
        let Some((id, created_at, _)) = rows.last() else {
            break;
        };
        after = Some((*created_at, *id));
        paged.extend(rows.iter().map(|(id, created_at, _)| (*created_at, *id)));
    }
    assert_eq!(paged, expected);

    let (created_at, id) = expected[2];
    let old = vec![7; 48];
    let reseal = |created_at| Reseal {
        id,
        created_at,
        old: old.clone(),
        new: vec![9; 48],
        fingerprint: None,
    };
    // Not where it was read (another time, another account): nothing replaced.
    assert_eq!(
        store
            .replace_sealed(TOKENS, a, &[reseal(at(t0(), 9))])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .replace_sealed(TOKENS, Uuid::new_v4(), &[reseal(created_at)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .replace_sealed(TOKENS, a, &[reseal(created_at)])
            .await
            .unwrap(),
        1
    );
    let read = store
        .get_token(a, id, Some(created_at))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.sealed_card, vec![9; 48]);
    store.close().await;
}
