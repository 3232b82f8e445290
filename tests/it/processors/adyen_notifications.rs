//! Adyen's notifications and retries against the fake Adyen: a duplicated notification changes nothing, a
//! badly signed one is refused (401), audited and changes nothing, a failed capture returns the payment to
//! `authorized`; a notification too early is 503, a malformed one 422, another merchant account's is
//! ignored; a capture or refund whose answer was lost is retried under its key and happens once.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::fake_adyen::{signature, AdyenFault, AdyenRoute, NotifyFault};
use crate::support::{on_both_backends, payment, send, spawn_app_with_adyen, Backend, TestApp};

on_both_backends!(
    repeated_and_badly_signed_notifications_change_nothing,
    notifications_too_early_malformed_or_for_another_account,
    a_capture_and_a_refund_whose_answers_were_lost_happen_once_at_adyen,
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

async fn repeated_and_badly_signed_notifications_change_nothing(backend: Backend) {
    let (app, adyen, processor_id) = spawn_app_with_adyen(backend, None).await;
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
            ("authorization", "succeeded"),
            ("capture", "pending"),
            ("capture", "succeeded")
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
    let (app, adyen, processor_id) = spawn_app_with_adyen(backend, None).await;
    let config = adyen.config().clone();
    let url = format!("/processors/{processor_id}/notifications");
    let token = app.token_for("4111111111111111").await;
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let listed = app.transactions(&id).await.ok_body();
    let psp = super::transaction_rows(&listed)[0]["processor_reference"]
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

/// Runs the due jobs, then again after the first retry's backoff (about a second).
async fn run_jobs_with_one_retry(app: &TestApp) {
    app.run_jobs().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    app.run_jobs().await;
}

async fn a_capture_and_a_refund_whose_answers_were_lost_happen_once_at_adyen(backend: Backend) {
    let (app, adyen, _) = spawn_app_with_adyen(backend, None).await;
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
