//! Fair background work: one tenant's webhook receiver that never answers and two other tenants'
//! imports (against the fake Stripe, slow and large) do not delay a fourth tenant's capture, since
//! each kind of job has its own pool of workers and an import gives its worker back after each step.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strongroom::store::Feature;
use tokio::net::TcpListener;

use crate::support::fake_stripe::{FakeStripe, FakeStripeConfig};
use crate::support::{
    card, fast_webhooks, on_both_backends, payment, spawn_app_with, stripe_settings,
    with_check_digit, Backend, STRIPE_KEY,
};

on_both_backends!(a_capture_is_not_delayed_by_a_hanging_receiver_and_two_imports);

/// A TCP server that accepts connections and never answers (nor closes them); counts accepts.
async fn silent_receiver() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted)
}

async fn a_capture_is_not_delayed_by_a_hanging_receiver_and_two_imports(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig {
        latency: Duration::from_millis(40),
        ..FakeStripeConfig::default()
    })
    .await
    .unwrap();
    stripe.add_customers(60, 10);
    let base = stripe.base_url();
    let app = spawn_app_with(backend, move |c| {
        fast_webhooks(c);
        stripe_settings(c, &base);
        // One worker per pool: the harshest split, where any sharing would show.
        c.workers = 1;
        c.import_concurrency = 4;
        c.webhooks.timeout = Duration::from_secs(20);
        c.webhooks.breaker_timeouts = 0;
    })
    .await;

    // Tenant A: a receiver that never answers, and events for it.
    let (hook, accepted) = silent_receiver().await;
    app.add_webhook(&hook, "token.created").await;
    for n in 0..3 {
        let pan = with_check_digit(&format!("411111111111{n:03}"));
        app.tokenize(&card(&pan)).await.ok_body();
    }

    // Tenant D: an authorized payment to capture later.
    let (_, d_key) = app.create_account("tenant-d", &[Feature::CdeImport]).await;
    let d = app.with_key(&d_key);
    let token = d.tokenize(&card("5555555555554444")).await.ok_body();
    let authorized = d
        .pay(
            "one-off",
            &payment(token["id"].as_str().unwrap(), 1200, "manual"),
        )
        .await;
    assert_eq!(authorized["status"], "authorized");
    let payment_id = authorized["id"].as_str().unwrap().to_owned();

    // Tenants B and C: an import each of 600 cards from a slow Stripe.
    let mut imports = Vec::new();
    for name in ["tenant-b", "tenant-c"] {
        let (_, key) = app.create_account(name, &[Feature::CdeImport]).await;
        let api = app.with_key(&key);
        let started = api.start_stripe_import(STRIPE_KEY).await;
        imports.push((api, started["id"].as_str().unwrap().to_owned()));
    }

    // Both imports under way and the receiver holding the delivery worker.
    let waited = Instant::now();
    loop {
        let mut running = 0;
        for (api, id) in &imports {
            let import = api.get_import(id).await.body;
            if import["status"] == "running" && import["attempts"].as_u64() > Some(0) {
                running += 1;
            }
        }
        if running == 2 && accepted.load(Ordering::SeqCst) > 0 {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "the imports and the delivery did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let started = Instant::now();
    let capturing = d.capture(&payment_id, None).await.ok_body();
    assert_eq!(capturing["status"], "capturing");
    loop {
        let status = d.get_payment(&payment_id).await.body["status"].clone();
        if status == "captured" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the capture was not done within 2 s (status {status})"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let took = started.elapsed();

    // The other tenants' work was still going on all along.
    for (api, id) in &imports {
        let import = api.get_import(id).await.body;
        assert_eq!(import["status"], "running", "{import}");
        api.abort_import(id).await.ok_body();
    }
    assert!(accepted.load(Ordering::SeqCst) >= 1);
    eprintln!("capture done in {took:?}");
}
