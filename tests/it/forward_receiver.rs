//! A real HTTP destination for `/forward` tests, on a port of its own: records every request whole
//! (method, path and query, headers, raw body) and answers by path — an echo with headers of its own,
//! a redirect, a slow answer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio_util::sync::CancellationToken;

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct Destination {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: CancellationToken,
}

async fn answer(
    State(received): State<Arc<Mutex<Vec<Received>>>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = String::from_utf8_lossy(&body).into_owned();
    received.lock().unwrap().push(Received {
        method,
        uri: uri.to_string(),
        headers: headers.clone(),
        body: body.clone(),
    });
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain")
        .to_owned();
    match uri.path() {
        // Echoes the body back with a status and headers of its own.
        "/v1/echo" => (
            StatusCode::CREATED,
            [
                ("content-type", content_type.as_str()),
                ("x-processor-ref", "ref-42"),
                ("set-cookie", "session=abc; Path=/"),
            ],
            body,
        )
            .into_response(),
        "/v1/redirect" => {
            (StatusCode::FOUND, [("location", "/v1/elsewhere")], "moved").into_response()
        }
        "/v1/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK.into_response()
        }
        "/v1/declined" => (
            StatusCode::PAYMENT_REQUIRED,
            [("content-type", "application/json")],
            r#"{"status":"declined"}"#,
        )
            .into_response(),
        _ => (
            StatusCode::OK,
            [("content-type", "application/json")],
            r#"{"status":"approved"}"#,
        )
            .into_response(),
    }
}

impl Destination {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(answer).with_state(received.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
        });
        Self {
            addr,
            received,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn last(&self) -> Received {
        self.received().pop().expect("the destination was called")
    }
}

impl Drop for Destination {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
