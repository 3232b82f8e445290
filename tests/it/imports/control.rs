//! Starting and stopping imports: bad requests, one import at a time per account, the ingest endpoint
//! closed to every key but the import's own, other accounts kept out, and abort.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use strongroom::config::Config;
use strongroom::store::Feature;

use crate::support::fake_stripe::{FakeStripe, FakeStripeConfig};
use crate::support::{
    error_body, on_both_backends, send, spawn_app_with, stripe_settings, validation_body,
    visa_cards, Backend, STRIPE_KEY,
};

on_both_backends!(a_second_import_while_one_runs_is_rejected_and_abort_ends_it,);

async fn a_second_import_while_one_runs_is_rejected_and_abort_ends_it(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig {
        latency: Duration::from_millis(30),
        ..FakeStripeConfig::default()
    })
    .await
    .unwrap();
    stripe.add_customer(visa_cards(1, 300));
    let base = stripe.base_url();
    let app = spawn_app_with(backend, move |config: &mut Config| {
        stripe_settings(config, &base);
        config.import_concurrency = 2;
    })
    .await;

    let bad = app
        .start_import(&json!({"provider": "paypal", "stripe": {"api_key": ""}, "extra": 1}))
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        bad.body,
        validation_body(&[
            ("$.extra", "is not a known field"),
            ("$.provider", "must be `stripe`"),
            ("$.stripe.api_key", "must not be empty"),
        ])
    );
    let missing = app.start_import(&json!({})).await;
    assert_eq!(
        missing.body,
        validation_body(&[("$.provider", "is required"), ("$.stripe", "is required")])
    );

    let id = app.start_stripe_import(STRIPE_KEY).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = app
        .start_import(&json!({"provider": "stripe", "stripe": {"api_key": STRIPE_KEY}}))
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert_eq!(
        second.body,
        error_body(
            409,
            "CONFLICT",
            "another import of this account is preparing or running"
        )
    );

    // The ingest endpoint takes only the import's own key: not an account key, not a guessed secret.
    let card_body =
        json!({"account_number": "4242424242424242", "expiry_month": "12", "expiry_year": "2030"});
    for key in [
        app.api_key.clone(),
        format!("sri_{}_guessed", id.replace('-', "")),
    ] {
        let answer = app.with_key(&key).ingest("pm_1", &card_body).await;
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

    // While it runs, the Stripe key is stored only sealed.
    let stored = app
        .store()
        .get_import(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let sealed = stored.sealed_api_key.unwrap();
    assert!(!sealed
        .windows(STRIPE_KEY.len())
        .any(|w| w == STRIPE_KEY.as_bytes()));

    // Another account sees none of it.
    let (_, other_key) = app.create_account("other", &[Feature::CdeImport]).await;
    let other = app.with_key(&other_key);
    for (method, path) in [
        (Method::GET, format!("/tokens/imports/{id}")),
        (Method::GET, format!("/tokens/imports/{id}/failures")),
        (Method::POST, format!("/tokens/imports/{id}/abort")),
    ] {
        let answer = send(other.request(method, &path)).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
    let theirs = other.list_imports("").await;
    assert_eq!(theirs.body["pagination"]["total_items"], 0);

    // Let it run a little, then stop it.
    let started = Instant::now();
    while app.get_import(&id).await.body["attemts"] == 0 {
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The key Stripe was given works while the import runs, and not a moment after it ended: each
    // forward reads the import after it arrived (forwards in flight share those reads).
    let ingest_key = stripe.last_forward_key().unwrap();
    let direct = app
        .with_key(&ingest_key)
        .ingest("pm_direct", &card_body)
        .await;
    assert_eq!(direct.status, StatusCode::OK, "{}", direct.body);
    assert_eq!(direct.body["business_key"], "pm_direct");
    let aborted = app.abort_import(&id).await;
    assert_eq!(aborted.status, StatusCode::OK);
    let after = app
        .with_key(&ingest_key)
        .ingest("pm_after", &card_body)
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(aborted.body["status"], "aborted");
    assert!(aborted.body["finished_at"].is_string());
    let again = app.abort_import(&id).await;
    assert_eq!(
        again.body,
        error_body(409, "CONFLICT", "the import has already ended")
    );
    // The job notices and stops: the counters settle well short of 300.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = app.get_import(&id).await.body;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = app.get_import(&id).await.body;
    assert_eq!(settled, later);
    assert!(later["attemts"].as_i64().unwrap() < 300, "{later}");
    assert_eq!(later["status"], "aborted");
    // A new import may start now.
    app.start_stripe_import(STRIPE_KEY).await;
}
