//! Live progress: an import of 5,000 cards under a request ceiling, polled every 200 ms, shows its
//! counters growing many times before the end, `attemts = successes + failures` at every poll, and
//! `failures` in step with the failure list.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::fake_stripe::{FakeCard, FakeStripe, FakeStripeConfig};
use crate::support::{on_both_backends, spawn_app_with, stripe_settings, Backend, STRIPE_KEY};

on_both_backends!(the_counters_of_a_running_import_move_as_cards_are_recorded);

async fn the_counters_of_a_running_import_move_as_cards_are_recorded(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    let mut cards = stripe.add_customers(49, 100);
    // One customer whose expired cards fail as invalid card data, among the others.
    let expired: Vec<FakeCard> = (0..100)
        .map(|n| FakeCard {
            exp_month: 1,
            exp_year: 2020,
            ..FakeCard::visa(900_000 + n)
        })
        .collect();
    cards += expired.len();
    stripe.add_customer(expired);
    assert_eq!(cards, 5_000);
    let base = stripe.base_url();
    let app = spawn_app_with(backend, move |c| {
        stripe_settings(c, &base);
        c.stripe_rate_limit = Some(1_000);
    })
    .await;

    let id = app.start_stripe_import(STRIPE_KEY).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = Instant::now();
    let mut seen: Vec<i64> = Vec::new();
    let ended = loop {
        let body = app.get_import(&id).await.ok_body();
        let listed = app.import_failures(&id, "limit=1").await;
        assert_eq!(listed.status, StatusCode::OK);
        let after = app.get_import(&id).await.ok_body();
        for b in [&body, &after] {
            assert_eq!(
                b["attemts"].as_i64().unwrap(),
                b["successes"].as_i64().unwrap() + b["failures"].as_i64().unwrap(),
                "{b}"
            );
        }
        // The failure list is read between two looks at the counters: it lies between them.
        let total = listed.body["pagination"]["total_items"].as_i64().unwrap();
        let (before, later) = (
            body["failures"].as_i64().unwrap(),
            after["failures"].as_i64().unwrap(),
        );
        assert!(
            before <= total && total <= later,
            "{before} {total} {later}"
        );
        let attempts = body["attemts"].as_i64().unwrap();
        if seen.last() != Some(&attempts) {
            seen.push(attempts);
        }
        if body["status"] == "finished" || body["status"] == "aborted" {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the import did not end: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ended["status"], "finished", "{ended}");
    assert_eq!(
        (
            ended["attemts"].as_i64(),
            ended["successes"].as_i64(),
            ended["failures"].as_i64()
        ),
        (Some(5_000), Some(4_900), Some(100))
    );
    let listed = app.import_failures(&id, "limit=1").await.ok_body();
    assert_eq!(listed["pagination"]["total_items"], 100);
    // Distinct values seen while it ran, the final one aside.
    let growing = seen.iter().filter(|n| **n > 0 && **n < 5_000).count();
    assert!(
        growing >= 10,
        "the counters moved only {growing} times: {seen:?}"
    );
}
