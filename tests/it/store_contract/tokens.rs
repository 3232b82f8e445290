//! Tokens on both backends: batches stored whole with their audit events (or not at all), listed and
//! counted within a window, deleted with their audit row in the same transaction, expired, touched.

use strongroom::store::{Action, AuditEvent, StoreError, TokenQuery};
use uuid::Uuid;

use super::{
    account, at, job, outbox, store_with_account, store_with_webhook, t0, token, token_columns,
    with_audit,
};
use crate::support::on_both_backends;
use crate::support::Backend;

on_both_backends!(
    a_token_batch_is_stored_with_its_audit_events_and_read_back_exactly,
    a_batch_of_several_statements_is_stored_whole,
    a_batch_with_a_bad_row_is_refused_whole_by_a_constraint,
    the_writer_a_token_batch_used_is_soon_free_for_other_writes,
    tokens_are_listed_and_counted_within_their_window_in_either_order,
    a_token_is_deleted_once_with_its_audit_row_in_the_same_transaction,
    only_expired_tokens_are_listed_as_expired,
    touching_a_token_writes_its_audit_and_outbox_only_if_it_exists,
    a_page_built_by_the_database_is_the_page_the_rust_mapping_builds,
    statistics_are_refreshed_once_a_table_has_changed_enough,
    tokens_stored_before_keyed_ids_are_migrated_whole_and_found_by_their_id,
);

fn query(account_id: Uuid) -> TokenQuery {
    TokenQuery {
        account_id,
        from: None,
        until: None,
        oldest_first: false,
        limit: 100,
        offset: 0,
    }
}

fn audit_of(events: &[AuditEvent], action: Action) -> Vec<(Option<String>, &str)> {
    events
        .iter()
        .filter(|e| e.action == action)
        .map(|e| (e.target.clone(), e.outcome.as_str()))
        .collect()
}

async fn a_token_batch_is_stored_with_its_audit_events_and_read_back_exactly(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let mut imported = token(a.id, at(t0(), 2));
    imported.business_key = Some("pm_1".into());
    imported.import_provider = Some("stripe".into());
    imported.cardholder_name = None;
    imported.expires_at = Some(at(t0(), 86_400));
    let batch = vec![with_audit(token(a.id, at(t0(), 1))), with_audit(imported)];
    store.insert_tokens(&batch, &[]).await.unwrap();
    for (t, _) in &batch {
        let read = store.get_token(a.id, t.id, None).await.unwrap().unwrap();
        assert_eq!(token_columns(&read), token_columns(t));
    }
    assert!(store
        .get_token(Uuid::new_v4(), batch[0].0.id, None)
        .await
        .unwrap()
        .is_none());
    let events = store.list_audit_events(a.id, 10).await.unwrap();
    assert_eq!(
        audit_of(&events, Action::TokenCreate),
        [
            (Some(batch[1].0.id.to_string()), "success"),
            (Some(batch[0].0.id.to_string()), "success")
        ]
    );
    assert_eq!(events.len(), 2);
    store.close().await;
}

/// SQLite keeps its one writer connection from a token batch to the next for a few milliseconds; the
/// other writes on that connection (here a job) must have it soon after, with no further batch and no
/// word from the token writer that it is idle.
async fn the_writer_a_token_batch_used_is_soon_free_for_other_writes(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    for i in 0..3 {
        let batch = [with_audit(token(a.id, at(t0(), i)))];
        store.insert_tokens(&batch, &[]).await.unwrap();
    }
    let check = job("writer-check", t0());
    let written =
        tokio::time::timeout(std::time::Duration::from_secs(2), store.enqueue_job(&check)).await;
    assert!(matches!(written, Ok(Ok(()))), "{written:?}");
    store.close().await;
}

