//! Payments and refunds as Commerce API clients send and read them: a refund's `currency_code` and
//! `reference`, `authentication_preference`, `source.cardholder_name` always present, the paginated
//! refund and transaction lists with the transaction's fields, repeated query parameters, and a page
//! too large to store.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{card, on_both_backends, payment, spawn_app, validation_body, Backend};

on_both_backends!(
    a_refund_takes_the_payments_currency_and_a_reference,
    authentication_preference_is_no_3ri_or_refused,
    the_source_always_names_the_cardholder,
    refunds_and_transactions_are_listed_a_page_at_a_time,
    a_repeated_parameter_and_a_page_too_large_are_refused,
);

async fn a_refund_takes_the_payments_currency_and_a_reference(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token_for("4111111111111111").await;
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    let id = p["id"].as_str().unwrap();

    let other = app
        .refund(id, Some(&json!({"amount": 100, "currency_code": "USD"})))
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        other.body,
        validation_body(&[(
            "$.currency_code",
            "must be the currency of the payment, EUR"
        )])
    );
    let malformed = app
        .refund(id, Some(&json!({"currency_code": "euro", "amount": 0})))
        .await;
    assert_eq!(
        malformed.body,
        validation_body(&[
            ("$.amount", "must be from 1 to 100000000000 (minor units)"),
            (
                "$.currency_code",
                "must be an ISO 4217 currency code such as EUR"
            ),
        ])
    );

    let refund = app
        .refund(
            id,
            Some(&json!({"amount": 250, "currency_code": "EUR", "reference": "Return #7"})),
        )
        .await
        .ok_body();
    assert_eq!(
        (
            refund["amount"].clone(),
            refund["currency_code"].clone(),
            refund["reference"].clone(),
            refund["status"].clone()
        ),
        (
            json!(250),
            json!("EUR"),
            json!("Return #7"),
            json!("processing")
        )
    );
    app.run_jobs().await;
    let listed = app.list_refunds(id).await.ok_body();
    assert_eq!(listed["data"][0]["reference"], "Return #7");
    assert_eq!(listed["data"][0]["status"], "completed");
}

async fn authentication_preference_is_no_3ri_or_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token_for("4111111111111111").await;
    let mut body = payment(&token, 1000, "automatic");
    body["authentication_preference"] = json!("NO_3RI");
    let paid = app.create_payment("one-off", &body).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    assert_eq!(paid.body["status"], "captured");

    for preference in ["TRY_3RI", "REQUIRE_3RI"] {
        body["authentication_preference"] = json!(preference);
        let refused = app.create_payment("one-off", &body).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            refused.body,
            validation_body(&[(
                "$.authentication_preference",
                "3-D Secure is not available yet; send NO_3RI or leave the field out"
            )])
        );
    }
    body["authentication_preference"] = json!("3DS");
    assert_eq!(
        app.create_payment("one-off", &body).await.body,
        validation_body(&[(
            "$.authentication_preference",
            "must be NO_3RI, TRY_3RI or REQUIRE_3RI"
        )])
    );
}

async fn the_source_always_names_the_cardholder(backend: Backend) {
    let app = spawn_app(backend).await;
    let named = app.token_for("4111111111111111").await;
    let mut anonymous_card = card("5555555555554444");
    anonymous_card
        .as_object_mut()
        .unwrap()
        .remove("cardholder_name");
    let anonymous = app.new_token(&anonymous_card).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let p = app
        .pay("one-off", &payment(&named, 1000, "automatic"))
        .await;
    assert_eq!(p["source"]["cardholder_name"], "Jane Holder");
    let p = app
        .pay("one-off", &payment(&anonymous, 1000, "automatic"))
        .await;
    let source = p["source"].as_object().unwrap();
    assert_eq!(source.get("cardholder_name"), Some(&Value::Null));
    let shown = app.get_payment(p["id"].as_str().unwrap()).await.ok_body();
    assert_eq!(
        shown["source"].as_object().unwrap().get("cardholder_name"),
        Some(&Value::Null)
    );
    let listed = app.list_payments("limit=1").await.ok_body();
    assert!(listed["data"][0]["source"]
        .as_object()
        .unwrap()
        .contains_key("cardholder_name"));
}

