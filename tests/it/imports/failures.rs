//! Imports that meet trouble: each failure kind recorded with its reason and context (and no card
//! data), refused keys and inactive forwarding that abort, and the failures list's pages.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::fake_stripe::{FakeCard, FakeStripe, FakeStripeConfig, Route};
use crate::support::{
    on_both_backends, spawn_app_for_stripe, validation_body, visa_cards, Backend, STRIPE_KEY,
};

on_both_backends!(
    each_failure_kind_is_recorded_with_its_reason_and_context,
    a_refused_stripe_key_aborts_the_import_with_a_failure_that_says_so,
    forwarding_not_enabled_aborts_the_import,
    failures_paginate,
    try_again_answers_are_retried_and_never_counted_as_failures,
);

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
    let app = spawn_app_for_stripe(backend, &stripe).await;

    let (id, ended) = app.stripe_import_to_its_end(STRIPE_KEY).await;
    assert_eq!(ended["status"], "finished");
    assert_eq!(
        (&ended["attemts"], &ended["successes"], &ended["failures"]),
        (&json!(6), &json!(2), &json!(4))
    );
    let mut found = app.all_import_failures(&id).await;
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
    let tokens = app.all_tokens().await;
    let keys: HashSet<&str> = tokens
        .iter()
        .map(|t| t["business_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, HashSet::from([good.as_str(), bursty.as_str()]));

    // No card data in any failure: not the numbers, not their last digits' neighbours, not the codes.
    let text = app.import_failures(&id, "").await.body.to_string();
    for pm in &pms {
        let card = stripe.card_of(pm).unwrap();
        assert!(!text.contains(&card.number), "{text}");
        assert!(!text.contains(&card.number[..12]), "{text}");
    }
    assert!(!text.contains("security_code\":\"1"), "{text}");
    assert!(!text.contains(STRIPE_KEY), "{text}");
}

async fn a_refused_stripe_key_aborts_the_import_with_a_failure_that_says_so(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    stripe.add_customer(visa_cards(1, 3));
    let app = spawn_app_for_stripe(backend, &stripe).await;

    for (key, status) in [("sk_test_wrong_key_123", 401), ("rk_test_restricted", 403)] {
        let id = app.start_stripe_import(key).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let ended = app.wait_for_import_end(&id).await;
        assert_eq!(ended["status"], "aborted");
        // The fatal failure is in the list, so it is counted: one attempt, failed.
        assert_eq!(
            (&ended["attemts"], &ended["successes"], &ended["failures"]),
            (&json!(1), &json!(0), &json!(1))
        );
        let (ok, _, stderr) = app.cli(&["import", "watch", &id]);
        assert!(!ok && stderr.contains("the import was aborted"), "{stderr}");
        let found = app.all_import_failures(&id).await;
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
    assert!(app.all_tokens().await.is_empty());
}

async fn forwarding_not_enabled_aborts_the_import(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig {
        forwarding_enabled: false,
        ..FakeStripeConfig::default()
    })
    .await
    .unwrap();
    stripe.add_customer(visa_cards(1, 5));
    let app = spawn_app_for_stripe(backend, &stripe).await;

    let (id, ended) = app.stripe_import_to_its_end(STRIPE_KEY).await;
    assert_eq!(ended["status"], "aborted");
    let found = app.all_import_failures(&id).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (&ended["attemts"], &ended["successes"], &ended["failures"]),
        (&json!(1), &json!(0), &json!(1))
    );
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

async fn failures_paginate(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    let (_, pms) = stripe.add_customer(visa_cards(1, 3));
    for pm in &pms {
        stripe.delete_at_forward(pm);
    }
    let app = spawn_app_for_stripe(backend, &stripe).await;
    let (id, ended) = app.stripe_import_to_its_end(STRIPE_KEY).await;
    assert_eq!(ended["failures"], 3);

    let page = app.import_failures(&id, "limit=1&page=2").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        page.body["pagination"],
        json!({"current_page": 2, "page_size": 1, "total_items": 3, "total_pages": 3})
    );
    let past = app.import_failures(&id, "limit=1&page=9").await;
    assert_eq!(past.status, StatusCode::OK);
    assert_eq!(past.body["data"], json!([]));
    assert_eq!(past.body["pagination"]["current_page"], 9);
    let bad = app.import_failures(&id, "page=0").await;
    assert_eq!(
        bad.body,
        validation_body(&[("query.page", "must be a whole number of at least 1")])
    );
}

/// Stripe's code (or message) for the 500 it gave, whatever the fake words it as.
fn found_code(found: &[Value], pm: &str) -> Value {
    found
        .iter()
        .find(|f| f["context"]["payment_method"] == pm)
        .map(|f| f["context"]["stripe_error"].clone())
        .unwrap_or(Value::Null)
}

/// Issue 13: `idempotency_key_in_use` (another run forwarding the same card) and 429s that outlast a
/// call's retries are Stripe asking to be asked again: the job runs again later and the cards are
/// imported, none counted as a failure.
async fn try_again_answers_are_retried_and_never_counted_as_failures(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    let (_, pms) = stripe.add_customer(visa_cards(1, 4));
    // A call tries 6 times: 8 answers outlast the first run of the job, 3 are retried within it.
    stripe.fail_forward_of(&pms[0], 409, 8);
    stripe.fail_forward_of(&pms[1], 429, 8);
    stripe.fail_forward_of(&pms[2], 409, 3);
    let app = spawn_app_for_stripe(backend, &stripe).await;

    let (id, ended) = app.stripe_import_to_its_end(STRIPE_KEY).await;
    assert_eq!(ended["status"], "finished", "{ended}");
    assert_eq!(
        (&ended["attemts"], &ended["successes"], &ended["failures"]),
        (&json!(4), &json!(4), &json!(0))
    );
    assert!(app.all_import_failures(&id).await.is_empty());
    let tokens = app.all_tokens().await;
    let keys: HashSet<&str> = tokens
        .iter()
        .map(|t| t["business_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, pms.iter().map(String::as_str).collect());
}