async fn a_batch_of_several_statements_is_stored_whole(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let batch: Vec<_> = (0..450)
        .map(|i| with_audit(token(a.id, at(t0(), i))))
        .collect();
    store.insert_tokens(&batch, &[]).await.unwrap();
    assert_eq!(store.count_tokens(&query(a.id)).await.unwrap(), 450);
    assert_eq!(
        store.list_audit_events(a.id, 1_000).await.unwrap().len(),
        450
    );
    store.close().await;
}

async fn a_batch_with_a_bad_row_is_refused_whole_by_a_constraint(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    for size in [2, 250] {
        let mut batch: Vec<_> = (0..size)
            .map(|i| with_audit(token(a.id, at(t0(), i))))
            .collect();
        let duplicate = batch[0].clone();
        batch.push(duplicate);
        let err = store.insert_tokens(&batch, &[]).await.unwrap_err();
        assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    }
    let orphan = with_audit(token(Uuid::new_v4(), t0()));
    let err = store
        .insert_tokens(std::slice::from_ref(&orphan), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Constraint(_)), "{err:?}");
    assert_eq!(store.count_tokens(&query(a.id)).await.unwrap(), 0);
    assert!(store.list_audit_events(a.id, 10).await.unwrap().is_empty());

    // The store is still usable: a failed script left no transaction open.
    let ok = with_audit(token(a.id, t0()));
    store
        .insert_tokens(std::slice::from_ref(&ok), &[])
        .await
        .unwrap();
    assert_eq!(store.count_tokens(&query(a.id)).await.unwrap(), 1);
    store.close().await;
}

async fn tokens_are_listed_and_counted_within_their_window_in_either_order(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let other = account("other");
    super::insert_account(&store, &other).await;
    let mut batch: Vec<_> = (0..5)
        .map(|i| with_audit(token(a.id, at(t0(), i * 10))))
        .collect();
    batch.push(with_audit(token(other.id, at(t0(), 15))));
    store.insert_tokens(&batch, &[]).await.unwrap();
    let ids = |from: usize, to: usize| -> Vec<Uuid> {
        batch[from..to].iter().map(|(t, _)| t.id).collect()
    };
    let listed = |rows: Vec<strongroom::store::TokenListing>| -> Vec<Uuid> {
        rows.iter().map(|t| t.id).collect()
    };

    let newest_first = store.list_tokens(&query(a.id)).await.unwrap();
    let mut expected = ids(0, 5);
    expected.reverse();
    assert_eq!(listed(newest_first), expected);

    let window = TokenQuery {
        from: Some(at(t0(), 10)),
        until: Some(at(t0(), 40)),
        oldest_first: true,
        ..query(a.id)
    };
    assert_eq!(listed(store.list_tokens(&window).await.unwrap()), ids(1, 4));
    assert_eq!(store.count_tokens(&window).await.unwrap(), 3);
    let page = TokenQuery {
        limit: 2,
        offset: 1,
        ..window
    };
    assert_eq!(listed(store.list_tokens(&page).await.unwrap()), ids(2, 4));
    assert_eq!(store.count_tokens(&page).await.unwrap(), 3);
    let from_only = TokenQuery {
        from: Some(at(t0(), 30)),
        ..query(a.id)
    };
    assert_eq!(store.count_tokens(&from_only).await.unwrap(), 2);
    let until_only = TokenQuery {
        until: Some(at(t0(), 30)),
        oldest_first: true,
        ..query(a.id)
    };
    assert_eq!(
        listed(store.list_tokens(&until_only).await.unwrap()),
        ids(0, 3)
    );
    assert_eq!(store.count_tokens(&query(other.id)).await.unwrap(), 1);
    assert_eq!(store.count_tokens(&query(Uuid::new_v4())).await.unwrap(), 0);
    store.close().await;
}

