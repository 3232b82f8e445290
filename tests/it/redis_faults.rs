//! A Redis that stops answering (paused, as by SIGSTOP) behind a relay the test controls: a
//! tokenization that carries a security code answers 503 quickly and makes no token, a forward that
//! needs the code answers 503, one without a code is served, and all is well once Redis answers again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{
    card, error_body, on_both_backends, redis_url, send, spawn_app_with, Backend,
};

on_both_backends!(a_paused_redis_fails_tokenizations_with_a_code_fast_and_makes_no_token);

/// Relays TCP connections to `upstream`, holding every byte while paused.
struct PausableRelay {
    url: String,
    paused: Arc<AtomicBool>,
}

impl PausableRelay {
    async fn start(upstream: &str) -> Self {
        let target = upstream
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let paused = Arc::new(AtomicBool::new(false));
        let flag = paused.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, flag.clone()));
                tokio::spawn(pipe(sr, cw, flag.clone()));
            }
        });
        Self { url, paused }
    }

    fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    paused: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn a_paused_redis_fails_tokenizations_with_a_code_fast_and_makes_no_token(backend: Backend) {
    let Some(redis_url) = redis_url() else {
        return;
    };
    let relay = PausableRelay::start(&redis_url).await;
    let app = spawn_app_with(backend, |c| c.redis_url = Some(relay.url.clone())).await;
    let mut with_code = card("4111111111111111");
    with_code["security_code"] = json!("737");
    let first = app.new_token(&with_code).await;
    let account = app.account_id().await;
    strongroom::domain::destinations::add_destination(
        app.store(),
        account,
        "http://127.0.0.1:9/v1/",
        "test",
    )
    .await
    .unwrap();

    relay.pause(true);
    // A forward that needs the code cannot tell whether it is cached: 503, not "gone" (409).
    let started = Instant::now();
    let answer = send(
        app.request(Method::POST, "/forward")
            .header("x-hellgate-token", first["id"].as_str().unwrap())
            .header("x-destination-url", "http://127.0.0.1:9/v1/pay")
            .header("content-type", "application/json")
            .body(r#"{"cvc": "{{ security_code }}"}"#),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(2));

    for _ in 0..3 {
        let started = Instant::now();
        let answer = app.tokenize(&with_code).await;
        let took = started.elapsed();
        assert_eq!(
            answer.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.body
        );
        assert_eq!(
            answer.body,
            error_body(503, "UNAVAILABLE", "The service is temporarily unavailable")
        );
        assert_eq!(answer.header("retry-after"), Some("1"));
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    // A card without a code needs no cache.
    app.new_token(&card("5555555555554444")).await;
    assert_eq!(app.all_tokens().await.len(), 2, "no token without its code");

    relay.pause(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = app.tokenize(&with_code).await;
        if answer.status == StatusCode::OK {
            let id: uuid::Uuid = answer.body["id"].as_str().unwrap().parse().unwrap();
            assert!(app.server().state().tokens.cvc.holds(id).await);
            break;
        }
        assert!(Instant::now() < deadline, "Redis was not used again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
