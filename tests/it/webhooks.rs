//! Webhooks against a real receiver on its own port: every event type arrives signed with the object
//! the API shows, failures are retried until a 200 (or the deadline), deliveries per object keep the
//! order of its changes, a restart loses nothing, and no body carries card data.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use strongroom::domain::webhooks;
use strongroom::store::WebhookDelivery;
use uuid::Uuid;

use crate::support::receiver::{Hit, Receiver, Reply};
use crate::support::{
    card, fast_webhooks, on_both_backends, payment, spawn_app_with, Backend, TestApp,
};

mod failures;
mod fairness;

on_both_backends!(
    every_event_type_arrives_signed_with_the_object_the_api_returns,
    a_receiver_answering_500_three_times_then_200_gets_the_event_exactly_once_more,
    deliveries_of_one_object_follow_the_order_of_its_changes,
    a_tokens_deletion_waits_for_its_creation_event_to_be_delivered,
    deliveries_reuse_the_connection_of_a_receiver_that_answers_with_a_body,
    a_receiver_down_while_the_server_restarts_gets_every_event_once_both_are_back,
    no_event_carries_card_data_beyond_the_masked_number,
    refund_failed_and_import_events_carry_their_objects,
    a_delivery_run_starts_once_its_event_has_waited_the_pace,
    a_delivery_runs_claim_and_outcome_commit_are_timed_in_the_metrics,
    a_job_an_earlier_version_wrote_with_its_events_in_its_payload_is_still_sent,
);

/// The event types received for each object, in the order they arrived.
fn per_object(hits: &[Hit]) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for hit in hits {
        map.entry(hit.object_id().to_owned())
            .or_default()
            .push(hit.event_type().to_owned());
    }
    map
}

async fn final_of(app: &TestApp, p: &Value) -> Value {
    app.get_payment(p["id"].as_str().unwrap())
        .await
        .success_body()
}

fn find<'a>(hits: &'a [Hit], event: &str, id: &Value) -> &'a Value {
    hits.iter()
        .find(|h| h.event_type() == event && h.object()["id"] == *id)
        .unwrap_or_else(|| panic!("no {event} for {id}"))
        .object()
}

