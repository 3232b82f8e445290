//! `POST /forward` against a real destination on port 0: bodies filled in every syntax, headers and
//! answers relayed, idempotent retries answered without a second call, and no card data left behind.

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::forward_receiver::Destination;
use crate::support::on_both_backends;
use crate::support::{send, spawn_app, Backend, ServerProcess, TestApp, TestDb};

on_both_backends!(
    a_json_body_is_filled_escaped_and_unwrapped,
    form_xml_and_text_bodies_are_filled_in_their_own_syntax,
    reserved_headers_stay_behind_and_the_answer_comes_back_unchanged_but_masked,
    a_redirect_and_a_refusal_of_the_destination_are_relayed_not_followed,
    an_idempotent_retry_replays_the_sealed_answer_without_calling_again,
    destinations_are_managed_from_the_command_line,
    no_card_data_reaches_the_logs_or_the_database_after_forwards,
    the_openapi_document_describes_the_route,
);

pub const PAN: &str = "4111111111111111";
pub const MASKED: &str = "411111XXXXXX1111";
pub const NAME: &str = "Jane \"JJ\" O'Hara";

/// A token of the default account; `name` and `code` optional.
pub async fn token(app: &TestApp, name: Option<&str>, code: Option<&str>) -> Uuid {
    let mut body = json!({"account_number": PAN, "expiry_month": 4, "expiry_year": 2031});
    if let Some(name) = name {
        body["cardholder_name"] = json!(name);
    }
    if let Some(code) = code {
        body["security_code"] = json!(code);
    }
    let answer = app.post_json("/cde-import", &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["id"].as_str().unwrap().parse().unwrap()
}

/// Allow-lists `url` for the default account.
pub async fn allow(app: &TestApp, url: &str) {
    let account = app.account_id().await;
    strongroom::domain::destinations::add_destination(app.store(), account, url, "test")
        .await
        .unwrap();
}

/// `POST /forward` of `token` to `url` with the default key.
pub fn forward(app: &TestApp, token: Uuid, url: &str) -> RequestBuilder {
    app.request(Method::POST, "/forward")
        .header("x-hellgate-token", token.to_string())
        .header("x-destination-url", url)
}

async fn a_json_body_is_filled_escaped_and_unwrapped(backend: Backend) {
    let app = spawn_app(backend).await;
    let destination = Destination::start().await;
    allow(&app, &destination.url("/v1/")).await;
    let token = token(&app, Some(NAME), Some("737")).await;

    let body = r#"{"card": {"number": "{{ account_number }}", "name": "{{cardholder_name}}", "cvc": "{{ security_code }}", "expiry": "{{ expiration_month }}/{{expiration_year}}"}, "month": "{{ expiration_month | unwrap }}", "year": "{{expiration_year|unwrap}}", "number": "{{ account_number | unwrap }}", "amount": 1000}"#;
    let answer = send(
        forward(&app, token, &destination.url("/v1/charges"))
            .header("content-type", "application/json")
            .body(body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, json!({"status": "approved"}));

    let got = destination.last();
    assert_eq!(got.method, Method::POST);
    assert_eq!(got.uri, "/v1/charges");
    assert_eq!(got.header("content-type"), Some("application/json"));
    let sent: Value = serde_json::from_str(&got.body).expect("the filled body is JSON");
    assert_eq!(
        sent,
        json!({
            "card": {"number": PAN, "name": NAME, "cvc": "737", "expiry": "04/2031"},
            "month": 4, "year": 2031, "number": 4111111111111111u64, "amount": 1000
        })
    );
    assert!(
        got.body.contains(r#""name": "Jane \"JJ\" O'Hara""#),
        "{}",
        got.body
    );
    assert!(
        got.body.contains(r#""month": 4, "year": 2031"#),
        "{}",
        got.body
    );
}

async fn form_xml_and_text_bodies_are_filled_in_their_own_syntax(backend: Backend) {
    let app = spawn_app(backend).await;
    let destination = Destination::start().await;
    allow(&app, &destination.url("/v1")).await;
    let token = token(&app, Some(NAME), None).await;
    let cases = [
        (
            "application/x-www-form-urlencoded",
            "amount=1000&card[number]={{account_number}}&card[name]={{ cardholder_name }}&card[exp_month]={{ expiration_month }}&card[exp_year]={{ expiration_year | unwrap }}",
            "amount=1000&card[number]=4111111111111111&card[name]=Jane+%22JJ%22+O%27Hara&card[exp_month]=04&card[exp_year]=2031",
        ),
        (
            "application/xml; charset=utf-8",
            "<payment><card number=\"{{ account_number }}\"><holder>{{ cardholder_name }}</holder><expiry>{{ expiration_month }}{{ expiration_year }}</expiry></card></payment>",
            "<payment><card number=\"4111111111111111\"><holder>Jane &quot;JJ&quot; O&apos;Hara</holder><expiry>042031</expiry></card></payment>",
        ),
        (
            "text/plain",
            "PAN={{ account_number }};NAME={{ cardholder_name }};EXP={{ expiration_month | unwrap }}/{{ expiration_year }}",
            "PAN=4111111111111111;NAME=Jane \"JJ\" O'Hara;EXP=4/2031",
        ),
    ];
    for (content_type, body, expected) in cases {
        let answer = send(
            forward(&app, token, &destination.url("/v1/charges?mode=test"))
                .header("content-type", content_type)
                .body(body),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{content_type}: {}",
            answer.body
        );
        let got = destination.last();
        assert_eq!(got.uri, "/v1/charges?mode=test");
        assert_eq!(got.header("content-type"), Some(content_type));
        assert_eq!(got.body, expected, "{content_type}");
    }
}

async fn reserved_headers_stay_behind_and_the_answer_comes_back_unchanged_but_masked(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let destination = Destination::start().await;
    allow(&app, &destination.url("/v1/")).await;
    let token = token(&app, None, None).await;

    let answer = send(
        forward(&app, token, &destination.url("/v1/echo"))
            .header("content-type", "application/json")
            .header("x-hellgate-version", "2.0")
            .header("x-request-id", "merchant-req-1")
            .header("authorization", "Bearer processor-key")
            .header("x-merchant-trace", "trace-7")
            .header("proxy-authorization", "Basic c2VjcmV0")
            .header("te", "trailers")
            .body(r#"{"number": "{{ account_number }}", "spaced": "4111 1111 1111 1111"}"#),
    )
    .await;

    let got = destination.last();
    for reserved in [
        "x-api-key",
        "x-hellgate-token",
        "x-destination-url",
        "x-hellgate-version",
        "x-idempotency-key",
        "proxy-authorization",
        "te",
    ] {
        assert_eq!(got.header(reserved), None, "{reserved} was forwarded");
    }
    assert_eq!(got.header("authorization"), Some("Bearer processor-key"));
    assert_eq!(got.header("x-merchant-trace"), Some("trace-7"));
    assert_eq!(got.header("x-request-id"), Some("merchant-req-1"));
    assert_eq!(
        got.header("host"),
        Some(destination.addr.to_string().as_str())
    );
    let all = format!("{:?}", got.headers);
    assert!(
        !all.contains(&app.api_key),
        "the API key reached the destination"
    );

    // The destination's own status, headers and body, with the number it echoed masked.
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.header("x-processor-ref"), Some("ref-42"));
    assert_eq!(answer.header("set-cookie"), Some("session=abc; Path=/"));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("x-hellgate-version"), Some("2.0"));
    assert_eq!(answer.header("x-request-id"), Some("merchant-req-1"));
    assert_eq!(
        answer.body,
        json!({"number": MASKED, "spaced": MASKED}),
        "the destination got the number, the merchant gets the mask"
    );
    assert!(got.body.contains(PAN));
}

async fn a_redirect_and_a_refusal_of_the_destination_are_relayed_not_followed(backend: Backend) {
    let app = spawn_app(backend).await;
    let destination = Destination::start().await;
    allow(&app, &destination.url("/v1/")).await;
    let token = token(&app, None, None).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let response = client
        .post(format!("{}/forward", app.base))
        .header("x-api-key", &app.api_key)
        .header("x-hellgate-token", token.to_string())
        .header("x-destination-url", destination.url("/v1/redirect"))
        .body("n={{ account_number }}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers().get("location").unwrap(), "/v1/elsewhere");
    assert_eq!(response.text().await.unwrap(), "moved");
    assert_eq!(
        destination.received().len(),
        1,
        "the redirect was not followed"
    );

    let answer = send(forward(&app, token, &destination.url("/v1/declined")).body("{}")).await;
    assert_eq!(answer.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(answer.body, json!({"status": "declined"}));
}

async fn an_idempotent_retry_replays_the_sealed_answer_without_calling_again(backend: Backend) {
    let app = spawn_app(backend).await;
    let destination = Destination::start().await;
    allow(&app, &destination.url("/v1/")).await;
    let token = token(&app, Some("Jane Holder"), Some("737")).await;
    let body = r#"{"number": "{{ account_number }}", "cvc": "{{ security_code }}"}"#;
    let request = || {
        forward(&app, token, &destination.url("/v1/echo"))
            .header("content-type", "application/json")
            .header("x-idempotency-key", "charge-1")
            .body(body)
    };

    let first = send(request()).await;
    let again = send(request()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body, json!({"number": MASKED, "cvc": "737"}));
    assert_eq!(again.status, first.status);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("x-processor-ref"), Some("ref-42"));
    assert_eq!(again.header("content-type"), Some("application/json"));
    assert_eq!(again.header("x-idempotent-replayed"), Some("true"));
    assert_eq!(
        destination.received().len(),
        1,
        "the destination was called once"
    );

    // Kept sealed: the stored answer shows neither the code nor anything else of it.
    let account = app.account_id().await;
    let record = app
        .store()
        .get_idempotency_record(account, "charge-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.response_status, Some(201));
    let stored = record.response_body.unwrap();
    for clear in ["737", MASKED, "ref-42"] {
        assert!(
            !stored.windows(clear.len()).any(|w| w == clear.as_bytes()),
            "{clear} stored in clear"
        );
    }

    // The same key sent elsewhere is another request.
    let elsewhere = send(
        forward(&app, token, &destination.url("/v1/other"))
            .header("x-idempotency-key", "charge-1")
            .body(body),
    )
    .await;
    assert_eq!(elsewhere.status, StatusCode::CONFLICT);
}

async fn destinations_are_managed_from_the_command_line(backend: Backend) {
    let app = spawn_app(backend).await;
    let destination = Destination::start().await;
    let account = app.account_id().await.to_string();
    let token = token(&app, None, None).await;
    let url = destination.url("/v1/");

    let (ok, stdout, stderr) = app.cli(&[
        "destination",
        "add",
        "--account",
        &account,
        "--url",
        &url,
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let added: Value = serde_json::from_str(stdout.trim()).unwrap();
    let mut keys: Vec<_> = added.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["account_id", "id", "url"]);
    assert_eq!(added["account_id"], account.as_str());
    assert_eq!(added["url"], url.as_str());
    let id = added["id"].as_str().unwrap().to_owned();

    let (ok, stdout, _) = app.cli(&["destination", "list", "--account", &account, "--json"]);
    assert!(ok);
    let listed: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());

    let (ok, _, stderr) = app.cli(&[
        "destination",
        "add",
        "--account",
        &account,
        "--url",
        "http://example.com/",
        "--json",
    ]);
    assert!(!ok);
    assert!(stderr.contains("--url: must be https://"), "{stderr}");

    let answer =
        send(forward(&app, token, &destination.url("/v1/x")).body("{{ account_number }}")).await;
    assert_eq!(answer.status, StatusCode::OK);

    let (ok, stdout, _) = app.cli(&["destination", "remove", &id, "--json"]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(stdout.trim()).unwrap(),
        json!({"id": id, "removed": true})
    );
    // Within the auth cache window, every node refuses it.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let answer =
        send(forward(&app, token, &destination.url("/v1/x")).body("{{ account_number }}")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let (ok, stdout, _) = app.cli(&["destination", "list", "--json"]);
    assert!(ok);
    assert_eq!(stdout.trim(), "[]");
}

async fn no_card_data_reaches_the_logs_or_the_database_after_forwards(backend: Backend) {
    let db = TestDb::new(backend).await;
    let destination = Destination::start().await;
    let server = ServerProcess::start(&db, "forward");
    let key = std::fs::read_to_string(&server.stdout).unwrap();
    let key = key
        .split_whitespace()
        .find(|w| w.starts_with("sr_"))
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();
    let account: Value = client
        .get(format!("{}/account", server.base))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args([
            "destination",
            "add",
            "--account",
            account["id"].as_str().unwrap(),
        ])
        .args(["--url", &destination.url("/v1/"), "--json"])
        .env("STRONGROOM_DATA_DIR", db.dir.path())
        .env("STRONGROOM_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(output.status.success());

    let pans = ["4111111111111111", "5555555555554444"];
    for (n, pan) in pans.iter().enumerate() {
        let created: Value = client
            .post(format!("{}/cde-import", server.base))
            .header("x-api-key", &key)
            .json(&json!({"account_number": pan, "expiry_month": 4, "expiry_year": 2031, "security_code": "482"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let response = client
            .post(format!("{}/forward", server.base))
            .header("x-api-key", &key)
            .header("x-hellgate-token", created["id"].as_str().unwrap())
            .header("x-destination-url", destination.url("/v1/echo"))
            .header("x-idempotency-key", format!("forward-{n}"))
            .header("content-type", "application/json")
            .body(r#"{"n": "{{ account_number }}", "c": "{{ security_code }}"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(!response.text().await.unwrap().contains(pan));
    }
    assert_eq!(destination.received().len(), 2);
    server.let_log_settle();
    let (out, log) = server.kill_9();
    assert!(log.contains("TRACE"), "the server logged at trace level");
    assert!(log.contains(" forward "), "a forward line is logged");

    let mut places = vec![
        ("log".to_owned(), log.into_bytes()),
        ("stdout".to_owned(), out.into_bytes()),
    ];
    database_places(backend, &db, &mut places).await;
    let mut secrets: Vec<String> = pans
        .iter()
        .flat_map(|p| [p.to_string(), hex::encode(p)])
        .collect();
    secrets.push("\"482\"".into());
    for (place, bytes) in &places {
        for secret in &secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} found in {place}"
            );
        }
    }
}

/// The database as it lies on disk (SQLite files) or as a dump would show it (every PostgreSQL row as
/// text), the same places the vault test scans.
async fn database_places(backend: Backend, db: &TestDb, places: &mut Vec<(String, Vec<u8>)>) {
    match backend {
        Backend::Sqlite => {
            for suffix in ["", "-wal"] {
                let path = db.dir.path().join(format!("strongroom.db{suffix}"));
                places.push((
                    path.display().to_string(),
                    std::fs::read(&path).unwrap_or_default(),
                ));
            }
        }
        Backend::Postgres => {
            use sqlx::{Connection, Row};
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let mut dump = String::new();
            for table in tables {
                for row in sqlx::query(&format!("SELECT t::text FROM {table} t"))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap()
                {
                    dump.push_str(&row.get::<String, _>(0));
                    dump.push('\n');
                }
            }
            assert!(dump.contains("token.forward"), "the forwards were audited");
            places.push(("the PostgreSQL tables".into(), dump.into_bytes()));
        }
    }
}

async fn the_openapi_document_describes_the_route(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = app.get("/openapi.json").await.body;
    let route = &doc["paths"]["/forward"]["post"];
    let params: Vec<&str> = route["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(params.contains(&"x-hellgate-token") && params.contains(&"x-destination-url"));
    for status in ["200", "401", "403", "404", "409", "422", "502", "504"] {
        assert!(
            route["responses"][status].is_object(),
            "{status} is documented"
        );
    }
}
