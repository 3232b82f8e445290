//! Subsequent payments of an unscheduled or recurring series: they follow the initial payment's source
//! and amount, and only an authorized initial payment of the same kind starts a series.

use serde_json::json;

use crate::support::{error_body, on_both_backends, payment, spawn_app, validation_body, Backend};

on_both_backends!(subsequent_payments_follow_the_initial,);

async fn subsequent_payments_follow_the_initial(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token_for("4111111111111111").await;
    let initial = app
        .pay("unscheduled", &payment(&token, 1000, "automatic"))
        .await;
    let id = initial["id"].as_str().unwrap();
    let body = json!({"amount": 1000, "reference": "Renewal"});
    let next = app.subsequent("unscheduled", id, &body).await.ok_body();
    assert_eq!(next["use_case"], "SUBSEQUENT_UNSCHEDULED");
    assert_eq!(next["initial_payment_id"], json!(id));
    assert_eq!(
        (next["status"].clone(), next["currency_code"].clone()),
        (json!("captured"), json!("EUR"))
    );
    assert_eq!(next["source"], initial["source"]);

    let over = app
        .subsequent(
            "unscheduled",
            id,
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
    let with_source = app
        .subsequent(
            "unscheduled",
            id,
            &json!({"amount": 10, "reference": "x", "source": {"type": "token", "token_id": token}}),
        )
        .await;
    assert_eq!(
        with_source.body,
        validation_body(&[("$.source", "is taken from the initial payment")])
    );
    let wrong_series = app.subsequent("recurring", id, &body).await;
    assert_eq!(
        wrong_series.body,
        error_body(404, "NOT_FOUND", "The requested resource was not found")
    );

    let declined = app.token_for("4000000000000002").await;
    let failed = app
        .pay("unscheduled", &payment(&declined, 1000, "automatic"))
        .await;
    let after_failure = app
        .subsequent("unscheduled", failed["id"].as_str().unwrap(), &body)
        .await;
    assert_eq!(
        after_failure.body,
        error_body(409, "CONFLICT", "The initial payment was never authorized")
    );

    let mut recurring = payment(&token, 2000, "automatic");
    recurring["recurring_frequency"] = json!(7);
    recurring["recurring_expiry"] = json!("20991231");
    let first = app.pay("recurring", &recurring).await;
    let second = app
        .subsequent(
            "recurring",
            first["id"].as_str().unwrap(),
            &json!({"amount": 1500, "reference": "week 2"}),
        )
        .await
        .ok_body();
    assert_eq!(second["use_case"], "SUBSEQUENT_RECURRING");
}