async fn a_token_is_deleted_once_with_its_audit_row_in_the_same_transaction(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let other = account("other");
    super::insert_account(&store, &other).await;
    let t = with_audit(token(a.id, t0()));
    store
        .insert_tokens(std::slice::from_ref(&t), &[])
        .await
        .unwrap();
    let audit = |account: Uuid| {
        AuditEvent::new(
            Some(account),
            "test",
            Action::TokenDelete,
            Some(t.0.id.to_string()),
            "success",
        )
    };

    assert!(!store
        .delete_token(other.id, t.0.id, t.0.created_at, &audit(other.id), &[])
        .await
        .unwrap());
    assert!(store.get_token(a.id, t.0.id, None).await.unwrap().is_some());
    assert!(store
        .list_audit_events(other.id, 10)
        .await
        .unwrap()
        .is_empty());

    assert!(store
        .delete_token(a.id, t.0.id, t.0.created_at, &audit(a.id), &[])
        .await
        .unwrap());
    assert!(store.get_token(a.id, t.0.id, None).await.unwrap().is_none());
    assert!(!store
        .delete_token(a.id, t.0.id, t.0.created_at, &audit(a.id), &[])
        .await
        .unwrap());
    let events = store.list_audit_events(a.id, 10).await.unwrap();
    assert_eq!(
        audit_of(&events, Action::TokenDelete),
        [(Some(t.0.id.to_string()), "success")]
    );
    store.close().await;
}

async fn only_expired_tokens_are_listed_as_expired(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let now = at(t0(), 100);
    let mut expired = token(a.id, t0());
    expired.expires_at = Some(at(now, 0).minus(std::time::Duration::from_secs(1)));
    let mut due_now = token(a.id, t0());
    due_now.expires_at = Some(now);
    let lasting = token(a.id, t0());
    let batch: Vec<_> = [expired.clone(), due_now.clone(), lasting.clone()]
        .into_iter()
        .map(with_audit)
        .collect();
    store.insert_tokens(&batch, &[]).await.unwrap();
    let ids = |rows: Vec<strongroom::store::TokenRecord>| {
        rows.into_iter().map(|t| t.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.expired_tokens(now, 10).await.unwrap()),
        [expired.id]
    );
    assert_eq!(
        ids(store.expired_tokens(now, 0).await.unwrap()),
        Vec::<Uuid>::new()
    );
    store
        .delete_token(
            a.id,
            expired.id,
            expired.created_at,
            &with_audit(expired.clone()).1,
            &[],
        )
        .await
        .unwrap();
    assert!(store.expired_tokens(now, 10).await.unwrap().is_empty());
    assert!(store
        .get_token(a.id, due_now.id, None)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .get_token(a.id, lasting.id, None)
        .await
        .unwrap()
        .is_some());
    store.close().await;
}

async fn touching_a_token_writes_its_audit_and_outbox_only_if_it_exists(backend: Backend) {
    let (_db, store, a, hook) = store_with_webhook(backend).await;
    let t = with_audit(token(a.id, t0()));
    store
        .insert_tokens(std::slice::from_ref(&t), &[])
        .await
        .unwrap();
    let consumed = |id: Uuid| {
        AuditEvent::new(
            Some(a.id),
            "test",
            Action::TokenConsume,
            Some(id.to_string()),
            "success",
        )
    };

    let missing = Uuid::new_v4();
    let lost = outbox(&hook, missing, at(t0(), 1));
    assert!(!store
        .touch_token(
            a.id,
            missing,
            t.0.created_at,
            &consumed(missing),
            std::slice::from_ref(&lost)
        )
        .await
        .unwrap());
    assert!(store.get_webhook_delivery(lost.id).await.unwrap().is_none());
    assert!(store.get_job(lost.job.id).await.unwrap().is_none());

    let event = outbox(&hook, t.0.id, at(t0(), 2));
    assert!(store
        .touch_token(
            a.id,
            t.0.id,
            t.0.created_at,
            &consumed(t.0.id),
            std::slice::from_ref(&event)
        )
        .await
        .unwrap());
    let delivery = store.get_webhook_delivery(event.id).await.unwrap().unwrap();
    assert_eq!(
        (delivery.object_id, delivery.status.as_str()),
        (t.0.id, "pending")
    );
    assert!(store.get_job(event.job.id).await.unwrap().is_some());
    let events = store.list_audit_events(a.id, 10).await.unwrap();
    assert_eq!(
        audit_of(&events, Action::TokenConsume),
        [(Some(t.0.id.to_string()), "success")]
    );
    let read = store.get_token(a.id, t.0.id, None).await.unwrap().unwrap();
    assert_eq!(token_columns(&read), token_columns(&t.0));
    store.close().await;
}

