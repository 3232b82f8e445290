//! The HTTP listener's limits, seen from raw TCP clients: slow headers, idle keep-alive connections,
//! slow bodies and the connection cap.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{on_both_backends, spawn_app_with, Backend};

on_both_backends!(
    a_client_slow_to_send_its_headers_is_disconnected_after_the_header_timeout,
    an_idle_keep_alive_connection_is_closed,
    a_body_slower_than_the_body_timeout_is_408_and_the_connection_closes,
    over_the_cap_new_connections_wait_until_idle_ones_are_closed,
);

/// Reads until the server closes the connection or `limit` passes: what came, and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

async fn a_client_slow_to_send_its_headers_is_disconnected_after_the_header_timeout(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |c| c.http.header_timeout = Duration::from_secs(1)).await;
    let stream = connect(app.server().local_addr()).await;
    let started = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    // A byte every 200 ms: the connection is never silent, but its headers never end.
    let trickle = tokio::spawn(async move {
        for byte in
            b"GET /health HTTP/1.1\r\nHost: strongroom\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    trickle.abort();
    assert!(closed.is_ok(), "the slow client was not disconnected");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

async fn an_idle_keep_alive_connection_is_closed(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.http.header_timeout = Duration::from_secs(1)).await;
    let mut stream = connect(app.server().local_addr()).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: strongroom\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (got, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(closed, "the idle connection was kept open");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

async fn a_body_slower_than_the_body_timeout_is_408_and_the_connection_closes(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.http.body_timeout = Duration::from_secs(1)).await;
    let mut stream = connect(app.server().local_addr()).await;
    let head = format!(
        "POST /cde-import HTTP/1.1\r\nHost: strongroom\r\nX-API-Key: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"account_",
        app.api_key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (got, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(
        got.contains(
            r#"{"code":408,"classifier":"REQUEST_TIMEOUT","message":"The request body did not arrive within 1 seconds"}"#
        ),
        "{got}"
    );
    assert!(closed, "the connection was kept open");
    assert!(started.elapsed() < Duration::from_secs(3));
}

async fn over_the_cap_new_connections_wait_until_idle_ones_are_closed(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.http.max_connections = 2;
        c.http.header_timeout = Duration::from_secs(2);
    })
    .await;
    let addr = app.server().local_addr();
    let started = Instant::now();
    let mut idle = [connect(addr).await, connect(addr).await];
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The third connection is not taken while two are open: its request waits, unanswered.
    let mut third = connect(addr).await;
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: strongroom\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_until_closed(&mut third, Duration::from_secs(1)).await;
    assert_eq!((got.as_str(), closed), ("", false));

    // Once the idle ones are closed by the header timeout, it is served.
    let (got, closed) = read_until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(closed);
    assert!(started.elapsed() >= Duration::from_millis(1900));
    for stream in &mut idle {
        let (_, closed) = read_until_closed(stream, Duration::from_secs(1)).await;
        assert!(closed, "an idle connection stayed open");
    }
}
