//! GET /payments: ordering, filters alone and combined, inclusive dates, pages (deep ones too) and bad
//! parameters, checked against the same payments sorted and filtered in the test.

use rand::SeedableRng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use strongroom::domain::payments::synthetic_payments;
use strongroom::store::{PaymentRecord, Ts};

use crate::support::{on_both_backends, spawn_app, validation_body, Backend, TestApp};

on_both_backends!(
    pages_match_the_payments_sorted_and_filtered,
    bad_list_parameters_are_422_with_their_paths
);

async fn seeded(app: &TestApp, count: usize, days: u32) -> Vec<PaymentRecord> {
    let account = app.account_id().await;
    let token_id = app.token_for("4111111111111111").await.parse().unwrap();
    let token = app.stored_token(account, token_id).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut rows = synthetic_payments(&mut rng, account, &token, Ts::now(), days, count);
    // Ties in created_at must be broken by id.
    rows[1].created_at = rows[0].created_at;
    rows[2].created_at = rows[0].created_at;
    app.store().insert_payments(&rows, None).await.unwrap();
    rows.sort_by_key(|p| std::cmp::Reverse((p.created_at, p.id)));
    rows
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn pages_match_the_payments_sorted_and_filtered(backend: Backend) {
    let app = spawn_app(backend).await;
    let all = seeded(&app, 600, 40).await;
    let day = |days_ago: i64| (chrono::Utc::now() - chrono::Duration::days(days_ago)).date_naive();
    let (from, to) = (day(25), day(5));
    let in_dates = move |p: &PaymentRecord| {
        let d = p.created_at.datetime().date_naive();
        d >= from && d <= to
    };
    type Filter = Box<dyn Fn(&PaymentRecord) -> bool>;
    let cases: Vec<(String, Filter)> = vec![
        (String::new(), Box::new(|_| true)),
        (
            "status=captured".into(),
            Box::new(|p| p.status == "captured"),
        ),
        (
            "currency_code=GBP".into(),
            Box::new(|p| p.currency_code == "GBP"),
        ),
        (
            format!("from={from}"),
            Box::new(move |p| p.created_at.datetime().date_naive() >= from),
        ),
        (
            format!("to={to}"),
            Box::new(move |p| p.created_at.datetime().date_naive() <= to),
        ),
        (
            format!("status=authorized,captured&currency_code=EUR,USD&from={from}&to={to}"),
            Box::new(move |p| {
                ["authorized", "captured"].contains(&p.status.as_str())
                    && ["EUR", "USD"].contains(&p.currency_code.as_str())
                    && in_dates(p)
            }),
        ),
        ("status=voiding".into(), Box::new(|p| p.status == "voiding")),
    ];
    for (query, keep) in cases {
        let expected: Vec<String> = all
            .iter()
            .filter(|p| keep(p))
            .map(|p| p.id.to_string())
            .collect();
        for limit in [7usize, 50, 500] {
            let pages = expected.len().div_ceil(limit);
            for page in (1..=pages + 1).filter(|p| *p <= 3 || *p + 2 >= pages) {
                let answer = app
                    .list_payments(&format!("{query}&limit={limit}&page={page}"))
                    .await;
                assert_eq!(answer.status, StatusCode::OK, "{query}");
                let want: Vec<String> = expected
                    .iter()
                    .skip((page - 1) * limit)
                    .take(limit)
                    .cloned()
                    .collect();
                assert_eq!(ids(&answer.body), want, "{query} limit={limit} page={page}");
                assert_eq!(
                    answer.body["pagination"],
                    json!({"current_page": page, "page_size": limit, "total_items": expected.len(), "total_pages": pages}),
                    "{query}"
                );
            }
        }
    }
    let default = app.list_payments("").await;
    assert_eq!(default.body["pagination"]["page_size"], json!(50));
    assert_eq!(
        ids(&default.body),
        all.iter()
            .take(50)
            .map(|p| p.id.to_string())
            .collect::<Vec<_>>()
    );
}

async fn bad_list_parameters_are_422_with_their_paths(backend: Backend) {
    let app = spawn_app(backend).await;
    let statuses = "must be a comma-separated list of payment statuses (open, processing, failed, authorized, capturing, captured, settling, settled, voiding, voided)";
    let currencies = "must be a comma-separated list of ISO 4217 currency codes such as EUR,USD";
    let cases = [
        (
            "limit=0",
            "query.limit",
            "must be a whole number from 1 to 500",
        ),
        (
            "limit=501",
            "query.limit",
            "must be a whole number from 1 to 500",
        ),
        (
            "page=0",
            "query.page",
            "must be a whole number of at least 1",
        ),
        (
            "page=first",
            "query.page",
            "must be a whole number of at least 1",
        ),
        (
            "from=2024-13-01",
            "query.from",
            "must be a date written YYYY-MM-DD",
        ),
        (
            "to=01.02.2024",
            "query.to",
            "must be a date written YYYY-MM-DD",
        ),
        ("status=authorized,paid", "query.status", statuses),
        ("status=", "query.status", statuses),
        ("currency_code=EURO", "query.currency_code", currencies),
        ("currency_code=EUR,usd", "query.currency_code", currencies),
    ];
    for (query, path, message) in cases {
        let answer = app.list_payments(query).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(answer.body, validation_body(&[(path, message)]), "{query}");
    }
}
