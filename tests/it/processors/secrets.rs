//! A processor's secret key reaches neither the database (files or rows) nor the server's trace logs nor
//! any admin output, through adding the processor, paying, refunding and removing it (Stripe and Adyen).

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::fake_adyen::{FakeAdyen, FakeAdyenConfig, NotifyFault};
use crate::support::fake_stripe::payment_intents::FakePaymentIntents;
use crate::support::{
    cli_with_input, contains, database_bytes, on_both_backends, payment, Backend, ServerProcess,
    TestDb, STRIPE_SECRET,
};

on_both_backends!(
    no_processor_secret_in_the_database_or_the_logs,
    no_adyen_secret_in_the_database_or_the_logs,
);

async fn no_processor_secret_in_the_database_or_the_logs(backend: Backend) {
    let stripe = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    let db = TestDb::new(backend).await;
    let server = ServerProcess::start(&db, "run");
    let api = server.api(&server.default_api_key());
    let account = api.account_id().await.to_string();
    let mut outputs = String::new();
    let base = stripe.base_url();
    let (ok, out, err) = cli_with_input(
        &db,
        &[
            "processor",
            "add",
            "--account",
            &account,
            "--name",
            "stripe",
            "--kind",
            "stripe",
            "--api-base",
            &base,
            "--json",
        ],
        &json!({"api_key": STRIPE_SECRET}).to_string(),
    );
    assert!(ok, "{err}");
    outputs.push_str(&out);
    outputs.push_str(&err);
    let id = serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, out, err) = cli_with_input(
        &db,
        &["route", "set", "--account", &account, "--json"],
        &json!([{"name": "stripe", "processors": ["stripe"]}]).to_string(),
    );
    assert!(ok, "{err}");
    outputs.push_str(&out);
    let token = api.token_for("4242424242424242").await;
    let p = api
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(p["status"], "captured", "{p}");
    // A decline and an injected refusal are logged too: without the key.
    let declined = api.token_for("4000000000000002").await;
    let p = api
        .pay("one-off", &payment(&declined, 1000, "automatic"))
        .await;
    assert_eq!(p["status"], "failed", "{p}");
    let stored = database_bytes(&db, backend).await;
    let (ok, out, err) = cli_with_input(&db, &["processor", "remove", &id], "");
    assert!(ok, "{err}");
    outputs.push_str(&out);
    server.let_log_settle();
    let (_, log) = server.kill_9();
    assert!(log.contains("TRACE"), "the server logged at trace level");
    for (place, bytes) in [
        ("the database", stored),
        (
            "the database after removal",
            database_bytes(&db, backend).await,
        ),
        ("the server's log", log.into_bytes()),
        ("the admin output", outputs.into_bytes()),
    ] {
        assert!(
            !contains(&bytes, STRIPE_SECRET),
            "the processor key is in {place}"
        );
        assert!(
            !contains(&bytes, "4242424242424242"),
            "a card number is in {place}"
        );
    }
}

/// The same for Adyen: its API key and HMAC key, through a payment, a refund that ends by notification,
/// and a badly signed notification.
async fn no_adyen_secret_in_the_database_or_the_logs(backend: Backend) {
    let adyen = FakeAdyen::start(FakeAdyenConfig::default()).await.unwrap();
    let config = adyen.config().clone();
    let db = TestDb::new(backend).await;
    let server = ServerProcess::start(&db, "run");
    let api = server.api(&server.default_api_key());
    let account = api.account_id().await.to_string();
    let mut outputs = String::new();
    let secrets = json!({"api_key": config.api_key, "merchant_account": config.merchant_account,
                         "hmac_key": config.hmac_key});
    let base = adyen.base_url();
    let (ok, out, err) = cli_with_input(
        &db,
        &[
            "processor",
            "add",
            "--account",
            &account,
            "--name",
            "adyen",
            "--kind",
            "adyen",
            "--api-base",
            &base,
            "--json",
        ],
        &secrets.to_string(),
    );
    assert!(ok, "{err}");
    outputs.push_str(&out);
    outputs.push_str(&err);
    let id = serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    adyen.set_notify_url(&format!("{}/processors/{id}/notifications", server.base));
    let (ok, out, err) = cli_with_input(
        &db,
        &["route", "set", "--account", &account, "--json"],
        &json!([{"name": "adyen", "processors": ["adyen"]}]).to_string(),
    );
    assert!(ok, "{err}");
    outputs.push_str(&out);
    let token = api.token_for("4111111111111111").await;
    let p = api
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(p["status"], "captured", "{p}");
    let declined = api.token_for("4000000000000002").await;
    let failed = api
        .pay("one-off", &payment(&declined, 1000, "automatic"))
        .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    // A refund, completed by its notification once the server's worker has asked for it.
    adyen.spoil_next_notification(NotifyFault::BadSignature);
    let first = api
        .refund(p["id"].as_str().unwrap(), Some(&json!({"amount": 100})))
        .await
        .ok_body();
    let second = api
        .refund(p["id"].as_str().unwrap(), Some(&json!({"amount": 200})))
        .await
        .ok_body();
    let started = Instant::now();
    while adyen.pending_notifications() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no refund reached Adyen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut statuses = adyen.deliver().await;
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401]);
    let states: Vec<_> = [&first, &second]
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let mut seen = Vec::new();
    for r in &states {
        seen.push(api.get_refund(r).await.ok_body()["status"].clone());
    }
    seen.sort_by_key(|s| s.to_string());
    assert_eq!(seen, [json!("completed"), json!("processing")]);
    let stored = database_bytes(&db, backend).await;
    let (ok, out, err) = cli_with_input(&db, &["processor", "remove", &id], "");
    assert!(ok, "{err}");
    outputs.push_str(&out);
    server.let_log_settle();
    let (_, log) = server.kill_9();
    assert!(log.contains("TRACE"), "the server logged at trace level");
    for (place, bytes) in [
        ("the database", stored),
        (
            "the database after removal",
            database_bytes(&db, backend).await,
        ),
        ("the server's log", log.into_bytes()),
        ("the admin output", outputs.into_bytes()),
    ] {
        for secret in [&config.api_key, &config.hmac_key] {
            assert!(!contains(&bytes, secret), "an Adyen secret is in {place}");
        }
        assert!(
            !contains(&bytes, "4111111111111111"),
            "a card number is in {place}"
        );
    }
}
