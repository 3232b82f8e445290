//! Every use case through the Adyen connector, against the fake Adyen: the request shapes per use case,
//! manual and partial capture, void and partial refunds that Adyen accepts and completes by notification
//! (the payment `capturing` until then, then `captured` with its webhook), refusals as failure details
//! without failover, and failover from an Adyen 500 or timeout. Notifications that repeat, are badly
//! signed or come early, and retried jobs, are in `adyen_notifications.rs`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_adyen::{AdyenFault, AdyenRoute, FakeAdyen, FakeAdyenConfig};
use crate::support::fake_stripe::payment_intents::FakePaymentIntents;
use crate::support::receiver::Receiver;
use crate::support::{
    card, on_both_backends, payment, spawn_app, spawn_app_with_adyen, Backend, TestApp,
    STRIPE_SECRET,
};

on_both_backends!(
    payments_go_through_adyen_and_modifications_end_on_notification,
    merchant_initiated_payments_cite_the_network_tx_reference,
    adyen_refusals_become_failure_details_without_failover,
    an_adyen_500_or_timeout_fails_over_to_the_next_processor,
);

fn simple(id: &str) -> String {
    id.replace('-', "")
}

use super::transaction_steps as transactions;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

async fn status_of(app: &TestApp, id: &str) -> Value {
    app.get_payment(id).await.ok_body()
}

async fn payments_go_through_adyen_and_modifications_end_on_notification(backend: Backend) {
    let (app, adyen, _) = spawn_app_with_adyen(backend, None).await;
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
            ("authorization", "succeeded"),
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
            ("authorization", "succeeded"),
            ("capture", "pending"),
            ("capture", "succeeded")
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
    // The webhooks carry the masked card only, and nothing of the processor's secrets.
    let config = adyen.config();
    for hit in receiver.hits() {
        for secret in [
            "4111111111111111",
            "\"737\"",
            config.api_key.as_str(),
            config.hmac_key.as_str(),
        ] {
            assert!(
                !hit.body.contains(secret),
                "a webhook body holds a secret: {}",
                hit.event_type()
            );
        }
    }
}

async fn merchant_initiated_payments_cite_the_network_tx_reference(backend: Backend) {
    let (app, adyen, _) = spawn_app_with_adyen(backend, None).await;
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
    let psp = super::transaction_rows(&listed)[0]["processor_reference"]
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

    // An unscheduled series: card on file, then merchant-initiated with manual capture.
    let initial = app
        .pay("unscheduled", &payment(&token, 2000, "automatic"))
        .await;
    assert_eq!(initial["status"], "captured", "{initial}");
    let next = app
        .subsequent(
            "unscheduled",
            initial["id"].as_str().unwrap(),
            &json!({"amount": 500, "reference": "Top-up", "capture": "manual"}),
        )
        .await
        .ok_body();
    assert_eq!(next["status"], "authorized", "{next}");
    assert_eq!(next["use_case"], "SUBSEQUENT_UNSCHEDULED");
    let sent = adyen.payment_request(3).unwrap();
    assert_eq!(sent["shopperInteraction"], "ContAuth");
    assert_eq!(sent["recurringProcessingModel"], "UnscheduledCardOnFile");
    assert_eq!(sent["additionalData"]["manualCapture"], "true");
    assert!(
        sent["additionalData"]["networkTxReference"].is_string(),
        "{sent}"
    );
}

async fn adyen_refusals_become_failure_details_without_failover(backend: Backend) {
    let (app, adyen, _) = spawn_app_with_adyen(backend, Some("sandbox")).await;
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
            pairs(&[("authorization", "failed")])
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
        pairs(&[("authorization", "failed"), ("authorization", "succeeded")])
    );
    let first = &super::transaction_rows(&list)[0];
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
    // Capture goes to the processor that authorized (Stripe), not to Adyen; the only call Adyen gets
    // is the undo of the unanswered authorization, a cancel by our payment id.
    let before = adyen.requests();
    app.capture(p["id"].as_str().unwrap(), None).await.ok_body();
    app.run_jobs().await;
    assert_eq!(
        status_of(&app, p["id"].as_str().unwrap()).await["status"],
        "captured"
    );
    assert_eq!(adyen.requests(), before + 1);
    let paths: Vec<String> = adyen.modifications().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["/v71/cancels"]);
}
