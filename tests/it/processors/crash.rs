//! A node killed (kill -9) while Stripe holds its answer, after Stripe has acted and before our write:
//! started again on the same database, its recovery job (authorization) or the job's retry (capture)
//! asks Stripe again under the same `Idempotency-Key`, and Stripe acts once. The fake Stripe records
//! the work, then holds its answer (`AnswerLost`), so the window is exact without hooks in the server.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::fake_stripe::payment_intents::{FakePaymentIntents, PiFault, PiRoute};
use crate::support::{
    cli_with_input, on_both_backends, payment, ApiClient, Backend, ServerProcess, TestDb,
    STRIPE_SECRET,
};

on_both_backends!(
    an_authorization_killed_in_flight_is_recovered_with_one_charge,
    a_capture_killed_in_flight_is_retried_and_captures_once,
);

/// Recovery and lease takeover within seconds; the processor's deadline far above the kill.
const ENV: [(&str, &str); 3] = [
    ("STRONGROOM_AUTHORIZE_RECOVERY_SECONDS", "6"),
    ("STRONGROOM_JOB_LEASE_SECONDS", "2"),
    ("RUST_LOG", "info"),
];

/// Starts the binary on `db` with a Stripe processor at `stripe` as the only route; returns the server
/// and the default account's key.
async fn start_with_stripe(db: &TestDb, stripe: &FakePaymentIntents) -> (ServerProcess, String) {
    let server = ServerProcess::start_with(db, "first", &ENV);
    let key = server.default_api_key();
    let account = server.api(&key).account_id().await.to_string();
    let secrets = json!({"api_key": STRIPE_SECRET}).to_string();
    let base = stripe.base_url();
    let (ok, _, stderr) = cli_with_input(
        db,
        &[
            "processor",
            "add",
            "--account",
            &account,
            "--name",
            "stripe-main",
            "--kind",
            "stripe",
            "--api-base",
            &base,
            "--timeout-ms",
            "5000",
            "--json",
        ],
        &secrets,
    );
    assert!(ok, "{stderr}");
    let rules = json!([{"name": "stripe", "processors": ["stripe-main"]}]).to_string();
    let (ok, _, stderr) = cli_with_input(
        db,
        &["route", "set", "--account", &account, "--json"],
        &rules,
    );
    assert!(ok, "{stderr}");
    (server, key)
}

/// Waits up to `limit` for `done`.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "gave up waiting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls the payment until its status leaves `from`; returns it.
async fn payment_after(api: &ApiClient, id: &str, from: &str) -> Value {
    let started = Instant::now();
    loop {
        let p = api.get_payment(id).await.ok_body();
        if p["status"] != from {
            return p;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn an_authorization_killed_in_flight_is_recovered_with_one_charge(backend: Backend) {
    let stripe = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    let db = TestDb::new(backend).await;
    let (server, key) = start_with_stripe(&db, &stripe).await;
    let api = server.api(&key);
    let token = api
        .new_token(
            &json!({"account_number": "4242424242424242", "expiry_month": 4,
                           "expiry_year": 2031, "security_code": "123"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Stripe charges, then holds its answer; the node dies waiting for it.
    stripe.fail_next(
        PiRoute::Create,
        PiFault::AnswerLost(Duration::from_secs(60)),
        1,
    );
    let body = payment(&token, 1500, "automatic");
    let client = api.clone();
    let in_flight = tokio::spawn(async move { client.create_payment("one-off", &body).await });
    wait_until(Duration::from_secs(20), || stripe.create_calls() == 1).await;
    server.kill_9();
    in_flight.abort();
    let first = stripe.create_params(0).unwrap();
    let id = first["metadata[strongroom_payment_id]"].clone();
    assert!(
        first.contains_key("payment_method_data[card][cvc]"),
        "the first call carried the security code, which the recovery no longer has"
    );

    // Started again on the same database: the recovery job asks again under the same key.
    let server = ServerProcess::start_with(&db, "second", &ENV);
    let api = server.api(&key);
    assert_eq!(api.get_payment(&id).await.ok_body()["status"], "processing");
    let recovered = payment_after(&api, &id, "processing").await;
    assert_eq!(recovered["status"], "captured", "{recovered}");
    assert_eq!(recovered["amount"]["captured"], 1500);

    let key = format!("strongroom-authorize-{}", id.replace('-', ""));
    assert_eq!(stripe.charges_for(&key), 1, "one charge for the key");
    assert_eq!(
        stripe.charges().values().sum::<u32>(),
        1,
        "one charge in all"
    );
    let intents = stripe.intents();
    assert_eq!(intents.len(), 1);
    let list: Value = api.transactions(&id).await.ok_body();
    let list = super::transaction_rows(&list);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(
        (&list[0]["type"], &list[0]["status"]),
        (&json!("authorization"), &json!("succeeded"))
    );
    assert_eq!(list[0]["processor_reference"], intents[0]["id"]);
    server.kill_9();
}

async fn a_capture_killed_in_flight_is_retried_and_captures_once(backend: Backend) {
    let stripe = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    let db = TestDb::new(backend).await;
    let (server, key) = start_with_stripe(&db, &stripe).await;
    let api = server.api(&key);
    let token = api.token_for("4242424242424242").await;
    let p = api.pay("one-off", &payment(&token, 2000, "manual")).await;
    assert_eq!(p["status"], "authorized", "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    let pi = stripe.intents()[0]["id"].as_str().unwrap().to_owned();

    // Stripe captures, then holds its answer; the node dies while its job waits for it.
    stripe.fail_next(
        PiRoute::Capture,
        PiFault::AnswerLost(Duration::from_secs(60)),
        1,
    );
    api.capture(&id, Some(&json!({"amount": 1200})))
        .await
        .ok_body();
    wait_until(Duration::from_secs(20), || {
        stripe.intent(&pi).unwrap()["status"] == "succeeded"
    })
    .await;
    server.kill_9();

    // Another node takes the job over once its lease lapses and asks again under the same key: the
    // answer is Stripe's first, not a refusal to capture a captured intent.
    let server = ServerProcess::start_with(&db, "second", &ENV);
    let api = server.api(&key);
    let captured = payment_after(&api, &id, "capturing").await;
    assert_eq!(captured["status"], "captured", "{captured}");
    assert_eq!(captured["amount"]["captured"], 1200);
    assert_eq!(stripe.intent(&pi).unwrap()["amount_received"], 1200);
    let list: Value = api.transactions(&id).await.ok_body();
    let list = super::transaction_rows(&list);
    let captures: Vec<&Value> = list.iter().filter(|t| t["type"] == "capture").collect();
    assert_eq!(captures.len(), 1, "{list:?}");
    assert_eq!(captures[0]["status"], "succeeded");
    server.kill_9();
}
