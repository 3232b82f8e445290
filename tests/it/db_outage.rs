//! A PostgreSQL that goes away (behind a relay the test cuts): requests answer 503 `UNAVAILABLE` with
//! `Retry-After` within the acquire timeout instead of waiting on the pool, and all is served again
//! once the database is back.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::support::relay::Relay;
use crate::support::{card, payment, postgres_available, spawn_app_with, Answer, Backend, TestApp};

/// `postgres://user@HOST:PORT/db` with its host and port replaced by `addr`.
fn through(url: &str, addr: std::net::SocketAddr) -> (String, String) {
    let (scheme_user, rest) = url.split_once('@').expect("a user in the URL");
    let (host, db) = rest.split_once('/').expect("a database in the URL");
    (format!("{scheme_user}@{addr}/{db}"), host.to_owned())
}

/// A server on PostgreSQL reached through a relay the test can cut, hang or freeze, with one card
/// tokenized through it.
async fn app_behind_a_relay(
    acquire_timeout: Duration,
    auth_cache_ttl: Duration,
) -> (Relay, TestApp) {
    let upstream = std::env::var(crate::support::POSTGRES_URL_VAR).unwrap();
    let host = through(&upstream, "127.0.0.1:1".parse().unwrap()).1;
    let relay = Relay::start(&host).await;
    let addr = relay.addr();
    let app = spawn_app_with(Backend::Postgres, move |c| {
        c.database_url = through(&c.database_url, addr).0;
        c.db_acquire_timeout = acquire_timeout;
        c.auth_cache_ttl = auth_cache_ttl;
    })
    .await;
    app.tokenize(&card("4242424242424242")).await.ok_body();
    (relay, app)
}

/// Restores the relay and waits, 10 s at most, until a tokenization is served again.
async fn restore_and_wait_until_served(relay: &Relay, app: &TestApp) {
    relay.restore();
    let waited = Instant::now();
    loop {
        let answer = app.tokenize(&card("4111111111111111")).await;
        if answer.status == StatusCode::OK {
            return;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "not served again: {}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_answered_503_within_the_acquire_timeout() {
    if !postgres_available() {
        return;
    }
    let (relay, app) = app_behind_a_relay(Duration::from_millis(1000), Duration::ZERO).await;

    for hang in [false, true] {
        if hang {
            relay.hang()
        } else {
            relay.cut()
        }
        for (method, path) in [
            (Method::POST, "/cde-import"),
            (Method::GET, "/payments"),
            (Method::GET, "/tokens"),
        ] {
            let started = Instant::now();
            let mut request = app.request(method.clone(), path);
            if method == Method::POST {
                request = request.json(&card("4111111111111111"));
            }
            let response = request.send().await.unwrap();
            let took = started.elapsed();
            assert_eq!(
                response.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{method} {path}"
            );
            assert!(
                response.headers().contains_key("retry-after"),
                "{method} {path}"
            );
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["classifier"], "UNAVAILABLE", "{body}");
            // The acquire timeout (1 s) and some slack for a loaded machine; the pool used to wait 10 s.
            assert!(
                took < Duration::from_millis(3000),
                "{method} {path} took {took:?}"
            );
            eprintln!("hang={hang} {method} {path}: 503 in {took:?}");
        }
    }

    restore_and_wait_until_served(&relay, &app).await;
}

/// Ends every session of the server's database, as a restart of PostgreSQL or an administrator would;
/// answers how many there were.
async fn end_the_servers_sessions(db_url: &str) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(db_url).await.unwrap();
    let ended: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.ok();
    ended
}

/// The token and payment writers keep their connections between batches. Sessions ended while the
/// writers sat idle for more than a second are found out by the test before the next batch: the
/// first requests after it are served. Sessions ended under use fail the batch that finds them with
/// 503 `UNAVAILABLE` (never 500), and the next one is served on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writers_replace_connections_the_database_ended() {
    if !postgres_available() {
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |c| c.auth_cache_ttl = Duration::ZERO).await;
    let token = app.tokenize(&card("4242424242424242")).await.ok_body()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.pay("one-off", &payment(&token, 1000, "automatic"))
        .await;

    assert!(end_the_servers_sessions(&app.db.url).await >= 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    app.tokenize(&card("4111111111111111")).await.ok_body();
    let paid = app
        .pay("one-off", &payment(&token, 1000, "automatic"))
        .await;
    assert_eq!(paid["status"], "captured", "{paid}");

    for _ in 0..3 {
        assert!(end_the_servers_sessions(&app.db.url).await >= 2);
        let first = app.tokenize(&card("4111111111111111")).await;
        if !served_or_unavailable(&first) {
            app.tokenize(&card("4111111111111111")).await.ok_body();
        }
        let first = app
            .create_payment("one-off", &payment(&token, 1000, "automatic"))
            .await;
        if !served_or_unavailable(&first) {
            app.pay("one-off", &payment(&token, 1000, "automatic"))
                .await;
        }
    }
}

/// Whether `answer` is a 200; anything else must be 503 `UNAVAILABLE`.
fn served_or_unavailable(answer: &Answer) -> bool {
    if answer.status == StatusCode::OK {
        return true;
    }
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_eq!(answer.body["classifier"], "UNAVAILABLE", "{}", answer.body);
    false
}

/// A database that stops answering while the token writer's kept connection is open (a hung server,
/// a network that drops everything): the tokenization waiting on it is answered 503 `UNAVAILABLE`
/// after the writers' deadline, four times the acquire timeout, instead of being held until the
/// operating system gives the connection up; once the database answers again, requests are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_database_never_answers_is_503_after_the_writers_deadline() {
    if !postgres_available() {
        return;
    }
    // The API key stays known: the request reaches the writer without a read.
    let (relay, app) =
        app_behind_a_relay(Duration::from_millis(500), Duration::from_secs(60)).await;

    relay.freeze();
    let started = Instant::now();
    let answer = app.tokenize(&card("4111111111111111")).await;
    let took = started.elapsed();
    assert!(
        !served_or_unavailable(&answer),
        "served by a database that hangs"
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "answered after {took:?}"
    );

    restore_and_wait_until_served(&relay, &app).await;
}
