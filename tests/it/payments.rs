//! Payments over HTTP: each use case and sandbox outcome, the status machine, refunds, subsequent
//! payments, and the list with its filters and pages.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use strongroom::jobs::{Step, Worker};
use strongroom::store::Feature;

use crate::helpers::{
    error_body, send, spawn_app, spawn_app_with, validation_body, Backend, TestApp,
};
use crate::on_both_backends;
use crate::tokens::{card, tokenize};

on_both_backends!(
    each_use_case_and_sandbox_outcome,
    capture_void_and_moves_in_the_wrong_state,
    partial_refunds_up_to_the_captured_amount,
    a_captured_payment_settles,
    subsequent_payments_follow_the_initial,
    another_accounts_payment_is_404,
    bad_payment_requests_are_422_with_their_paths,
    a_payment_left_processing_by_a_crash_is_authorized_by_its_recovery_job,
);

/// Runs every due job until none is left.
pub async fn run_jobs(app: &TestApp) {
    let state = app.server.as_ref().unwrap().state();
    let worker = Worker::new(
        app.store().clone(),
        strongroom::server::job_handlers(state),
        Duration::from_secs(30),
    );
    while worker.step().await.unwrap() != Step::Idle {}
}

pub async fn token_for(app: &TestApp, pan: &str) -> String {
    tokenize(app, &card(pan)).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn payment(token: &str, amount: i64, capture: &str) -> Value {
    json!({"amount": amount, "currency_code": "EUR", "reference": "Order #1", "capture": capture,
           "source": {"type": "token", "token_id": token}})
}

async fn pay(app: &TestApp, path: &str, body: &Value) -> Value {
    let answer = app.post_json(path, body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

async fn each_use_case_and_sandbox_outcome(backend: Backend) {
    let app = spawn_app(backend).await;
    let good = token_for(&app, "4111111111111111").await;
    let automatic = pay(
        &app,
        "/payments/one-off",
        &payment(&good, 1000, "automatic"),
    )
    .await;
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
    let manual = pay(
        &app,
        "/payments/unscheduled",
        &payment(&good, 700, "manual"),
    )
    .await;
    assert_eq!(
        (manual["status"].clone(), manual["use_case"].clone()),
        (json!("authorized"), json!("UNSCHEDULED"))
    );
    let mut recurring = payment(&good, 500, "automatic");
    recurring["recurring_frequency"] = json!(30);
    recurring["recurring_expiry"] = json!("20991231");
    let recurring = pay(&app, "/payments/recurring", &recurring).await;
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
        let token = token_for(&app, pan).await;
        let failed = pay(
            &app,
            "/payments/one-off",
            &payment(&token, 1000, "automatic"),
        )
        .await;
        assert_eq!(failed["status"], "failed", "{pan}");
        assert_eq!(failed["amount"], json!({"requested": 1000}), "{pan}");
        assert_eq!(
            failed["failure_details"],
            json!([{"classifier": classifier, "message": message, "source": "processor"}])
        );
        let fetched = app
            .get(&format!("/payments/{}", failed["id"].as_str().unwrap()))
            .await;
        assert_eq!(fetched.body, failed);
    }
    let transactions = app
        .get(&format!(
            "/payments/{}/transactions",
            automatic["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(transactions.body.as_array().unwrap().len(), 1);
    assert_eq!(transactions.body[0]["kind"], "authorization");
    assert_eq!(transactions.body[0]["status"], "success");
}

async fn capture_void_and_moves_in_the_wrong_state(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = token_for(&app, "5555555555554444").await;
    let p = pay(&app, "/payments/one-off", &payment(&token, 1000, "manual")).await;
    let id = p["id"].as_str().unwrap();
    let capturing = pay(
        &app,
        &format!("/payments/{id}/capture"),
        &json!({"amount": 600}),
    )
    .await;
    assert_eq!(capturing["status"], "capturing");
    let again = app
        .post_json(&format!("/payments/{id}/capture"), &json!({}))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(
        again.body,
        error_body(
            409,
            "CONFLICT",
            "A payment that is capturing cannot be captured"
        )
    );
    run_jobs(&app).await;
    let captured = app.get(&format!("/payments/{id}")).await.body;
    assert_eq!(captured["status"], "captured");
    assert_eq!(
        captured["amount"],
        json!({"requested": 1000, "authorized": 1000, "captured": 600})
    );
    let twice = send(app.request(Method::POST, &format!("/payments/{id}/capture"))).await;
    assert_eq!(
        twice.body,
        error_body(
            409,
            "CONFLICT",
            "A payment that is captured cannot be captured"
        )
    );
    let void_captured = send(app.request(Method::POST, &format!("/payments/{id}/void"))).await;
    assert_eq!(
        void_captured.body,
        error_body(
            409,
            "CONFLICT",
            "A payment that is captured cannot be voided"
        )
    );

    let p = pay(&app, "/payments/one-off", &payment(&token, 800, "manual")).await;
    let id = p["id"].as_str().unwrap();
    let too_much = app
        .post_json(&format!("/payments/{id}/capture"), &json!({"amount": 801}))
        .await;
    assert_eq!(
        too_much.body,
        validation_body(&[("$.amount", "must not exceed the authorized amount")])
    );
    let voiding = send(app.request(Method::POST, &format!("/payments/{id}/void"))).await;
    assert_eq!(voiding.body["status"], "voiding");
    run_jobs(&app).await;
    let voided = app.get(&format!("/payments/{id}")).await.body;
    assert_eq!(
        (voided["status"].clone(), voided["amount"].clone()),
        (
            json!("voided"),
            json!({"requested": 800, "authorized": 800, "voided": 800})
        )
    );
    let capture_voided = send(app.request(Method::POST, &format!("/payments/{id}/capture"))).await;
    assert_eq!(
        capture_voided.body,
        error_body(
            409,
            "CONFLICT",
            "A payment that is voided cannot be captured"
        )
    );
    let refund_voided = send(app.request(Method::POST, &format!("/payments/{id}/refunds"))).await;
    assert_eq!(
        refund_voided.body,
        error_body(
            409,
            "CONFLICT",
            "A payment that is voided cannot be refunded"
        )
    );
    let kinds: Vec<Value> = app
        .get(&format!("/payments/{id}/transactions"))
        .await
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].clone())
        .collect();
    assert_eq!(kinds, [json!("authorization"), json!("void")]);
}

async fn partial_refunds_up_to_the_captured_amount(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = token_for(&app, "4111111111111111").await;
    let p = pay(
        &app,
        "/payments/one-off",
        &payment(&token, 1000, "automatic"),
    )
    .await;
    let id = p["id"].as_str().unwrap();
    let first = pay(
        &app,
        &format!("/payments/{id}/refunds"),
        &json!({"amount": 300, "reference": "r1"}),
    )
    .await;
    assert_eq!(first["status"], "processing");
    assert_eq!(
        (first["amount"].clone(), first["payment_id"].clone()),
        (json!(300), json!(id))
    );
    pay(
        &app,
        &format!("/payments/{id}/refunds"),
        &json!({"amount": 300}),
    )
    .await;
    let past = app
        .post_json(&format!("/payments/{id}/refunds"), &json!({"amount": 401}))
        .await;
    assert_eq!(
        past.body,
        validation_body(&[("$.amount", "must not exceed the refundable amount of 400")])
    );
    run_jobs(&app).await;
    let rest = pay(
        &app,
        &format!("/payments/{id}/refunds"),
        &json!({"amount": 400}),
    )
    .await;
    run_jobs(&app).await;
    let full = app
        .post_json(&format!("/payments/{id}/refunds"), &json!({"amount": 1}))
        .await;
    assert_eq!(
        full.body,
        error_body(409, "CONFLICT", "The payment has been refunded in full")
    );

    let refreshed = app.get(&format!("/payments/{id}")).await.body;
    assert_eq!(
        refreshed["amount"],
        json!({"requested": 1000, "authorized": 1000, "captured": 1000, "refunded": 1000})
    );
    let refunds = app.get(&format!("/payments/{id}/refunds")).await.body;
    let statuses: Vec<_> = refunds
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["amount"].clone(), r["status"].clone()))
        .collect();
    assert_eq!(
        statuses,
        [
            (json!(300), json!("completed")),
            (json!(300), json!("completed")),
            (json!(400), json!("completed"))
        ]
    );
    let one = app
        .get(&format!("/refunds/{}", rest["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (one.status, one.body["status"].clone()),
        (StatusCode::OK, json!("completed"))
    );
    assert_eq!(one.body["currency_code"], "EUR");
}

async fn a_captured_payment_settles(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.settle_after = Duration::ZERO).await;
    let token = token_for(&app, "4111111111111111").await;
    let p = pay(
        &app,
        "/payments/one-off",
        &payment(&token, 1000, "automatic"),
    )
    .await;
    let id = p["id"].as_str().unwrap();
    let state = app.server.as_ref().unwrap().state();
    let worker = Worker::new(
        app.store().clone(),
        strongroom::server::job_handlers(state),
        Duration::from_secs(30),
    );
    assert!(matches!(worker.step().await.unwrap(), Step::Completed(_)));
    assert_eq!(
        app.get(&format!("/payments/{id}")).await.body["status"],
        "settling"
    );
    assert!(matches!(worker.step().await.unwrap(), Step::Completed(_)));
    assert_eq!(
        app.get(&format!("/payments/{id}")).await.body["status"],
        "settled"
    );
    let refund = app
        .post_json(&format!("/payments/{id}/refunds"), &json!({"amount": 100}))
        .await;
    assert_eq!(
        refund.status,
        StatusCode::OK,
        "a settled payment can be refunded"
    );
    let transactions = app.get(&format!("/payments/{id}/transactions")).await.body;
    let kinds: Vec<Value> = transactions
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        [json!("authorization"), json!("settlement")],
        "settlement is recorded once"
    );
}

async fn subsequent_payments_follow_the_initial(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = token_for(&app, "4111111111111111").await;
    let initial = pay(
        &app,
        "/payments/unscheduled",
        &payment(&token, 1000, "automatic"),
    )
    .await;
    let id = initial["id"].as_str().unwrap();
    let body = json!({"amount": 1000, "reference": "Renewal"});
    let next = pay(
        &app,
        &format!("/payments/unscheduled/{id}/subsequent"),
        &body,
    )
    .await;
    assert_eq!(next["use_case"], "SUBSEQUENT_UNSCHEDULED");
    assert_eq!(next["initial_payment_id"], json!(id));
    assert_eq!(
        (next["status"].clone(), next["currency_code"].clone()),
        (json!("captured"), json!("EUR"))
    );
    assert_eq!(next["source"], initial["source"]);

    let over = app
        .post_json(
            &format!("/payments/unscheduled/{id}/subsequent"),
            &json!({"amount": 1001, "reference": "x"}),
        )
        .await;
    assert_eq!(
        over.body,
        validation_body(&[(
            "$.amount",
            "must not exceed the amount of the initial payment"
        )])
    );
    let with_source = app.post_json(&format!("/payments/unscheduled/{id}/subsequent"), &json!({"amount": 10, "reference": "x", "source": {"type": "token", "token_id": token}})).await;
    assert_eq!(
        with_source.body,
        validation_body(&[("$.source", "is taken from the initial payment")])
    );
    let wrong_series = app
        .post_json(&format!("/payments/recurring/{id}/subsequent"), &body)
        .await;
    assert_eq!(
        wrong_series.body,
        error_body(404, "NOT_FOUND", "The requested resource was not found")
    );

    let declined = token_for(&app, "4000000000000002").await;
    let failed = pay(
        &app,
        "/payments/unscheduled",
        &payment(&declined, 1000, "automatic"),
    )
    .await;
    let after_failure = app
        .post_json(
            &format!(
                "/payments/unscheduled/{}/subsequent",
                failed["id"].as_str().unwrap()
            ),
            &body,
        )
        .await;
    assert_eq!(
        after_failure.body,
        error_body(409, "CONFLICT", "The initial payment was never authorized")
    );

    let mut recurring = payment(&token, 2000, "automatic");
    recurring["recurring_frequency"] = json!(7);
    recurring["recurring_expiry"] = json!("20991231");
    let first = pay(&app, "/payments/recurring", &recurring).await;
    let second = pay(
        &app,
        &format!(
            "/payments/recurring/{}/subsequent",
            first["id"].as_str().unwrap()
        ),
        &json!({"amount": 1500, "reference": "week 2"}),
    )
    .await;
    assert_eq!(second["use_case"], "SUBSEQUENT_RECURRING");
}

async fn another_accounts_payment_is_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = token_for(&app, "4111111111111111").await;
    let p = pay(
        &app,
        "/payments/unscheduled",
        &payment(&token, 1000, "manual"),
    )
    .await;
    let id = p["id"].as_str().unwrap();
    let (_, other) = app.create_account("other", &[Feature::CdeImport]).await;
    let not_found = error_body(404, "NOT_FOUND", "The requested resource was not found");
    for (method, path) in [
        (Method::GET, format!("/payments/{id}")),
        (Method::POST, format!("/payments/{id}/capture")),
        (Method::POST, format!("/payments/{id}/void")),
        (Method::POST, format!("/payments/{id}/refunds")),
        (Method::GET, format!("/payments/{id}/refunds")),
        (Method::GET, format!("/payments/{id}/transactions")),
    ] {
        let answer = send(
            app.anonymous(method.clone(), &path)
                .header("X-API-Key", &other),
        )
        .await;
        assert_eq!(
            (answer.status, &answer.body),
            (StatusCode::NOT_FOUND, &not_found),
            "{method} {path}"
        );
    }
    let subsequent = send(
        app.anonymous(
            Method::POST,
            &format!("/payments/unscheduled/{id}/subsequent"),
        )
        .header("X-API-Key", &other)
        .json(&json!({"amount": 1, "reference": "x"})),
    )
    .await;
    assert_eq!(subsequent.status, StatusCode::NOT_FOUND);
    let with_their_token = send(
        app.anonymous(Method::POST, "/payments/one-off")
            .header("X-API-Key", &other)
            .json(&payment(&token, 1, "automatic")),
    )
    .await;
    assert_eq!(
        with_their_token.body,
        validation_body(&[("$.source.token_id", "no token of this account has this id")])
    );
    let list = send(
        app.anonymous(Method::GET, "/payments")
            .header("X-API-Key", &other),
    )
    .await;
    assert_eq!(list.body["pagination"]["total_items"], json!(0));
}

