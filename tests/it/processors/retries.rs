//! A retried job never acts twice at Stripe: when Stripe captured or refunded but its answer was lost (the
//! call timed out), the job's retry carries the same `Idempotency-Key` and gets the first answer back.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_stripe::payment_intents::{FakePaymentIntents, PiFault, PiRoute};
use crate::support::{on_both_backends, payment, spawn_app, Backend, TestApp, STRIPE_SECRET};

on_both_backends!(a_capture_and_a_refund_whose_answers_were_lost_happen_once);

async fn intent_of(app: &TestApp, id: &str) -> String {
    let list: Value = app.transactions(id).await.ok_body();
    super::transaction_rows(&list)[0]["processor_reference"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Runs the due jobs, then again after the first retry's backoff (about a second).
async fn run_jobs_with_one_retry(app: &TestApp) {
    app.run_jobs().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    app.run_jobs().await;
}

async fn a_capture_and_a_refund_whose_answers_were_lost_happen_once(backend: Backend) {
    let stripe = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    let app = spawn_app(backend).await;
    app.add_stripe("stripe-main", &stripe.base_url()).await;
    let (ok, _, stderr) = app
        .set_routes(&json!([{"name": "stripe", "processors": ["stripe-main"]}]))
        .await;
    assert!(ok, "{stderr}");
    let token = app.token_for("4242424242424242").await;
    let p = app.pay("one-off", &payment(&token, 1000, "manual")).await;
    let id = p["id"].as_str().unwrap();
    let pi = intent_of(&app, id).await;

    // Stripe captures, the answer is lost; the retry is answered from the key: captured, not refused
    // as a second capture of a captured intent.
    stripe.fail_next(
        PiRoute::Capture,
        PiFault::AnswerLost(Duration::from_secs(2)),
        1,
    );
    app.capture(id, Some(&json!({"amount": 900})))
        .await
        .ok_body();
    run_jobs_with_one_retry(&app).await;
    let captured = app.get_payment(id).await.ok_body();
    assert_eq!(captured["status"], "captured", "{captured}");
    assert_eq!(captured["amount"]["captured"], 900);
    assert_eq!(stripe.intent(&pi).unwrap()["amount_received"], 900);

    // A refund whose answer is lost, then one answered 500 first: one refund each at Stripe.
    stripe.fail_next(
        PiRoute::Refund,
        PiFault::AnswerLost(Duration::from_secs(2)),
        1,
    );
    let refund = app
        .refund(id, Some(&json!({"amount": 250})))
        .await
        .ok_body();
    run_jobs_with_one_retry(&app).await;
    let done = app
        .get_refund(refund["id"].as_str().unwrap())
        .await
        .ok_body();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(stripe.refunds_of(&pi).len(), 1);

    stripe.fail_next(PiRoute::Refund, PiFault::Status(500), 1);
    let refund = app
        .refund(id, Some(&json!({"amount": 100})))
        .await
        .ok_body();
    run_jobs_with_one_retry(&app).await;
    let done = app
        .get_refund(refund["id"].as_str().unwrap())
        .await
        .ok_body();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(stripe.refunds_of(&pi).len(), 2);
    assert_eq!(
        app.get_payment(id).await.ok_body()["amount"]["refunded"],
        350
    );
}
