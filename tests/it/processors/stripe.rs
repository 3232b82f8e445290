//! Every use case through the Stripe connector, against the fake PaymentIntents server: automatic and
//! manual capture, partial capture, void, partial refunds, merchant-initiated payments off session with
//! only the parameters Stripe documents, Stripe's declines, and one charge per idempotency key.

use serde_json::{json, Value};

use crate::support::fake_stripe::payment_intents::FakePaymentIntents;
use crate::support::{card, on_both_backends, payment, spawn_app, Backend, STRIPE_SECRET};

on_both_backends!(
    payments_go_through_stripe_with_capture_void_and_partial_refunds,
    merchant_initiated_payments_go_off_session_citing_the_initial_network_transaction_id,
    stripe_declines_become_failure_details,
);

fn simple(id: &str) -> String {
    id.replace('-', "")
}

use super::transaction_steps as transactions;

async fn payments_go_through_stripe_with_capture_void_and_partial_refunds(backend: Backend) {
    let stripe = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    let app = spawn_app(backend).await;
    app.add_stripe("stripe-main", &stripe.base_url()).await;
    let (ok, _, stderr) = app
        .set_routes(&json!([{"name": "all-to-stripe", "processors": ["stripe-main"]}]))
        .await;
    assert!(ok, "{stderr}");
    let mut body = card("4242424242424242");
    body["security_code"] = json!("123");
    let token = app.new_token(&body).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // One-off, captured at once, with the cached security code.
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(p["status"], "captured", "{p}");
    assert_eq!(p["flow_matrix_rule"], "all-to-stripe");
    let id = p["id"].as_str().unwrap();
    let key = format!("strongroom-authorize-{}", simple(id));
    assert_eq!(stripe.charges_for(&key), 1);
    let sent = stripe.create_params(0).unwrap();
    assert_eq!(sent["capture_method"], "automatic");
    assert_eq!(sent["confirm"], "true");
    assert_eq!(sent["payment_method_data[type]"], "card");
    assert_eq!(sent["payment_method_data[card][number]"], "4242");
    assert_eq!(sent["payment_method_data[card][cvc]"], "123");
    assert_eq!(sent["currency"], "eur");
    assert!(!sent.contains_key("off_session"));
    let listed = app.transactions(id).await.ok_body();
    assert_eq!(
        transactions(&listed),
        [("authorization".into(), "succeeded".into())]
    );
    let reference = super::transaction_rows(&listed)[0]["processor_reference"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reference.starts_with("pi_"), "{reference}");

    // Two partial refunds, through the processor that authorized.
    let r1 = app
        .refund(id, Some(&json!({"amount": 200})))
        .await
        .ok_body();
    let r2 = app
        .refund(id, Some(&json!({"amount": 300})))
        .await
        .ok_body();
    app.run_jobs().await;
    for r in [&r1, &r2] {
        let done = app.get_refund(r["id"].as_str().unwrap()).await.ok_body();
        assert_eq!(done["status"], "completed", "{done}");
    }
    let refunded = app.get_payment(id).await.ok_body();
    assert_eq!(refunded["amount"]["refunded"], 500);
    let too_much = app.refund(id, Some(&json!({"amount": 501}))).await;
    assert_eq!(too_much.status, 422);

    // Unscheduled with manual capture, captured in part.
    let p = app
        .pay("unscheduled", &payment(&token, 1000, "manual"))
        .await;
    assert_eq!(p["status"], "authorized", "{p}");
    let id = p["id"].as_str().unwrap();
    assert_eq!(stripe.create_params(1).unwrap()["capture_method"], "manual");
    app.capture(id, Some(&json!({"amount": 600})))
        .await
        .ok_body();
    app.run_jobs().await;
    let captured = app.get_payment(id).await.ok_body();
    assert_eq!(captured["status"], "captured", "{captured}");
    assert_eq!(captured["amount"]["captured"], 600);
    let listed = app.transactions(id).await.ok_body();
    let pi = super::transaction_rows(&listed)[0]["processor_reference"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(stripe.intent(&pi).unwrap()["amount_received"], 600);
    // Its subsequent payment is merchant-initiated, outside a recurring series.
    let later = app
        .subsequent(
            "unscheduled",
            id,
            &json!({"amount": 300, "reference": "Top-up"}),
        )
        .await
        .ok_body();
    assert_eq!(later["use_case"], "SUBSEQUENT_UNSCHEDULED", "{later}");
    assert_eq!(stripe.create_params(2).unwrap()["off_session"], "one_off");

    // Manual capture, then void.
    let p = app.pay("one-off", &payment(&token, 700, "manual")).await;
    let id = p["id"].as_str().unwrap();
    app.void(id).await.ok_body();
    app.run_jobs().await;
    let voided = app.get_payment(id).await.ok_body();
    assert_eq!(voided["status"], "voided", "{voided}");
    assert_eq!(
        transactions(&app.transactions(id).await.ok_body()),
        [
            ("authorization".into(), "succeeded".into()),
            ("void".into(), "succeeded".into())
        ]
    );
    // Every charge was made once per key.
    assert!(stripe.charges().values().all(|n| *n == 1));
}

async fn merchant_initiated_payments_go_off_session_citing_the_initial_network_transaction_id(
    backend: Backend,
) {
    // Two Stripe accounts: one with the option that takes the id, one without it.
    let enabled = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    enabled.enable_mit_network_transaction_ids();
    let plain = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    let app = spawn_app(backend).await;
    for (stripe, name) in [(&enabled, "stripe-nti"), (&plain, "stripe-plain")] {
        app.add_stripe(name, &stripe.base_url()).await;
        let (ok, _, stderr) = app
            .set_routes(&json!([{"name": "stripe", "processors": [name]}]))
            .await;
        assert!(ok, "{stderr}");
        let token = app.token_for("5555555555554444").await;
        let mut first = payment(&token, 1500, "automatic");
        first["recurring_frequency"] = json!(30);
        first["recurring_expiry"] = json!("20301231");
        let initial = app.pay("recurring", &first).await;
        assert_eq!(initial["status"], "captured", "{initial}");
        let listed = app
            .transactions(initial["id"].as_str().unwrap())
            .await
            .ok_body();
        let initial_pi = super::transaction_rows(&listed)[0]["processor_reference"]
            .as_str()
            .unwrap()
            .to_owned();
        let network_id = stripe.intent(&initial_pi).unwrap()["latest_charge"]
            ["payment_method_details"]["card"]["network_transaction_id"]
            .as_str()
            .unwrap()
            .to_owned();

        let next = app
            .subsequent(
                "recurring",
                initial["id"].as_str().unwrap(),
                &json!({"amount": 1500, "reference": "Month 2"}),
            )
            .await
            .ok_body();
        assert_eq!(next["status"], "captured", "{name}: {next}");
        assert_eq!(next["use_case"], "SUBSEQUENT_RECURRING");
        let sent = stripe.create_params(1).unwrap();
        assert_eq!(sent["off_session"], "recurring");
        assert!(!sent.contains_key("payment_method_data[card][cvc]"));
        let nti = "payment_method_options[card][mit_exemption][network_transaction_id]";
        if name == "stripe-nti" {
            assert_eq!(sent.get(nti), Some(&network_id), "{sent:?}");
            assert_eq!(enabled.create_calls(), 2);
        } else {
            // Refused as unknown, then sent again without it under the same key: one charge.
            let refused = plain.refused_params(0).unwrap();
            assert_eq!(refused.get(nti), Some(&network_id));
            assert!(!sent.contains_key(nti), "{sent:?}");
            assert_eq!(plain.create_calls(), 2);
            assert!(plain.charges().values().all(|n| *n == 1));
            // The connector remembers: the next one is sent without it at once.
            let third = app
                .subsequent(
                    "recurring",
                    initial["id"].as_str().unwrap(),
                    &json!({"amount": 1500, "reference": "Month 3"}),
                )
                .await
                .ok_body();
            assert_eq!(third["status"], "captured", "{third}");
            assert_eq!(plain.create_calls(), 3);
            assert!(plain.refused_params(1).is_none(), "not refused again");
            assert!(!stripe.create_params(2).unwrap().contains_key(nti));
        }
    }
}

async fn stripe_declines_become_failure_details(backend: Backend) {
    let stripe = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    let app = spawn_app(backend).await;
    app.add_stripe("stripe-main", &stripe.base_url()).await;
    let (ok, _, stderr) = app
        .set_routes(&json!([{"name": "stripe", "processors": ["stripe-main", "sandbox"]}]))
        .await;
    assert!(ok, "{stderr}");
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
        // A decline is final: the sandbox after Stripe in the rule was not asked.
        let id = p["id"].as_str().unwrap();
        assert_eq!(
            transactions(&app.transactions(id).await.ok_body()),
            [("authorization".into(), "failed".into())]
        );
    }
    assert_eq!(stripe.create_calls(), 4);
}

