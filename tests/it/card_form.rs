//! The hosted card form's pages (`/web/{version}/iframe/`): their Content-Security-Policy and who may
//! frame them; and HTTPS, which the SDK needs for its frames, with the listener's limits kept.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use strongroom::config::TlsFiles;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{error_body, on_both_backends, send, spawn_app, spawn_app_with, Backend};

on_both_backends!(
    the_pages_carry_a_strict_policy_framed_only_by_the_allowed_origins,
    https_is_served_with_a_certificate_and_the_connection_cap_still_holds,
);

async fn policy_of(app: &crate::support::TestApp, query: &str) -> String {
    let answer = send(app.anonymous(Method::GET, &format!("/web/v3.11.0/iframe/?{query}"))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    answer.header("content-security-policy").unwrap().to_owned()
}

async fn the_pages_carry_a_strict_policy_framed_only_by_the_allowed_origins(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.account_id().await;
    for origin in ["https://shop.example", "https://pay.shop.example:8443"] {
        strongroom::domain::sessions::add_origin(app.store(), account, origin, "test")
            .await
            .unwrap();
    }
    let field = policy_of(&app, "field=cardNumber&origin=https://shop.example").await;
    assert_eq!(
        field,
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'none'; \
         img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors https://shop.example"
    );
    let stranger = policy_of(&app, "field=cardNumber&origin=https://evil.example").await;
    assert!(stranger.ends_with("frame-ancestors 'none'"), "{stranger}");

    let session = app.post_empty("/tokens/session").await.ok_body()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let coordinator = policy_of(
        &app,
        &format!(
            "type=coordinator&sessionId={session}&apiBaseUrl=x&origin=https%3A%2F%2Fevil.example"
        ),
    )
    .await;
    assert!(coordinator.contains("connect-src 'self'"), "{coordinator}");
    assert!(
        coordinator.ends_with("frame-ancestors https://shop.example https://pay.shop.example:8443"),
        "{coordinator}"
    );

    let script = app
        .anonymous(Method::GET, "/web/v3.11.0/iframe/iframe.js")
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(script.text().await.unwrap().contains("coordinator:ready"));
    let unknown = send(app.anonymous(Method::GET, "/web/latest/iframe/")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.body,
        error_body(404, "NOT_FOUND", "The requested resource was not found")
    );
}

/// A self-signed certificate for 127.0.0.1, made with the openssl command line.
fn self_signed(dir: &Path) -> TlsFiles {
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key_file)
        .arg("-out")
        .arg(&cert_file)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    TlsFiles {
        cert_file,
        key_file,
    }
}

async fn https_is_served_with_a_certificate_and_the_connection_cap_still_holds(backend: Backend) {
    if !crate::support::tool_available("openssl", "openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = self_signed(dir.path());
    let app = spawn_app_with(backend, |c| {
        c.tls = Some(files);
        c.http.max_connections = 1;
        c.http.header_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = app.server().local_addr();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let health = client
        .get(format!("https://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.version(), reqwest::Version::HTTP_11);
    // Links name https:// now.
    let token = client
        .post(format!("https://{addr}/cde-import"))
        .header("x-api-key", &app.api_key)
        .json(&crate::support::card("4242424242424242"))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = token.json().await.unwrap();
    assert!(
        body["card_art_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("https://{addr}/")),
        "{body}"
    );
    // Plain HTTP on the TLS port is not served.
    assert!(reqwest::get(format!("http://{addr}/health")).await.is_err());

    // A client that never starts its handshake holds the one slot until the header timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waited = client
        .get(format!("https://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(waited.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let _ = silent.shutdown().await;
}
