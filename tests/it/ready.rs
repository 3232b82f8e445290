//! `/ready` names the dependency that is down: the test runs its own Redis, stops it (503 naming Redis)
//! and starts it again on the same port (200). The key provider is checked as well: a key file that
//! goes away makes the node unready. `/health` stays 200 throughout.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::support::{error_body, on_both_backends, send, spawn_app_with, Backend, TestApp};

on_both_backends!(ready_names_redis_while_it_is_down_and_recovers_when_it_returns);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Redis of the test's own, without persistence, killed when dropped.
struct OwnRedis(Child);

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn ready(app: &TestApp) -> crate::support::Answer {
    send(app.anonymous(Method::GET, "/ready")).await
}

/// Polls `/ready` until it answers `status` (the connection manager reconnects on its own schedule).
async fn ready_becomes(app: &TestApp, status: StatusCode) -> crate::support::Answer {
    let started = Instant::now();
    loop {
        let answer = ready(app).await;
        if answer.status == status || started.elapsed() > Duration::from_secs(15) {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready_names_redis_while_it_is_down_and_recovers_when_it_returns(backend: Backend) {
    if !crate::support::tool_available("redis-server", "redis-server") {
        return;
    }
    let port = free_port();
    let redis = OwnRedis::start(port);
    let app = spawn_app_with(backend, |config| {
        config.redis_url = Some(format!("redis://127.0.0.1:{port}"));
    })
    .await;
    let up = ready(&app).await;
    assert_eq!(up.status, StatusCode::OK, "{}", up.body);
    assert_eq!(up.body["status"], "ready");

    drop(redis);
    let down = ready_becomes(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        down.body,
        error_body(503, "UNAVAILABLE", "Redis does not answer")
    );
    let health = send(app.anonymous(Method::GET, "/health")).await;
    assert_eq!(health.status, StatusCode::OK);

    let _redis = OwnRedis::start(port);
    let back = ready_becomes(&app, StatusCode::OK).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);

    // The key provider: the key file gone, the node cannot open what it holds.
    let key_file = app.db.dir.path().join("master.key");
    let moved = app.db.dir.path().join("master.key.away");
    std::fs::rename(&key_file, &moved).unwrap();
    let no_key = ready(&app).await;
    assert_eq!(
        no_key.body,
        error_body(503, "UNAVAILABLE", "The key provider does not answer")
    );
    std::fs::rename(&moved, &key_file).unwrap();
    assert_eq!(ready(&app).await.status, StatusCode::OK);
}
