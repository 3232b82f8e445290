//! Token sessions: made with the API key (`POST /tokens/session`, `POST /tokens/{id}/refresh-session`),
//! read and completed with the session id alone (`GET /sessions/{id}`, `POST /sessions/{id}/complete-action`),
//! CORS for the account's allowed origins (`strongroom origin …`), and every bad input with its exact
//! status and body.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use strongroom::store::Feature;
use uuid::Uuid;

use crate::support::on_both_backends;
use crate::support::{
    error_body, send, spawn_app, spawn_app_with, validation_body, Answer, ApiClient, Backend,
    TestApp,
};

on_both_backends!(
    a_session_makes_one_token_of_the_card_it_receives_and_is_then_gone,
    an_ephemeral_card_from_a_session_gets_an_expiry,
    a_refresh_session_puts_the_fresh_code_in_the_security_code_cache,
    an_expired_session_is_404_everywhere,
    bad_input_on_the_session_endpoints_is_answered_exactly,
    only_the_accounts_allowed_origins_may_use_its_sessions,
);

fn not_found() -> Value {
    error_body(404, "NOT_FOUND", "The requested resource was not found")
}

fn sdk_card(pan: &str) -> Value {
    json!({"account_number": pan, "expiry_month": 4, "expiry_year": 2031, "security_code": "123"})
}

