//! `GET /tokens`: newest first or oldest first, inclusive dates, pages; and bad parameters or ids at
//! their paths.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{card, on_both_backends, spawn_app, validation_body, Backend};

on_both_backends!(
    tokens_list_with_sort_dates_and_pages,
    bad_list_parameters_and_ids_are_422_with_their_paths,
);

async fn tokens_list_with_sort_dates_and_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ids = Vec::new();
    for pan in ["4111111111111111", "5555555555554444", "6011111111111117"] {
        ids.push(
            app.new_token(&card(pan)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let newest_first = app.list_tokens("").await;
    let listed: Vec<_> = newest_first.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ids.iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(
        newest_first.body["pagination"],
        json!({"current_page": 1, "page_size": 50, "total_items": 3, "total_pages": 1})
    );

    let oldest_first = app
        .list_tokens("sort=created_at%2Basc&limit=2&page=2")
        .await;
    assert_eq!(oldest_first.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(oldest_first.body["data"][0]["id"], json!(ids[2]));
    assert_eq!(
        oldest_first.body["pagination"],
        json!({"current_page": 2, "page_size": 2, "total_items": 3, "total_pages": 2})
    );

    let past_the_end = app.list_tokens("limit=2&page=9").await;
    assert_eq!(past_the_end.body["data"], json!([]));
    assert_eq!(past_the_end.body["pagination"]["total_items"], json!(3));

    let today = chrono::Utc::now().date_naive();
    let inclusive = app.list_tokens(&format!("from={today}&to={today}")).await;
    assert_eq!(
        inclusive.body["pagination"]["total_items"],
        json!(3),
        "both bounds are inclusive"
    );
    let yesterday = today.pred_opt().unwrap();
    let before = app.list_tokens(&format!("to={yesterday}")).await;
    assert_eq!(before.body["pagination"]["total_items"], json!(0));
}

async fn bad_list_parameters_and_ids_are_422_with_their_paths(backend: Backend) {
    let app = spawn_app(backend).await;
    let cases = [
        (
            "/tokens?limit=0",
            "query.limit",
            "must be a whole number from 1 to 500",
        ),
        (
            "/tokens?limit=501",
            "query.limit",
            "must be a whole number from 1 to 500",
        ),
        (
            "/tokens?page=0",
            "query.page",
            "must be a whole number of at least 1",
        ),
        (
            "/tokens?page=two",
            "query.page",
            "must be a whole number of at least 1",
        ),
        (
            "/tokens?from=2024-02-30",
            "query.from",
            "must be a date written YYYY-MM-DD",
        ),
        (
            "/tokens?from=2024-03-02&to=2024-03-01",
            "query.to",
            "must not be before `from`",
        ),
        (
            "/tokens?sort=name",
            "query.sort",
            "must be `created_at+asc` or `created_at+desc`",
        ),
        ("/tokens/not-a-uuid", "path.id", "must be a UUID"),
        ("/tokens/card-art/123", "path.id", "must be a UUID"),
    ];
    for (path, param, message) in cases {
        let answer = app.get(path).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert_eq!(answer.body, validation_body(&[(param, message)]), "{path}");
    }
}
