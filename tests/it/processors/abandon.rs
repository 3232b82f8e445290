//! An authorization whose answer never came is undone at its processor: the processor may have approved
//! it, so a job written with the failover finds it there by our payment id and cancels it (or refunds it,
//! if it was captured), and the payment's transactions say so.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_stripe::payment_intents::{FakePaymentIntents, PiFault, PiRoute};
use crate::support::{on_both_backends, payment, spawn_app, Backend, STRIPE_SECRET};

on_both_backends!(an_authorization_whose_answer_was_lost_is_undone_where_it_was_made);

use super::transaction_rows as transactions;

/// The one intent the fake holds for our payment `id`.
fn intent_for(stripe: &FakePaymentIntents, id: &str) -> Value {
    let found: Vec<Value> = stripe
        .intents()
        .into_iter()
        .filter(|i| i["metadata"]["strongroom_payment_id"] == id)
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

async fn an_authorization_whose_answer_was_lost_is_undone_where_it_was_made(backend: Backend) {
    let primary = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    let fallback = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    let app = spawn_app(backend).await;
    app.add_stripe("primary", &primary.base_url()).await;
    app.add_stripe("fallback", &fallback.base_url()).await;
    let (ok, _, stderr) = app
        .set_routes(&json!([{"name": "two", "processors": ["primary", "fallback"]}]))
        .await;
    assert!(ok, "{stderr}");
    let token = app.token_for("4242424242424242").await;

    // The primary authorizes, but its answer comes after our deadline (1 s): the payment fails over.
    primary.fail_next(
        PiRoute::Create,
        PiFault::AnswerLost(Duration::from_secs(3)),
        1,
    );
    let p = app.pay("one-off", &payment(&token, 1000, "manual")).await;
    assert_eq!(p["status"], "authorized", "{p}");
    let id = p["id"].as_str().unwrap();
    let held = intent_for(&primary, id);
    assert_eq!(held["status"], "requires_capture");

    // The job cancels the primary's authorization and records it; the first cancel's answer is lost
    // too, and the job's retry finds the intent cancelled by it.
    primary.fail_next(
        PiRoute::Cancel,
        PiFault::AnswerLost(Duration::from_secs(3)),
        1,
    );
    app.run_jobs().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    app.run_jobs().await;
    let held = primary.intent(held["id"].as_str().unwrap()).unwrap();
    assert_eq!(
        (&held["status"], &held["cancellation_reason"]),
        (&json!("canceled"), &json!("abandoned"))
    );
    let list = transactions(&app.transactions(id).await.ok_body());
    let kinds: Vec<(&str, &str)> = list
        .iter()
        .map(|t| (t["type"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("authorization", "failed"),
            ("authorization", "succeeded"),
            ("void", "succeeded")
        ],
        "{list:?}"
    );
    assert!(
        list[0]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer in time"),
        "{list:?}"
    );
    assert_eq!(list[2]["processor_reference"], held["id"]);
    assert!(
        list[2]["message"].as_str().unwrap().contains("primary"),
        "{list:?}"
    );
    // The payment itself stays with the fallback, which authorized it.
    let after = app.get_payment(id).await.ok_body();
    assert_eq!(after["status"], "authorized", "{after}");
    app.capture(id, None).await.ok_body();
    app.run_jobs().await;
    assert_eq!(app.get_payment(id).await.ok_body()["status"], "captured");
    assert_eq!(
        primary.requests(),
        4,
        "create, search, cancel (answer lost), search: nothing more"
    );

    // Captured at once (automatic capture) and answered too late: refunded at the primary, once.
    primary.fail_next(
        PiRoute::Create,
        PiFault::AnswerLost(Duration::from_secs(3)),
        1,
    );
    let p = app.pay("one-off", &payment(&token, 700, "automatic")).await;
    assert_eq!(p["status"], "captured", "{p}");
    let id = p["id"].as_str().unwrap();
    let charged = intent_for(&primary, id);
    app.run_jobs().await;
    app.run_jobs().await;
    let refunds = primary.refunds_of(charged["id"].as_str().unwrap());
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0]["amount"], 700);
    let list = transactions(&app.transactions(id).await.ok_body());
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(
        (&list[2]["type"], &list[2]["status"]),
        (&json!("void"), &json!("succeeded"))
    );
    assert_eq!(list[2]["processor_reference"], refunds[0]["id"]);
}
