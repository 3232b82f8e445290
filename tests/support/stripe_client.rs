//! Talking to the fake Stripe from a test as the import does: a client with the fake's key, a form for
//! the Forward API, and a destination that records what was forwarded to it.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use reqwest::RequestBuilder;
use serde_json::{json, Value};

use super::fake_stripe::{FakeStripe, FakeStripeConfig};

/// The key the fake accepts by default.
pub const KEY: &str = "sk_test_fake";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A fake Stripe with the default config.
pub async fn fake() -> FakeStripe {
    FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap()
}

/// Sends `request`; returns the status and the JSON body.
pub async fn send(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap();
    (status, body)
}

/// `GET path` on the fake, with its key.
pub fn get(fake: &FakeStripe, path: &str) -> RequestBuilder {
    client()
        .get(format!("{}{path}", fake.base_url()))
        .bearer_auth(KEY)
}

/// What a destination received: headers and JSON body of each post.
pub type Received = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// A destination on port 0 that records each post and answers 201 `{"status":"stored"}`.
pub async fn destination() -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/cards",
            post(
                |State(received): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    let body: Value = serde_json::from_slice(&body).unwrap();
                    received.lock().unwrap().push((headers, body));
                    (StatusCode::CREATED, Json(json!({"status": "stored"})))
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/cards"), received)
}

/// A forwarding form for `pm` to `url` with every replacement, two headers and a body to fill.
pub fn forward_form(pm: &str, url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("payment_method", pm.to_owned()),
        ("url", url.to_owned()),
        ("replacements[]", "card_number".to_owned()),
        ("replacements[]", "card_expiry".to_owned()),
        ("replacements[]", "cardholder_name".to_owned()),
        ("replacements[]", "card_cvc".to_owned()),
        ("request[headers][0][name]", "Content-Type".to_owned()),
        ("request[headers][0][value]", "application/json".to_owned()),
        ("request[headers][1][name]", "X-API-Key".to_owned()),
        ("request[headers][1][value]", "dest-secret".to_owned()),
        (
            "request[body]",
            json!({"account_number": "", "expiry_month": "", "expiry_year": "", "reference": "ref 1&2"})
                .to_string(),
        ),
    ]
}

/// `POST /v1/forwarding/requests` on the fake with `form`.
pub fn forward(fake: &FakeStripe, form: &[(&'static str, String)]) -> RequestBuilder {
    client()
        .post(format!("{}/v1/forwarding/requests", fake.base_url()))
        .bearer_auth(KEY)
        .form(form)
}
