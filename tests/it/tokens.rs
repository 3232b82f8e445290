//! POST /cde-import and the token lifecycle over HTTP.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use strongroom::store::Feature;

use crate::helpers::{error_body, send, spawn_app, validation_body, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    each_scheme_is_recognised_with_its_iin_mask_and_length,
    each_bad_card_field_is_422_with_its_path,
    malformed_empty_and_non_object_bodies_are_422_at_the_root,
    an_account_without_the_cde_import_feature_gets_403,
    tokens_of_another_account_are_404,
    a_deleted_token_is_gone_for_good,
    consume_drops_the_security_code,
    card_art_shows_the_scheme_and_only_the_last_four,
    tokens_list_with_sort_dates_and_pages,
    bad_list_parameters_and_ids_are_422_with_their_paths,
);

/// Appends the Luhn check digit to `prefix`.
pub fn with_check_digit(prefix: &str) -> String {
    for d in 0..10 {
        let candidate = format!("{prefix}{d}");
        if strongroom::model::card::luhn_valid(&candidate) {
            return candidate;
        }
    }
    unreachable!()
}

pub fn card(pan: &str) -> Value {
    json!({"account_number": pan, "expiry_month": 4, "expiry_year": 2031, "cardholder_name": "Jane Holder"})
}

pub async fn tokenize(app: &TestApp, body: &Value) -> Value {
    let answer = app.post_json("/cde-import", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

async fn each_scheme_is_recognised_with_its_iin_mask_and_length(backend: Backend) {
    let app = spawn_app(backend).await;
    let unknown = with_check_digit("999999999999999");
    let cases = [
        (
            "4111111111111111",
            "123",
            "VISA",
            "41111111",
            "411111XXXXXX1111",
        ),
        (
            "5555555555554444",
            "123",
            "Mastercard",
            "55555555",
            "555555XXXXXX4444",
        ),
        (
            "2223003122003222",
            "123",
            "Mastercard",
            "22230031",
            "222300XXXXXX3222",
        ),
        (
            "378282246310005",
            "1234",
            "American Express",
            "378282",
            "378282XXXXX0005",
        ),
        (
            "6011111111111117",
            "123",
            "Discover",
            "60111111",
            "601111XXXXXX1117",
        ),
        (
            "30569309025904",
            "123",
            "Diners Club",
            "305693",
            "305693XXXX5904",
        ),
        (
            "3530111333300000",
            "123",
            "JCB",
            "35301113",
            "353011XXXXXX0000",
        ),
        (
            "6200000000000005",
            "123",
            "UnionPay",
            "62000000",
            "620000XXXXXX0005",
        ),
        (
            unknown.as_str(),
            "123",
            "Unknown",
            "99999999",
            "999999XXXXXX9999",
        ),
    ];
    for (pan, code, scheme, iin, masked) in cases {
        let mut body = card(pan);
        body["security_code"] = json!(code);
        let token = tokenize(&app, &body).await;
        let expected_last_four = &pan[pan.len() - 4..];
        let masked = if scheme == "Unknown" {
            format!("999999XXXXXX{expected_last_four}")
        } else {
            masked.to_owned()
        };
        assert_eq!(token["scheme"], json!(scheme), "{pan}");
        assert_eq!(token["issuer_identification_number"], json!(iin), "{pan}");
        assert_eq!(token["masked_account_number"], json!(masked), "{pan}");
        assert_eq!(
            token["account_number_last_four"],
            json!(expected_last_four),
            "{pan}"
        );
        assert_eq!(token["account_number_length"], json!(pan.len()), "{pan}");
        assert_eq!(token["status"], json!("active"));
        assert_eq!(token["network_token_status"], json!("not_available"));
        assert_eq!(token["identity_and_verification"], json!("none"));
        assert_eq!(
            (token["expiry_month"].clone(), token["expiry_year"].clone()),
            (json!(4), json!(2031))
        );
        assert_eq!(token["cardholder_name"], json!("Jane Holder"));
        let id = token["id"].as_str().unwrap();
        assert_eq!(
            token["card_art_url"],
            json!(format!("{}/tokens/card-art/{id}", app.base))
        );
        assert!(
            !token.to_string().contains(pan),
            "the response must not carry the number"
        );
        assert_eq!(app.get(&format!("/tokens/{id}")).await.body, token);
    }
}

async fn each_bad_card_field_is_422_with_its_path(backend: Backend) {
    let app = spawn_app(backend).await;
    let with = |field: &str, value: Value| {
        let mut body = card("4111111111111111");
        body[field] = value;
        body
    };
    let mut missing = card("4111111111111111");
    missing.as_object_mut().unwrap().remove("account_number");
    let cases: Vec<(Value, &str, &str)> = vec![
        (missing, "$.account_number", "is required"),
        (
            with("account_number", json!("4111-1111-1111-1111")),
            "$.account_number",
            "must contain digits only",
        ),
        (
            with("account_number", json!("41111111111")),
            "$.account_number",
            "must be 12 to 19 digits long",
        ),
        (
            with("account_number", json!("41111111111111111111")),
            "$.account_number",
            "must be 12 to 19 digits long",
        ),
        (
            with("account_number", json!("4111111111111112")),
            "$.account_number",
            "is not a valid card number (Luhn check failed)",
        ),
        (
            with("account_number", json!(4111111111111111u64)),
            "$.account_number",
            "must be a string of digits",
        ),
        (
            with("expiry_month", json!(0)),
            "$.expiry_month",
            "must be from 1 to 12",
        ),
        (
            with("expiry_month", json!(13)),
            "$.expiry_month",
            "must be from 1 to 12",
        ),
        (
            with("expiry_month", json!("4")),
            "$.expiry_month",
            "must be an integer",
        ),
        (
            with("expiry_year", json!(1999)),
            "$.expiry_year",
            "must be 2000 or later",
        ),
        (
            with("expiry_year", json!(2020)),
            "$.expiry_year",
            "the card has expired (the end of its expiry month has passed)",
        ),
        (
            with("security_code", json!("12")),
            "$.security_code",
            "must be 3 or 4 digits",
        ),
        (
            with("security_code", json!("12345")),
            "$.security_code",
            "must be 3 or 4 digits",
        ),
        (
            with("security_code", json!("1234")),
            "$.security_code",
            "must be 3 digits (4 only for American Express)",
        ),
        (
            with("cardholder_name", json!("")),
            "$.cardholder_name",
            "must not be empty",
        ),
        (
            with("cardholder_name", json!("x".repeat(201))),
            "$.cardholder_name",
            "must be at most 200 characters",
        ),
        (with("cvv", json!("123")), "$.cvv", "is not a known field"),
    ];
    for (body, path, message) in cases {
        let answer = app.post_json("/cde-import", &body).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(answer.body, validation_body(&[(path, message)]), "{body}");
    }

    let mut amex = card("378282246310005");
    amex["security_code"] = json!("123");
    let answer = app.post_json("/cde-import", &amex).await;
    assert_eq!(
        answer.body,
        validation_body(&[("$.security_code", "must be 4 digits for American Express")])
    );

    let everything_wrong = json!({"account_number": "123", "expiry_month": 13, "expiry_year": 1999, "cardholder_name": ""});
    let answer = app.post_json("/cde-import", &everything_wrong).await;
    assert_eq!(
        answer.body,
        validation_body(&[
            ("$.account_number", "must be 12 to 19 digits long"),
            ("$.expiry_month", "must be from 1 to 12"),
            ("$.expiry_year", "must be 2000 or later"),
            ("$.cardholder_name", "must not be empty"),
        ])
    );
    let listed = app.get("/tokens").await;
    assert_eq!(
        listed.body["pagination"]["total_items"],
        json!(0),
        "no bad card became a token"
    );
}

async fn malformed_empty_and_non_object_bodies_are_422_at_the_root(backend: Backend) {
    let app = spawn_app(backend).await;
    let raw = |body: &'static str| {
        app.request(Method::POST, "/cde-import")
            .header("content-type", "application/json")
            .body(body)
    };
    let malformed = send(raw("{\"account_number\": ")).await;
    assert_eq!(malformed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        malformed.body,
        validation_body(&[("$", "the JSON document ends too early")])
    );
    let broken = send(raw("{\"account_number\" 4}")).await;
    assert_eq!(
        broken.body,
        validation_body(&[("$", "malformed JSON at line 1 column 19")])
    );
    let empty = send(raw("")).await;
    assert_eq!(
        empty.body,
        validation_body(&[("$", "the request body is empty; a JSON object is expected")])
    );
    let array = send(raw("[1, 2]")).await;
    assert_eq!(
        array.body,
        validation_body(&[("$", "must be a JSON object")])
    );

    let text = send(
        app.request(Method::POST, "/cde-import")
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .await;
    assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        text.body,
        error_body(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "The request body must be sent with Content-Type: application/json"
        )
    );
}

async fn an_account_without_the_cde_import_feature_gets_403(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, key) = app.create_account("plain", &[]).await;
    let answer = send(
        app.anonymous(Method::POST, "/cde-import")
            .header("X-API-Key", &key)
            .json(&card("4111111111111111")),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.body,
        error_body(
            403,
            "FORBIDDEN",
            "Not allowed to access this resource or feature"
        )
    );
}

