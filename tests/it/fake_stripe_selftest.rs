//! The fake Stripe against its own contract: list pagination, authentication, forwarding with the
//! card filled in, idempotent replays and the injected failures.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use reqwest::RequestBuilder;
use serde_json::{json, Value};

use crate::fake_stripe::{luhn_valid, FakeCard, FakeStripe, FakeStripeConfig, Route};

const KEY: &str = "sk_test_fake";

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn fake() -> FakeStripe {
    FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap()
}

async fn send(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap();
    (status, body)
}

fn get(fake: &FakeStripe, path: &str) -> RequestBuilder {
    client()
        .get(format!("{}{path}", fake.base_url()))
        .bearer_auth(KEY)
}

/// What a destination received: headers and JSON body of each post.
type Received = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// A destination on port 0 that records each post and answers 201 `{"status":"stored"}`.
async fn destination() -> (String, Received) {
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

fn forward_form(pm: &str, url: &str) -> Vec<(&'static str, String)> {
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

fn forward(fake: &FakeStripe, form: &[(&'static str, String)]) -> RequestBuilder {
    client()
        .post(format!("{}/v1/forwarding/requests", fake.base_url()))
        .bearer_auth(KEY)
        .form(form)
}

#[tokio::test]
async fn fake_stripe_lists_customers_page_by_page() {
    let fake = fake().await;
    let ids: Vec<String> = (0..5)
        .map(|i| fake.add_customer(vec![FakeCard::visa(i)]).0)
        .collect();

    let (status, page) = send(get(&fake, "/v1/customers?limit=2")).await;
    assert_eq!(status, 200);
    assert_eq!(page["object"], "list");
    assert_eq!(page["url"], "/v1/customers");
    assert_eq!(page["has_more"], true);
    let got: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(page["data"][0]["object"], "customer");

    let (_, page) = send(get(
        &fake,
        &format!("/v1/customers?limit=2&starting_after={}", ids[1]),
    ))
    .await;
    assert_eq!(page["has_more"], true);
    assert_eq!(page["data"][0]["id"], ids[2].as_str());

    let (_, page) = send(get(
        &fake,
        &format!("/v1/customers?limit=2&starting_after={}", ids[3]),
    ))
    .await;
    assert_eq!(page["has_more"], false);
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["id"], ids[4].as_str());

    let (_, page) = send(get(&fake, "/v1/customers")).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 5);
    assert_eq!(page["has_more"], false);

    for bad in ["0", "101", "ten"] {
        let (status, body) = send(get(&fake, &format!("/v1/customers?limit={bad}"))).await;
        assert_eq!(status, 400, "limit={bad}");
        assert_eq!(body["error"]["code"], "parameter_invalid_integer");
        assert_eq!(body["error"]["param"], "limit");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    let (status, body) = send(get(&fake, "/v1/customers?starting_after=cus_nope")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "resource_missing");

    assert_eq!(fake.stats().customer_lists, 8);
}

#[tokio::test]
async fn fake_stripe_lists_payment_methods_without_the_number() {
    let fake = fake().await;
    let cards: Vec<FakeCard> = (10..13).map(FakeCard::visa).collect();
    for card in &cards {
        assert!(luhn_valid(&card.number));
        assert_eq!(card.number.len(), 16);
        assert!(!format!("{card:?}").contains(&card.number));
    }
    let (customer, pms) = fake.add_customer(cards.clone());
    let path = format!("/v1/customers/{customer}/payment_methods?type=card&limit=2");

    let (status, page) = send(get(&fake, &path)).await;
    assert_eq!(status, 200);
    assert_eq!(page["has_more"], true);
    assert_eq!(
        page["url"],
        format!("/v1/customers/{customer}/payment_methods")
    );
    let first = &page["data"][0];
    assert_eq!(first["id"], pms[0].as_str());
    assert_eq!(first["object"], "payment_method");
    assert_eq!(first["type"], "card");
    assert_eq!(first["customer"], customer.as_str());
    assert_eq!(first["card"]["brand"], "visa");
    assert_eq!(first["card"]["last4"], cards[0].last4().as_str());
    assert_eq!(first["card"]["exp_month"], 12);
    assert_eq!(first["card"]["exp_year"], 2030);
    assert_eq!(first["billing_details"]["name"], "Test Holder");
    assert_eq!(page["data"][1]["id"], pms[1].as_str());
    for card in &cards {
        assert!(!page.to_string().contains(&card.number));
    }

    let (_, page) = send(get(&fake, &format!("{path}&starting_after={}", pms[1]))).await;
    assert_eq!(page["has_more"], false);
    assert_eq!(page["data"][0]["id"], pms[2].as_str());

    let (status, body) = send(get(&fake, "/v1/customers/cus_x/payment_methods?type=card")).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": {"code": "resource_missing", "param": "customer", "message": "No such customer: 'cus_x'", "type": "invalid_request_error"}})
    );
    let (status, _) = send(get(
        &fake,
        &format!("/v1/customers/{customer}/payment_methods?type=sepa"),
    ))
    .await;
    assert_eq!(status, 400);

    let total = fake.add_customers(3, 4);
    assert_eq!(total, 12);
    let (_, page) = send(get(&fake, "/v1/customers?limit=100")).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn fake_stripe_checks_the_key() {
    let fake = fake().await;
    let url = format!("{}/v1/customers", fake.base_url());

    let (status, body) = send(client().get(&url)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let (status, body) = send(client().get(&url).bearer_auth("sk_test_wrongabcd")).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": {"message": "Invalid API Key provided: sk_test_****abcd", "type": "invalid_request_error"}})
    );

    let (status, body) = send(client().get(&url).bearer_auth("rk_test_restricted")).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"error": {"message": "The provided key 'rk_test_****cted' does not have the required permissions for this endpoint on account 'acct_fake'.", "type": "invalid_request_error"}})
    );

    let (status, _) = send(client().get(&url).basic_auth(KEY, Some(""))).await;
    assert_eq!(status, 200);

    let (status, body) = send(get(&fake, "/v1/x")).await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Unrecognized request URL (GET: /v1/x)."));
}

