//! Creating payments: each use case and sandbox outcome, other accounts' payments, and bad requests at
//! their paths.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use strongroom::store::Feature;

use crate::support::{
    error_body, on_both_backends, payment, send, spawn_app, validation_body, Backend,
};

on_both_backends!(
    each_use_case_and_sandbox_outcome,
    another_accounts_payment_is_404,
    bad_payment_requests_are_422_with_their_paths,
    concurrent_payments_share_commits_and_are_each_counted_and_audited_once,
);

async fn each_use_case_and_sandbox_outcome(backend: Backend) {
    let app = spawn_app(backend).await;
    let good = app.token_for("4111111111111111").await;
    let automatic = app.pay("one-off", &payment(&good, 1000, "automatic")).await;
    assert_eq!(automatic["status"], "captured");
    assert_eq!(
        automatic["amount"],
        json!({"requested": 1000, "authorized": 1000, "captured": 1000})
    );
    assert_eq!(automatic["use_case"], "ONE_OFF");
    assert_eq!(
        automatic["flow_matrix_rule"],
        "default: all payments to sandbox"
    );
    assert_eq!(
        automatic["source"],
        json!({"type": "card", "cardholder_name": "Jane Holder", "expiry_month": 4, "expiry_year": 2031,
               "masked_account_number": "411111XXXXXX1111", "pan_type": "FPAN",
               "issuer": {"identification_number": "41111111", "scheme": "VISA"}})
    );
    let manual = app.pay("unscheduled", &payment(&good, 700, "manual")).await;
    assert_eq!(
        (manual["status"].clone(), manual["use_case"].clone()),
        (json!("authorized"), json!("UNSCHEDULED"))
    );
    let mut recurring = payment(&good, 500, "automatic");
    recurring["recurring_frequency"] = json!(30);
    recurring["recurring_expiry"] = json!("20991231");
    let recurring = app.pay("recurring", &recurring).await;
    assert_eq!(
        (
            recurring["use_case"].clone(),
            recurring["recurring_frequency"].clone()
        ),
        (json!("RECURRING"), json!(30))
    );
    assert_eq!(recurring["recurring_expiry"], "20991231");

    for (pan, classifier, message) in [
        (
            "4000000000000002",
            "DECLINED",
            "The issuer declined the payment",
        ),
        (
            "4000000000009995",
            "INSUFFICIENT_FUNDS",
            "The card has insufficient funds",
        ),
        (
            "4000000000000119",
            "PROCESSOR_ERROR",
            "The processor could not handle the request",
        ),
    ] {
        let token = app.token_for(pan).await;
        let failed = app
            .pay("one-off", &payment(&token, 1000, "automatic"))
            .await;
        assert_eq!(failed["status"], "failed", "{pan}");
        assert_eq!(failed["amount"], json!({"requested": 1000}), "{pan}");
        assert_eq!(
            failed["failure_details"],
            json!([{"classifier": classifier, "message": message, "source": "processor"}])
        );
        let fetched = app.get_payment(failed["id"].as_str().unwrap()).await;
        assert_eq!(fetched.body, failed);
    }
    let transactions = app.transactions(automatic["id"].as_str().unwrap()).await;
    assert_eq!(transactions.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(transactions.body["data"][0]["type"], "authorization");
    assert_eq!(transactions.body["data"][0]["status"], "succeeded");
}

async fn another_accounts_payment_is_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token_for("4111111111111111").await;
    let p = app
        .pay("unscheduled", &payment(&token, 1000, "manual"))
        .await;
    let id = p["id"].as_str().unwrap();
    let (_, other) = app.create_account("other", &[Feature::CdeImport]).await;
    let other = app.with_key(&other);
    let not_found = error_body(404, "NOT_FOUND", "The requested resource was not found");
    for (method, path) in [
        (Method::GET, format!("/payments/{id}")),
        (Method::POST, format!("/payments/{id}/capture")),
        (Method::POST, format!("/payments/{id}/void")),
        (Method::POST, format!("/payments/{id}/refunds")),
        (Method::GET, format!("/payments/{id}/refunds")),
        (Method::GET, format!("/payments/{id}/transactions")),
    ] {
        let answer = send(other.request(method.clone(), &path)).await;
        assert_eq!(
            (answer.status, &answer.body),
            (StatusCode::NOT_FOUND, &not_found),
            "{method} {path}"
        );
    }
    let subsequent = other
        .subsequent("unscheduled", id, &json!({"amount": 1, "reference": "x"}))
        .await;
    assert_eq!(subsequent.status, StatusCode::NOT_FOUND);
    let with_their_token = other
        .create_payment("one-off", &payment(&token, 1, "automatic"))
        .await;
    assert_eq!(
        with_their_token.body,
        validation_body(&[("$.source.token_id", "no token of this account has this id")])
    );
    let list = other.list_payments("").await;
    assert_eq!(list.body["pagination"]["total_items"], json!(0));
}

