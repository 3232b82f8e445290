//! `POST /forward` refusals, each with its exact status and body: bad headers, unknown placeholders,
//! tokens that are not the caller's, destinations off the list or at a refused address, a security code
//! gone, a destination down or too slow, a body too large.

use std::time::Duration;

use reqwest::StatusCode;
use uuid::Uuid;

use crate::forward::{allow, forward, token};
use crate::forward_receiver::Destination;
use crate::support::on_both_backends;
use crate::support::{error_body, send, spawn_app, spawn_app_with, validation_body, Backend};

on_both_backends!(
    bad_headers_are_422_with_the_header_named,
    unknown_placeholders_filters_and_missing_fields_are_422_at_the_body,
    a_token_of_another_account_unknown_or_deleted_is_404,
    a_destination_off_the_allow_list_is_403_and_never_called,
    a_metadata_address_is_refused_even_when_listed,
    a_security_code_no_longer_cached_is_409,
    a_destination_that_is_down_is_502_and_one_too_slow_is_504,
    a_body_over_the_limit_is_422,
);

fn not_found() -> serde_json::Value {
    error_body(404, "NOT_FOUND", "The requested resource was not found")
}

async fn bad_headers_are_422_with_the_header_named(backend: Backend) {
    let app = spawn_app(backend).await;
    let answer = send(app.request(reqwest::Method::POST, "/forward").body("x")).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer.body,
        validation_body(&[
            ("header.x-hellgate-token", "is required"),
            ("header.x-destination-url", "is required"),
        ])
    );
    let token = Uuid::new_v4();
    for (url, message) in [
        (
            "http://api.example.com/v1/charges",
            "must be https:// (http:// only for a loopback host)",
        ),
        (
            "http://169.254.169.254/latest/meta-data",
            "must be https:// (http:// only for a loopback host)",
        ),
        (
            "ftp://api.example.com/",
            "must start with http:// or https://",
        ),
        (
            "https://user:pw@api.example.com/",
            "must not carry credentials",
        ),
    ] {
        let answer = send(forward(&app, token, url).body("x")).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        assert_eq!(
            answer.body,
            validation_body(&[("header.x-destination-url", message)]),
            "{url}"
        );
    }
    let answer = send(
        app.request(reqwest::Method::POST, "/forward")
            .header("x-hellgate-token", "not-a-uuid")
            .header("x-destination-url", "https://api.example.com/")
            .body("x"),
    )
    .await;
    assert_eq!(
        answer.body,
        validation_body(&[("header.x-hellgate-token", "must be a UUID")])
    );
}

