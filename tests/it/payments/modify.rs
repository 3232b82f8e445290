//! Moving a payment along: capture and void (and moves the status does not allow), partial refunds up
//! to the captured amount, and settlement.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use strongroom::jobs::Step;

use crate::support::{
    error_body, on_both_backends, payment, spawn_app, spawn_app_with, validation_body, Backend,
};

on_both_backends!(
    capture_void_and_moves_in_the_wrong_state,
    partial_refunds_up_to_the_captured_amount,
    a_captured_payment_settles,
);

async fn capture_void_and_moves_in_the_wrong_state(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token_for("5555555555554444").await;
    let p = app.pay("one-off", &payment(&token, 1000, "manual")).await;
    let id = p["id"].as_str().unwrap();
    let capturing = app
        .capture(id, Some(&json!({"amount": 600})))
        .await
        .ok_body();
    assert_eq!(capturing["status"], "capturing");
    let again = app.capture(id, Some(&json!({}))).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(
        again.body,
        error_body(
            409,
            "CONFLICT",
            "A payment that is capturing cannot be captured"
        )
    );
    app.run_jobs().await;
    let captured = app.get_payment(id).await.body;
    assert_eq!(captured["status"], "captured");
    assert_eq!(
        captured["amount"],
        json!({"requested": 1000, "authorized": 1000, "captured": 600})
    );
    let twice = app.capture(id, None).await;
    assert_eq!(
        twice.body,
        error_body(
            409,
            "CONFLICT",
            "A payment that is captured cannot be captured"
        )
    );
    let void_captured = app.void(id).await;
    assert_eq!(
        void_captured.body,
        error_body(
            409,
            "CONFLICT",
            "A payment that is captured cannot be voided"
        )
    );

    let p = app.pay("one-off", &payment(&token, 800, "manual")).await;
    let id = p["id"].as_str().unwrap();
    let too_much = app.capture(id, Some(&json!({"amount": 801}))).await;
    assert_eq!(
        too_much.body,
        validation_body(&[("$.amount", "must not exceed the authorized amount")])
    );
    let voiding = app.void(id).await;
    assert_eq!(voiding.body["status"], "voiding");
    app.run_jobs().await;
    let voided = app.get_payment(id).await.body;
    assert_eq!(
        (voided["status"].clone(), voided["amount"].clone()),
        (
            json!("voided"),
            json!({"requested": 800, "authorized": 800, "voided": 800})
        )
    );
    let capture_voided = app.capture(id, None).await;
    assert_eq!(
        capture_voided.body,
        error_body(
            409,
            "CONFLICT",
            "A payment that is voided cannot be captured"
        )
    );
    let refund_voided = app.refund(id, None).await;
    assert_eq!(
        refund_voided.body,
        error_body(
            409,
            "CONFLICT",
            "A payment that is voided cannot be refunded"
        )
    );
    let kinds: Vec<Value> = app.transactions(id).await.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].clone())
        .collect();
    assert_eq!(kinds, [json!("authorization"), json!("void")]);
}

async fn partial_refunds_up_to_the_captured_amount(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token_for("4111111111111111").await;
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    let id = p["id"].as_str().unwrap();
    let first = app
        .refund(id, Some(&json!({"amount": 300, "reference": "r1"})))
        .await
        .ok_body();
    assert_eq!(first["status"], "processing");
    assert_eq!(
        (first["amount"].clone(), first["payment_id"].clone()),
        (json!(300), json!(id))
    );
    app.refund(id, Some(&json!({"amount": 300})))
        .await
        .ok_body();
    let past = app.refund(id, Some(&json!({"amount": 401}))).await;
    assert_eq!(
        past.body,
        validation_body(&[("$.amount", "must not exceed the refundable amount of 400")])
    );
    app.run_jobs().await;
    let rest = app
        .refund(id, Some(&json!({"amount": 400})))
        .await
        .ok_body();
    app.run_jobs().await;
    let full = app.refund(id, Some(&json!({"amount": 1}))).await;
    assert_eq!(
        full.body,
        error_body(409, "CONFLICT", "The payment has been refunded in full")
    );

    let refreshed = app.get_payment(id).await.body;
    assert_eq!(
        refreshed["amount"],
        json!({"requested": 1000, "authorized": 1000, "captured": 1000, "refunded": 1000})
    );
    let refunds = app.list_refunds(id).await.body;
    let statuses: Vec<_> = refunds["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["amount"].clone(), r["status"].clone()))
        .collect();
    assert_eq!(
        statuses,
        [
            (json!(300), json!("completed")),
            (json!(300), json!("completed")),
            (json!(400), json!("completed"))
        ]
    );
    let one = app.get_refund(rest["id"].as_str().unwrap()).await;
    assert_eq!(
        (one.status, one.body["status"].clone()),
        (StatusCode::OK, json!("completed"))
    );
    assert_eq!(one.body["currency_code"], "EUR");
}

async fn a_captured_payment_settles(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.settle_after = Duration::ZERO).await;
    let token = app.token_for("4111111111111111").await;
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    let id = p["id"].as_str().unwrap();
    let worker = app.worker();
    assert!(matches!(worker.step().await.unwrap(), Step::Completed(_)));
    assert_eq!(app.get_payment(id).await.body["status"], "settling");
    assert!(matches!(worker.step().await.unwrap(), Step::Completed(_)));
    assert_eq!(app.get_payment(id).await.body["status"], "settled");
    let refund = app.refund(id, Some(&json!({"amount": 100}))).await;
    assert_eq!(
        refund.status,
        StatusCode::OK,
        "a settled payment can be refunded"
    );
    let transactions = app.transactions(id).await.body;
    let kinds: Vec<Value> = transactions["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].clone())
        .collect();
    assert_eq!(
        kinds,
        [json!("authorization"), json!("settlement")],
        "settlement is recorded once"
    );
}