async fn every_event_type_arrives_signed_with_the_object_the_api_returns(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        fast_webhooks(c);
        c.settle_after = Duration::ZERO;
    })
    .await;
    let receiver = Receiver::start("127.0.0.1:0", vec![]).await;
    let (_, key) = app.add_webhook(&receiver.url(), "*").await;

    let mut body = card("4111111111111111");
    body["security_code"] = json!("737");
    let token = app.new_token(&body).await;
    let tid = token["id"].as_str().unwrap().to_owned();
    app.consume(&tid).await.success_body();
    let shown = app.get_token(&tid).await.success_body();

    let card_token = app.token_for("5555555555554444").await;
    let captured = app
        .create_payment("one-off", &payment(&card_token, 1000, "automatic"))
        .await
        .success_body();
    let manual = app
        .create_payment("one-off", &payment(&card_token, 700, "manual"))
        .await
        .success_body();
    app.capture(manual["id"].as_str().unwrap(), None)
        .await
        .success_body();
    let to_void = app
        .create_payment("one-off", &payment(&card_token, 500, "manual"))
        .await
        .success_body();
    app.void(to_void["id"].as_str().unwrap())
        .await
        .success_body();
    let declined_token = app.token_for("4000000000000002").await;
    let declined = app
        .create_payment("one-off", &payment(&declined_token, 100, "automatic"))
        .await
        .success_body();
    assert_eq!(declined["status"], "failed");
    // A refund races the settlement job; wait until the payment has settled.
    let captured_id = captured["id"].as_str().unwrap();
    let started = Instant::now();
    while app.get_payment(captured_id).await.success_body()["status"] != "settled" {
        assert!(started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refund = app
        .refund(captured_id, Some(&json!({"amount": 100})))
        .await
        .success_body();
    let answer = app.delete_token(&tid).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);

    let hits = receiver.wait_for(20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits_after = receiver.hits();
    assert_eq!(hits_after.len(), 20, "{:?}", per_object(&hits_after));
    for hit in &hits {
        assert!(hit.signed_with(&key), "bad signature on {}", hit.body);
        let keys: Vec<&String> = hit.json.as_object().unwrap().keys().collect();
        let object = hit.event_type().split('.').next().unwrap();
        assert_eq!(keys.len(), 4, "{}", hit.body);
        assert!(hit.json["id"].as_str().unwrap().parse::<Uuid>().is_ok());
        assert!(hit.json["created_at"].as_str().unwrap().ends_with('Z'));
        assert!(hit.json[object].is_object(), "{}", hit.body);
    }
    let order = per_object(&hits);
    let of = |v: &Value| order[v.as_str().unwrap()].join(" ");
    assert_eq!(
        of(&token["id"]),
        "token.created token.updated token.deleted"
    );
    assert_eq!(
        of(&captured["id"]),
        "payment.processing payment.captured payment.settled payment.refunded"
    );
    assert_eq!(
        of(&manual["id"]),
        "payment.processing payment.authorized payment.captured payment.settled"
    );
    assert_eq!(
        of(&to_void["id"]),
        "payment.processing payment.authorized payment.voided"
    );
    assert_eq!(of(&declined["id"]), "payment.processing payment.failed");
    assert_eq!(of(&refund["id"]), "refund.processing refund.completed");
    assert_eq!(of(&json!(card_token)), "token.created");

    // The objects are what the API answers at that point of the object's life.
    assert_eq!(*find(&hits, "token.created", &token["id"]), token);
    assert_eq!(*find(&hits, "token.updated", &token["id"]), shown);
    assert_eq!(*find(&hits, "token.deleted", &token["id"]), shown);
    assert_eq!(
        find(&hits, "payment.processing", &captured["id"])["status"],
        json!("processing")
    );
    assert_eq!(*find(&hits, "payment.failed", &declined["id"]), declined);
    assert_eq!(
        *find(&hits, "payment.voided", &to_void["id"]),
        final_of(&app, &to_void).await
    );
    assert_eq!(
        *find(&hits, "payment.settled", &manual["id"]),
        final_of(&app, &manual).await
    );
    assert_eq!(
        *find(&hits, "payment.refunded", &captured["id"]),
        final_of(&app, &captured).await
    );
    assert_eq!(
        find(&hits, "payment.refunded", &captured["id"])["amount"]["refunded"],
        100
    );
    assert_eq!(*find(&hits, "refund.processing", &refund["id"]), refund);
    let refund_now = app
        .get_refund(refund["id"].as_str().unwrap())
        .await
        .success_body();
    assert_eq!(*find(&hits, "refund.completed", &refund["id"]), refund_now);
    receiver.stop().await;
}

async fn a_receiver_answering_500_three_times_then_200_gets_the_event_exactly_once_more(
    backend: Backend,
) {
    let app = spawn_app_with(backend, fast_webhooks).await;
    let plan = vec![Reply::Status(500), Reply::Status(500), Reply::Status(500)];
    let receiver = Receiver::start("127.0.0.1:0", plan).await;
    let (webhook, key) = app.add_webhook(&receiver.url(), "token.created").await;

    let token = app.new_token(&card("4111111111111111")).await;
    let hits = receiver.wait_for(4).await;
    // A payment is not subscribed to: nothing more comes.
    app.create_payment(
        "one-off",
        &payment(token["id"].as_str().unwrap(), 100, "automatic"),
    )
    .await
    .success_body();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.hits().len(), 4);
    assert!(hits
        .iter()
        .all(|h| h.body == hits[0].body && h.signed_with(&key)));
    assert_eq!(hits[0].json["event_type"], "token.created");
    assert_eq!(hits[0].json["token"], token);
    let rows = app.webhook_deliveries(webhook).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("delivered", 4)
    );
    assert_eq!(
        rows[0].last_error.as_deref(),
        Some("the receiver answered 500 Internal Server Error")
    );
    receiver.stop().await;
}

async fn deliveries_of_one_object_follow_the_order_of_its_changes(backend: Backend) {
    let app = spawn_app_with(backend, fast_webhooks).await;
    // The first request fails: the next event of the same payment must wait for its retry.
    let receiver = Receiver::start("127.0.0.1:0", vec![Reply::Status(503)]).await;
    app.add_webhook(&receiver.url(), "payment.*").await;
    let token = app.token_for("4111111111111111").await;
    let paid = app
        .create_payment("one-off", &payment(&token, 100, "automatic"))
        .await
        .success_body();
    let hits = receiver.wait_for(3).await;
    let types: Vec<&str> = hits.iter().map(Hit::event_type).collect();
    assert_eq!(
        types,
        [
            "payment.processing",
            "payment.processing",
            "payment.captured"
        ]
    );
    assert_eq!(hits[2].object()["id"], paid["id"]);
    receiver.stop().await;
}

