//! Imports that run to their end: every stored card arrives once, a kill -9 mid-way loses and doubles
//! nothing (the other of two nodes on one database finishes it, after serving tokens made on the first),
//! and the end is notified by webhook with the import as the API shows it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use strongroom::config::Config;

use strongroom::jobs::Step;

use crate::support::fake_stripe::{FakeStripe, FakeStripeConfig};
use crate::support::receiver::Receiver;
use crate::support::{
    card, fast_webhooks, on_both_backends, payment, spawn_app_for_stripe, spawn_app_with,
    stripe_settings, visa_cards, Backend, ServerProcess, TestDb, STRIPE_KEY,
};

on_both_backends!(
    an_import_brings_every_stored_card_into_the_vault_once,
    a_card_posted_twice_at_once_becomes_one_token_that_both_answers_name,
    an_import_killed_mid_way_resumes_and_counts_every_card_once,
    the_end_of_an_import_is_notified_with_the_import_as_it_ended,
    an_import_runs_in_short_steps_each_resuming_where_the_last_stopped,
);

async fn an_import_brings_every_stored_card_into_the_vault_once(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    stripe.add_customer(vec![]);
    let (_, one) = stripe.add_customer(visa_cards(1, 1));
    let (_, many) = stripe.add_customer(visa_cards(100, 250));
    let app = spawn_app_for_stripe(backend, &stripe).await;

    let started = app.start_stripe_import(STRIPE_KEY).await;
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
    let ended = app.wait_for_import_end(id).await;
    assert_eq!(ended["status"], "finished");
    assert_eq!(
        (&ended["attemts"], &ended["successes"], &ended["failures"]),
        (&json!(251), &json!(251), &json!(0))
    );
    assert!(app.all_import_failures(id).await.is_empty());
    // The keys are destroyed with the end of the import.
    let stored = app
        .store()
        .get_import(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.sealed_api_key.is_none() && stored.sealed_ingest_key.is_none());
    assert!(stored.ingest_key_digest.is_none());

    let tokens = app.all_tokens().await;
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
    let (ok, stdout, stderr) = app.cli(&["import", "watch", id]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "import {id} finished: attempts 251 · successes 251 · failures 0"
        )),
        "{stdout}"
    );

    // A second import of the same account moves nothing twice: every card is there already.
    let again = app.start_stripe_import(STRIPE_KEY).await;
    let ended = app.wait_for_import_end(again["id"].as_str().unwrap()).await;
    assert_eq!(
        (&ended["status"], &ended["successes"], &ended["failures"]),
        (&json!("finished"), &json!(251), &json!(0))
    );
    assert_eq!(app.all_tokens().await.len(), 251);
    assert_eq!(stripe.destination_posts_for(&one[0]), 1);

    let listed = app.list_imports("limit=1").await;
    assert_eq!(listed.body["data"][0]["id"], again["id"], "newest first");
    assert_eq!(listed.body["pagination"]["total_items"], 2);
}

/// Stripe may deliver a forward again while the first delivery is still under way: the ingest endpoint
/// writes the token without looking for an earlier one, so the two posts race into the token writer
/// (often into one batch), and the unique business key must leave one token that both answers name.
async fn a_card_posted_twice_at_once_becomes_one_token_that_both_answers_name(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    let (_, pms) = stripe.add_customer(visa_cards(1, 40));
    let twice: Vec<&String> = pms.iter().step_by(4).collect();
    for pm in &twice {
        stripe.post_twice(pm);
    }
    let app = spawn_app_for_stripe(backend, &stripe).await;

    let (_, ended) = app.stripe_import_to_its_end(STRIPE_KEY).await;
    assert_eq!(
        (&ended["status"], &ended["successes"], &ended["failures"]),
        (&json!("finished"), &json!(40), &json!(0))
    );
    let tokens = app.all_tokens().await;
    assert_eq!(tokens.len(), 40);
    for pm in twice {
        assert_eq!(stripe.destination_posts_for(pm), 2, "{pm}");
        let answers: Vec<serde_json::Value> = stripe
            .double_post_answers_for(pm)
            .iter()
            .map(|body| serde_json::from_str(body).unwrap())
            .collect();
        assert_eq!(answers.len(), 2, "{pm}");
        let token = tokens
            .iter()
            .find(|t| t["business_key"] == pm.as_str())
            .unwrap();
        for answer in &answers {
            assert_eq!(answer["id"], token["id"], "{pm}: {answer}");
        }
    }
}

