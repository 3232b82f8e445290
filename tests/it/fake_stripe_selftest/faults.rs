//! The fake's trouble on demand: injected failures with Stripe's bodies and counters, the rate limit,
//! an unreachable destination and inactive forwarding.

use serde_json::Value;

use crate::support::fake_stripe::{FakeCard, FakeStripe, FakeStripeConfig, Route};
use crate::support::stripe_client::{client, destination, fake, forward, forward_form, get, send};

#[tokio::test]
async fn fake_stripe_injects_failures() {
    let fake = fake().await;
    let (destination, received) = destination().await;
    let (customer, pms) = fake.add_customer(vec![FakeCard::visa(3)]);

    fake.fail_next(Route::Customers, 429, 1);
    let (status, body) = send(get(&fake, "/v1/customers")).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "rate_limit");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let (status, _) = send(get(&fake, "/v1/customers")).await;
    assert_eq!(status, 200);

    fake.fail_next(Route::Any, 500, 1);
    let (status, body) = send(get(
        &fake,
        &format!("/v1/customers/{customer}/payment_methods?type=card"),
    ))
    .await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["type"], "api_error");

    fake.fail_next(Route::Forwarding, 402, 1);
    let (status, body) = send(forward(&fake, &forward_form(&pms[0], &destination))).await;
    assert_eq!(status, 402);
    assert_eq!(
        body["error"]["code"],
        "forwarding_api_upstream_connection_timeout"
    );
    assert!(received.lock().unwrap().is_empty());

    fake.fail_forward_of(&pms[0], 429, 2);
    for _ in 0..2 {
        let (status, _) = send(forward(&fake, &forward_form(&pms[0], &destination))).await;
        assert_eq!(status, 429);
    }
    let (status, _) = send(forward(&fake, &forward_form(&pms[0], &destination))).await;
    assert_eq!(status, 200);

    let stats = fake.stats();
    assert_eq!(stats.rate_limited, 3);
    assert_eq!(stats.injected_failures, 5);
    assert_eq!(stats.destination_posts, 1);

    let stats_json: Value = client()
        .get(format!("{}/_fake/stats", fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats_json["rate_limited"], 3);
    assert_eq!(stats_json["forwards"], 4);
}

#[tokio::test]
async fn fake_stripe_rate_limits_and_reports_unreachable_destinations() {
    let limited = FakeStripe::start(FakeStripeConfig {
        rate_limit_per_sec: Some(2),
        ..FakeStripeConfig::default()
    })
    .await
    .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(send(get(&limited, "/v1/customers")).await.0);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(
        limited.stats().rate_limited,
        statuses.iter().filter(|s| **s == 429).count() as u64
    );

    let fake = fake().await;
    let (_, pms) = fake.add_customer(vec![FakeCard::visa(9)]);
    // A port that was just free: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (status, body) = send(forward(
        &fake,
        &forward_form(&pms[0], &format!("http://{closed}/cards")),
    ))
    .await;
    assert_eq!(status, 502);
    assert_eq!(
        body["error"]["code"],
        "forwarding_api_upstream_connection_error"
    );

    let inactive = FakeStripe::start(FakeStripeConfig {
        forwarding_enabled: false,
        ..FakeStripeConfig::default()
    })
    .await
    .unwrap();
    let (status, body) = send(forward(&inactive, &forward_form(&pms[0], "http://x/"))).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "forwarding_api_inactive");
}
