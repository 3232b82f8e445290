//! A real HTTP receiver for webhook tests: listens on a port of its own (or a given one, to come back
//! after a stop), records every request, and answers from a plan (500s, a redirect, a hang), then 200.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Hit {
    pub signature: String,
    pub body: String,
    pub json: Value,
    /// The sender's end of the connection the request came on: one per connection.
    pub peer: SocketAddr,
}

impl Hit {
    pub fn event_type(&self) -> &str {
        self.json["event_type"].as_str().unwrap()
    }

    /// The object under its kind's key (`token`, `payment`, `refund`, `import`).
    pub fn object(&self) -> &Value {
        let key = self.event_type().split('.').next().unwrap();
        &self.json[key]
    }

    pub fn object_id(&self) -> &str {
        self.object()["id"].as_str().unwrap()
    }

    /// Whether the signature is the lowercase hex HMAC-SHA256 of the raw body under `key`.
    pub fn signed_with(&self, key: &str) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(self.body.as_bytes());
        self.signature == hex::encode(mac.finalize().into_bytes())
    }
}

/// How to answer one request.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    /// The status with a body that follows the head 20 ms later (an answer the sender must read to its
    /// end to reuse the connection).
    StatusWithBody(u16, String),
    RedirectTo(String),
    Hang(Duration),
}

#[derive(Default)]
struct Shared {
    hits: Mutex<Vec<Hit>>,
    plan: Mutex<VecDeque<Reply>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

async fn hook(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let signature = headers
        .get("x-hmac-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    shared.hits.lock().unwrap().push(Hit {
        signature,
        body,
        json,
        peer,
    });
    let reply = shared.plan.lock().unwrap().pop_front();
    match reply {
        None => StatusCode::OK.into_response(),
        Some(Reply::Status(code)) => StatusCode::from_u16(code).unwrap().into_response(),
        Some(Reply::StatusWithBody(code, body)) => {
            // Written after the head, as servers that flush their headers first do: a sender that
            // stops reading at the status leaves it unread.
            let later = futures_util::stream::once(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, std::convert::Infallible>(body)
            });
            (
                StatusCode::from_u16(code).unwrap(),
                axum::body::Body::from_stream(later),
            )
                .into_response()
        }
        Some(Reply::RedirectTo(url)) => (StatusCode::FOUND, [("location", url)]).into_response(),
        Some(Reply::Hang(time)) => {
            tokio::time::sleep(time).await;
            StatusCode::OK.into_response()
        }
    }
}

impl Receiver {
    /// Listens on `addr` (`127.0.0.1:0` for a free port) and answers `plan` in turn, then 200.
    pub async fn start(addr: &str, plan: Vec<Reply>) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        shared.plan.lock().unwrap().extend(plan);
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await
            .unwrap();
        });
        Self {
            addr,
            shared,
            stop,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) until at least `n` requests came, and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Hit> {
        let started = Instant::now();
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "only {} of {n} webhook requests arrived: {:?}",
                hits.len(),
                hits.iter().map(Hit::event_type).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops listening (the port is free again once this returns).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}
