//! The floor under `POST /forward`'s cost, for `bench/forward.sh`: a relay on the same HTTP stack as
//! Strongroom (axum in, one pooled reqwest client out) that does nothing but pass a POST on to the URL in
//! `x-destination-url` and hand back the answer's status and body. No authentication, no token, no
//! placeholders, no masking, no audit row: what is left is the second HTTP exchange itself, so the
//! benchmark can show how much of a forward's cost is the relaying and how much is Strongroom's work.
//! It prints `listening on ADDR` once bound. Not for anything but measuring: it relays anywhere.
//!
//!   cargo run --release --example bare_relay -- 127.0.0.1:0

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

async fn relay(State(client): State<reqwest::Client>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(url) = headers
        .get("x-destination-url")
        .and_then(|v| v.to_str().ok())
    else {
        return (StatusCode::UNPROCESSABLE_ENTITY, "no x-destination-url").into_response();
    };
    let mut request = client.post(url).body(body);
    if let Some(kind) = headers.get("content-type") {
        request = request.header("content-type", kind);
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let status = answer.status();
    match answer.bytes().await {
        Ok(body) => (status, body).into_response(),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let app = Router::new()
        .route("/forward", post(relay))
        .with_state(client);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
