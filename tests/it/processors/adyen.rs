//! Every use case through the Adyen connector, against the fake Adyen: the request shapes per use case,
//! manual and partial capture, void and partial refunds that Adyen accepts and completes by notification
//! (the payment `capturing` until then, then `captured` with its webhook), repeated and badly signed
//! notifications, refusals as failure details without failover, failover from an Adyen 500 or timeout,
//! and a retried job that never acts twice at Adyen.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::fake_adyen::{
    signature, AdyenFault, AdyenRoute, FakeAdyen, FakeAdyenConfig, NotifyFault,
};
use crate::support::fake_stripe::payment_intents::FakePaymentIntents;
use crate::support::receiver::Receiver;
use crate::support::{
    card, on_both_backends, payment, send, spawn_app, Backend, TestApp, STRIPE_SECRET,
};

on_both_backends!(
    payments_go_through_adyen_and_modifications_end_on_notification,
    merchant_initiated_payments_cite_the_network_tx_reference,
    repeated_and_badly_signed_notifications_change_nothing,
    adyen_refusals_become_failure_details_without_failover,
    an_adyen_500_or_timeout_fails_over_to_the_next_processor,
    a_capture_and_a_refund_whose_answers_were_lost_happen_once_at_adyen,
    notifications_too_early_malformed_or_for_another_account,
);

fn simple(id: &str) -> String {
    id.replace('-', "")
}

