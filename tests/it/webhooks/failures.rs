//! Webhook deliveries that go wrong, and the admin command line: a rolled-back change, redirects and
//! timeouts, refused destinations, the deadline, a removed webhook; `webhook add|list|remove`.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Connection;
use strongroom::domain::webhooks;
use uuid::Uuid;

use crate::support::receiver::{Receiver, Reply};
use crate::support::{
    card, fast_webhooks, on_both_backends, payment, spawn_app_with, Backend, TestApp,
};

on_both_backends!(
    a_change_that_is_rolled_back_is_never_notified,
    a_redirect_or_a_timeout_counts_as_a_failed_attempt_and_is_retried,
    a_metadata_address_is_refused_and_a_delivery_past_its_deadline_is_recorded_as_failed,
    a_removed_webhook_receives_nothing_more,
    the_cli_adds_lists_and_removes_webhooks_and_keeps_the_key_sealed,
);

async fn a_change_that_is_rolled_back_is_never_notified(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.workers = 0).await;
    let receiver = Receiver::start("127.0.0.1:0", vec![]).await;
    let (webhook, _) = app.add_webhook(&receiver.url(), "payment.*").await;
    let token = app.token_for("4111111111111111").await;
    let paid = app
        .create_payment("one-off", &payment(&token, 100, "manual"))
        .await
        .success_body();
    let id: Uuid = paid["id"].as_str().unwrap().parse().unwrap();
    let account = app.account_id().await;
    let stored = app.store().get_payment(account, id).await.unwrap().unwrap();
    // A void made against a version that is no longer current: the store refuses the whole change.
    let mut voided = stored.clone();
    voided.status = "voided".into();
    voided.version += 1;
    let mut change = strongroom::store::PaymentChange {
        payment: voided,
        expected_version: stored.version - 1,
        previous_status: stored.status.clone(),
        transaction: None,
        new_refund: None,
        finished_refund: None,
        job: None,
        outbox: Vec::new(),
        network_transaction_id: None,
    };
    let state = app.server().state();
    change.outbox = state.webhooks.payment_change(&change).await.unwrap();
    assert_eq!(change.outbox.len(), 1);
    assert!(!app.store().apply_payment_change(&change).await.unwrap());
    let types: Vec<String> = app
        .webhook_deliveries(webhook)
        .await
        .into_iter()
        .rev()
        .map(|d| d.event_type)
        .collect();
    assert_eq!(types, ["payment.processing", "payment.authorized"]);
    receiver.stop().await;
}

async fn a_redirect_or_a_timeout_counts_as_a_failed_attempt_and_is_retried(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        fast_webhooks(c);
        c.webhooks.timeout = Duration::from_secs(1);
    })
    .await;
    let elsewhere = Receiver::start("127.0.0.1:0", vec![]).await;
    let plan = vec![
        Reply::RedirectTo(elsewhere.url()),
        Reply::Hang(Duration::from_secs(3)),
    ];
    let receiver = Receiver::start("127.0.0.1:0", plan).await;
    let (webhook, _) = app.add_webhook(&receiver.url(), "token.created").await;
    app.new_token(&card("4111111111111111")).await;
    let rows = app
        .wait_deliveries(webhook, |rows| {
            // A token's event is written as a row once first tried.
            !rows.is_empty() && rows.iter().all(|r| r.status == "delivered")
        })
        .await;
    assert_eq!(rows[0].attempts, 3);
    assert_eq!(receiver.hits().len(), 3);
    assert!(elsewhere.hits().is_empty());
    elsewhere.stop().await;
    receiver.stop().await;
}

async fn a_metadata_address_is_refused_and_a_delivery_past_its_deadline_is_recorded_as_failed(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |c| {
        fast_webhooks(c);
        c.webhooks.deadline = Duration::from_secs(1);
    })
    .await;
    let (webhook, _) = app
        .add_webhook("http://169.254.169.254/latest/meta-data", "token.created")
        .await;
    app.new_token(&card("4111111111111111")).await;
    let rows = app
        .wait_deliveries(webhook, |rows| rows.iter().any(|r| r.status == "failed"))
        .await;
    assert!(rows[0].attempts >= 2, "{rows:#?}");
    assert_eq!(
        rows[0].last_error.as_deref(),
        Some("the destination 169.254.169.254 is a cloud metadata address; set webhook_allow_link_local to allow it")
    );
    assert!(rows[0].finished_at.unwrap() >= rows[0].created_at.plus(Duration::from_secs(1)));
}