/// The fake answers an undocumented parameter as Stripe does (400 `parameter_unknown`) and, as Stripe,
/// keeps no answer for a key whose request failed validation, so a corrected request may reuse it.
#[tokio::test]
async fn the_fake_refuses_parameters_stripe_does_not_document() {
    let stripe = FakePaymentIntents::start(STRIPE_SECRET).await.unwrap();
    let client = reqwest::Client::new();
    let mut form = vec![
        ("amount", "1000"),
        ("currency", "eur"),
        ("confirm", "true"),
        ("off_session", "true"),
        ("payment_method_data[type]", "card"),
        ("payment_method_data[card][number]", "4242424242424242"),
        ("payment_method_data[card][exp_month]", "4"),
        ("payment_method_data[card][exp_year]", "2031"),
        (
            "payment_method_options[card][mit_exemption][network_transaction_id]",
            "ntx1",
        ),
    ];
    let post = |form: Vec<(&'static str, &'static str)>| {
        client
            .post(format!("{}/v1/payment_intents", stripe.base_url()))
            .bearer_auth(STRIPE_SECRET)
            .header("Idempotency-Key", "k1")
            .form(&form)
            .send()
    };
    let refused = post(form.clone()).await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "parameter_unknown");
    assert_eq!(
        body["error"]["param"],
        "payment_method_options[card][mit_exemption][network_transaction_id]"
    );
    form.pop();
    let accepted = post(form).await.unwrap();
    assert_eq!(accepted.status(), 200);
    assert_eq!(stripe.charges_for("k1"), 1);
}
