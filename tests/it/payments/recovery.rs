//! Recovery after a crash: a payment a node left `processing` is finished by its recovery job.

use serde_json::json;

use crate::support::{on_both_backends, spawn_app, Backend};

on_both_backends!(a_payment_left_processing_by_a_crash_is_authorized_by_its_recovery_job,);

async fn a_payment_left_processing_by_a_crash_is_authorized_by_its_recovery_job(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.token_for("4111111111111111").await;
    let account = app.account_id().await;
    // What a node leaves behind when it dies between saving the payment and saving the authorization:
    // the payment `processing`, and its recovery job (made due now instead of in a minute).
    let record = app
        .stored_token(account, token.parse().unwrap())
        .await
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
        lease: None,
    };
    app.store()
        .insert_payment(&payment, Some(&job), &[])
        .await
        .unwrap();
    assert_eq!(
        app.get_payment(payment.id).await.body["status"],
        "processing"
    );
    app.run_jobs().await;
    let recovered = app.get_payment(payment.id).await.body;
    assert_eq!(recovered["status"], "authorized");
    assert_eq!(
        recovered["amount"]["authorized"],
        json!(payment.amount_requested)
    );
    let listed = app.list_payments("status=authorized").await.body;
    assert_eq!(
        listed["pagination"]["total_items"],
        json!(1),
        "the day counts followed the move"
    );
}