async fn new_session(api: &ApiClient, body: Option<&Value>) -> String {
    api.post("/tokens/session", body).await.ok_body()["session_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn session_get(app: &TestApp, id: &str, origin: Option<&str>) -> Answer {
    let mut request = app.anonymous(Method::GET, &format!("/sessions/{id}"));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    send(request).await
}

async fn complete(app: &TestApp, id: &str, body: &Value) -> Answer {
    send(
        app.anonymous(Method::POST, &format!("/sessions/{id}/complete-action"))
            .json(body),
    )
    .await
}

async fn a_session_makes_one_token_of_the_card_it_receives_and_is_then_gone(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = new_session(&app, Some(&json!({"bypass_identification": true}))).await;
    assert!(id.len() >= 43, "{id}");
    let state = session_get(&app, &id, None).await.ok_body();
    assert_eq!(state["next_action"], "tokenize_card");
    assert_eq!(state["data"]["lifecycle"], "user_choice");

    let done = complete(
        &app,
        &id,
        &json!({"action": "tokenize_card", "result": sdk_card("4242424242424242")}),
    )
    .await
    .ok_body();
    assert_eq!(done["next_action"], Value::Null);
    assert_eq!(done["status"], "success");
    let token_id = done["data"]["token_id"].as_str().unwrap().to_owned();
    let token = app.get_token(&token_id).await.ok_body();
    assert_eq!(token["masked_account_number"], "424242XXXXXX4242");
    assert_eq!(token["expires_at"], Value::Null);

    // Single use: the same session can neither be read nor completed again, and made one token.
    assert_eq!(session_get(&app, &id, None).await.body, not_found());
    let again = complete(
        &app,
        &id,
        &json!({"action": "tokenize_card", "result": sdk_card("4111111111111111")}),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.body, not_found());
    assert_eq!(app.all_tokens().await.len(), 1);
}

async fn an_ephemeral_card_from_a_session_gets_an_expiry(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = new_session(&app, None).await;
    let mut card = sdk_card("5555555555554444");
    card["additional_data"] = json!({"ephemeral": true, "cardholder_name": "Jane Holder"});
    let done = complete(
        &app,
        &id,
        &json!({"action": "tokenize_card", "result": card}),
    )
    .await
    .ok_body();
    let token = app
        .get_token(done["data"]["token_id"].as_str().unwrap())
        .await
        .ok_body();
    assert!(token["expires_at"].is_string(), "{token}");

    // A session made with `expiration_time` makes ephemeral tokens of that life.
    let id = new_session(&app, Some(&json!({"expiration_time": 120}))).await;
    let done = complete(
        &app,
        &id,
        &json!({"action": "tokenize_card", "result": sdk_card("4111111111111111")}),
    )
    .await
    .ok_body();
    let token = app
        .get_token(done["data"]["token_id"].as_str().unwrap())
        .await
        .ok_body();
    let expires: chrono::DateTime<chrono::Utc> =
        token["expires_at"].as_str().unwrap().parse().unwrap();
    let life = expires - chrono::Utc::now();
    assert!(
        life.num_seconds() > 100 && life.num_seconds() <= 120,
        "{life}"
    );
}

async fn a_refresh_session_puts_the_fresh_code_in_the_security_code_cache(backend: Backend) {
    let app = spawn_app(backend).await;
    let token_id = app.token_for("378282246310005").await;
    let id = app
        .post_empty(&format!("/tokens/{token_id}/refresh-session"))
        .await
        .ok_body()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let state = session_get(&app, &id, None).await.ok_body();
    assert_eq!(
        state,
        json!({"next_action": "refresh_security_code", "data": {
            "account_number_last_four": "0005", "account_number_length": 15,
            "issuer_identification_number": "37828", "expiry_month": 4, "expiry_year": 2031,
            "scheme": "american-express"}})
    );
    // An American Express code has 4 digits.
    let short = complete(
        &app,
        &id,
        &json!({"action": "refresh_security_code", "result": {"security_code": "123"}}),
    )
    .await;
    assert_eq!(
        short.body,
        validation_body(&[(
            "$.result.security_code",
            "must be 4 digits for American Express"
        )])
    );
    let done = complete(
        &app,
        &id,
        &json!({"action": "refresh_security_code", "result": {"security_code": "1234"}}),
    )
    .await
    .ok_body();
    assert_eq!(
        done,
        json!({"next_action": null, "status": "success", "data": {"token_id": token_id}})
    );
    let account = app.account_id().await;
    let code = app
        .server()
        .state()
        .tokens
        .cvc
        .take(account, token_id.parse().unwrap())
        .await
        .unwrap()
        .expect("the code is cached");
    assert_eq!(code.peek(), "1234");
}

async fn an_expired_session_is_404_everywhere(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.session_ttl = Duration::from_millis(300)).await;
    let id = new_session(&app, None).await;
    assert_eq!(session_get(&app, &id, None).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let answer = session_get(&app, &id, None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body, not_found());
    let answer = complete(
        &app,
        &id,
        &json!({"action": "tokenize_card", "result": sdk_card("4242424242424242")}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body, not_found());
    assert!(app.all_tokens().await.is_empty());
}

async fn bad_input_on_the_session_endpoints_is_answered_exactly(backend: Backend) {
    let app = spawn_app(backend).await;
    // POST /tokens/session
    let answer = send(app.anonymous(Method::POST, "/tokens/session")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.body,
        error_body(
            401,
            "UNAUTHORIZED",
            "No valid means of authentication was provided"
        )
    );
    for (body, errors) in [
        (json!([]), vec![("$", "must be a JSON object")]),
        (
            json!({"bypass_identification": "yes", "expiration_time": 0, "colour": 1}),
            vec![
                ("$.colour", "is not a known field"),
                ("$.bypass_identification", "must be a boolean"),
                ("$.expiration_time", "must be an integer from 1 to 2592000"),
            ],
        ),
        (
            json!({"expiration_time": 2592001}),
            vec![("$.expiration_time", "must be an integer from 1 to 2592000")],
        ),
        (
            json!({"expiration_time": 1.5}),
            vec![("$.expiration_time", "must be an integer from 1 to 2592000")],
        ),
    ] {
        let answer = app.post_json("/tokens/session", &body).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(answer.body, validation_body(&errors), "{body}");
    }
    let answer = send(
        app.request(Method::POST, "/tokens/session")
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.body["classifier"], "UNSUPPORTED_MEDIA_TYPE");

    // POST /tokens/{id}/refresh-session
    let answer = app.post_empty("/tokens/not-a-uuid/refresh-session").await;
    assert_eq!(
        answer.body,
        validation_body(&[("path.id", "must be a UUID")])
    );
    let answer = app
        .post_empty(&format!("/tokens/{}/refresh-session", Uuid::new_v4()))
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body, not_found());
    let (_, other_key) = app.create_account("other", &[Feature::CdeImport]).await;
    let foreign = app.with_key(&other_key).token_for("4242424242424242").await;
    let answer = app
        .post_empty(&format!("/tokens/{foreign}/refresh-session"))
        .await;
    assert_eq!(answer.body, not_found());

    // GET /sessions/{id}
    for id in ["unknown", &"x".repeat(300)] {
        let answer = session_get(&app, id, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(answer.body, not_found());
    }

    // POST /sessions/{id}/complete-action
    let id = new_session(&app, None).await;
    let path = format!("/sessions/{id}/complete-action");
    let answer = send(app.anonymous(Method::POST, &path).body("{}")).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let answer = send(
        app.anonymous(Method::POST, &path)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.body["validation_errors"][0]["path"], "$");
    for (body, errors) in [
        (json!("card"), vec![("$", "must be a JSON object")]),
        (
            json!({}),
            vec![("$.action", "is required"), ("$.result", "is required")],
        ),
        (
            json!({"action": "refresh_security_code", "result": [], "extra": 1}),
            vec![
                ("$.extra", "is not a known field"),
                ("$.action", "must be `tokenize_card` in this session"),
                ("$.result", "must be an object"),
            ],
        ),
        (
            json!({"action": "tokenize_card", "result": {"account_number": "4242424242424241", "expiry_month": 13, "expiry_year": 2031, "pin": "1"}}),
            vec![
                ("$.result.pin", "is not a known field"),
                (
                    "$.result.account_number",
                    "is not a valid card number (Luhn check failed)",
                ),
                ("$.result.expiry_month", "must be from 1 to 12"),
            ],
        ),
        (
            json!({"action": "tokenize_card", "result": {"account_number": "4242424242424242", "expiry_month": 4, "expiry_year": 2031, "additional_data": {"ephemeral": "yes", "expiration_date": "2020-01-01T00:00:00Z"}}}),
            vec![
                ("$.result.ephemeral", "must be a boolean"),
                ("$.result.expiration_date", "must be in the future"),
            ],
        ),
    ] {
        let answer = complete(&app, &id, &body).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(answer.body, validation_body(&errors), "{body}");
    }
    // None of those used the session up, and none made a token.
    assert_eq!(session_get(&app, &id, None).await.status, StatusCode::OK);
    assert_eq!(app.all_tokens().await.len(), 0);
}

async fn only_the_accounts_allowed_origins_may_use_its_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.account_id().await.to_string();
    let (ok, out, err) = app.cli(&[
        "origin",
        "add",
        "--account",
        &account,
        "--origin",
        "https://Shop.example",
        "--json",
    ]);
    assert!(ok, "{err}");
    let added: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(added["origin"], "https://shop.example");
    assert_eq!(added["account_id"], account.as_str());
    let (ok, _, err) = app.cli(&[
        "origin",
        "add",
        "--account",
        &account,
        "--origin",
        "https://shop.example/pay",
    ]);
    assert!(!ok);
    assert!(err.contains("--origin: must be an origin only"), "{err}");
    let (ok, out, _) = app.cli(&["origin", "list", "--account", &account, "--json"]);
    assert!(ok);
    let listed: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let id = new_session(&app, None).await;
    let answer = session_get(&app, &id, Some("https://shop.example")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    let preflight = send(
        app.anonymous(Method::OPTIONS, &format!("/sessions/{id}/complete-action"))
            .header("origin", "https://shop.example")
            .header("access-control-request-method", "POST"),
    )
    .await;
    assert_eq!(preflight.status, StatusCode::NO_CONTENT);
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET, POST")
    );
    let forbidden = error_body(
        403,
        "FORBIDDEN",
        "This origin is not allowed for the session's account",
    );
    let answer = session_get(&app, &id, Some("https://evil.example")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.body, forbidden);
    assert_eq!(answer.header("access-control-allow-origin"), None);

    // A session of another account is foreign to this account's origin.
    let (_, other_key) = app.create_account("other", &[Feature::CdeImport]).await;
    let other = new_session(&app.with_key(&other_key), None).await;
    let answer = session_get(&app, &other, Some("https://shop.example")).await;
    assert_eq!(answer.body, forbidden);
    let answer = send(
        app.anonymous(Method::POST, &format!("/sessions/{other}/complete-action"))
            .header("origin", "https://shop.example")
            .json(&json!({"action": "tokenize_card", "result": sdk_card("4242424242424242")})),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(app.with_key(&other_key).all_tokens().await.is_empty());

    // Removed, the origin is refused.
    let origin_id = added["id"].as_str().unwrap();
    let (ok, out, _) = app.cli(&["origin", "remove", origin_id, "--json"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap(),
        json!({"id": origin_id, "removed": true})
    );
    let answer = session_get(&app, &id, Some("https://shop.example")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
}
