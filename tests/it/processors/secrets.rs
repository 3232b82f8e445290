//! A processor's secret key reaches neither the database (files or rows) nor the server's trace logs nor
//! any admin output, through adding the processor, paying, refunding and removing it.

use serde_json::json;

use crate::support::fake_stripe::payment_intents::FakePaymentIntents;
use crate::support::{
    cli_with_input, contains, database_bytes, on_both_backends, payment, Backend, ServerProcess,
    TestDb, STRIPE_SECRET,
};

on_both_backends!(no_processor_secret_in_the_database_or_the_logs);

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
