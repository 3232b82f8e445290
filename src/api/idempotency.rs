//! Idempotent POSTs: a request carrying `x-idempotency-key` is recorded per account and key for 24 hours.
//! The same key with the same method, path and body replays the stored answer; with another request, or
//! while the first is still in flight, it is 409. Only a success is kept: after any other answer the
//! key is free again, so that a retry runs again.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::Principal;
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::store::Ts;

pub const IDEMPOTENCY_HEADER: &str = "x-idempotency-key";
pub const REPLAYED_HEADER: &str = "x-idempotent-replayed";
const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);
/// A claim with no answer after this long belongs to a request that died with its node.
const ABANDONED_AFTER: Duration = Duration::from_secs(300);

pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.headers().contains_key(IDEMPOTENCY_HEADER) {
        return next.run(req).await;
    }
    match run(state, req, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run(state: AppState, req: Request, next: Next) -> Result<Response, Response> {
    let key = idempotency_key(&req).map_err(IntoResponse::into_response)?;
    let principal = req
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| {
            ApiError::internal(&"idempotency ran before authentication").into_response()
        })?;
    let (parts, body) = req.into_parts();
    // A forward's answer holds what a third party said about a card: it is kept sealed (see api::forward).
    // Its body has its own limit and its own answer when over it (422 at `$`), with a key or without.
    let forward = super::forward::is_forward(&parts);
    let bytes = match forward {
        false => {
            let limit = state.config.max_body_bytes;
            axum::body::to_bytes(body, limit).await.map_err(|err| {
                if super::extract::is_body_timeout(&err) {
                    ApiError::request_timeout(state.config.http.body_timeout).into_response()
                } else {
                    ApiError::payload_too_large(limit).into_response()
                }
            })?
        }
        true => super::forward::read_body(&state, body)
            .await
            .map_err(IntoResponse::into_response)?,
    };
    let account = principal.account_id;
    let scope = super::forward::idempotency_scope(&parts);
    let fingerprint = request_fingerprint(&state, account, &parts.method, &scope, &bytes)
        .await
        .map_err(IntoResponse::into_response)?;

    let Some(claimed_at) = claim(&state, account, &key, &fingerprint)
        .await
        .map_err(IntoResponse::into_response)?
    else {
        return Err(replay_or_conflict(&state, account, &key, &fingerprint, forward).await);
    };

    // The request runs to its end in a task of its own: a client that hangs up must not leave a payment
    // half made with its key still claimed, and a handler that panics must release the key.
    let task_state = state.clone();
    let store = state.store.clone();
    let task_key = key.clone();
    let request = Request::from_parts(parts, Body::from(bytes));
    let finished = tokio::spawn(async move {
        let (parts, body) = next.run(request).await.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await;
        let recorded = match &body {
            // Only a success is kept; any other answer may be asked for again with the same key. A
            // destination's answer relayed by a forward is kept whatever its status: it acted on it.
            Ok(bytes)
                if parts.status.is_success()
                    || parts.extensions.get::<super::forward::Relayed>().is_some() =>
            {
                let status = i32::from(parts.status.as_u16());
                let kept = super::forward::kept_answer(
                    &task_state,
                    forward,
                    (account, &task_key),
                    &parts.headers,
                    bytes,
                )
                .await;
                match kept {
                    Ok(kept) => {
                        store
                            .save_idempotent_response(account, &task_key, claimed_at, status, &kept)
                            .await
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "could not seal a forward's answer");
                        store
                            .delete_idempotency_record(account, &task_key, claimed_at)
                            .await
                    }
                }
            }
            _ => {
                store
                    .delete_idempotency_record(account, &task_key, claimed_at)
                    .await
            }
        };
        if let Err(err) = recorded {
            tracing::error!(error = %err, "could not record the idempotent response");
        }
        body.map(|bytes| Response::from_parts(parts, Body::from(bytes)))
    })
    .await;
    match finished {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(err)) => Err(ApiError::internal(&err).into_response()),
        Err(_) => {
            let _ = state
                .store
                .delete_idempotency_record(account, &key, claimed_at)
                .await;
            Err(ApiError::internal(&"a request handler panicked").into_response())
        }
    }
}

fn idempotency_key(req: &Request) -> ApiResult<String> {
    let value = req
        .headers()
        .get(IDEMPOTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if value.is_empty() || value.len() > 255 {
        return Err(ApiError::invalid(
            format!("header.{IDEMPOTENCY_HEADER}"),
            "must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(value.to_owned())
}

/// A keyed digest of the request (under the account's fingerprint key, which outlives master-key
/// rotations), so that the stored record reveals nothing of a body holding card data.
pub async fn request_fingerprint(
    state: &AppState,
    account: uuid::Uuid,
    method: &Method,
    path: &str,
    body: &Bytes,
) -> ApiResult<Vec<u8>> {
    let request = [
        method.as_str().as_bytes(),
        b"\0",
        path.as_bytes(),
        b"\0",
        body,
    ]
    .concat();
    state
        .tokens
        .vault
        .fingerprint(account, b"idempotency", &request)
        .await
        .map_err(|e| ApiError::internal(&e))
}

/// Claims the key for this request (a fresh insert, or taking over an expired or abandoned record);
/// returns the claim's time, which the answer is recorded against, or `None` if another holds the key.
async fn claim(
    state: &AppState,
    account: uuid::Uuid,
    key: &str,
    fingerprint: &[u8],
) -> ApiResult<Option<Ts>> {
    let now = Ts::now();
    if let Some(cap) = state.config.idempotency_records_per_account {
        // A key already recorded is found by the claim below (replayed or 409), never refused here.
        let live = state
            .store
            .count_idempotency_records(account, now.minus(KEEP_FOR), cap)
            .await?;
        if live >= cap
            && state
                .store
                .get_idempotency_record(account, key)
                .await?
                .is_none()
        {
            return Err(ApiError::too_many_idempotency_keys(cap));
        }
    }
    if state
        .store
        .insert_idempotency_claim(account, key, fingerprint, now)
        .await?
    {
        return Ok(Some(now));
    }
    let reclaimed = state
        .store
        .reclaim_idempotency_record(
            account,
            key,
            fingerprint,
            now,
            now.minus(KEEP_FOR),
            now.minus(ABANDONED_AFTER),
        )
        .await?;
    Ok(reclaimed.then_some(now))
}

async fn replay_or_conflict(
    state: &AppState,
    account: uuid::Uuid,
    key: &str,
    fingerprint: &[u8],
    forward: bool,
) -> Response {
    let record = match state.store.get_idempotency_record(account, key).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return ApiError::conflict("The idempotency key is being released; retry")
                .into_response()
        }
        Err(err) => return ApiError::from(err).into_response(),
    };
    if record.request_hash != fingerprint {
        return ApiError::conflict("The idempotency key was already used for a different request")
            .into_response();
    }
    let (Some(status), Some(body)) = (record.response_status, record.response_body) else {
        return ApiError::conflict("A request with this idempotency key is still in progress")
            .into_response();
    };
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    if forward {
        let mut response = super::forward::replay_answer(state, account, key, status, &body).await;
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        return response;
    }
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    if !headers.contains_key(axum::http::header::CONTENT_TYPE) && status != StatusCode::NO_CONTENT {
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}