async fn a_tokens_deletion_waits_for_its_creation_event_to_be_delivered(backend: Backend) {
    let app = spawn_app_with(backend, fast_webhooks).await;
    let receiver = Receiver::start("127.0.0.1:0", vec![Reply::Status(503)]).await;
    app.add_webhook(&receiver.url(), "token.*").await;
    let token = app.token_for("4111111111111111").await;
    // The creation's first attempt failed and is retried 100 ms or more later: the deletion, made
    // now, is queued while it is pending and must go after it (both rows are found by the token's
    // creation time and id).
    receiver.wait_for(1).await;
    let answer = app.delete_token(&token).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let hits = receiver.wait_for(3).await;
    let types: Vec<&str> = hits.iter().map(Hit::event_type).collect();
    assert_eq!(types, ["token.created", "token.created", "token.deleted"]);
    assert!(hits.iter().all(|hit| hit.object_id() == token));
    receiver.stop().await;
}

async fn deliveries_reuse_the_connection_of_a_receiver_that_answers_with_a_body(backend: Backend) {
    let app = spawn_app_with(backend, fast_webhooks).await;
    // Receivers commonly answer with a body; one left unread closes its connection, and every event
    // would then open a new one (a TLS handshake each on `https`).
    let requests = 6;
    let plan = (0..requests)
        .map(|i| Reply::StatusWithBody(if i == 2 { 503 } else { 200 }, "{\"ok\":true}".repeat(100)))
        .collect();
    let receiver = Receiver::start("127.0.0.1:0", plan).await;
    let (webhook, _) = app.add_webhook(&receiver.url(), "token.created").await;
    // One event at a time, each made once the last was recorded delivered (its answer read to the
    // end): one connection can carry them all, the failed attempt (a 503 with a body) and its retry
    // included.
    for made in 1..requests {
        app.new_token(&card("4111111111111111")).await;
        app.wait_deliveries(webhook, |rows| {
            rows.iter().filter(|d| d.status == "delivered").count() == made
        })
        .await;
    }
    let hits = receiver.wait_for(requests).await;
    let peers: std::collections::HashSet<_> = hits.iter().map(|hit| hit.peer).collect();
    assert_eq!(
        peers.len(),
        1,
        "{requests} requests came on {} connections",
        peers.len()
    );
    receiver.stop().await;
}

async fn a_delivery_run_starts_once_its_event_has_waited_the_pace(backend: Backend) {
    let app = spawn_app_with(backend, fast_webhooks).await;
    let receiver = Receiver::start("127.0.0.1:0", vec![]).await;
    let (webhook, _) = app.add_webhook(&receiver.url(), "token.created").await;
    // The workers look every 20 ms (`fast_webhooks`); a run waits until its job has been due for
    // 50 ms, so that it sends whatever else came meanwhile.
    app.new_token(&card("4111111111111111")).await;
    let rows = app
        .wait_deliveries(webhook, |rows| rows.iter().any(|d| d.status == "delivered"))
        .await;
    let d = &rows[0];
    let took = d.finished_at.unwrap().micros() - d.created_at.micros();
    assert!(took >= 50_000, "delivered {took} µs after the event");
    receiver.stop().await;
}

async fn a_receiver_down_while_the_server_restarts_gets_every_event_once_both_are_back(
    backend: Backend,
) {
    let mut app = spawn_app_with(backend, fast_webhooks).await;
    // A port that a receiver held, now closed: deliveries meet a refused connection. The port stays
    // bound (not listening: refused all the same) so that no other socket of the parallel tests, a
    // client's ephemeral port included, takes it before the receiver comes back on it.
    let receiver = Receiver::start("127.0.0.1:0", vec![]).await;
    let addr = receiver.addr;
    receiver.stop().await;
    let kept = tokio::net::TcpSocket::new_v4().unwrap();
    kept.set_reuseaddr(true).unwrap();
    kept.bind(addr).unwrap();
    let (webhook, key) = app.add_webhook(&format!("http://{addr}/hook"), "*").await;

    let token = app.token_for("4111111111111111").await;
    app.create_payment("one-off", &payment(&token, 100, "automatic"))
        .await
        .success_body();
    // The token's event failed twice; the payment's first event failed, its second waits behind it.
    // (The token's row is written once first tried, so it need not be the oldest.)
    let attempts = |rows: &[WebhookDelivery], event: &str| {
        rows.iter()
            .find(|r| r.event_type == event)
            .map_or(0, |r| r.attempts)
    };
    app.wait_deliveries(webhook, |rows| {
        rows.len() == 3
            && attempts(rows, "token.created") >= 2
            && attempts(rows, "payment.processing") >= 1
    })
    .await;

    // Restart the server on the same database; one more event while the receiver is still down.
    app.restart(fast_webhooks).await;
    app.new_token(&card("5555555555554444")).await;

    drop(kept);
    let receiver = Receiver::start(&addr.to_string(), vec![]).await;
    let hits = receiver.wait_for(4).await;
    let rows = app
        .wait_deliveries(webhook, |rows| {
            // The new token's event is written as a row once first tried.
            rows.len() == 4 && rows.iter().all(|r| r.status == "delivered")
        })
        .await;
    let mut sent: Vec<String> = rows.iter().map(|r| r.event_id.to_string()).collect();
    let mut got: Vec<String> = hits
        .iter()
        .map(|h| h.json["id"].as_str().unwrap().to_owned())
        .collect();
    sent.sort();
    got.sort();
    assert_eq!(got, sent);
    assert!(hits.iter().all(|h| h.signed_with(&key)));
    let first = rows.iter().find(|r| r.object_id.to_string() == token);
    assert!(first.is_some_and(|r| r.attempts >= 3), "{rows:#?}");
    receiver.stop().await;
}

