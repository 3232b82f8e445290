//! An Adyen authorization whose answer never came is undone at Adyen before the payment fails over: the
//! `payment.abandon` job cancels it by our payment id (`POST /v71/cancels`, the merchant reference), once
//! under its idempotency key even when the cancel's own answer is lost, and Adyen's `TECHNICAL_CANCEL`
//! notification ends the pending `void` transaction without moving the payment, which the next
//! processor authorized. A cancel Adyen could not make (the payment was captured at once) is recorded
//! as a failed `void` that says where to look.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_adyen::{AdyenFault, AdyenRoute, NotifyFault};
use crate::support::{on_both_backends, payment, spawn_app_with_adyen, Backend};

on_both_backends!(
    an_unanswered_adyen_authorization_is_cancelled_there_once_after_failover,
    an_unanswered_adyen_charge_that_cannot_be_cancelled_is_recorded_as_such,
);

use super::transaction_rows as transactions;

fn kinds(list: &[Value]) -> Vec<(String, String)> {
    list.iter()
        .map(|t| {
            (
                t["type"].as_str().unwrap().to_owned(),
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

async fn an_unanswered_adyen_authorization_is_cancelled_there_once_after_failover(
    backend: Backend,
) {
    let (app, adyen, _) = spawn_app_with_adyen(backend, Some("sandbox")).await;
    let token = app.token_for("4111111111111111").await;

    // Adyen authorises, but its answer comes after our deadline (1 s): the sandbox authorizes instead.
    adyen.fail_next(
        AdyenRoute::Payments,
        AdyenFault::AnswerLost(Duration::from_secs(3)),
        1,
    );
    let p = app.pay("one-off", &payment(&token, 1000, "manual")).await;
    assert_eq!(p["status"], "authorized", "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    let held = adyen.payments_with_reference(&id);
    assert_eq!(held.len(), 1, "{held:?}");
    assert!(!held[0].cancelled);

    // The cancel's answer is lost too (Adyen cancelled and queued its notification); the notification
    // arrives before the job has recorded anything, and is asked for again later (503).
    adyen.fail_next(
        AdyenRoute::CancelsByReference,
        AdyenFault::AnswerLost(Duration::from_secs(3)),
        1,
    );
    adyen.spoil_next_notification(NotifyFault::Duplicate);
    app.run_jobs().await;
    assert!(adyen.payments_with_reference(&id)[0].cancelled);
    assert_eq!(adyen.deliver().await, [503, 503]);
    let before = app.get_payment(&id).await.ok_body();

    // The job's retry is answered from Adyen's idempotency record: one cancel, recorded pending.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    app.run_jobs().await;
    let key = format!("strongroom-abandon-{}", id.replace('-', ""));
    assert_eq!(adyen.charges_for(&key), 1);
    let cancels: Vec<Value> = adyen
        .modifications()
        .into_iter()
        .filter(|(path, _)| path == "/v71/cancels")
        .map(|(_, body)| body)
        .collect();
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    assert_eq!(cancels[0]["paymentReference"], id.as_str());
    assert_eq!(
        cancels[0]["merchantAccount"],
        adyen.config().merchant_account
    );
    let list = transactions(&app.transactions(&id).await.ok_body());
    assert_eq!(
        kinds(&list),
        pairs(&[
            ("authorization", "failed"),
            ("authorization", "succeeded"),
            ("void", "pending"),
        ]),
        "{list:?}"
    );
    let first = list[0]["message"].as_str().unwrap();
    assert!(
        first.contains("did not answer in time") && first.contains("adyen"),
        "{list:?}"
    );
    let cancel_reference = list[2]["processor_reference"].as_str().unwrap().to_owned();
    assert_eq!(cancel_reference.len(), 16, "{list:?}");
    assert!(list[2]["message"].as_str().unwrap().contains("adyen"));

    // Adyen sends the TECHNICAL_CANCEL again (twice: a duplicate): one void success, nothing else.
    assert_eq!(adyen.deliver().await, [200, 200]);
    assert_eq!(adyen.pending_notifications(), 0);
    let list = transactions(&app.transactions(&id).await.ok_body());
    assert_eq!(
        kinds(&list),
        pairs(&[
            ("authorization", "failed"),
            ("authorization", "succeeded"),
            ("void", "pending"),
            ("void", "succeeded"),
        ]),
        "{list:?}"
    );
    assert_eq!(list[3]["processor_reference"], cancel_reference.as_str());
    let after = app.get_payment(&id).await.ok_body();
    for field in ["status", "amount", "processor_reference", "failure_details"] {
        assert_eq!(after[field], before[field], "{field}: {after}");
    }
    assert_eq!(after["status"], "authorized");

    // The payment is the sandbox's: its capture goes there, and Adyen hears nothing more.
    let requests = adyen.requests();
    app.capture(&id, None).await.ok_body();
    app.run_jobs().await;
    assert_eq!(app.get_payment(&id).await.ok_body()["status"], "captured");
    assert_eq!(adyen.requests(), requests);
    assert_eq!(adyen.charges_for(&key), 1);
}

async fn an_unanswered_adyen_charge_that_cannot_be_cancelled_is_recorded_as_such(backend: Backend) {
    let (app, adyen, _) = spawn_app_with_adyen(backend, Some("sandbox")).await;
    let token = app.token_for("4111111111111111").await;

    // Automatic capture: Adyen captured at once, so a cancel cannot undo it.
    adyen.fail_next(
        AdyenRoute::Payments,
        AdyenFault::AnswerLost(Duration::from_secs(3)),
        1,
    );
    let p = app.pay("one-off", &payment(&token, 700, "automatic")).await;
    assert_eq!(p["status"], "captured", "{p}");
    let id = p["id"].as_str().unwrap().to_owned();
    app.run_jobs().await;
    assert_eq!(adyen.deliver().await, [200]);
    let list = transactions(&app.transactions(&id).await.ok_body());
    assert_eq!(
        kinds(&list),
        pairs(&[
            ("authorization", "failed"),
            ("authorization", "succeeded"),
            ("void", "pending"),
            ("void", "failed"),
        ]),
        "{list:?}"
    );
    let message = list[3]["message"].as_str().unwrap();
    assert!(
        message.contains("adyen") && message.contains("refund"),
        "{list:?}"
    );
    let after = app.get_payment(&id).await.ok_body();
    assert_eq!(after["status"], "captured", "{after}");
    assert_eq!(after["amount"]["captured"], json!(700), "{after}");
}
