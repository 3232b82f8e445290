//! A token after it is made: other accounts cannot see it, deletion is final, consuming drops the
//! security code (on every node sharing Redis), and the card art shows only the last four digits.

use reqwest::{Method, StatusCode};
use serde_json::json;
use strongroom::store::Feature;

use crate::support::{
    card, error_body, on_both_backends, redis_url, send, spawn_app, spawn_app_with, Backend,
};

on_both_backends!(
    tokens_of_another_account_are_404,
    a_deleted_token_is_gone_for_good,
    consume_drops_the_security_code,
    card_art_shows_the_scheme_and_only_the_last_four,
    two_nodes_share_security_codes_through_redis,
);

async fn tokens_of_another_account_are_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.new_token(&card("4111111111111111")).await;
    let id = token["id"].as_str().unwrap();
    let (_, other) = app.create_account("other", &[Feature::CdeImport]).await;
    let other = app.with_key(&other);
    let not_found = error_body(404, "NOT_FOUND", "The requested resource was not found");
    for (method, path) in [
        (Method::GET, format!("/tokens/{id}")),
        (Method::DELETE, format!("/tokens/{id}")),
        (Method::POST, format!("/tokens/{id}/consume")),
        (Method::GET, format!("/tokens/card-art/{id}")),
    ] {
        let answer = send(other.request(method.clone(), &path)).await;
        assert_eq!(
            (answer.status, &answer.body),
            (StatusCode::NOT_FOUND, &not_found),
            "{method} {path}"
        );
    }
    let list = other.list_tokens("").await;
    assert_eq!(list.body["data"], json!([]));
    assert_eq!(
        app.get_token(id).await.status,
        StatusCode::OK,
        "the owner still sees it"
    );
}

async fn a_deleted_token_is_gone_for_good(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.new_token(&card("5555555555554444")).await;
    let id = token["id"].as_str().unwrap();
    let uuid = id.parse().unwrap();
    assert!(app
        .stored_token(app.account_id().await, uuid)
        .await
        .is_some());
    let deleted = app.delete_token(id).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get_token(id).await.status, StatusCode::NOT_FOUND);
    let again = app.delete_token(id).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert!(
        app.stored_token(app.account_id().await, uuid)
            .await
            .is_none(),
        "the sealed card is gone"
    );
    let audit = app
        .store()
        .list_audit_events(app.account_id().await, 10)
        .await
        .unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action == "token.delete" && e.target.as_deref() == Some(id)));
}

async fn consume_drops_the_security_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = card("4111111111111111");
    body["security_code"] = json!("737");
    let token = app.new_token(&body).await;
    let id: uuid::Uuid = token["id"].as_str().unwrap().parse().unwrap();
    let cvc = &app.server().state().tokens.cvc;
    assert!(cvc.holds(id).await);
    let consumed = app.consume(id).await;
    assert_eq!(consumed.status, StatusCode::NO_CONTENT);
    assert!(!cvc.holds(id).await);
    let again = app.consume(id).await;
    assert_eq!(
        again.status,
        StatusCode::NO_CONTENT,
        "consuming twice is harmless"
    );
    let unknown = app.consume(uuid::Uuid::new_v4()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let mut body = card("4111111111111111");
    body["security_code"] = json!("737");
    let token = app.new_token(&body).await;
    let id: uuid::Uuid = token["id"].as_str().unwrap().parse().unwrap();
    app.delete_token(id).await;
    assert!(!cvc.holds(id).await, "deleting a token drops its code");
}

async fn card_art_shows_the_scheme_and_only_the_last_four(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.new_token(&card("378282246310005")).await;
    let response = app.card_art(token["id"].as_str().unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let svg = response.text().await.unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("American Express") && svg.contains("0005"),
        "{svg}"
    );
    assert!(!svg.contains("378282"), "{svg}");
}

/// Node A tokenizes with a security code; node B, on the same database and Redis, sees it and consumes
/// it; Redis holds the code only sealed.
async fn two_nodes_share_security_codes_through_redis(backend: Backend) {
    let Some(redis_url) = redis_url() else {
        return;
    };
    let app = spawn_app_with(backend, |c| c.redis_url = Some(redis_url.clone())).await;
    let (node_b, api_b) = app
        .start_another_node(|c| c.redis_url = Some(redis_url.clone()))
        .await;

    let mut body = card("4111111111111111");
    body["security_code"] = json!("737");
    let token = app.new_token(&body).await;
    let id: uuid::Uuid = token["id"].as_str().unwrap().parse().unwrap();
    assert!(
        node_b.state().tokens.cvc.holds(id).await,
        "node B sees the code node A cached"
    );

    let mut redis = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(format!("strongroom:cvc:{id}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        !stored.is_empty() && !stored.windows(3).any(|w| w == b"737"),
        "Redis holds the code sealed"
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("strongroom:cvc:{id}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((1..=900).contains(&ttl), "{ttl}");

    let consumed = api_b.consume(id).await;
    assert_eq!(consumed.status, StatusCode::NO_CONTENT);
    assert!(
        !app.server().state().tokens.cvc.holds(id).await,
        "gone for node A too"
    );
    node_b.shutdown().await.unwrap();
}