async fn no_event_carries_card_data_beyond_the_masked_number(backend: Backend) {
    let app = spawn_app_with(backend, fast_webhooks).await;
    let receiver = Receiver::start("127.0.0.1:0", vec![]).await;
    let (webhook, _) = app.add_webhook(&receiver.url(), "*").await;
    let pans = ["4111111111111111", "5555555555554444", "378282246310005"];
    let codes = ["737", "246", "8431"];
    for (pan, code) in pans.iter().zip(codes) {
        let mut body = card(pan);
        body["security_code"] = json!(code);
        let token = app.new_token(&body).await;
        let id = token["id"].as_str().unwrap();
        app.create_payment("one-off", &payment(id, 100, "automatic"))
            .await
            .success_body();
        app.consume(&id).await.success_body();
    }
    // Per card: token.created, payment.processing, payment.captured (the code was used, so no update).
    let hits = receiver.wait_for(9).await;
    let stored: Vec<String> = app
        .webhook_deliveries(webhook)
        .await
        .into_iter()
        .map(|d| d.body)
        .collect();
    for text in hits.iter().map(|h| &h.body).chain(&stored) {
        for (pan, code) in pans.iter().zip(codes) {
            assert!(!text.contains(pan), "{text}");
            assert!(!text.contains(&format!("\"{code}\"")), "{text}");
        }
        for field in [
            "\"account_number\"",
            "\"security_code\"",
            "sealed",
            "fingerprint",
        ] {
            assert!(!text.contains(field), "{text}");
        }
    }
    let masked: Vec<&str> = hits
        .iter()
        .filter(|h| h.event_type() == "token.created")
        .map(|h| h.object()["masked_account_number"].as_str().unwrap())
        .collect();
    assert_eq!(masked.len(), 3);
    assert!(masked.contains(&"411111XXXXXX1111"));
    receiver.stop().await;
}