/// `token_page_json` (the database builds the objects) against `list_tokens` mapped by
/// `objects::token` (what `GET /tokens/{id}` answers), in both orders, on tokens with and without
/// every optional field, a scheme the model does not know, and instants with and without fractions.
async fn a_page_built_by_the_database_is_the_page_the_rust_mapping_builds(backend: Backend) {
    use strongroom::domain::objects;
    use strongroom::store::Ts;

    let (_db, store, a) = store_with_account(backend).await;
    let base = t0().micros();
    let url = "https://vault.example.com:8443";
    let mut rows = Vec::new();
    for (i, frac) in [0i64, 120_000, 123_456, 7].iter().enumerate() {
        let mut t = token(
            a.id,
            Ts::from_micros(base + i as i64 * 60_000_000 + frac).unwrap(),
        );
        t.scheme = ["VISA", "American Express", "visa", "UnionPay"][i].into();
        t.cardholder_name = (i != 1).then(|| format!("Holder \"{i}\" ü"));
        t.business_key = (i == 2).then(|| "pm_123".to_owned());
        t.import_provider = (i == 2).then(|| "stripe".to_owned());
        t.expires_at = (i == 3).then(|| Ts::from_micros(base + 86_400_000_000 + 5_000).unwrap());
        rows.push(with_audit(t));
    }
    store.insert_tokens(&rows, &[]).await.unwrap();

    for oldest_first in [false, true] {
        for (limit, offset) in [(10, 0), (2, 1), (10, 4)] {
            let q = TokenQuery {
                oldest_first,
                limit,
                offset,
                ..query(a.id)
            };
            let by_rust: Vec<_> = store
                .list_tokens(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|t| objects::token(t, url).unwrap())
                .collect();
            let by_rust = serde_json::to_value(&by_rust).unwrap();
            let by_db: serde_json::Value =
                serde_json::from_str(&store.token_page_json(&q, url).await.unwrap()).unwrap();
            assert_eq!(
                by_db, by_rust,
                "oldest first {oldest_first}, limit {limit}, offset {offset}"
            );
            if offset == 0 {
                assert_eq!(by_db.as_array().unwrap().len(), 4);
            }
        }
    }
    store.close().await;
}

