//! Token ids: made under the account's id key (they give back the token's creation time, by which the
//! token is found), while tokens with random ids, from before there were id keys, are still found by
//! their id; an account's key record without an id key gets one when next loaded.

use reqwest::StatusCode;
use sqlx::Connection;
use strongroom::vault::token_ids::TokenIds;
use uuid::Uuid;

use crate::support::{card, on_both_backends, spawn_app, Backend, TestApp};

on_both_backends!(
    ids_are_v4_and_name_the_tokens_creation_time,
    tokens_with_random_ids_stay_found_when_the_account_gets_an_id_key,
);

/// Runs `sql` on the test's database, outside the server.
async fn execute(app: &TestApp, sql: &str) {
    if app.db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
}

async fn ids_are_v4_and_name_the_tokens_creation_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.account_id().await;
    let token = app.new_token(&card("4111111111111111")).await;
    let id: Uuid = token["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
    let stored = app.stored_token(account, id).await.unwrap();
    assert!(stored.keyed_id);
    let vault = &app.server().state().tokens.vault;
    assert_eq!(
        vault.token_created_at(account, id).await.unwrap(),
        Some(stored.created_at)
    );
    // Another account's key does not read it, and a key that is not the account's reads nothing.
    let (other, _) = app
        .create_account("other", &[strongroom::store::Feature::CdeImport])
        .await;
    assert_eq!(vault.token_created_at(other, id).await.unwrap(), None);
    assert_eq!(TokenIds::new(&[9; 32]).created_at(id), None);
}

async fn tokens_with_random_ids_stay_found_when_the_account_gets_an_id_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.account_id().await;
    // As an older release left the account: a token whose id is random to this release (keyed_id
    // false) and a key record without an id key.
    let old = app.new_token(&card("4111111111111111")).await;
    let old_id: Uuid = old["id"].as_str().unwrap().parse().unwrap();
    execute(&app, "UPDATE tokens SET keyed_id = FALSE").await;
    execute(&app, "UPDATE account_keys SET wrapped_id_key = NULL").await;
    let vault = &app.server().state().tokens.vault;
    vault.forget_cached_keys();

    let new = app.new_token(&card("5555555555554444")).await;
    let new_id: Uuid = new["id"].as_str().unwrap().parse().unwrap();
    let keys = app
        .store()
        .get_account_keys(account)
        .await
        .unwrap()
        .unwrap();
    assert!(keys.wrapped_id_key.is_some(), "the record got an id key");
    assert!(app.stored_token(account, new_id).await.unwrap().keyed_id);
    // The new key does not make the old id out: it is found among the random ids.
    assert_eq!(vault.token_created_at(account, old_id).await.unwrap(), None);
    for id in [old_id, new_id] {
        let got = app.get_token(&id.to_string()).await;
        assert_eq!(got.status, StatusCode::OK, "{id}");
        assert_eq!(got.body["id"], id.to_string());
    }
    let listed = app.list_tokens("").await;
    assert_eq!(listed.body["pagination"]["total_items"], 2);
    let listed: Vec<&str> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [new_id.to_string(), old_id.to_string()]);
    // Paying opens the old token's card, sealed for its id.
    let paid = app
        .pay(
            "one-off",
            &crate::support::payment(&old_id.to_string(), 500, "automatic"),
        )
        .await;
    assert_eq!(paid["status"], "captured", "{paid}");
    assert_eq!(
        app.delete_token(&old_id.to_string()).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get_token(&old_id.to_string()).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(app.stored_token(account, old_id).await.is_none());
    assert_eq!(
        app.get_token(&new_id.to_string()).await.status,
        StatusCode::OK
    );
}