async fn bad_payment_requests_are_422_with_their_paths(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = token_for(&app, "4111111111111111").await;
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
        let answer = app.post_json("/payments/one-off", &body).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(answer.body, validation_body(&[(path, message)]), "{body}");
    }
    let recurring = app
        .post_json(
            "/payments/recurring",
            &with("recurring_expiry", json!("20200101")),
        )
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
        app.get("/payments").await.body["pagination"]["total_items"],
        json!(0)
    );
}

async fn a_payment_left_processing_by_a_crash_is_authorized_by_its_recovery_job(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = token_for(&app, "4111111111111111").await;
    let account = crate::tokens::app_account(&app).await;
    // What a node leaves behind when it dies between saving the payment and saving the authorization:
    // the payment `processing`, and its recovery job (made due now instead of in a minute).
    let record = app
        .store()
        .get_token(account, token.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let mut rng = rand::thread_rng();
    let mut payment = strongroom::domain::payments::synthetic_payments(
        &mut rng,
        account,
        &record,
        strongroom::store::Ts::now(),
        1,
        1,
    )
    .remove(0);
    payment.status = "processing".into();
    payment.capture_mode = "manual".into();
    (
        payment.amount_authorized,
        payment.amount_captured,
        payment.amount_voided,
        payment.amount_refunded,
    ) = (0, 0, 0, 0);
    payment.capture_requested = None;
    payment.failure_details = None;
    let job = strongroom::store::NewJob {
        id: uuid::Uuid::new_v4(),
        kind: strongroom::domain::payments::AUTHORIZE_JOB.into(),
        payload: json!({"account_id": account, "payment_id": payment.id, "refund_id": null})
            .to_string(),
        max_attempts: 3,
        run_at: strongroom::store::Ts::now(),
    };
    app.store()
        .insert_payment(&payment, Some(&job), &[])
        .await
        .unwrap();
    assert_eq!(
        app.get(&format!("/payments/{}", payment.id)).await.body["status"],
        "processing"
    );
    run_jobs(&app).await;
    let recovered = app.get(&format!("/payments/{}", payment.id)).await.body;
    assert_eq!(recovered["status"], "authorized");
    assert_eq!(
        recovered["amount"]["authorized"],
        json!(payment.amount_requested)
    );
    let listed = app.get("/payments?status=authorized").await.body;
    assert_eq!(
        listed["pagination"]["total_items"],
        json!(1),
        "the day counts followed the move"
    );
}