#[tokio::test]
async fn fake_stripe_forwards_the_filled_card() {
    let fake = fake().await;
    let (destination, received) = destination().await;
    let card = FakeCard {
        exp_month: 4,
        ..FakeCard::visa(42)
    };
    let (_, pms) = fake.add_customer(vec![card.clone()]);

    let (status, answer) = send(forward(&fake, &forward_form(&pms[0], &destination))).await;
    assert_eq!(status, 200, "{answer}");

    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    assert_eq!(headers["x-api-key"], "dest-secret");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        body,
        &json!({
            "account_number": card.number,
            "expiry_month": "04",
            "expiry_year": "2030",
            "cardholder_name": "Test Holder",
            "security_code": "123",
            "reference": "ref 1&2",
        })
    );
    assert!(card.number.starts_with('4'));

    assert!(answer["id"].as_str().unwrap().starts_with("fwdreq_"));
    assert_eq!(answer["object"], "forwarding.request");
    assert_eq!(answer["payment_method"], pms[0].as_str());
    assert_eq!(answer["url"], destination.as_str());
    assert_eq!(
        answer["replacements"],
        json!(["card_number", "card_expiry", "cardholder_name", "card_cvc"])
    );
    assert_eq!(answer["response_details"]["status"], 201);
    assert_eq!(
        serde_json::from_str::<Value>(answer["response_details"]["body"].as_str().unwrap())
            .unwrap(),
        json!({"status": "stored"})
    );
    assert_eq!(answer["request_details"]["http_method"], "POST");
    assert_eq!(
        answer["request_details"]["headers"],
        json!([{"name": "Content-Type", "value": "application/json"}, {"name": "X-API-Key", "value": "[REDACTED]"}])
    );
    let shown: Value =
        serde_json::from_str(answer["request_details"]["body"].as_str().unwrap()).unwrap();
    let masked = format!("{}******{}", &card.number[..6], &card.number[12..]);
    assert_eq!(shown["account_number"], masked.as_str());
    assert_eq!(shown["security_code"], "***");
    assert_eq!(shown["expiry_month"], "04");
    assert!(!answer.to_string().contains(&card.number));
    assert!(!answer.to_string().contains("dest-secret"));

    // Indexed replacements, as Stripe's clients send them; a card without name nor CVC.
    let bare = FakeCard {
        name: None,
        cvc: None,
        ..FakeCard::visa(43)
    };
    let (_, bare_pms) = fake.add_customer(vec![bare.clone()]);
    let form = vec![
        ("payment_method", bare_pms[0].clone()),
        ("url", destination.clone()),
        ("replacements[0]", "card_number".to_owned()),
        ("replacements[1]", "cardholder_name".to_owned()),
        ("replacements[2]", "card_cvc".to_owned()),
        (
            "request[body]",
            r#"{"account_number":"","cardholder_name":"as sent"}"#.to_owned(),
        ),
    ];
    let (status, _) = send(forward(&fake, &form)).await;
    assert_eq!(status, 200);
    let got = received.lock().unwrap().clone();
    assert_eq!(
        got[1].1,
        json!({"account_number": bare.number, "cardholder_name": "as sent"})
    );

    let stats = fake.stats();
    assert_eq!(stats.forwards, 2);
    assert_eq!(stats.destination_posts, 2);
    assert_eq!(fake.destination_posts_for(&pms[0]), 1);
}