async fn tokens_of_another_account_are_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = tokenize(&app, &card("4111111111111111")).await;
    let id = token["id"].as_str().unwrap();
    let (_, other) = app.create_account("other", &[Feature::CdeImport]).await;
    let not_found = error_body(404, "NOT_FOUND", "The requested resource was not found");
    for (method, path) in [
        (Method::GET, format!("/tokens/{id}")),
        (Method::DELETE, format!("/tokens/{id}")),
        (Method::POST, format!("/tokens/{id}/consume")),
        (Method::GET, format!("/tokens/card-art/{id}")),
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
    let list = send(
        app.anonymous(Method::GET, "/tokens")
            .header("X-API-Key", &other),
    )
    .await;
    assert_eq!(list.body["data"], json!([]));
    assert_eq!(
        app.get(&format!("/tokens/{id}")).await.status,
        StatusCode::OK,
        "the owner still sees it"
    );
}

async fn a_deleted_token_is_gone_for_good(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = tokenize(&app, &card("5555555555554444")).await;
    let id = token["id"].as_str().unwrap();
    let deleted = send(app.request(Method::DELETE, &format!("/tokens/{id}"))).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/tokens/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let again = send(app.request(Method::DELETE, &format!("/tokens/{id}"))).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let uuid = id.parse().unwrap();
    assert!(
        app.store()
            .get_token(app_account(&app).await, uuid)
            .await
            .unwrap()
            .is_none(),
        "the sealed card is gone"
    );
    let audit = app
        .store()
        .list_audit_events(app_account(&app).await, 10)
        .await
        .unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action == "token.delete" && e.target.as_deref() == Some(id)));
}

