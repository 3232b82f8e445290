//! One tenant's receiver that never answers does not hold up another tenant's deliveries: a cap on the
//! sends in flight per destination, and a circuit breaker that pauses a destination that keeps timing
//! out.

use std::time::{Duration, Instant};

use strongroom::domain::webhooks;
use strongroom::store::Feature;

use crate::support::receiver::{Receiver, Reply};
use crate::support::{card, fast_webhooks, on_both_backends, spawn_app_with, Backend};

on_both_backends!(a_receiver_that_never_answers_does_not_delay_another_tenants_deliveries);

async fn a_receiver_that_never_answers_does_not_delay_another_tenants_deliveries(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        fast_webhooks(c);
        c.webhooks.timeout = Duration::from_secs(3);
        c.webhooks.destination_concurrency = 1;
        c.webhooks.breaker_timeouts = 2;
        c.webhooks.breaker_cooldown = Duration::from_secs(60);
    })
    .await;
    let hanging = Receiver::start(
        "127.0.0.1:0",
        (0..50)
            .map(|_| Reply::Hang(Duration::from_secs(60)))
            .collect(),
    )
    .await;
    app.add_webhook(&hanging.url(), "token.created").await;
    let healthy = Receiver::start("127.0.0.1:0", vec![]).await;
    let (other, other_key) = app.create_account("other", &[Feature::CdeImport]).await;
    let vault = &app.server().state().tokens.vault;
    let events = webhooks::EventSet::parse_list("token.created").unwrap();
    webhooks::add_webhook(app.store(), vault, other, &healthy.url(), events, "test")
        .await
        .unwrap();
    let other_api = app.with_key(&other_key);

    // The first tenant's events: more than there are workers, each for its own token.
    for n in 0..6 {
        let pan = crate::support::with_check_digit(&format!("411111111111{n:03}"));
        app.tokenize(&card(&pan)).await.ok_body();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // While one worker waits on the receiver that never answers, the other serves the other tenant.
    let started = Instant::now();
    other_api
        .tokenize(&card("5555555555554444"))
        .await
        .ok_body();
    healthy.wait_for(1).await;
    let first = started.elapsed();
    assert!(
        first < Duration::from_millis(1500),
        "the healthy receiver waited {first:?}"
    );

    // Two timeouts in a row open the breaker: the hanging receiver is tried no more during the
    // cool-down, and the other tenant is still served at once.
    let waited = Instant::now();
    while hanging.hits().len() < 2 && waited.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let tried = hanging.hits().len();
    assert_eq!(tried, 2, "the breaker opened after two timeouts in a row");
    let started = Instant::now();
    other_api
        .tokenize(&card("5555555555554444"))
        .await
        .ok_body();
    healthy.wait_for(2).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        hanging.hits().len(),
        tried,
        "the paused destination is not tried"
    );
}