async fn refunds_and_transactions_are_listed_a_page_at_a_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token_for("4111111111111111").await;
    let p = app.pay("one-off", &payment(&token, 1000, "manual")).await;
    let id = p["id"].as_str().unwrap();
    app.capture(id, None).await.ok_body();
    app.run_jobs().await;
    for amount in [100, 200, 300] {
        app.refund(id, Some(&json!({"amount": amount})))
            .await
            .ok_body();
    }
    app.run_jobs().await;

    let page = app
        .get(&format!("/payments/{id}/refunds?limit=2&page=2"))
        .await
        .ok_body();
    assert_eq!(
        page["pagination"],
        json!({"current_page": 2, "page_size": 2, "total_items": 3, "total_pages": 2})
    );
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["amount"], 300);
    let past = app
        .get(&format!("/payments/{id}/refunds?page=9"))
        .await
        .ok_body();
    assert_eq!(
        past,
        json!({"data": [], "pagination": {"current_page": 9, "page_size": 50, "total_items": 3, "total_pages": 1}})
    );

    let all = app.transactions(id).await.ok_body();
    assert_eq!(
        all["pagination"],
        json!({"current_page": 1, "page_size": 50, "total_items": 5, "total_pages": 1})
    );
    let first = all["data"][0].as_object().unwrap();
    let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "amount",
            "created_at",
            "finished_at",
            "id",
            "processor",
            "processor_reference",
            "started_at",
            "status",
            "type"
        ]
    );
    let summary: Vec<(Value, Value, Value, Value)> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["type"].clone(),
                t["status"].clone(),
                t["processor"].clone(),
                t["amount"].clone(),
            )
        })
        .collect();
    let row = |kind: &str, amount: i64| {
        (
            json!(kind),
            json!("succeeded"),
            json!("sandbox"),
            json!(amount),
        )
    };
    assert_eq!(
        summary,
        [
            row("authorization", 1000),
            row("capture", 1000),
            row("refund", 100),
            row("refund", 200),
            row("refund", 300),
        ]
    );
    assert_eq!(first["started_at"], first["finished_at"]);
    let second = app
        .get(&format!("/payments/{id}/transactions?limit=1&page=2"))
        .await
        .ok_body();
    assert_eq!(second["data"][0]["type"], "capture");
    assert_eq!(second["pagination"]["total_pages"], 5);

    let declined = app.token_for("4000000000000002").await;
    let failed = app
        .pay("one-off", &payment(&declined, 1000, "automatic"))
        .await;
    let failed = app
        .transactions(failed["id"].as_str().unwrap())
        .await
        .ok_body();
    assert_eq!(failed["data"][0]["status"], "failed");
    assert!(failed["data"][0]["finished_at"].is_string());
}

async fn a_repeated_parameter_and_a_page_too_large_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let repeated = app.list_payments("status=authorized&status=captured").await;
    assert_eq!(repeated.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        repeated.body,
        validation_body(&[(
            "query.status",
            "must be given only once; send several values as one comma-separated list"
        )])
    );
    let both = app.list_tokens("limit=1&page=1&limit=2").await;
    assert_eq!(
        both.body,
        validation_body(&[(
            "query.limit",
            "must be given only once; send several values as one comma-separated list"
        )])
    );
    let listed = app.list_payments("status=authorized,captured").await;
    assert_eq!(listed.status, StatusCode::OK);

    for path in [
        "/payments?page=4294967296",
        "/tokens?page=99999999999999999999",
    ] {
        let answer = app.get(path).await;
        assert_eq!(
            answer.body,
            validation_body(&[("query.page", "must be at most 4294967295")]),
            "{path}"
        );
    }
    let token = app.token_for("4111111111111111").await;
    let p = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    let deepest = app
        .get(&format!(
            "/payments/{}/transactions?page=4294967295&limit=500",
            p["id"].as_str().unwrap()
        ))
        .await
        .ok_body();
    assert_eq!(deepest["data"], json!([]));
}
