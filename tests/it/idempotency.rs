//! Idempotent POSTs and request-size limits, over HTTP.

use reqwest::{Method, StatusCode};
use serde_json::json;
use strongroom::api::idempotency::request_fingerprint;
use strongroom::store::Ts;

use crate::support::{
    card, error_body, on_both_backends, send, spawn_app, spawn_app_with, validation_body, Backend,
};

on_both_backends!(
    the_same_key_and_body_replays_the_first_answer,
    the_same_key_with_another_body_is_409,
    a_key_still_in_flight_is_409,
    a_bad_idempotency_key_is_422,
    a_body_over_the_limit_is_413,
);

async fn the_same_key_and_body_replays_the_first_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = card("4111111111111111");
    let first = app.tokenize_idempotent("order-1", &body).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("x-idempotent-replayed"), None);
    let second = app.tokenize_idempotent("order-1", &body).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(
        second.body, first.body,
        "the stored answer, not a new token"
    );
    assert_eq!(second.header("x-idempotent-replayed"), Some("true"));
    assert_eq!(second.header("x-hellgate-version"), Some("2.0"));
    assert_eq!(
        app.list_tokens("").await.body["pagination"]["total_items"],
        json!(1)
    );

    // Only a success is kept: a refused request runs again (same answer, not a replay); another account
    // may use the same key freely.
    let bad = json!({"account_number": "1"});
    let refused = app.tokenize_idempotent("order-2", &bad).await;
    let replayed = app.tokenize_idempotent("order-2", &bad).await;
    assert_eq!(
        (replayed.status, &replayed.body),
        (StatusCode::UNPROCESSABLE_ENTITY, &refused.body)
    );
    assert_eq!(replayed.header("x-idempotent-replayed"), None);
    let (_, other) = app
        .create_account("other", &[strongroom::store::Feature::CdeImport])
        .await;
    let theirs = app
        .with_key(&other)
        .tokenize_idempotent("order-1", &body)
        .await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert_ne!(theirs.body["id"], first.body["id"]);
}

async fn the_same_key_with_another_body_is_409(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app
        .tokenize_idempotent("k", &card("4111111111111111"))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let changed = app
        .tokenize_idempotent("k", &card("5555555555554444"))
        .await;
    assert_eq!(changed.status, StatusCode::CONFLICT);
    assert_eq!(
        changed.body,
        error_body(
            409,
            "CONFLICT",
            "The idempotency key was already used for a different request"
        )
    );
}

async fn a_key_still_in_flight_is_409(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.account_id().await;
    let body = serde_json::to_vec(&card("4111111111111111")).unwrap();
    // Claim the key as a request in progress elsewhere would have.
    let state = app.server().state();
    let fingerprint = request_fingerprint(
        state,
        account,
        &Method::POST,
        "/cde-import",
        &body.clone().into(),
    )
    .await
    .unwrap();
    assert!(app
        .store()
        .insert_idempotency_claim(account, "busy", &fingerprint, Ts::now())
        .await
        .unwrap());
    let answer = send(
        app.request(Method::POST, "/cde-import")
            .header("x-idempotency-key", "busy")
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert_eq!(
        answer.body,
        error_body(
            409,
            "CONFLICT",
            "A request with this idempotency key is still in progress"
        )
    );
    assert_eq!(
        app.list_tokens("").await.body["pagination"]["total_items"],
        json!(0)
    );
}

async fn a_bad_idempotency_key_is_422(backend: Backend) {
    let app = spawn_app(backend).await;
    let long = "k".repeat(256);
    let answer = app
        .tokenize_idempotent(&long, &card("4111111111111111"))
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer.body,
        validation_body(&[(
            "header.x-idempotency-key",
            "must be 1 to 255 visible ASCII characters"
        )])
    );
}

async fn a_body_over_the_limit_is_413(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.max_body_bytes = 4096).await;
    let mut body = card("4111111111111111");
    body["cardholder_name"] = json!("x".repeat(5000));
    let expected = error_body(
        413,
        "PAYLOAD_TOO_LARGE",
        "The request body is larger than the limit of 4096 bytes",
    );
    let plain = app.tokenize(&body).await;
    assert_eq!(
        (plain.status, &plain.body),
        (StatusCode::PAYLOAD_TOO_LARGE, &expected)
    );
    let idempotent = app.tokenize_idempotent("big", &body).await;
    assert_eq!(
        (idempotent.status, &idempotent.body),
        (StatusCode::PAYLOAD_TOO_LARGE, &expected)
    );
}
