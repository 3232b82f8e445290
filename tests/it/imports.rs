//! Token imports against a fake Stripe (a real HTTP server on port 0 that forwards card data to our
//! ingest endpoint): counters, tokens, each failure kind, conflicts, abort, pagination of failures, and a
//! kill -9 in the middle of an import.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use strongroom::config::Config;
use strongroom::store::Feature;

use crate::fake_stripe::{FakeCard, FakeStripe, FakeStripeConfig, Route};
use crate::helpers::{
    error_body, send, spawn_app_with, validation_body, Backend, ServerProcess, TestApp, TestDb,
};
use crate::on_both_backends;

on_both_backends!(
    an_import_brings_every_stored_card_into_the_vault_once,
    each_failure_kind_is_recorded_with_its_reason_and_context,
    a_refused_stripe_key_aborts_the_import_with_a_failure_that_says_so,
    forwarding_not_enabled_aborts_the_import,
    a_second_import_while_one_runs_is_rejected_and_abort_ends_it,
    failures_paginate,
    an_import_killed_mid_way_resumes_and_counts_every_card_once,
    the_end_of_an_import_is_notified_with_the_import_as_it_ended,
);

const STRIPE_KEY: &str = "sk_test_fake";

/// A server whose imports go to `stripe`, with one worker, no rate ceiling and fast retries.
async fn app_for(backend: Backend, stripe: &FakeStripe) -> TestApp {
    let base = stripe.base_url();
    spawn_app_with(backend, move |config: &mut Config| {
        configure(config, &base);
    })
    .await
}

fn configure(config: &mut Config, stripe_base: &str) {
    config.stripe_api_base = stripe_base.to_owned();
    config.stripe_rate_limit = None;
    config.stripe_retry_base = Duration::from_millis(5);
    config.workers = 1;
    config.job_poll_interval = Duration::from_millis(20);
}