async fn refund_failed_and_import_events_carry_their_objects(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.workers = 0).await;
    let receiver = Receiver::start("127.0.0.1:0", vec![]).await;
    app.add_webhook(&receiver.url(), "refund.failed,import.*")
        .await;
    let account = app.account_id().await;
    let state = app.server().state();
    let now = strongroom::store::Ts::now();
    // The sandbox approves every refund, so a declined one is built as the refund job would record it.
    let refund = strongroom::store::RefundRecord {
        id: Uuid::new_v4(),
        payment_id: Uuid::new_v4(),
        account_id: account,
        created_at: now,
        updated_at: now,
        amount: 250,
        currency_code: "EUR".into(),
        status: "failed".into(),
        reference: None,
        failure_details: Some(
            json!([{"classifier": "DECLINED", "message": "no", "source": "processor"}]).to_string(),
        ),
    };
    let token = app.token_for("4111111111111111").await;
    let paid = app
        .create_payment("one-off", &payment(&token, 100, "automatic"))
        .await
        .success_body();
    let stored = app
        .store()
        .get_payment(account, paid["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let change = strongroom::store::PaymentChange {
        payment: stored.clone(),
        expected_version: stored.version,
        previous_status: stored.status.clone(),
        transaction: None,
        new_refund: None,
        finished_refund: Some(refund.clone()),
        job: None,
        outbox: Vec::new(),
        network_transaction_id: None,
    };
    let rows = state.webhooks.payment_change(&change).await.unwrap();
    assert_eq!(rows.len(), 1);
    let body: Value = serde_json::from_str(&rows[0].body).unwrap();
    assert_eq!(body["event_type"], "refund.failed");
    assert_eq!(
        body["refund"],
        json!({"id": refund.id, "payment_id": refund.payment_id, "amount": 250,
        "currency_code": "EUR", "status": "failed", "created_at": now.to_string(),
        "failure_details": [{"classifier": "DECLINED", "message": "no", "source": "processor"}]})
    );

    let import = json!({"id": Uuid::new_v4(), "status": "finished", "stripe": {"api_key": "[REDACTED]"},
                        "attemts": 2, "attempts": 2, "successes": 2, "failures": 0});
    let import_id: Uuid = import["id"].as_str().unwrap().parse().unwrap();
    for (outcome, name) in [
        (webhooks::ImportOutcome::Finished, "import.finished"),
        (webhooks::ImportOutcome::Aborted, "import.aborted"),
    ] {
        let rows = state
            .webhooks
            .import_event(account, outcome, (import_id, now), &import)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        let body: Value = serde_json::from_str(&rows[0].body).unwrap();
        assert_eq!(
            (body["event_type"].as_str().unwrap(), &body["import"]),
            (name, &import)
        );
        assert_eq!(
            (rows[0].object_id, rows[0].object_created_at),
            (import_id, now)
        );
    }
    receiver.stop().await;
}

/// `strongroom_db_query_duration_seconds` times the two writes of a delivery run that take the
/// database's writer: the claim of the other due jobs it takes in, and the commit of its outcomes.
async fn a_delivery_runs_claim_and_outcome_commit_are_timed_in_the_metrics(backend: Backend) {
    let app = spawn_app_with(backend, fast_webhooks).await;
    let receiver = Receiver::start("127.0.0.1:0", vec![]).await;
    let (webhook, _) = app.add_webhook(&receiver.url(), "token.created").await;
    app.new_token(&card("4242424242424242")).await;
    app.wait_deliveries(webhook, |rows| rows.iter().any(|d| d.status == "delivered"))
        .await;
    // The registry is the process's: other tests' runs count too, so only "at least once" is asked.
    // The observation follows the commit the row was read from by a moment.
    let timed = |text: &str, op: &str| {
        let name = format!("strongroom_db_query_duration_seconds_count{{op=\"{op}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&name))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = strongroom::metrics::metrics().render();
        if timed(&text, "claim_due_jobs") >= 1.0 && timed(&text, "record_delivery_outcomes") >= 1.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "not timed:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.stop().await;
}

/// A delivery job as the previous version wrote it, its events in its payload (`PAYLOAD_EVENTS_JOB`),
/// is still sent after an upgrade, and its event written as a row with its outcome.
async fn a_job_an_earlier_version_wrote_with_its_events_in_its_payload_is_still_sent(
    backend: Backend,
) {
    use strongroom::store::{CarriedEvent, CarriedEvents, NewJob, Ts};
    let app = spawn_app_with(backend, fast_webhooks).await;
    let receiver = Receiver::start("127.0.0.1:0", vec![]).await;
    let (webhook, key) = app.add_webhook(&receiver.url(), "token.created").await;
    let now = Ts::now();
    let event = CarriedEvent {
        id: Uuid::now_v7(),
        event_id: Uuid::new_v4(),
        webhook_id: webhook,
        account_id: app.account_id().await,
        object_id: Uuid::new_v4(),
        object_created_at: now.micros(),
        event_type: "token.created".to_owned(),
        body: json!({"event_type": "token.created", "note": "written by an earlier version"})
            .to_string(),
        created_at: now.micros(),
    };
    let payload = CarriedEvents {
        events: vec![event.clone()],
    };
    let job = NewJob {
        id: NewJob::new_id(),
        kind: strongroom::store::PAYLOAD_EVENTS_JOB.to_owned(),
        payload: serde_json::to_string(&payload).unwrap(),
        max_attempts: i32::MAX,
        run_at: now,
        lease: None,
    };
    app.store().enqueue_job(&job).await.unwrap();
    let hits = receiver.wait_for(1).await;
    assert_eq!(hits[0].body, event.body);
    assert!(hits[0].signed_with(&key));
    let rows = app
        .wait_deliveries(webhook, |rows| rows.iter().any(|d| d.status == "delivered"))
        .await;
    assert_eq!((rows.len(), rows[0].id), (1, event.id));
    receiver.stop().await;
}