/// With a step of no time at all, every batch of cards ends a run of the job: the job is queued again
/// (it never holds its worker for the whole import) and the next run starts at the position the last
/// one saved, inside a customer page or inside one customer's cards, forwarding no card twice.
async fn an_import_runs_in_short_steps_each_resuming_where_the_last_stopped(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    let mut cards = stripe.add_customers(130, 1);
    let (_, many) = stripe.add_customer(visa_cards(5_000, 250));
    cards += many.len();
    cards += stripe.add_customers(5, 2);
    let base = stripe.base_url();
    let app = spawn_app_with(backend, move |config: &mut Config| {
        stripe_settings(config, &base);
        config.workers = 0;
        config.import_step = Duration::ZERO;
    })
    .await;
    let started = app.start_stripe_import(STRIPE_KEY).await;
    let id: uuid::Uuid = started["id"].as_str().unwrap().parse().unwrap();

    let worker = app.worker();
    let mut steps = 0;
    let mut positions = HashSet::new();
    loop {
        match worker.step().await.unwrap() {
            Step::Continued(job) => {
                steps += 1;
                let import = app.store().get_import(id).await.unwrap().unwrap();
                let job = app.store().get_job(job).await.unwrap().unwrap();
                // Queued again at once, its position saved, and no attempt used up.
                assert_eq!(job.attempts, 0);
                assert!(positions.insert(import.position.clone().expect("a position")));
            }
            Step::Completed(_) => {}
            Step::Idle => break,
            other => panic!("unexpected step {other:?}"),
        }
    }
    assert!(steps >= 4, "only {steps} steps");
    let ended = app.get_import(id).await.body;
    assert_eq!(ended["status"], "finished");
    assert_eq!(
        (&ended["attemts"], &ended["successes"], &ended["failures"]),
        (&json!(cards), &json!(cards), &json!(0))
    );
    assert_eq!(app.all_tokens().await.len(), cards);
    let stats = stripe.stats();
    assert_eq!(stats.forwards, cards as u64, "a card was forwarded twice");
    assert_eq!(stats.destination_posts, cards as u64);
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
        all.extend(stripe.add_customer(visa_cards(i, n)).1);
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
    let key = server.default_api_key();
    let api = server.api(&key);
    // Issue 17: a second node on the same database, up at the same time. A token made on one is
    // listed, paid and deleted on the other.
    let second = ServerProcess::start_with(&db, "second", &env);
    let other = second.api(&key);
    let made = api.tokenize(&card("4242424242424242")).await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let token = made.body["id"].as_str().unwrap().to_owned();
    let listed = other.list_tokens("limit=10").await.body;
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == token.as_str()),
        "{listed}"
    );
    let paid = other
        .create_payment("one-off", &payment(&token, 700, "automatic"))
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    assert_eq!(paid.body["status"], "captured", "{}", paid.body);
    assert_eq!(
        api.get_payment(paid.body["id"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        other.delete_token(&token).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.get_token(&token).await.status, StatusCode::NOT_FOUND);
    // The second node is paused while the import starts, so that the first one runs it.
    second.signal("STOP");
    let created = api
        .start_import(&json!({"provider": "stripe", "stripe": {"api_key": STRIPE_KEY}}))
        .await
        .body;
    let id = created["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    loop {
        let body = api.get_import(&id).await.body;
        if body["attemts"].as_i64().unwrap() >= 60 {
            assert_eq!(body["status"], "running");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill_9();
    // The other node, running all along, takes the import over once the dead node's lease expires.
    second.signal("CONT");
    let server = second;
    let api = server.api(&key);
    let started = Instant::now();
    let ended = loop {
        let body = api.get_import(&id).await.body;
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
        let body = api
            .list_tokens(&format!("limit=200&page={page}"))
            .await
            .body;
        keys.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["business_key"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(
        keys.len(),
        301,
        "no duplicate tokens (the deleted API token is not listed)"
    );
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(unique, all.iter().collect::<HashSet<_>>());
    server.kill_9();
}

async fn the_end_of_an_import_is_notified_with_the_import_as_it_ended(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    let (_, pms) = stripe.add_customer(visa_cards(1, 3));
    stripe.delete_at_forward(&pms[2]);
    let receiver = Receiver::start("127.0.0.1:0", vec![]).await;
    let base = stripe.base_url();
    let app = spawn_app_with(backend, move |config: &mut Config| {
        stripe_settings(config, &base);
        fast_webhooks(config);
        config.workers = 2;
    })
    .await;
    let (_, key) = app.add_webhook(&receiver.url(), "import.*").await;

    let (_, ended) = app.stripe_import_to_its_end(STRIPE_KEY).await;
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
    let id = app.start_stripe_import("sk_test_refused").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let aborted = app.wait_for_import_end(&id).await;
    let hits = receiver.wait_for(2).await;
    assert_eq!(hits[1].event_type(), "import.aborted");
    assert_eq!(hits[1].object(), &aborted);
}

/// Several nodes share a database only on PostgreSQL: a paused SQLite node may hold the file's write
/// lock, which stops every other process whatever the leases say.
mod a_node_paused_past_its_lease_writes_nothing_after_another_took_over {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        if crate::support::postgres_available() {
            super::a_node_paused_past_its_lease_writes_nothing_after_another_took_over(
                crate::support::Backend::Postgres,
            )
            .await
        }
    }
}

/// Issue 13: two nodes; the one running the import is paused (SIGSTOP) past its lease, the other takes
/// the job over, then the first resumes. It is stopped and fenced out: the import ends with exact
/// counters, no failures (the two nodes' forwards of one card are Stripe's `idempotency_key_in_use`,
/// retried), every card once in the vault.
async fn a_node_paused_past_its_lease_writes_nothing_after_another_took_over(backend: Backend) {
    let stripe = FakeStripe::start(FakeStripeConfig {
        latency: Duration::from_millis(3),
        ..FakeStripeConfig::default()
    })
    .await
    .unwrap();
    let mut all = Vec::new();
    for (i, n) in [(0, 120), (1000, 1), (2000, 180)] {
        all.extend(stripe.add_customer(visa_cards(i, n)).1);
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
    let paused = ServerProcess::start_with(&db, "paused", &env);
    let key = paused.default_api_key();
    let api = paused.api(&key);
    let created = api
        .start_import(&json!({"provider": "stripe", "stripe": {"api_key": STRIPE_KEY}}))
        .await
        .body;
    let id = created["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    loop {
        let body = api.get_import(&id).await.body;
        if body["attemts"].as_i64().unwrap() >= 60 {
            assert_eq!(body["status"], "running");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let other = ServerProcess::start_with(&db, "other", &env);
    paused.signal("STOP");
    let api = other.api(&key);
    // Past the lease (2 s): the other node takes the job over and moves the import on.
    let before = api.get_import(&id).await.body["attemts"].as_i64().unwrap();
    let started = Instant::now();
    loop {
        let body = api.get_import(&id).await.body;
        if body["attemts"].as_i64().unwrap() > before + 20 || body["status"] != "running" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    paused.signal("CONT");

    let started = Instant::now();
    let ended = loop {
        let body = api.get_import(&id).await.body;
        assert_eq!(
            body["attemts"].as_i64().unwrap(),
            body["successes"].as_i64().unwrap() + body["failures"].as_i64().unwrap()
        );
        if body["status"] != "running" {
            break body;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ended["status"], "finished", "{ended}");
    assert_eq!(
        (&ended["attemts"], &ended["successes"], &ended["failures"]),
        (&json!(301), &json!(301), &json!(0))
    );
    let mut keys = Vec::new();
    for page in 1..=2 {
        let body = api
            .list_tokens(&format!("limit=200&page={page}"))
            .await
            .body;
        keys.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["business_key"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(
        keys.len(),
        301,
        "no duplicate tokens (the deleted API token is not listed)"
    );
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(unique, all.iter().collect::<HashSet<_>>());
    // A card reaches the vault at most twice (the paused node's forward in flight, and the taking
    // over node's), never once per retry of a run that should have stopped.
    for pm in &all {
        assert!(stripe.destination_posts_for(pm) <= 2, "{pm}");
    }
    // The resumed node's run was stopped, not carried on.
    let log = paused.stderr_log();
    assert!(
        log.contains("job lease was lost to another worker"),
        "the paused node never noticed it lost the job"
    );
    other.kill_9();
    paused.kill_9();
}
