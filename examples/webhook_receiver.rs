//! A small webhook receiver for benchmarks and trying webhooks out: answers every `POST /hook` with 200,
//! checks the `x-hmac-signature` when `WEBHOOK_KEY` is set (counting bad ones), and serves its counts at
//! `GET /stats`. It prints `listening on ADDR` once bound.
//!
//!   cargo run --release --example webhook_receiver -- 127.0.0.1:0

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

#[derive(Default)]
struct Counts {
    received: AtomicU64,
    bad_signatures: AtomicU64,
    key: Option<String>,
}

async fn hook(State(counts): State<Arc<Counts>>, headers: HeaderMap, body: String) -> StatusCode {
    counts.received.fetch_add(1, Ordering::Relaxed);
    if let Some(key) = &counts.key {
        let given = headers
            .get("x-hmac-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let good = Hmac::<Sha256>::new_from_slice(key.as_bytes())
            .map(|mut mac| {
                mac.update(body.as_bytes());
                hex::encode(mac.finalize().into_bytes()) == given
            })
            .unwrap_or(false);
        if !good {
            counts.bad_signatures.fetch_add(1, Ordering::Relaxed);
        }
    }
    StatusCode::OK
}

async fn stats(State(counts): State<Arc<Counts>>) -> Json<Value> {
    Json(json!({
        "received": counts.received.load(Ordering::Relaxed),
        "bad_signatures": counts.bad_signatures.load(Ordering::Relaxed),
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let counts = Arc::new(Counts {
        key: std::env::var("WEBHOOK_KEY").ok().filter(|k| !k.is_empty()),
        ..Counts::default()
    });
    let app = Router::new()
        .route("/hook", post(hook))
        .route("/stats", get(stats))
        .with_state(counts);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