async fn start_import(app: &TestApp, key: &str) -> Value {
    let answer = app
        .post_json(
            "/tokens/imports",
            &json!({"provider": "stripe", "stripe": {"api_key": key}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["status"], "preparing");
    answer.body
}

/// Polls the import until it ends; checks `attemts = successes + failures` on every look.
async fn wait_for_end(app: &TestApp, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let answer = app.get(&format!("/tokens/imports/{id}")).await;
        assert_eq!(answer.status, StatusCode::OK);
        let body = answer.body;
        assert_eq!(
            body["attemts"].as_i64().unwrap(),
            body["successes"].as_i64().unwrap() + body["failures"].as_i64().unwrap(),
            "{body}"
        );
        assert_eq!(body["attemts"], body["attempts"]);
        if body["status"] == "finished" || body["status"] == "aborted" {
            assert!(body["finished_at"].is_string(), "{body}");
            return body;
        }
        assert!(body.get("finished_at").is_none(), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the import did not end: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn failures(app: &TestApp, id: &str) -> Vec<Value> {
    let answer = app
        .get(&format!("/tokens/imports/{id}/failures?limit=500"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    answer.body["data"].as_array().unwrap().clone()
}

/// Every imported token: business key → masked number.
async fn imported_tokens(app: &TestApp) -> Vec<Value> {
    let mut all = Vec::new();
    for page in 1.. {
        let answer = app.get(&format!("/tokens?limit=500&page={page}")).await;
        let data = answer.body["data"].as_array().unwrap().clone();
        if data.is_empty() {
            break;
        }
        all.extend(data);
    }
    all
}

fn cards(from: u32, n: u32) -> Vec<FakeCard> {
    (from..from + n).map(FakeCard::visa).collect()
}

async fn an_import_brings_every_stored_card_into_the_vault_once(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    stripe.add_customer(vec![]);
    let (_, one) = stripe.add_customer(cards(1, 1));
    let (_, many) = stripe.add_customer(cards(100, 250));
    let app = app_for(backend, &stripe).await;

    let started = start_import(&app, STRIPE_KEY).await;
    assert_eq!(started["stripe"], json!({"api_key": "[REDACTED]"}));
    assert_eq!(
        (
            &started["attemts"],
            &started["attempts"],
            &started["successes"],
            &started["failures"]
        ),
        (&json!(0), &json!(0), &json!(0), &json!(0))
    );
    let id = started["id"].as_str().unwrap();
    let ended = wait_for_end(&app, id).await;
    assert_eq!(ended["status"], "finished");
    assert_eq!(
        (&ended["attemts"], &ended["successes"], &ended["failures"]),
        (&json!(251), &json!(251), &json!(0))
    );
    assert!(failures(&app, id).await.is_empty());
    // The keys are destroyed with the end of the import.
    let stored = app
        .store()
        .get_import(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.sealed_api_key.is_none() && stored.sealed_ingest_key.is_none());
    assert!(stored.ingest_key_digest.is_none());

    let tokens = imported_tokens(&app).await;
    assert_eq!(tokens.len(), 251);
    let keys: HashSet<&str> = tokens
        .iter()
        .map(|t| t["business_key"].as_str().unwrap())
        .collect();
    let expected: HashSet<&str> = one.iter().chain(&many).map(String::as_str).collect();
    assert_eq!(keys, expected);
    assert!(tokens.iter().all(|t| t["import_provider"] == "stripe"));
    let first = tokens
        .iter()
        .find(|t| t["business_key"] == one[0].as_str())
        .unwrap();
    let card = stripe.card_of(&one[0]).unwrap();
    assert_eq!(first["account_number_last_four"], card.last4());
    assert_eq!(first["expiry_month"], json!(card.exp_month));
    assert_eq!(first["cardholder_name"], "Test Holder");

    // The admin command line shows the end state; an aborted import would exit 1.
    let (ok, stdout, stderr) = crate::cli::strongroom(&app, &["import", "watch", id]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "import {id} finished: attempts 251 · successes 251 · failures 0"
        )),
        "{stdout}"
    );

    // A second import of the same account moves nothing twice: every card is there already.
    let again = start_import(&app, STRIPE_KEY).await;
    let ended = wait_for_end(&app, again["id"].as_str().unwrap()).await;
    assert_eq!(
        (&ended["status"], &ended["successes"], &ended["failures"]),
        (&json!("finished"), &json!(251), &json!(0))
    );
    assert_eq!(imported_tokens(&app).await.len(), 251);
    assert_eq!(stripe.destination_posts_for(&one[0]), 1);

    let listed = app.get("/tokens/imports?limit=1").await;
    assert_eq!(listed.body["data"][0]["id"], again["id"], "newest first");
    assert_eq!(listed.body["pagination"]["total_items"], 2);
}

async fn each_failure_kind_is_recorded_with_its_reason_and_context(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    let expired = FakeCard {
        exp_month: 1,
        exp_year: 2020,
        ..FakeCard::visa(7)
    };
    let (customer, pms) = stripe.add_customer(vec![
        FakeCard::visa(1),
        expired,
        FakeCard::visa(2),
        FakeCard::visa(3),
        FakeCard::visa(4),
        FakeCard::visa(5),
    ]);
    let [good, invalid, deleted, unreachable, unavailable, bursty] =
        <[String; 6]>::try_from(pms.clone()).unwrap();
    stripe.delete_at_forward(&deleted);
    stripe.fail_forward_of(&unreachable, 402, u32::MAX);
    stripe.fail_forward_of(&unavailable, 500, u32::MAX);
    // Passing trouble is retried away: a burst of 429s and 500s on the listings and on a forward.
    stripe.fail_forward_of(&bursty, 429, 3);
    stripe.fail_next(Route::Customers, 500, 2);
    stripe.fail_next(Route::PaymentMethods, 429, 2);
    let app = app_for(backend, &stripe).await;

    let id = start_import(&app, STRIPE_KEY).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ended = wait_for_end(&app, &id).await;
    assert_eq!(ended["status"], "finished");
    assert_eq!(
        (&ended["attemts"], &ended["successes"], &ended["failures"]),
        (&json!(6), &json!(2), &json!(4))
    );
    let mut found = failures(&app, &id).await;
    found.sort_by_key(|f| f["context"]["payment_method"].as_str().unwrap().to_owned());
    let mut expected = vec![
        json!({"reason": "invalid_card_data", "context": {"payment_method": invalid, "customer": customer,
            "http_status": 422, "validation_errors": [{"path": "$.expiry_year",
            "message": "the card has expired (the end of its expiry month has passed)"}]}}),
        json!({"reason": "source_error", "context": {"payment_method": deleted, "customer": customer,
            "http_status": 404, "stripe_error": "resource_missing"}}),
        json!({"reason": "destination_unreachable", "context": {"payment_method": unreachable, "customer": customer,
            "http_status": 402, "stripe_error": "forwarding_api_upstream_connection_timeout"}}),
        json!({"reason": "source_unavailable", "context": {"payment_method": unavailable, "customer": customer,
            "http_status": 500, "stripe_error": found_code(&found, &unavailable)}}),
    ];
    expected.sort_by_key(|f| f["context"]["payment_method"].as_str().unwrap().to_owned());
    assert_eq!(found, expected);
    let message = found_code(&found, &unavailable);
    assert!(
        message.as_str().is_some_and(|m| !m.is_empty()),
        "Stripe's message for a 500 without a code: {message}"
    );
    let tokens = imported_tokens(&app).await;
    let keys: HashSet<&str> = tokens
        .iter()
        .map(|t| t["business_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, HashSet::from([good.as_str(), bursty.as_str()]));

    // No card data in any failure: not the numbers, not their last digits' neighbours, not the codes.
    let text = app
        .get(&format!("/tokens/imports/{id}/failures"))
        .await
        .body
        .to_string();
    for pm in &pms {
        let card = stripe.card_of(pm).unwrap();
        assert!(!text.contains(&card.number), "{text}");
        assert!(!text.contains(&card.number[..12]), "{text}");
    }
    assert!(!text.contains("security_code\":\"1"), "{text}");
    assert!(!text.contains(STRIPE_KEY), "{text}");
}

/// Stripe's code (or message) for the 500 it gave, whatever the fake words it as.
fn found_code(found: &[Value], pm: &str) -> Value {
    found
        .iter()
        .find(|f| f["context"]["payment_method"] == pm)
        .map(|f| f["context"]["stripe_error"].clone())
        .unwrap_or(Value::Null)
}

async fn a_refused_stripe_key_aborts_the_import_with_a_failure_that_says_so(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    stripe.add_customer(cards(1, 3));
    let app = app_for(backend, &stripe).await;

    for (key, status) in [("sk_test_wrong_key_123", 401), ("rk_test_restricted", 403)] {
        let id = start_import(&app, key).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let ended = wait_for_end(&app, &id).await;
        assert_eq!(ended["status"], "aborted");
        assert_eq!(
            (&ended["attemts"], &ended["successes"], &ended["failures"]),
            (&json!(0), &json!(0), &json!(0))
        );
        let (ok, _, stderr) = crate::cli::strongroom(&app, &["import", "watch", &id]);
        assert!(!ok && stderr.contains("the import was aborted"), "{stderr}");
        let found = failures(&app, &id).await;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0]["reason"], "source_error");
        assert_eq!(found[0]["context"]["http_status"], status);
        let detail = found[0]["context"]["detail"].as_str().unwrap();
        assert!(
            detail.contains("refused the API key") || detail.contains("lacks a permission"),
            "{detail}"
        );
        let text = found[0].to_string();
        assert!(!text.contains(key), "the key leaked: {text}");
    }
    assert!(imported_tokens(&app).await.is_empty());
}

async fn forwarding_not_enabled_aborts_the_import(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig {
        forwarding_enabled: false,
        ..FakeStripeConfig::default()
    })
    .await
    .unwrap();
    stripe.add_customer(cards(1, 5));
    let app = app_for(backend, &stripe).await;

    let id = start_import(&app, STRIPE_KEY).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ended = wait_for_end(&app, &id).await;
    assert_eq!(ended["status"], "aborted");
    let found = failures(&app, &id).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["reason"], "source_error");
    assert_eq!(
        found[0]["context"]["stripe_error"],
        "forwarding_api_inactive"
    );
    assert!(found[0]["context"]["detail"]
        .as_str()
        .unwrap()
        .contains("forwarding is not enabled"));
}

async fn a_second_import_while_one_runs_is_rejected_and_abort_ends_it(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig {
        latency: Duration::from_millis(30),
        ..FakeStripeConfig::default()
    })
    .await
    .unwrap();
    stripe.add_customer(cards(1, 300));
    let base = stripe.base_url();
    let app = spawn_app_with(backend, move |config: &mut Config| {
        configure(config, &base);
        config.import_concurrency = 2;
    })
    .await;

    let bad = app
        .post_json(
            "/tokens/imports",
            &json!({"provider": "paypal", "stripe": {"api_key": ""}, "extra": 1}),
        )
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
    let missing = app.post_json("/tokens/imports", &json!({})).await;
    assert_eq!(
        missing.body,
        validation_body(&[("$.provider", "is required"), ("$.stripe", "is required")])
    );

    let id = start_import(&app, STRIPE_KEY).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = app
        .post_json(
            "/tokens/imports",
            &json!({"provider": "stripe", "stripe": {"api_key": STRIPE_KEY}}),
        )
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
        let answer = send(
            app.anonymous(Method::POST, "/tokens/imports/ingest")
                .header("X-API-Key", key)
                .header("X-Strongroom-Business-Key", "pm_1")
                .json(&card_body),
        )
        .await;
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
    for (method, path) in [
        (Method::GET, format!("/tokens/imports/{id}")),
        (Method::GET, format!("/tokens/imports/{id}/failures")),
        (Method::POST, format!("/tokens/imports/{id}/abort")),
    ] {
        let answer = send(
            app.anonymous(method, &path)
                .header("X-API-Key", other_key.as_str()),
        )
        .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
    let theirs = send(
        app.anonymous(Method::GET, "/tokens/imports")
            .header("X-API-Key", other_key.as_str()),
    )
    .await;
    assert_eq!(theirs.body["pagination"]["total_items"], 0);

    // Let it run a little, then stop it.
    let started = Instant::now();
    while app.get(&format!("/tokens/imports/{id}")).await.body["attemts"] == 0 {
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let aborted = app
        .post_json(&format!("/tokens/imports/{id}/abort"), &json!({}))
        .await;
    assert_eq!(aborted.status, StatusCode::OK);
    assert_eq!(aborted.body["status"], "aborted");
    assert!(aborted.body["finished_at"].is_string());
    let again = app
        .post_json(&format!("/tokens/imports/{id}/abort"), &json!({}))
        .await;
    assert_eq!(
        again.body,
        error_body(409, "CONFLICT", "the import has already ended")
    );
    // The job notices and stops: the counters settle well short of 300.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = app.get(&format!("/tokens/imports/{id}")).await.body;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = app.get(&format!("/tokens/imports/{id}")).await.body;
    assert_eq!(settled, later);
    assert!(later["attemts"].as_i64().unwrap() < 300, "{later}");
    assert_eq!(later["status"], "aborted");
    // A new import may start now.
    start_import(&app, STRIPE_KEY).await;
}

async fn failures_paginate(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    let (_, pms) = stripe.add_customer(cards(1, 3));
    for pm in &pms {
        stripe.delete_at_forward(pm);
    }
    let app = app_for(backend, &stripe).await;
    let id = start_import(&app, STRIPE_KEY).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(wait_for_end(&app, &id).await["failures"], 3);

    let page = app
        .get(&format!("/tokens/imports/{id}/failures?limit=1&page=2"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        page.body["pagination"],
        json!({"current_page": 2, "page_size": 1, "total_items": 3, "total_pages": 3})
    );
    let past = app
        .get(&format!("/tokens/imports/{id}/failures?limit=1&page=9"))
        .await;
    assert_eq!(past.status, StatusCode::OK);
    assert_eq!(past.body["data"], json!([]));
    assert_eq!(past.body["pagination"]["current_page"], 9);
    let bad = app
        .get(&format!("/tokens/imports/{id}/failures?page=0"))
        .await;
    assert_eq!(
        bad.body,
        validation_body(&[("query.page", "must be a whole number of at least 1")])
    );
}

async fn an_import_killed_mid_way_resumes_and_counts_every_card_once(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig {
        latency: Duration::from_millis(3),
        ..FakeStripeConfig::default()
    })
    .await
    .unwrap();
    let mut all = Vec::new();
    for (i, n) in [(0, 120), (1000, 1), (2000, 180)] {
        all.extend(stripe.add_customer(cards(i, n)).1);
    }
    let db = TestDb::new(backend).await;
    let base = stripe.base_url();
    let env = [
        ("STRONGROOM_STRIPE_API_BASE", base.as_str()),
        ("STRONGROOM_STRIPE_RATE_LIMIT", "0"),
        ("STRONGROOM_STRIPE_RETRY_BASE_MS", "5"),
        ("STRONGROOM_JOB_LEASE_SECONDS", "2"),
        ("STRONGROOM_IMPORT_CONCURRENCY", "4"),
        ("RUST_LOG", "info"),
    ];
    let server = ServerProcess::start_with(&db, "first", &env);
    let key = std::fs::read_to_string(&server.stdout)
        .unwrap()
        .split_whitespace()
        .find(|w| w.starts_with("sr_"))
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();
    let get = |base: String, path: String| {
        let client = client.clone();
        let key = key.clone();
        async move {
            let response = client
                .get(format!("{base}{path}"))
                .header("X-API-Key", key)
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()
        }
    };
    let created: Value = client
        .post(format!("{}/tokens/imports", server.base))
        .header("X-API-Key", &key)
        .json(&json!({"provider": "stripe", "stripe": {"api_key": STRIPE_KEY}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    loop {
        let body = get(server.base.clone(), format!("/tokens/imports/{id}")).await;
        if body["attemts"].as_i64().unwrap() >= 60 {
            assert_eq!(body["status"], "running");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill_9();

    let server = ServerProcess::start_with(&db, "second", &env);
    let started = Instant::now();
    let ended = loop {
        let body = get(server.base.clone(), format!("/tokens/imports/{id}")).await;
        assert_eq!(
            body["attemts"].as_i64().unwrap(),
            body["successes"].as_i64().unwrap() + body["failures"].as_i64().unwrap()
        );
        if body["status"] != "running" {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ended["status"], "finished", "{ended}");
    assert_eq!(
        (&ended["attemts"], &ended["successes"], &ended["failures"]),
        (&json!(301), &json!(301), &json!(0))
    );
    let mut keys = Vec::new();
    for page in 1..=2 {
        let body = get(
            server.base.clone(),
            format!("/tokens?limit=200&page={page}"),
        )
        .await;
        keys.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["business_key"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(keys.len(), 301, "no duplicate tokens");
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(unique, all.iter().collect::<HashSet<_>>());
    server.kill_9();
}

async fn the_end_of_an_import_is_notified_with_the_import_as_it_ended(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    let (_, pms) = stripe.add_customer(cards(1, 3));
    stripe.delete_at_forward(&pms[2]);
    let receiver = crate::receiver::Receiver::start("127.0.0.1:0", vec![]).await;
    let base = stripe.base_url();
    let app = spawn_app_with(backend, move |config: &mut Config| {
        configure(config, &base);
        crate::webhooks::fast(config);
        config.workers = 2;
    })
    .await;
    let (_, key) = crate::webhooks::register(&app, &receiver.url(), "import.*").await;

    let id = start_import(&app, STRIPE_KEY).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ended = wait_for_end(&app, &id).await;
    assert_eq!(
        (&ended["status"], &ended["successes"], &ended["failures"]),
        (&json!("finished"), &json!(2), &json!(1))
    );
    let hits = receiver.wait_for(1).await;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].event_type(), "import.finished");
    assert!(hits[0].signed_with(&key));
    assert_eq!(
        hits[0].object(),
        &ended,
        "the event shows the import as the API does"
    );

    // An abort is notified too, with the import as it was aborted.
    let id = start_import(&app, "sk_test_refused").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let aborted = wait_for_end(&app, &id).await;
    let hits = receiver.wait_for(2).await;
    assert_eq!(hits[1].event_type(), "import.aborted");
    assert_eq!(hits[1].object(), &aborted);
}