fn transactions(list: &Value) -> Vec<(String, String)> {
    list["data"]
        .as_array()
        .or(list.as_array())
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// An app routing everything to a fake Adyen named `adyen` (then `then`, if given).
async fn app_with_adyen(backend: Backend, then: Option<&str>) -> (TestApp, FakeAdyen, String) {
    let adyen = FakeAdyen::start(FakeAdyenConfig::default()).await.unwrap();
    let app = spawn_app(backend).await;
    let id = app.add_adyen("adyen", &adyen).await;
    let mut processors = vec!["adyen"];
    processors.extend(then);
    let (ok, _, stderr) = app
        .set_routes(&json!([{"name": "to-adyen", "processors": processors}]))
        .await;
    assert!(ok, "{stderr}");
    (app, adyen, id)
}

async fn status_of(app: &TestApp, id: &str) -> Value {
    app.get_payment(id).await.ok_body()
}

async fn payments_go_through_adyen_and_modifications_end_on_notification(backend: Backend) {
    let (app, adyen, _) = app_with_adyen(backend, None).await;
    let receiver = Receiver::start("127.0.0.1:0", vec![]).await;
    app.add_webhook(&receiver.url(), "payment.*,refund.*").await;
    let mut body = card("4111111111111111");
    body["security_code"] = json!("737");
    let token = app.new_token(&body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // One-off, captured at once, with the cached security code.
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(p["status"], "captured", "{p}");
    assert_eq!(p["flow_matrix_rule"], "to-adyen");
    let id = p["id"].as_str().unwrap().to_owned();
    assert_eq!(
        adyen.charges_for(&format!("strongroom-authorize-{}", simple(&id))),
        1
    );
    let sent = adyen.payment_request(0).unwrap();
    assert_eq!(sent["paymentMethod"]["type"], "scheme");
    assert_eq!(sent["paymentMethod"]["number"], "1111");
    assert_eq!(sent["paymentMethod"]["cvc"], "737");
    assert_eq!(
        sent["paymentMethod"]["expiryMonth"].as_str().unwrap().len(),
        2
    );
    assert_eq!(sent["amount"], json!({"currency": "EUR", "value": 1000}));
    assert_eq!(sent["reference"], id.as_str());
    assert_eq!(sent["merchantAccount"], "StrongroomTest");
    assert_eq!(sent["shopperInteraction"], "Ecommerce");
    assert!(sent.get("recurringProcessingModel").is_none(), "{sent}");
    assert!(sent["additionalData"]["manualCapture"].is_null(), "{sent}");

    // Two partial refunds: accepted by Adyen, `processing` until the notifications come.
    let r1 = app
        .refund(&id, Some(&json!({"amount": 200})))
        .await
        .ok_body();
    let r2 = app
        .refund(&id, Some(&json!({"amount": 300})))
        .await
        .ok_body();
    app.run_jobs().await;
    for r in [&r1, &r2] {
        let waiting = app.get_refund(r["id"].as_str().unwrap()).await.ok_body();
        assert_eq!(waiting["status"], "processing", "{waiting}");
    }
    assert_eq!(
        transactions(&app.transactions(&id).await.ok_body()),
        pairs(&[
            ("authorization", "success"),
            ("refund", "pending"),
            ("refund", "pending")
        ])
    );
    assert_eq!(adyen.deliver().await, [200, 200]);
    for r in [&r1, &r2] {
        let done = app.get_refund(r["id"].as_str().unwrap()).await.ok_body();
        assert_eq!(done["status"], "completed", "{done}");
    }
    assert_eq!(status_of(&app, &id).await["amount"]["refunded"], 500);
    assert!(adyen
        .deliveries()
        .iter()
        .all(|(status, body)| *status == 200 && body == "[accepted]"));

    // Unscheduled with manual capture, captured in part: `capturing` until the notification.
    let p = app
        .pay("unscheduled", &payment(&token, 1000, "manual"))
        .await;
    assert_eq!(p["status"], "authorized", "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    let sent = adyen.payment_request(1).unwrap();
    assert_eq!(sent["additionalData"]["manualCapture"], "true");
    assert_eq!(sent["recurringProcessingModel"], "UnscheduledCardOnFile");
    assert_eq!(sent["shopperInteraction"], "Ecommerce");
    app.capture(&id, Some(&json!({"amount": 600})))
        .await
        .ok_body();
    app.run_jobs().await;
    assert_eq!(status_of(&app, &id).await["status"], "capturing");
    let (path, capture) = adyen.modifications().last().cloned().unwrap();
    assert!(path.ends_with("/captures"), "{path}");
    assert_eq!(capture["amount"], json!({"currency": "EUR", "value": 600}));
    assert_eq!(adyen.deliver().await, [200]);
    let captured = status_of(&app, &id).await;
    assert_eq!(captured["status"], "captured", "{captured}");
    assert_eq!(captured["amount"]["captured"], 600);
    assert_eq!(
        transactions(&app.transactions(&id).await.ok_body()),
        pairs(&[
            ("authorization", "success"),
            ("capture", "pending"),
            ("capture", "success")
        ])
    );

    // Manual capture, then void: `voiding` until the notification.
    let p = app.pay("one-off", &payment(&token, 700, "manual")).await;
    let void_id = p["id"].as_str().unwrap().to_owned();
    app.void(&void_id).await.ok_body();
    app.run_jobs().await;
    assert_eq!(status_of(&app, &void_id).await["status"], "voiding");
    assert_eq!(adyen.deliver().await, [200]);
    assert_eq!(status_of(&app, &void_id).await["status"], "voided");

    // The webhooks came from the moves the notifications made.
    app.run_jobs().await;
    let hits = receiver.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events: Vec<(String, String)> = receiver
        .hits()
        .iter()
        .map(|h| (h.event_type().to_owned(), h.object_id().to_owned()))
        .collect();
    assert!(!hits.is_empty());
    for wanted in [
        ("payment.captured", id.as_str()),
        ("payment.voided", void_id.as_str()),
        ("refund.completed", r1["id"].as_str().unwrap()),
        ("refund.completed", r2["id"].as_str().unwrap()),
    ] {
        let n = events
            .iter()
            .filter(|(e, o)| e == wanted.0 && o == wanted.1)
            .count();
        assert_eq!(n, 1, "{wanted:?} in {events:?}");
    }
    assert!(adyen.charges().values().all(|n| *n == 1));
}

async fn merchant_initiated_payments_cite_the_network_tx_reference(backend: Backend) {
    let (app, adyen, _) = app_with_adyen(backend, None).await;
    let token = app.token_for("5555555555554444").await;
    let mut first = payment(&token, 1500, "automatic");
    first["recurring_frequency"] = json!(30);
    first["recurring_expiry"] = json!("20301231");
    let initial = app.pay("recurring", &first).await;
    assert_eq!(initial["status"], "captured", "{initial}");
    let sent = adyen.payment_request(0).unwrap();
    assert_eq!(sent["shopperInteraction"], "Ecommerce");
    assert_eq!(sent["recurringProcessingModel"], "Subscription");
    let listed = app
        .transactions(initial["id"].as_str().unwrap())
        .await
        .ok_body();
    let psp = listed["data"].as_array().or(listed.as_array()).unwrap()[0]["processor_reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let network = adyen.payment(&psp).unwrap().network_tx_reference;

    let next = app
        .subsequent(
            "recurring",
            initial["id"].as_str().unwrap(),
            &json!({"amount": 1500, "reference": "Month 2"}),
        )
        .await
        .ok_body();
    assert_eq!(next["status"], "captured", "{next}");
    let sent = adyen.payment_request(1).unwrap();
    assert_eq!(sent["shopperInteraction"], "ContAuth");
    assert_eq!(sent["recurringProcessingModel"], "Subscription");
    assert_eq!(
        sent["additionalData"]["networkTxReference"],
        network.as_str()
    );
    assert!(sent["paymentMethod"].get("cvc").is_none(), "{sent}");
}

async fn repeated_and_badly_signed_notifications_change_nothing(backend: Backend) {
    let (app, adyen, processor_id) = app_with_adyen(backend, None).await;
    let token = app.token_for("4111111111111111").await;
    let p = app.pay("one-off", &payment(&token, 1000, "manual")).await;
    let id = p["id"].as_str().unwrap().to_owned();

    // A duplicated CAPTURE notification: both accepted, one capture.
    adyen.spoil_next_notification(NotifyFault::Duplicate);
    app.capture(&id, None).await.ok_body();
    app.run_jobs().await;
    assert_eq!(adyen.deliver().await, [200, 200]);
    let captured = status_of(&app, &id).await;
    assert_eq!(captured["status"], "captured", "{captured}");
    assert_eq!(captured["amount"]["captured"], 1000);
    assert_eq!(
        transactions(&app.transactions(&id).await.ok_body()),
        pairs(&[
            ("authorization", "success"),
            ("capture", "pending"),
            ("capture", "success")
        ])
    );

    // A refund whose notification is signed with another key: refused, audited, nothing moves.
    adyen.spoil_next_notification(NotifyFault::BadSignature);
    let refund = app
        .refund(&id, Some(&json!({"amount": 400})))
        .await
        .ok_body();
    app.run_jobs().await;
    assert_eq!(adyen.deliver().await, [401]);
    let (status, body) = adyen.deliveries().last().cloned().unwrap();
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"code": 401, "classifier": "UNAUTHORIZED",
               "message": "The notification's signature is not valid"})
    );
    let still = app
        .get_refund(refund["id"].as_str().unwrap())
        .await
        .ok_body();
    assert_eq!(still["status"], "processing");
    assert_eq!(status_of(&app, &id).await["amount"].get("refunded"), None);
    let audit = app
        .store()
        .list_audit_events(app.account_id().await, 20)
        .await
        .unwrap();
    let refused = audit
        .iter()
        .find(|e| e.action.as_str() == "processor.notification_refuse")
        .expect("the refusal is audited");
    assert_eq!(refused.target.as_deref(), Some(processor_id.as_str()));
    assert_eq!(refused.outcome, "refused: bad signature");

    // A failed capture (success=false) returns the payment to `authorized`.
    let p = app.pay("one-off", &payment(&token, 800, "manual")).await;
    let other = p["id"].as_str().unwrap().to_owned();
    adyen.spoil_next_notification(NotifyFault::Fail);
    app.capture(&other, None).await.ok_body();
    app.run_jobs().await;
    assert_eq!(adyen.deliver().await, [200]);
    assert_eq!(status_of(&app, &other).await["status"], "authorized");

    // Unknown and malformed processor ids.
    let url = format!("/processors/{}/notifications", uuid::Uuid::new_v4());
    let answer = send(
        app.anonymous(Method::POST, &url)
            .json(&json!({"notificationItems": []})),
    )
    .await;
    assert_eq!(answer.status, 404);
    let answer = send(
        app.anonymous(Method::POST, "/processors/nope/notifications")
            .json(&json!({})),
    )
    .await;
    assert_eq!(answer.status, 422);
    assert_eq!(
        answer.body["validation_errors"][0]["path"],
        "path.processor_id"
    );
}

async fn adyen_refusals_become_failure_details_without_failover(backend: Backend) {
    let (app, adyen, _) = app_with_adyen(backend, Some("sandbox")).await;
    for (pan, classifier) in [
        ("4000000000000002", "DECLINED"),
        ("4000000000009995", "INSUFFICIENT_FUNDS"),
        ("4000000000000069", "EXPIRED_CARD"),
        ("4000000000000127", "INVALID_SECURITY_CODE"),
    ] {
        let token = app.token_for(pan).await;
        let p = app
            .pay("one-off", &payment(&token, 1000, "automatic"))
            .await;
        assert_eq!(p["status"], "failed", "{pan}: {p}");
        assert_eq!(p["failure_details"][0]["classifier"], classifier, "{p}");
        // A refusal is final: the sandbox after Adyen in the rule was not asked.
        let id = p["id"].as_str().unwrap();
        assert_eq!(
            transactions(&app.transactions(id).await.ok_body()),
            pairs(&[("authorization", "failure")])
        );
    }
    // A refusal injected by setting, with Adyen's fraud code.
    adyen.fail_next(AdyenRoute::Payments, AdyenFault::Refusal("20", "FRAUD"), 1);
    let token = app.token_for("4111111111111111").await;
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(
        p["failure_details"][0]["classifier"], "SUSPECTED_FRAUD",
        "{p}"
    );
    assert_eq!(adyen.payment_calls(), 4);
}

async fn an_adyen_500_or_timeout_fails_over_to_the_next_processor(backend: Backend) {
    let stripe = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    let adyen = FakeAdyen::start(FakeAdyenConfig::default()).await.unwrap();
    let app = spawn_app(backend).await;
    app.add_adyen("adyen", &adyen).await;
    app.add_stripe("stripe", &stripe.base_url()).await;
    let (ok, _, stderr) = app
        .set_routes(&json!([{"name": "adyen-first", "processors": ["adyen", "stripe", "sandbox"]}]))
        .await;
    assert!(ok, "{stderr}");
    let token = app.token_for("4242424242424242").await;

    adyen.fail_next(AdyenRoute::Payments, AdyenFault::Status(500), 1);
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(p["status"], "captured", "{p}");
    let list = app.transactions(p["id"].as_str().unwrap()).await.ok_body();
    assert_eq!(
        transactions(&list),
        pairs(&[("authorization", "failure"), ("authorization", "success")])
    );
    let first = &list["data"].as_array().or(list.as_array()).unwrap()[0];
    assert!(
        first["message"].as_str().unwrap().contains("adyen"),
        "{first}"
    );
    assert_eq!(stripe.create_calls(), 1);

    // A timeout is not the card's fault either.
    adyen.fail_next(
        AdyenRoute::Payments,
        AdyenFault::Delay(Duration::from_secs(3)),
        1,
    );
    let p = app.pay("one-off", &payment(&token, 900, "manual")).await;
    assert_eq!(p["status"], "authorized", "{p}");
    assert_eq!(stripe.create_calls(), 2);
    // Capture goes to the processor that authorized (Stripe), not to Adyen.
    let before = adyen.requests();
    app.capture(p["id"].as_str().unwrap(), None).await.ok_body();
    app.run_jobs().await;
    assert_eq!(
        status_of(&app, p["id"].as_str().unwrap()).await["status"],
        "captured"
    );
    assert_eq!(adyen.requests(), before);
}

/// Runs the due jobs, then again after the first retry's backoff (about a second).
async fn run_jobs_with_one_retry(app: &TestApp) {
    app.run_jobs().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    app.run_jobs().await;
}

async fn a_capture_and_a_refund_whose_answers_were_lost_happen_once_at_adyen(backend: Backend) {
    let (app, adyen, _) = app_with_adyen(backend, None).await;
    let token = app.token_for("4111111111111111").await;
    let p = app.pay("one-off", &payment(&token, 1000, "manual")).await;
    let id = p["id"].as_str().unwrap().to_owned();

    // Adyen takes the capture, the answer is lost: the retry, under the same key, is answered from it.
    adyen.fail_next(
        AdyenRoute::Captures,
        AdyenFault::AnswerLost(Duration::from_secs(2)),
        1,
    );
    app.capture(&id, Some(&json!({"amount": 900})))
        .await
        .ok_body();
    run_jobs_with_one_retry(&app).await;
    let version = status_of(&app, &id).await;
    assert_eq!(version["status"], "capturing", "{version}");
    let captures: Vec<_> = adyen
        .charges()
        .into_iter()
        .filter(|(key, _)| key.starts_with("strongroom-capture-"))
        .collect();
    assert_eq!(captures.len(), 1, "{captures:?}");
    assert_eq!(captures[0].1, 1, "one capture at Adyen");
    assert_eq!(adyen.deliver().await, [200]);
    let captured = status_of(&app, &id).await;
    assert_eq!(captured["status"], "captured", "{captured}");
    assert_eq!(captured["amount"]["captured"], 900);

    // The same for a refund; then one answered 500 first.
    adyen.fail_next(
        AdyenRoute::Refunds,
        AdyenFault::AnswerLost(Duration::from_secs(2)),
        1,
    );
    let lost = app
        .refund(&id, Some(&json!({"amount": 250})))
        .await
        .ok_body();
    adyen.fail_next(AdyenRoute::Refunds, AdyenFault::Status(500), 1);
    let failed_first = app
        .refund(&id, Some(&json!({"amount": 100})))
        .await
        .ok_body();
    run_jobs_with_one_retry(&app).await;
    assert_eq!(adyen.deliver().await, [200, 200]);
    for r in [&lost, &failed_first] {
        let rid = r["id"].as_str().unwrap();
        let done = app.get_refund(rid).await.ok_body();
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(
            adyen.charges_for(&format!("strongroom-refund-{}", simple(rid))),
            1
        );
    }
    assert_eq!(status_of(&app, &id).await["amount"]["refunded"], 350);
    let refunds = adyen
        .modifications()
        .iter()
        .filter(|(path, _)| path.ends_with("/refunds"))
        .count();
    // One refund made at Adyen each: the lost answer's retry was a replay, the 500 did nothing.
    assert_eq!(refunds, 2, "{:?}", adyen.modifications());
}

/// A notification item about payment `payment_id` (Adyen reference `original`), signed with `key`.
fn notification(key: &str, account: &str, payment_id: &str, original: &str, event: &str) -> Value {
    let mut item = json!({
        "amount": {"currency": "EUR", "value": 100}, "eventCode": event,
        "merchantAccountCode": account, "merchantReference": payment_id,
        "originalReference": original, "pspReference": "8825000000000001", "success": "true",
    });
    item["additionalData"] = json!({"hmacSignature": signature(key, &item)});
    json!({"live": "false", "notificationItems": [{"NotificationRequestItem": item}]})
}

async fn notifications_too_early_malformed_or_for_another_account(backend: Backend) {
    let (app, adyen, processor_id) = app_with_adyen(backend, None).await;
    let config = adyen.config().clone();
    let url = format!("/processors/{processor_id}/notifications");
    let token = app.token_for("4111111111111111").await;
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let listed = app.transactions(&id).await.ok_body();
    let psp = listed["data"].as_array().or(listed.as_array()).unwrap()[0]["processor_reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let refund = app
        .refund(&id, Some(&json!({"amount": 100})))
        .await
        .ok_body();

    // A REFUND before the refund job recorded Adyen's reference: 503, Adyen sends it again later.
    let early = notification(
        &config.hmac_key,
        &config.merchant_account,
        &id,
        &psp,
        "REFUND",
    );
    let answer = send(app.anonymous(Method::POST, &url).json(&early)).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert_eq!(answer.body["classifier"], "UNAVAILABLE");

    // Not Adyen's shape: 422.
    let answer = send(
        app.anonymous(Method::POST, &url)
            .json(&json!({"items": []})),
    )
    .await;
    assert_eq!(answer.status, 422);
    assert_eq!(
        answer.body["validation_errors"][0]["path"],
        "$.notificationItems"
    );

    // Another merchant account's item, well signed: accepted and ignored.
    let other = notification(&config.hmac_key, "SomeoneElse", &id, &psp, "REFUND");
    let answer = app
        .client
        .post(format!("{}{url}", app.base))
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "[accepted]");

    // The real one completes the refund.
    app.run_jobs().await;
    assert_eq!(adyen.deliver().await, [200]);
    let done = app
        .get_refund(refund["id"].as_str().unwrap())
        .await
        .ok_body();
    assert_eq!(done["status"], "completed", "{done}");
}
