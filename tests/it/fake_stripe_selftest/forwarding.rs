//! The fake's Forward API: the card filled in and redacted in the answer, idempotent replays, a key in
//! flight refused, and deleted or unknown payment methods.

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::support::fake_stripe::FakeCard;
use crate::support::stripe_client::{destination, fake, forward, forward_form, get, send};

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