async fn a_removed_webhook_receives_nothing_more(backend: Backend) {
    let app = spawn_app_with(backend, fast_webhooks).await;
    let receiver = Receiver::start("127.0.0.1:0", vec![]).await;
    let (webhook, _) = app.add_webhook(&receiver.url(), "token.created").await;
    app.new_token(&card("4111111111111111")).await;
    receiver.wait_for(1).await;
    webhooks::remove_webhook(app.store(), webhook, "test")
        .await
        .unwrap();
    // Within the cache window the event may still be queued for it; it is then cancelled, never sent.
    app.new_token(&card("5555555555554444")).await;
    app.wait_deliveries(webhook, |rows| {
        !rows.is_empty() && rows.iter().all(|r| r.status != "pending")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits().len(), 1);
    // Read after the pause: a carried event's row is written only by the run that cancels it.
    // Newest first: all but the oldest (delivered) were cancelled.
    let rows = app.webhook_deliveries(webhook).await;
    assert!(
        rows.iter().rev().skip(1).all(|r| r.status == "cancelled"),
        "{rows:#?}"
    );
    let err = webhooks::remove_webhook(app.store(), webhook, "test")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), format!("no webhook with id {webhook}"));
    receiver.stop().await;
}

/// Everything stored that could hold the key: the SQLite files, or the webhook rows as text.
async fn stored_text(app: &TestApp, backend: Backend) -> Vec<u8> {
    match backend {
        Backend::Sqlite => ["strongroom.db", "strongroom.db-wal"]
            .iter()
            .flat_map(|f| std::fs::read(app.db.dir.path().join(f)).unwrap_or_default())
            .collect(),
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT w::text FROM webhooks w UNION ALL SELECT a::text FROM audit_events a",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            rows.join("\n").into_bytes()
        }
    }
}

async fn the_cli_adds_lists_and_removes_webhooks_and_keeps_the_key_sealed(backend: Backend) {
    let app = spawn_app_with(backend, fast_webhooks).await;
    let receiver = Receiver::start("127.0.0.1:0", vec![]).await;
    let account = app.account_id().await.to_string();
    let url = receiver.url();
    let add = ["webhook", "add", "--account", &account, "--url", &url];

    let (done, stdout, stderr) =
        app.cli(&[&add[..], &["--events", "token.created,refund.*", "--json"]].concat());
    assert!(done, "{stderr}");
    let added: Value = serde_json::from_str(stdout.trim()).expect("one JSON document");
    let mut keys: Vec<&String> = added.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "account_id",
            "created_at",
            "events",
            "id",
            "signing_key",
            "url"
        ]
    );
    assert_eq!(
        added["events"],
        json!([
            "token.created",
            "refund.processing",
            "refund.completed",
            "refund.failed"
        ])
    );
    assert_eq!(
        (added["url"].as_str(), added["account_id"].as_str()),
        (Some(url.as_str()), Some(account.as_str()))
    );
    let key = added["signing_key"].as_str().unwrap();
    assert!(key.starts_with("whsec_") && key.len() == 70, "{key}");
    let id = added["id"].as_str().unwrap();

    app.new_token(&card("4111111111111111")).await;
    let hits = receiver.wait_for(1).await;
    assert!(hits[0].signed_with(key));
    let stored = stored_text(&app, backend).await;
    assert!(
        !stored.windows(key.len()).any(|w| w == key.as_bytes()),
        "the signing key is stored in clear"
    );

    let (done, stdout, _) = app.cli(&["webhook", "list", "--json"]);
    assert!(done);
    let listed: Value = serde_json::from_str(stdout.trim()).unwrap();
    let mut expected = added.clone();
    expected.as_object_mut().unwrap().remove("signing_key");
    assert_eq!(listed, json!([expected]));

    for (args, message) in [
        (
            vec!["--events", "payment.capturd"],
            "error: --events: unknown event type `payment.capturd`",
        ),
        (
            vec!["--events", " , "],
            "error: --events: name at least one event type",
        ),
    ] {
        let (done, _, stderr) = app.cli(&[&add[..], &args].concat());
        assert!(!done);
        assert!(stderr.starts_with(message), "{stderr}");
    }
    let unknown = Uuid::new_v4().to_string();
    let (done, _, stderr) = app.cli(&[
        "webhook",
        "add",
        "--account",
        &unknown,
        "--url",
        &url,
        "--events",
        "*",
    ]);
    assert!(!done);
    assert_eq!(
        stderr.trim(),
        format!("error: no account with id {unknown}")
    );
    let (done, _, stderr) = app.cli(&[
        "webhook",
        "add",
        "--account",
        &account,
        "--url",
        "ftp://example.com/x",
        "--events",
        "*",
    ]);
    assert!(!done);
    assert_eq!(
        stderr.trim(),
        "error: --url: must start with http:// or https://"
    );

    let (done, stdout, stderr) = app.cli(&["webhook", "remove", id, "--json"]);
    assert!(done, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(stdout.trim()).unwrap(),
        json!({"id": id, "removed": true})
    );
    let (_, stdout, _) = app.cli(&["webhook", "list", "--account", &account, "--json"]);
    assert_eq!(stdout.trim(), "[]");
    let (done, _, stderr) = app.cli(&["webhook", "remove", id]);
    assert!(!done);
    assert_eq!(stderr.trim(), format!("error: no webhook with id {id}"));
    let audit = app
        .store()
        .list_audit_events(account.parse().unwrap(), 50)
        .await
        .unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .filter(|e| e.action.as_str().starts_with("webhook."))
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(actions, ["webhook.remove", "webhook.add"]);
    receiver.stop().await;
}