async fn statistics_are_refreshed_once_a_table_has_changed_enough(backend: Backend) {
    let (_db, store, a) = store_with_account(backend).await;
    let batch: Vec<_> = (0..600).map(|_| with_audit(token(a.id, t0()))).collect();
    store.insert_tokens(&batch, &[]).await.unwrap();
    let mut refreshed = Vec::new();
    // A PostgreSQL session hands its activity counters to the statistics views at the end of a
    // transaction a second or more after it last did (else when idle for ten seconds): the writes go on.
    for _ in 0..150 {
        refreshed = store.refresh_stale_statistics().await.unwrap();
        if !refreshed.is_empty() || backend == Backend::Sqlite {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        store
            .insert_tokens(&[with_audit(token(a.id, t0()))], &[])
            .await
            .unwrap();
    }
    match backend {
        Backend::Sqlite => assert!(refreshed.is_empty()),
        Backend::Postgres => {
            assert!(refreshed.iter().any(|t| t == "tokens"), "{refreshed:?}");
            // Fresh now: the next round leaves it alone.
            let again = store.refresh_stale_statistics().await.unwrap();
            assert!(!again.iter().any(|t| t == "tokens"), "{again:?}");
        }
    }
    store.close().await;
}

/// Migration 0022 on a database an older release filled: on SQLite it copies the tokens into a table
/// without the primary key on the id, in one transaction whose statements change far more than the
/// 128 KiB a statement's journal keeps in memory (the journal spills to a file: with the spill size
/// this build had before, every such spill failed with "database or disk is full"). The tokens are
/// then found by their id through the index on random ids, and by their creation time; the queries'
/// plans use those indexes.
async fn tokens_stored_before_keyed_ids_are_migrated_whole_and_found_by_their_id(backend: Backend) {
    const COUNT: usize = 30_000;
    let db = crate::support::TestDb::new(backend).await;
    super::webhooks::migrate_up_to(backend, &db.url, "0022").await;
    let store = strongroom::store::open(&db.url, 4, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let a = account("acme");
    super::insert_account(&store, &a).await;
    let rows: Vec<_> = (0..COUNT)
        .map(|i| with_audit(token(a.id, at(t0(), i as u64))))
        .collect();
    let insert = |chunk: &[(strongroom::store::TokenRecord, AuditEvent)]| {
        let mut sql = String::from(
            "INSERT INTO tokens (id, account_id, created_at, expiry_month, expiry_year, cardholder_name, \
             issuer_identification_number, masked_account_number, account_number_last_four, \
             account_number_length, scheme, status, fingerprint, sealed_card) VALUES ",
        );
        let values: Vec<String> = chunk
            .iter()
            .map(|(t, _)| {
                let (id, account, fp, sealed) = match backend {
                    Backend::Sqlite => (
                        format!("X'{}'", t.id.simple()),
                        format!("X'{}'", a.id.simple()),
                        format!("X'{}'", hex::encode(&t.fingerprint)),
                        format!("X'{}'", hex::encode(&t.sealed_card)),
                    ),
                    Backend::Postgres => (
                        format!("'{}'", t.id),
                        format!("'{}'", a.id),
                        format!("'\\x{}'", hex::encode(&t.fingerprint)),
                        format!("'\\x{}'", hex::encode(&t.sealed_card)),
                    ),
                };
                let created = match backend {
                    Backend::Sqlite => t.created_at.micros().to_string(),
                    Backend::Postgres => format!("'{}'", t.created_at.rfc3339()),
                };
                format!(
                    "({id}, {account}, {created}, 12, 2030, 'Ada Lovelace', '42424242', '42424242******42', '4242', 16, \
                     'visa', 'active', {fp}, {sealed})"
                )
            })
            .collect();
        sql.push_str(&values.join(", "));
        sql
    };
    let statements: Vec<String> = rows.chunks(1000).map(insert).collect();
    match backend {
        Backend::Sqlite => {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            for sql in &statements {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            for sql in &statements {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        }
    }

    store.migrate().await.unwrap();
    for (t, _) in rows.iter().step_by(997) {
        let by_id = store.get_token(a.id, t.id, None).await.unwrap().unwrap();
        assert_eq!(token_columns(&by_id), token_columns(t));
        assert!(!by_id.keyed_id);
        let by_time = store
            .get_token(a.id, t.id, Some(t.created_at))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_time.id, t.id);
    }
    assert!(store
        .get_token(a.id, Uuid::new_v4(), None)
        .await
        .unwrap()
        .is_none());
    if backend == Backend::Sqlite {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        for (query, index) in [
            (
                "SELECT sealed_card FROM tokens WHERE id = ?1 AND keyed_id = FALSE AND account_id = ?2",
                "tokens_by_random_id",
            ),
            (
                "SELECT sealed_card FROM tokens WHERE account_id = ?2 AND created_at = ?3 AND id = ?1",
                "tokens_by_account_created",
            ),
        ] {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {query}"))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            assert!(
                plan.iter().any(|(_, _, _, detail)| detail.contains(index)),
                "{query}: {plan:?}"
            );
        }
    }
    store.close().await;
}
