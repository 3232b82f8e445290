//! The per-API-key request rate: a key over it is answered 429 with `Retry-After`, while the keys of
//! other accounts go on being served; and the cap on an account's idempotency records.

use std::time::Duration;

use reqwest::StatusCode;
use strongroom::store::Feature;

use crate::support::{card, error_body, on_both_backends, spawn_app_with, Backend};

on_both_backends!(a_key_over_its_rate_gets_429_while_another_accounts_key_is_served);

async fn a_key_over_its_rate_gets_429_while_another_accounts_key_is_served(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.http.rate_limit = Some(5);
        c.http.rate_limit_burst = 5;
    })
    .await;
    let (_, other_key) = app.create_account("other", &[Feature::CdeImport]).await;
    let other = app.with_key(&other_key);

    for _ in 0..5 {
        assert_eq!(app.account().await.status, StatusCode::OK);
    }
    let refused = app.tokenize(&card("4111111111111111")).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.body,
        error_body(
            429,
            "TOO_MANY_REQUESTS",
            "This API key is over its request rate; retry after the time in Retry-After"
        )
    );
    assert_eq!(refused.header("retry-after"), Some("1"));

    for _ in 0..5 {
        assert_eq!(other.account().await.status, StatusCode::OK);
    }
    // The refused request stored nothing; after the wait the key is served again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.all_tokens().await.len(), 0);
}

on_both_backends!(an_account_over_its_idempotency_record_cap_gets_429_for_new_keys_only);

async fn an_account_over_its_idempotency_record_cap_gets_429_for_new_keys_only(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.idempotency_records_per_account = Some(3)).await;
    let (_, other_key) = app.create_account("other", &[Feature::CdeImport]).await;
    let body = card("4111111111111111");
    for key in ["k1", "k2", "k3"] {
        app.tokenize_idempotent(key, &body).await.ok_body();
    }
    let refused = app.tokenize_idempotent("k4", &body).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.body,
        error_body(
            429,
            "TOO_MANY_REQUESTS",
            "This account has used 3 idempotency keys in the last 24 hours, its limit; \
             retry later or without x-idempotency-key"
        )
    );
    assert_eq!(refused.header("retry-after"), Some("60"));

    // A key already recorded still replays; requests without a key and other accounts are served.
    let replay = app.tokenize_idempotent("k1", &body).await;
    assert_eq!(replay.header("x-idempotent-replayed"), Some("true"));
    app.tokenize(&body).await.ok_body();
    app.with_key(&other_key)
        .tokenize_idempotent("k4", &body)
        .await
        .ok_body();
    assert_eq!(app.all_tokens().await.len(), 4);
}