async fn unknown_placeholders_filters_and_missing_fields_are_422_at_the_body(backend: Backend) {
    let app = spawn_app(backend).await;
    let destination = Destination::start().await;
    allow(&app, &destination.url("/")).await;
    let token = token(&app, None, Some("737")).await;
    for (content_type, body, message) in [
        (
            "application/json",
            r#"{"cvv": "{{ cvv }}"}"#,
            "unknown placeholder `{{ cvv }}`",
        ),
        (
            "text/plain",
            "{{ account_number | upper }}",
            "unknown filter `upper` in `{{ account_number | upper }}`",
        ),
        (
            "application/json",
            r#"{"n": {{ account_number }}}"#,
            "`{{ account_number }}` must sit inside a JSON string (\"{{ account_number }}\")",
        ),
        (
            "application/json",
            r#"{"n": "{{ cardholder_name }}"}"#,
            "`{{ cardholder_name }}`: the token has no cardholder name",
        ),
    ] {
        let answer = send(
            forward(&app, token, &destination.url("/pay"))
                .header("content-type", content_type)
                .body(body),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(answer.body, validation_body(&[("$", message)]), "{body}");
    }
    assert!(destination.received().is_empty());
    // The refusals did not use up the security code.
    let answer =
        send(forward(&app, token, &destination.url("/pay")).body("{{ security_code }}")).await;
    assert_eq!(answer.status, StatusCode::OK);
}

async fn a_token_of_another_account_unknown_or_deleted_is_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let destination = Destination::start().await;
    allow(&app, &destination.url("/")).await;
    let mine = token(&app, None, None).await;
    let (_, other_key) = app
        .create_account("other", &[strongroom::store::Feature::CdeImport])
        .await;
    let answer = send(
        app.anonymous(reqwest::Method::POST, "/forward")
            .header("x-api-key", &other_key)
            .header("x-hellgate-token", mine.to_string())
            .header("x-destination-url", destination.url("/pay"))
            .body("{{ account_number }}"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body, not_found());

    let answer = send(forward(&app, Uuid::new_v4(), &destination.url("/pay")).body("x")).await;
    assert_eq!(
        (answer.status, answer.body),
        (StatusCode::NOT_FOUND, not_found())
    );

    let deleted = app.request(reqwest::Method::DELETE, &format!("/tokens/{mine}"));
    assert_eq!(send(deleted).await.status, StatusCode::NO_CONTENT);
    let answer = send(forward(&app, mine, &destination.url("/pay")).body("x")).await;
    assert_eq!(
        (answer.status, answer.body),
        (StatusCode::NOT_FOUND, not_found())
    );
    assert!(destination.received().is_empty());
}

async fn a_destination_off_the_allow_list_is_403_and_never_called(backend: Backend) {
    let app = spawn_app(backend).await;
    let destination = Destination::start().await;
    let other = Destination::start().await;
    allow(&app, &destination.url("/v1")).await;
    let token = token(&app, None, None).await;
    let refused = error_body(
        403,
        "FORBIDDEN",
        "The destination is not on this account's forwarding allow-list",
    );
    for url in [
        destination.url("/v2/charges"),
        destination.url("/v10"),
        destination.url("/v1/../admin"),
        other.url("/v1/charges"),
        format!("http://localhost:{}/v1/charges", destination.addr.port()),
    ] {
        let answer = send(forward(&app, token, &url).body("{{ account_number }}")).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{url}");
        assert_eq!(answer.body, refused, "{url}");
    }
    assert!(destination.received().is_empty() && other.received().is_empty());
    let audit = app
        .store()
        .list_audit_events(app.account_id().await, 100)
        .await
        .unwrap();
    assert!(audit
        .iter()
        .any(|e| e.action == "token.forward" && e.outcome == "refused: not allow-listed"));
}

async fn a_metadata_address_is_refused_even_when_listed(backend: Backend) {
    let app = spawn_app(backend).await;
    allow(&app, "https://169.254.169.254/").await;
    allow(&app, "https://[fd00:ec2::254]/").await;
    let token = token(&app, None, None).await;
    for url in [
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/latest/meta-data/",
    ] {
        let answer = send(forward(&app, token, url).body("{{ account_number }}")).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{url}");
        assert_eq!(
            answer.body,
            error_body(
                403,
                "FORBIDDEN",
                "The destination's address is not allowed (link-local or cloud metadata)"
            )
        );
    }
}

async fn a_security_code_no_longer_cached_is_409(backend: Backend) {
    let app = spawn_app(backend).await;
    let destination = Destination::start().await;
    allow(&app, &destination.url("/")).await;
    let gone = error_body(
        409,
        "CONFLICT",
        "The security code of this token is no longer cached (it expired, was consumed or was used)",
    );
    let without = token(&app, None, None).await;
    let answer =
        send(forward(&app, without, &destination.url("/pay")).body("{{ security_code }}")).await;
    assert_eq!(
        (answer.status, answer.body),
        (StatusCode::CONFLICT, gone.clone())
    );

    let with = token(&app, None, Some("737")).await;
    let answer =
        send(forward(&app, with, &destination.url("/pay")).body("{{security_code}}")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(destination.last().body, "737");
    // Used once, then gone.
    let answer =
        send(forward(&app, with, &destination.url("/pay")).body("{{security_code}}")).await;
    assert_eq!((answer.status, answer.body), (StatusCode::CONFLICT, gone));
    assert_eq!(destination.received().len(), 1);
}

async fn a_destination_that_is_down_is_502_and_one_too_slow_is_504(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.forward_timeout = Duration::from_secs(1)).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let down = format!("http://127.0.0.1:{closed}/pay");
    allow(&app, &down).await;
    let destination = Destination::start().await;
    allow(&app, &destination.url("/v1/")).await;
    let token = token(&app, None, None).await;

    let answer = send(forward(&app, token, &down).body("{{ account_number }}")).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        answer.body,
        error_body(502, "BAD_GATEWAY", "The destination could not be reached")
    );

    let started = std::time::Instant::now();
    let answer = send(forward(&app, token, &destination.url("/v1/slow")).body("x")).await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        answer.body,
        error_body(
            504,
            "GATEWAY_TIMEOUT",
            "The destination did not answer in time"
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the deadline held"
    );
}

async fn a_body_over_the_limit_is_422(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.max_body_bytes = 2048).await;
    let destination = Destination::start().await;
    allow(&app, &destination.url("/")).await;
    let token = token(&app, None, None).await;
    let answer = send(forward(&app, token, &destination.url("/pay")).body("x".repeat(3000))).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer.body,
        validation_body(&[("$", "the body is larger than the limit of 2048 bytes")])
    );
    // The same answer when the idempotency layer reads the body first.
    let keyed = forward(&app, token, &destination.url("/pay"))
        .header("x-idempotency-key", "too-large-1")
        .body("x".repeat(3000));
    let answer = send(keyed).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer.body,
        validation_body(&[("$", "the body is larger than the limit of 2048 bytes")])
    );
    // Under the limit as sent, over it once filled (a long name replaces a short placeholder).
    let named = crate::forward::token(&app, Some(&"N".repeat(200)), None).await;
    let body = format!("{}{{{{ cardholder_name }}}}", "x".repeat(1900));
    let answer = send(forward(&app, named, &destination.url("/pay")).body(body)).await;
    assert_eq!(
        answer.body,
        validation_body(&[("$", "the body is larger than the limit of 2048 bytes")])
    );
    assert!(destination.received().is_empty());
}
