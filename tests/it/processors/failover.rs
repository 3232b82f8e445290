//! Failover along a rule's processors: a 500 or a timeout moves the authorization to the next processor,
//! every attempt a transaction, and later steps go to the processor that authorized; a decline is never
//! retried elsewhere; an Adyen processor that cannot be reached fails over too; no matching rule fails
//! routing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fake_stripe::payment_intents::{FakePaymentIntents, PiFault, PiRoute};
use crate::support::{on_both_backends, payment, spawn_app, Backend, STRIPE_SECRET};

on_both_backends!(
    a_processor_error_fails_over_to_the_next_and_later_steps_follow_the_authorizer,
    a_timeout_fails_over_and_a_decline_does_not,
    an_unreachable_adyen_fails_over_or_fails_clearly,
    a_payment_no_rule_matches_fails_with_a_routing_error,
);

fn attempts(list: &Value) -> Vec<(String, String, String)> {
    list["data"]
        .as_array()
        .or(list.as_array())
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["type"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap().to_owned(),
                t["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn a_processor_error_fails_over_to_the_next_and_later_steps_follow_the_authorizer(
    backend: Backend,
) {
    let primary = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    let fallback = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    let app = spawn_app(backend).await;
    app.add_stripe("primary", &primary.base_url()).await;
    app.add_stripe("fallback", &fallback.base_url()).await;
    let (ok, _, stderr) = app
        .set_routes(&json!([{"name": "eur", "when": {"currency_code": ["EUR"]}, "processors": ["primary", "fallback"]}]))
        .await;
    assert!(ok, "{stderr}");
    primary.fail_next(PiRoute::Create, PiFault::Status(500), 1);
    let token = app.token_for("4242424242424242").await;
    let p = app.pay("one-off", &payment(&token, 1000, "manual")).await;
    assert_eq!(p["status"], "authorized", "{p}");
    assert_eq!(p["flow_matrix_rule"], "eur");
    let id = p["id"].as_str().unwrap();
    let list = attempts(&app.transactions(id).await.ok_body());
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(
        (list[0].0.as_str(), list[0].1.as_str()),
        ("authorization", "failed")
    );
    assert!(list[0].2.contains("primary"), "{list:?}");
    assert_eq!(
        (list[1].0.as_str(), list[1].1.as_str()),
        ("authorization", "succeeded")
    );
    assert_eq!((primary.create_calls(), fallback.create_calls()), (0, 1));

    // Capture and refunds go to the fallback, which authorized.
    app.capture(id, None).await.ok_body();
    app.run_jobs().await;
    let refund = app
        .refund(id, Some(&json!({"amount": 400})))
        .await
        .ok_body();
    app.run_jobs().await;
    let done = app
        .get_refund(refund["id"].as_str().unwrap())
        .await
        .ok_body();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(primary.requests(), 1);
    assert_eq!(fallback.requests(), 3);
}

async fn a_timeout_fails_over_and_a_decline_does_not(backend: Backend) {
    let primary = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    let app = spawn_app(backend).await;
    app.add_stripe("primary", &primary.base_url()).await;
    let (ok, _, stderr) = app
        .set_routes(&json!([{"name": "with-sandbox", "processors": ["primary", "sandbox"]}]))
        .await;
    assert!(ok, "{stderr}");
    let token = app.token_for("4242424242424242").await;

    primary.fail_next(PiRoute::Create, PiFault::Delay(Duration::from_secs(3)), 1);
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(p["status"], "captured", "{p}");
    let list = attempts(&app.transactions(p["id"].as_str().unwrap()).await.ok_body());
    assert_eq!(list[0].1, "failed");
    assert!(list[0].2.contains("did not answer in time"), "{list:?}");
    assert_eq!(list[1].1, "succeeded");

    primary.fail_next(
        PiRoute::Create,
        PiFault::Card("card_declined", Some("do_not_honor")),
        1,
    );
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["failure_details"][0]["classifier"], "DECLINED");
    let list = attempts(&app.transactions(p["id"].as_str().unwrap()).await.ok_body());
    assert_eq!(
        list.len(),
        1,
        "a decline is not retried elsewhere: {list:?}"
    );
}

async fn an_unreachable_adyen_fails_over_or_fails_clearly(backend: Backend) {
    let app = spawn_app(backend).await;
    let secrets =
        json!({"api_key": "AQE_test_key", "merchant_account": "AcmeEU", "hmac_key": "00AA"});
    let added = app
        .add_processor(
            None,
            "adyen-eu",
            "adyen",
            // Nothing listens on the discard port: every call fails to connect.
            "http://127.0.0.1:9",
            &secrets,
            &[],
        )
        .await;
    assert_eq!(added["kind"], "adyen");
    let (ok, _, stderr) = app
        .set_routes(&json!([
            {"name": "big", "when": {"amount_min": 5000}, "processors": ["adyen-eu"]},
            {"name": "rest", "processors": ["adyen-eu", "sandbox"]},
        ]))
        .await;
    assert!(ok, "{stderr}");
    let token = app.token_for("4242424242424242").await;
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(
        (p["status"].clone(), p["flow_matrix_rule"].clone()),
        (json!("captured"), json!("rest"))
    );
    let p = app
        .pay("one-off", &payment(&token, 6000, "automatic"))
        .await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["flow_matrix_rule"], "big");
    assert_eq!(p["failure_details"][0]["classifier"], "PROCESSOR_ERROR");
}

async fn a_payment_no_rule_matches_fails_with_a_routing_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token_for("4242424242424242").await;
    // Without rules, the sandbox takes everything, as before.
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(p["flow_matrix_rule"], "default: all payments to sandbox");
    assert_eq!(p["status"], "captured");

    let (ok, _, stderr) = app
        .set_routes(&json!([{"name": "usd-only", "when": {"currency_code": ["USD"], "scheme": ["VISA"], "use_case": ["ONE_OFF"]}, "processors": ["sandbox"]}]))
        .await;
    assert!(ok, "{stderr}");
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["failure_details"][0]["classifier"], "ROUTING_ERROR");
    assert_eq!(p["flow_matrix_rule"], "none: no rule matched");
    let mut usd = payment(&token, 1000, "automatic");
    usd["currency_code"] = json!("USD");
    let p = app.pay("one-off", &usd).await;
    assert_eq!(
        (p["status"].clone(), p["flow_matrix_rule"].clone()),
        (json!("captured"), json!("usd-only"))
    );

    // `[]` removes the rules: the sandbox takes everything again.
    let (ok, _, stderr) = app.set_routes(&json!([])).await;
    assert!(ok, "{stderr}");
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(p["flow_matrix_rule"], "default: all payments to sandbox");
}