pub async fn app_account(app: &TestApp) -> uuid::Uuid {
    app.get("/account").await.body["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn consume_drops_the_security_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = card("4111111111111111");
    body["security_code"] = json!("737");
    let token = tokenize(&app, &body).await;
    let id: uuid::Uuid = token["id"].as_str().unwrap().parse().unwrap();
    let cvc = &app.server.as_ref().unwrap().state().tokens.cvc;
    assert!(cvc.holds(id).await);
    let consumed = send(app.request(Method::POST, &format!("/tokens/{id}/consume"))).await;
    assert_eq!(consumed.status, StatusCode::NO_CONTENT);
    assert!(!cvc.holds(id).await);
    let again = send(app.request(Method::POST, &format!("/tokens/{id}/consume"))).await;
    assert_eq!(
        again.status,
        StatusCode::NO_CONTENT,
        "consuming twice is harmless"
    );
    let unknown = send(app.request(
        Method::POST,
        &format!("/tokens/{}/consume", uuid::Uuid::new_v4()),
    ))
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let mut body = card("4111111111111111");
    body["security_code"] = json!("737");
    let token = tokenize(&app, &body).await;
    let id: uuid::Uuid = token["id"].as_str().unwrap().parse().unwrap();
    send(app.request(Method::DELETE, &format!("/tokens/{id}"))).await;
    assert!(!cvc.holds(id).await, "deleting a token drops its code");
}

async fn card_art_shows_the_scheme_and_only_the_last_four(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = tokenize(&app, &card("378282246310005")).await;
    let response = app
        .request(
            Method::GET,
            &format!("/tokens/card-art/{}", token["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let svg = response.text().await.unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("American Express") && svg.contains("0005"),
        "{svg}"
    );
    assert!(!svg.contains("378282"), "{svg}");
}

async fn tokens_list_with_sort_dates_and_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ids = Vec::new();
    for pan in ["4111111111111111", "5555555555554444", "6011111111111117"] {
        ids.push(
            tokenize(&app, &card(pan)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let newest_first = app.get("/tokens").await;
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
        .get("/tokens?sort=created_at%2Basc&limit=2&page=2")
        .await;
    assert_eq!(oldest_first.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(oldest_first.body["data"][0]["id"], json!(ids[2]));
    assert_eq!(
        oldest_first.body["pagination"],
        json!({"current_page": 2, "page_size": 2, "total_items": 3, "total_pages": 2})
    );

    let past_the_end = app.get("/tokens?limit=2&page=9").await;
    assert_eq!(past_the_end.body["data"], json!([]));
    assert_eq!(past_the_end.body["pagination"]["total_items"], json!(3));

    let today = chrono::Utc::now().date_naive();
    let inclusive = app.get(&format!("/tokens?from={today}&to={today}")).await;
    assert_eq!(
        inclusive.body["pagination"]["total_items"],
        json!(3),
        "both bounds are inclusive"
    );
    let yesterday = today.pred_opt().unwrap();
    let before = app.get(&format!("/tokens?to={yesterday}")).await;
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

on_both_backends!(two_nodes_share_security_codes_through_redis);

/// Node A tokenizes with a security code; node B, on the same database and Redis, sees it and consumes
/// it; Redis holds the code only sealed.
async fn two_nodes_share_security_codes_through_redis(backend: Backend) {
    let Some(redis_url) = std::env::var("STRONGROOM_TEST_REDIS_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!("skipped: set STRONGROOM_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379) to run the Redis test");
        return;
    };
    let app =
        crate::helpers::spawn_app_with(backend, |c| c.redis_url = Some(redis_url.clone())).await;
    let mut config = app.db.config();
    config.redis_url = Some(redis_url.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node_b = strongroom::server::start(config, listener).await.unwrap();
    let base_b = format!("http://{}", node_b.local_addr());

    let mut body = card("4111111111111111");
    body["security_code"] = json!("737");
    let token = tokenize(&app, &body).await;
    let id: uuid::Uuid = token["id"].as_str().unwrap().parse().unwrap();
    assert!(
        node_b.state().tokens.cvc.holds(id).await,
        "node B sees the code node A cached"
    );

    let mut redis = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(format!("strongroom:cvc:{id}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        !stored.is_empty() && !stored.windows(3).any(|w| w == b"737"),
        "Redis holds the code sealed"
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("strongroom:cvc:{id}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((1..=900).contains(&ttl), "{ttl}");

    let consumed = send(
        app.client
            .post(format!("{base_b}/tokens/{id}/consume"))
            .header("X-API-Key", &app.api_key),
    )
    .await;
    assert_eq!(consumed.status, StatusCode::NO_CONTENT);
    assert!(
        !app.server
            .as_ref()
            .unwrap()
            .state()
            .tokens
            .cvc
            .holds(id)
            .await,
        "gone for node A too"
    );
    node_b.shutdown().await.unwrap();
}
