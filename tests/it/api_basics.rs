//! The foundation over HTTP: authentication, the error body, headers, health, routing and OpenAPI.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{error_body, on_both_backends, send, spawn_app, Backend};

on_both_backends!(
    a_request_without_a_key_is_401_with_the_exact_body,
    unknown_and_malformed_keys_are_401,
    a_revoked_key_is_401,
    health_and_ready_answer_without_a_key,
    an_unknown_route_is_404_in_the_error_body,
    a_wrong_method_is_405_in_the_error_body,
    every_response_carries_the_version_and_a_request_id,
    the_openapi_document_describes_the_served_routes,
    a_valid_key_reaches_its_own_account,
);

async fn a_request_without_a_key_is_401_with_the_exact_body(backend: Backend) {
    let app = spawn_app(backend).await;
    let answer = send(app.anonymous(Method::GET, "/account")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.body,
        error_body(
            401,
            "UNAUTHORIZED",
            "No valid means of authentication was provided"
        )
    );
}

async fn unknown_and_malformed_keys_are_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, real) = app.create_account("other", &[]).await;
    let wrong_secret = format!("{}x", &real[..real.len() - 1]);
    for key in [
        "",
        "nonsense",
        "sr_00000000000000000000000000000000_abc",
        wrong_secret.as_str(),
    ] {
        let answer = app.with_key(key).account().await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{key}");
        assert_eq!(
            answer.body,
            error_body(
                401,
                "UNAUTHORIZED",
                "No valid means of authentication was provided"
            )
        );
    }
}

async fn a_revoked_key_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let (account, key) = app.create_account("revokee", &[]).await;
    let ok = app.with_key(&key).account().await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["id"], json!(account));

    let key_id = strongroom::domain::accounts::parse_presented_key(&key)
        .unwrap()
        .0;
    strongroom::domain::accounts::revoke_key(app.store(), key_id, "test")
        .await
        .unwrap();
    let answer = app.wait_until_refused(&key).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.body,
        error_body(
            401,
            "UNAUTHORIZED",
            "No valid means of authentication was provided"
        )
    );
}

async fn health_and_ready_answer_without_a_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let health = send(app.anonymous(Method::GET, "/health")).await;
    assert_eq!(
        (health.status, health.body),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let ready = send(app.anonymous(Method::GET, "/ready")).await;
    assert_eq!(
        (ready.status, &ready.body["status"]),
        (StatusCode::OK, &json!("ready"))
    );
    // Readiness also tells how many log lines could not be written (stderr on a full disk).
    assert!(ready.body["log_lines_dropped"].is_u64(), "{}", ready.body);
}

async fn an_unknown_route_is_404_in_the_error_body(backend: Backend) {
    let app = spawn_app(backend).await;
    for method in [Method::GET, Method::POST] {
        let answer = send(app.anonymous(method, "/no/such/route")).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(
            answer.body,
            error_body(404, "NOT_FOUND", "The requested resource was not found")
        );
    }
}

async fn a_wrong_method_is_405_in_the_error_body(backend: Backend) {
    let app = spawn_app(backend).await;
    let answer = send(app.anonymous(Method::DELETE, "/health")).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        answer.body,
        error_body(
            405,
            "METHOD_NOT_ALLOWED",
            "This method is not allowed on this resource"
        )
    );
}

async fn every_response_carries_the_version_and_a_request_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let echoed = send(
        app.anonymous(Method::GET, "/health")
            .header("x-request-id", "trace-me-42"),
    )
    .await;
    assert_eq!(echoed.header("x-hellgate-version"), Some("2.0"));
    assert_eq!(echoed.header("x-request-id"), Some("trace-me-42"));

    for path in ["/account", "/nowhere"] {
        let answer = send(
            app.anonymous(Method::GET, path)
                .header("x-hellgate-version", "1.9"),
        )
        .await;
        assert_eq!(answer.header("x-hellgate-version"), Some("2.0"), "{path}");
        let id = answer.header("x-request-id").unwrap();
        assert!(uuid::Uuid::try_parse(id).is_ok(), "{path}: {id}");
    }
}

async fn the_openapi_document_describes_the_served_routes(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = send(app.anonymous(Method::GET, "/openapi.json")).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], json!("3.1.0"));
    assert_eq!(doc.body["info"]["version"], json!("2.0"));
    for path in ["/health", "/ready", "/account"] {
        assert!(doc.body["paths"].get(path).is_some(), "missing {path}");
    }
    // Processor notifications are posted without an API key.
    let notifications = &doc.body["paths"]["/processors/{processor_id}/notifications"]["post"];
    assert!(notifications.is_object(), "missing the notification route");
    assert!(notifications.get("security").is_none(), "{notifications}");
    assert_eq!(
        doc.body["components"]["securitySchemes"]["APIKeyAuth"],
        json!({"type": "apiKey", "in": "header", "name": "X-API-Key"})
    );
}

async fn a_valid_key_reaches_its_own_account(backend: Backend) {
    let app = spawn_app(backend).await;
    let answer = app.account().await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["name"], json!("default"));
    assert_eq!(answer.body["features"], json!(["cde_import"]));
}