#[tokio::test]
async fn fake_stripe_replays_an_idempotency_key() {
    let fake = fake().await;
    let (destination, received) = destination().await;
    let (_, pms) = fake.add_customer(vec![FakeCard::visa(7)]);
    let form = forward_form(&pms[0], &destination);

    let (status, first) = send(forward(&fake, &form).header("Idempotency-Key", "k1")).await;
    assert_eq!(status, 200);
    let replayed = forward(&fake, &form)
        .header("Idempotency-Key", "k1")
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 200);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    let second: Value = replayed.json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(received.lock().unwrap().len(), 1);
    assert_eq!(fake.destination_posts_for(&pms[0]), 1);

    // An error answer is not stored: the same key then goes through.
    fake.fail_forward_of(&pms[0], 500, 1);
    let (status, body) = send(forward(&fake, &form).header("Idempotency-Key", "k2")).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["type"], "api_error");
    let (status, _) = send(forward(&fake, &form).header("Idempotency-Key", "k2")).await;
    assert_eq!(status, 200);
    assert_eq!(fake.destination_posts_for(&pms[0]), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_stripe_refuses_a_key_in_flight() {
    let fake = fake().await;
    let app = Router::new().route(
        "/slow",
        post(|| async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            Json(json!({"ok": true}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = format!("http://{}/slow", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (_, pms) = fake.add_customer(vec![FakeCard::visa(8)]);
    let form = forward_form(&pms[0], &slow);

    let first = send(forward(&fake, &form).header("Idempotency-Key", "same"));
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        send(forward(&fake, &form).header("Idempotency-Key", "same")).await
    };
    let ((first, _), (second, body)) = tokio::join!(first, second);
    assert_eq!(first, 200);
    assert_eq!(second, 409);
    assert_eq!(body["error"]["code"], "idempotency_key_in_use");
    assert_eq!(fake.destination_posts_for(&pms[0]), 1);
    let (status, _) = send(forward(&fake, &form).header("Idempotency-Key", "same")).await;
    assert_eq!(status, 200);
    assert_eq!(fake.destination_posts_for(&pms[0]), 1);
}

#[tokio::test]
async fn fake_stripe_refuses_deleted_and_unknown_payment_methods() {
    let fake = fake().await;
    let (destination, received) = destination().await;
    let (customer, pms) = fake.add_customer(vec![FakeCard::visa(1), FakeCard::visa(2)]);
    fake.delete_at_forward(&pms[1]);

    let (_, page) = send(get(
        &fake,
        &format!("/v1/customers/{customer}/payment_methods?type=card"),
    ))
    .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);

    let (status, body) = send(forward(&fake, &forward_form(&pms[1], &destination))).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": {"code": "resource_missing", "param": "payment_method", "message": format!("No such PaymentMethod: '{}'", pms[1]), "type": "invalid_request_error"}})
    );
    let (status, body) = send(forward(&fake, &forward_form("pm_nope", &destination))).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "resource_missing");
    assert!(received.lock().unwrap().is_empty());
    assert_eq!(fake.destination_posts_for(&pms[1]), 0);
}

#[tokio::test]
async fn fake_stripe_injects_failures() {
    let fake = fake().await;
    let (destination, received) = destination().await;
    let (customer, pms) = fake.add_customer(vec![FakeCard::visa(3)]);

    fake.fail_next(Route::Customers, 429, 1);
    let (status, body) = send(get(&fake, "/v1/customers")).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "rate_limit");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let (status, _) = send(get(&fake, "/v1/customers")).await;
    assert_eq!(status, 200);

    fake.fail_next(Route::Any, 500, 1);
    let (status, body) = send(get(
        &fake,
        &format!("/v1/customers/{customer}/payment_methods?type=card"),
    ))
    .await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["type"], "api_error");

    fake.fail_next(Route::Forwarding, 402, 1);
    let (status, body) = send(forward(&fake, &forward_form(&pms[0], &destination))).await;
    assert_eq!(status, 402);
    assert_eq!(
        body["error"]["code"],
        "forwarding_api_upstream_connection_timeout"
    );
    assert!(received.lock().unwrap().is_empty());

    fake.fail_forward_of(&pms[0], 429, 2);
    for _ in 0..2 {
        let (status, _) = send(forward(&fake, &forward_form(&pms[0], &destination))).await;
        assert_eq!(status, 429);
    }
    let (status, _) = send(forward(&fake, &forward_form(&pms[0], &destination))).await;
    assert_eq!(status, 200);

    let stats = fake.stats();
    assert_eq!(stats.rate_limited, 3);
    assert_eq!(stats.injected_failures, 5);
    assert_eq!(stats.destination_posts, 1);

    let stats_json: Value = client()
        .get(format!("{}/_fake/stats", fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats_json["rate_limited"], 3);
    assert_eq!(stats_json["forwards"], 4);
}

#[tokio::test]
async fn fake_stripe_rate_limits_and_reports_unreachable_destinations() {
    let limited = FakeStripe::start(FakeStripeConfig {
        rate_limit_per_sec: Some(2),
        ..FakeStripeConfig::default()
    })
    .await
    .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(send(get(&limited, "/v1/customers")).await.0);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(
        limited.stats().rate_limited,
        statuses.iter().filter(|s| **s == 429).count() as u64
    );

    let fake = fake().await;
    let (_, pms) = fake.add_customer(vec![FakeCard::visa(9)]);
    // A port that was just free: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (status, body) = send(forward(
        &fake,
        &forward_form(&pms[0], &format!("http://{closed}/cards")),
    ))
    .await;
    assert_eq!(status, 502);
    assert_eq!(
        body["error"]["code"],
        "forwarding_api_upstream_connection_error"
    );

    let inactive = FakeStripe::start(FakeStripeConfig {
        forwarding_enabled: false,
        ..FakeStripeConfig::default()
    })
    .await
    .unwrap();
    let (status, body) = send(forward(&inactive, &forward_form(&pms[0], "http://x/"))).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "forwarding_api_inactive");
}
