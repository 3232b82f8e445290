//! Ephemeral tokens (`expiration_time`): the token carries `expires_at`, has no network token, answers
//! 404 everywhere from the moment it expires (swept or not), and the sweep deletes it with its card
//! data and cached code, audited, with a `token.deleted` event. And `GET /tokens` filters
//! `network_token_status`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use strongroom::store::Ts;

use crate::support::{
    card, error_body, fast_webhooks, on_both_backends, payment, spawn_app, spawn_app_with,
    validation_body, Backend,
};

on_both_backends!(
    an_ephemeral_token_is_gone_when_it_expires_and_swept_with_an_event,
    expiration_time_is_seconds_from_one_to_thirty_days,
    tokens_are_filtered_by_network_token_status,
);

fn ephemeral(pan: &str, seconds: Value) -> Value {
    let mut body = card(pan);
    body["expiration_time"] = seconds;
    body["security_code"] = json!("123");
    body
}

async fn an_ephemeral_token_is_gone_when_it_expires_and_swept_with_an_event(backend: Backend) {
    let app = spawn_app_with(backend, fast_webhooks).await;
    let (webhook, _) = app.add_webhook("http://127.0.0.1:9/", "token.*").await;
    let made = app
        .tokenize(&ephemeral("4111111111111111", json!(2)))
        .await
        .ok_body();
    let id = made["id"].as_str().unwrap().to_owned();
    let created =
        chrono::DateTime::parse_from_rfc3339(made["created_at"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(made["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - created, chrono::Duration::seconds(2));
    assert_eq!(made["network_token_status"], "not_available");
    assert_eq!(app.get_token(&id).await.ok_body(), made);
    let lasting = app.new_token(&card("5555555555554444")).await;
    assert!(lasting.get("expires_at").is_none(), "{lasting}");

    let token_id: uuid::Uuid = id.parse().unwrap();
    let state = app.server().state();
    assert!(state.tokens.cvc.holds(token_id).await);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // Expired: gone for every endpoint, whether the sweep has run yet or not.
    let not_found = error_body(404, "NOT_FOUND", "The requested resource was not found");
    for answer in [
        app.get_token(&id).await,
        app.delete_token(&id).await,
        app.consume(&id).await,
    ] {
        assert_eq!(
            (answer.status, answer.body.clone()),
            (StatusCode::NOT_FOUND, not_found.clone()),
            "{}",
            answer.request
        );
    }
    let pay = app
        .create_payment("one-off", &payment(&id, 1000, "automatic"))
        .await;
    assert_eq!(
        pay.body,
        validation_body(&[("$.source.token_id", "no token of this account has this id")])
    );

    // The sweep (run here rather than waiting for the housekeeping tick) destroys the rest.
    state.tokens.sweep_expired(Ts::now()).await.unwrap();
    let account = app.account_id().await;
    assert!(app.stored_token(account, token_id).await.is_none());
    assert!(!state.tokens.cvc.holds(token_id).await);
    let events = app.store().list_audit_events(account, 50).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.actor == "system:expiry" && e.target.as_deref() == Some(id.as_str())),
        "{events:?}"
    );
    let deliveries = app
        .wait_deliveries(webhook, |rows| {
            rows.iter().any(|d| d.event_type == "token.deleted")
        })
        .await;
    let deleted = deliveries
        .iter()
        .find(|d| d.event_type == "token.deleted")
        .unwrap();
    let body: Value = serde_json::from_str(&deleted.body).unwrap();
    assert_eq!(body["token"], made);
    assert_eq!(
        app.get_token(lasting["id"].as_str().unwrap()).await.status,
        StatusCode::OK
    );
}

async fn expiration_time_is_seconds_from_one_to_thirty_days(backend: Backend) {
    let app = spawn_app(backend).await;
    for bad in [
        json!(0),
        json!(2_592_001),
        json!("60"),
        json!(1.5),
        json!(-5),
    ] {
        let answer = app
            .tokenize(&ephemeral("4111111111111111", bad.clone()))
            .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(
            answer.body,
            validation_body(&[(
                "$.expiration_time",
                "must be a whole number of seconds from 1 to 2592000"
            )]),
            "{bad}"
        );
    }
    let longest = app
        .tokenize(&ephemeral("4111111111111111", json!(2_592_000)))
        .await;
    assert_eq!(longest.status, StatusCode::OK);
}

async fn tokens_are_filtered_by_network_token_status(backend: Backend) {
    let app = spawn_app(backend).await;
    app.new_token(&card("4111111111111111")).await;
    app.new_token(&card("5555555555554444")).await;
    let all = app
        .list_tokens("network_token_status=not_available")
        .await
        .ok_body();
    assert_eq!(all["pagination"]["total_items"], 2);
    let with = app
        .list_tokens("network_token_status=active,not_available")
        .await
        .ok_body();
    assert_eq!(with["data"].as_array().unwrap().len(), 2);
    let none = app
        .list_tokens("network_token_status=active,pending")
        .await
        .ok_body();
    assert_eq!(
        none,
        json!({"data": [], "pagination": {"current_page": 1, "page_size": 50, "total_items": 0, "total_pages": 0}})
    );
    let bad = app.list_tokens("network_token_status=live").await;
    assert_eq!(
        bad.body,
        validation_body(&[(
            "query.network_token_status",
            "must be a comma-separated list of network token statuses (active, inactive, pending, deleted, failed, not_available)"
        )])
    );
}