async fn bad_payment_requests_are_422_with_their_paths(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token_for("4111111111111111").await;
    let with = |field: &str, value: Value| {
        let mut body = payment(&token, 1000, "automatic");
        body[field] = value;
        body
    };
    let mut no_amount = payment(&token, 1000, "automatic");
    no_amount.as_object_mut().unwrap().remove("amount");
    let many: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: Vec<(Value, &str, &str)> = vec![
        (no_amount, "$.amount", "is required"),
        (
            with("amount", json!(0)),
            "$.amount",
            "must be from 1 to 100000000000 (minor units)",
        ),
        (
            with("amount", json!("10")),
            "$.amount",
            "must be an integer (minor units)",
        ),
        (
            with("currency_code", json!("EURO")),
            "$.currency_code",
            "must be an ISO 4217 currency code such as EUR",
        ),
        (
            with("reference", json!("x".repeat(81))),
            "$.reference",
            "must be at most 80 characters",
        ),
        (
            with("reference", json!("")),
            "$.reference",
            "must not be empty",
        ),
        (
            with("source", json!({"type": "token", "token_id": "nope"})),
            "$.source.token_id",
            "must be a UUID",
        ),
        (
            with(
                "source",
                json!({"type": "token", "token_id": uuid::Uuid::new_v4()}),
            ),
            "$.source.token_id",
            "no token of this account has this id",
        ),
        (
            with("capture", json!("later")),
            "$.capture",
            "must be `automatic` or `manual`",
        ),
        (
            with("metadata", Value::Object(many)),
            "$.metadata",
            "must have at most 20 entries",
        ),
        (
            with("metadata", json!({"note": "x".repeat(81)})),
            "$.metadata.note",
            "must be at most 80 characters",
        ),
        (
            with("recurring_frequency", json!(7)),
            "$.recurring_frequency",
            "is only for recurring payments",
        ),
    ];
    for (body, path, message) in cases {
        let answer = app.create_payment("one-off", &body).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(answer.body, validation_body(&[(path, message)]), "{body}");
    }
    let recurring = app
        .create_payment("recurring", &with("recurring_expiry", json!("20200101")))
        .await;
    assert_eq!(
        recurring.body,
        validation_body(&[
            (
                "$.recurring_frequency",
                "is required for recurring payments"
            ),
            (
                "$.recurring_expiry",
                "must be a future date written yyyyMMdd"
            ),
        ])
    );
    assert_eq!(
        app.list_payments("").await.body["pagination"]["total_items"],
        json!(0)
    );
}

async fn concurrent_payments_share_commits_and_are_each_counted_and_audited_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token_for("4111111111111111").await;
    let declined = app.token_for("4000000000000002").await;
    let bodies: Vec<Value> = (0..40)
        .map(|i| {
            let (token, capture) = match i % 4 {
                0 => (&declined, "automatic"),
                1 => (&token, "manual"),
                _ => (&token, "automatic"),
            };
            payment(token, 100 + i, capture)
        })
        .collect();
    let answers =
        futures_util::future::join_all(bodies.iter().map(|b| app.create_payment("one-off", b)))
            .await;
    let mut statuses: Vec<String> = answers
        .into_iter()
        .map(|a| {
            a.ok_body()["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    statuses.sort();
    statuses.dedup();
    assert_eq!(statuses, ["authorized", "captured", "failed"]);
    let total = |query: &str| {
        let query = query.to_owned();
        let app = &app;
        async move { app.list_payments(&query).await.ok_body()["pagination"]["total_items"].clone() }
    };
    assert_eq!(total("").await, json!(40));
    assert_eq!(total("status=failed").await, json!(10));
    assert_eq!(total("status=authorized").await, json!(10));
    assert_eq!(total("status=captured").await, json!(20));
    assert_eq!(total("status=processing").await, json!(0));
    // Each card read is audited once, in the commit that saved its payment.
    let account = app.account_id().await;
    let reads = app
        .store()
        .list_audit_events(account, 500)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == strongroom::store::Action::TokenReadCard)
        .count();
    assert_eq!(reads, 40);
}
