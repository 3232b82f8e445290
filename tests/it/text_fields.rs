//! Control characters in stored text are 422 at their path, and a token that the database refuses
//! fails alone, not the other requests that share its group commit.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, Executor};

use crate::support::{card, on_both_backends, payment, spawn_app, validation_body, Backend};

const CONTROL: &str = "must not contain control characters (such as NUL, a tab or a line break)";

on_both_backends!(
    control_characters_in_every_stored_text_are_422_at_their_path,
    a_token_row_the_database_refuses_fails_alone_in_its_batch,
);

async fn control_characters_in_every_stored_text_are_422_at_their_path(backend: Backend) {
    let app = spawn_app(backend).await;
    for name in [
        "Jane\u{0}Holder",
        "Jane\nHolder",
        "\u{1b}[31mJane",
        "Jane\u{7f}",
        "Jane\u{85}",
    ] {
        let mut body = card("4111111111111111");
        body["cardholder_name"] = json!(name);
        let answer = app.tokenize(&body).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            answer.body,
            validation_body(&[("$.cardholder_name", CONTROL)])
        );
    }

    let token = app.token_for("4111111111111111").await;
    let mut body = payment(&token, 1000, "manual");
    body["reference"] = json!("Order\u{0}1");
    body["metadata"] = json!({"order": "a\u{0}b", "k\u{0}": "v"});
    let answer = app.create_payment("one-off", &body).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer.body,
        validation_body(&[
            ("$.reference", CONTROL),
            ("$.metadata", "keys must not contain control characters"),
            ("$.metadata.order", CONTROL),
        ])
    );

    let paid = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    let answer = app
        .refund(
            paid["id"].as_str().unwrap(),
            Some(&json!({"amount": 100, "reference": "r\u{0}"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.body, validation_body(&[("$.reference", CONTROL)]));
    // Nothing of the refused requests was stored.
    assert_eq!(app.all_tokens().await.len(), 1);
}

/// A trigger stands in for any row-specific, permanent refusal by the database (what a NUL in a
/// name was on PostgreSQL before the check above).
async fn a_token_row_the_database_refuses_fails_alone_in_its_batch(backend: Backend) {
    let app = spawn_app(backend).await;
    poison_names(backend, &app.db.url).await;
    for _ in 0..3 {
        let mut requests = Vec::new();
        for i in 0..24 {
            let client = app.api.clone();
            let mut body = card("4111111111111111");
            if i == 12 {
                body["cardholder_name"] = json!("Poison Pill");
            }
            requests.push(tokio::spawn(
                async move { client.tokenize(&body).await.status },
            ));
        }
        for (i, request) in requests.into_iter().enumerate() {
            let status = request.await.unwrap();
            let expected = if i == 12 {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            assert_eq!(status, expected, "request {i}");
        }
    }
    assert_eq!(app.all_tokens().await.len(), 3 * 23);
}

async fn poison_names(backend: Backend, url: &str) {
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            conn.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON tokens WHEN NEW.cardholder_name = 'Poison Pill' \
                 BEGIN SELECT RAISE(ABORT, 'poisoned row'); END",
            )
            .await
            .unwrap();
            conn.close().await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            conn.execute(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.cardholder_name = 'Poison Pill' THEN RAISE EXCEPTION 'poisoned row'; END IF; \
                 RETURN NEW; END $$",
            )
            .await
            .unwrap();
            conn.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON tokens FOR EACH ROW EXECUTE FUNCTION poison()",
            )
            .await
            .unwrap();
            conn.close().await.unwrap();
        }
    }
}
