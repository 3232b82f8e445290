//! `X-API-Key` authentication: a missing, malformed, unknown or revoked key is 401; the authenticated
//! principal travels in the request's extensions to the handlers, which check features (403).

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::domain::accounts::{parse_presented_key, secret_matches};
use crate::store::{Action, AuditEvent, Feature, FeatureSet, KeyWithAccount};

pub const API_KEY_HEADER: &str = "x-api-key";

/// The account and key a request was made with.
#[derive(Clone, Debug)]
pub struct Principal {
    pub account_id: Uuid,
    pub key_id: Uuid,
    pub features: FeatureSet,
}

impl Principal {
    /// 403 unless the account has `feature`.
    pub fn require(&self, feature: Feature) -> ApiResult<()> {
        if self.features.contains(feature) {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }
}

/// Middleware for every protected route.
pub async fn require_api_key(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let target = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or("", |p| p.as_str())
    );
    match authenticate(&state, req.headers()).await {
        Ok(principal) => {
            tracing::Span::current()
                .record("account", tracing::field::display(principal.account_id));
            if let Some(wait) = state
                .rate_limit
                .as_ref()
                .and_then(|limiter| limiter.check(principal.key_id).err())
            {
                return ApiError::too_many_requests(wait).into_response();
            }
            let (account, key) = (principal.account_id, principal.key_id);
            req.extensions_mut().insert(principal);
            let response = next.run(req).await;
            if response.status() == axum::http::StatusCode::FORBIDDEN {
                record_refusal(&state, Some(account), &key.to_string(), target, "forbidden").await;
            }
            response
        }
        Err(err) => {
            let response = err.into_response();
            if response.status() == axum::http::StatusCode::UNAUTHORIZED {
                // The key id when the header had the shape of a key (never the secret part).
                let actor = req
                    .headers()
                    .get(API_KEY_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_presented_key(v.trim()))
                    .map_or_else(|| "anonymous".to_owned(), |(id, _)| format!("key:{id}"));
                record_refusal(&state, None, &actor, target, "unauthorized").await;
            }
            response
        }
    }
}

/// Writes the audit event of a refused request. A 401 names no account (whose key it was is not known
/// to be true); operators see it with `strongroom audit list`. A failure to write it is logged, not
/// answered: the client's answer is the refusal either way.
async fn record_refusal(
    state: &AppState,
    account: Option<Uuid>,
    actor: &str,
    target: String,
    outcome: &str,
) {
    let event = AuditEvent::new(account, actor, Action::RequestRefuse, Some(target), outcome);
    if let Err(err) = state.store.insert_audit_event(&event).await {
        tracing::warn!(error = %err, "could not record a refused request in the audit trail");
    }
}

async fn authenticate(state: &AppState, headers: &axum::http::HeaderMap) -> ApiResult<Principal> {
    let presented = headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::unauthorized)?;
    let (key_id, secret) =
        parse_presented_key(presented.trim()).ok_or_else(ApiError::unauthorized)?;
    let record = match state.auth_cache.get(key_id) {
        Some(record) => record,
        None => {
            let record = state
                .store
                .get_key_with_account(key_id)
                .await?
                .ok_or_else(ApiError::unauthorized)?;
            state.auth_cache.put(record.clone());
            record
        }
    };
    if record.revoked_at.is_some() || !secret_matches(secret, &record.secret_digest) {
        return Err(ApiError::unauthorized());
    }
    Ok(Principal {
        account_id: record.account_id,
        key_id: record.key_id,
        features: record.features,
    })
}

/// Known keys as last read from the store, for `ttl`: a revocation reaches every node within `ttl`.
/// The secret is still checked against the digest on every request. Unknown keys are never cached.
pub struct AuthCache {
    ttl: Duration,
    entries: RwLock<HashMap<Uuid, (KeyWithAccount, Instant)>>,
}

const AUTH_CACHE_MAX_ENTRIES: usize = 10_000;

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, key_id: Uuid) -> Option<KeyWithAccount> {
        let entries = self.entries.read().ok()?;
        let (record, read_at) = entries.get(&key_id)?;
        (read_at.elapsed() < self.ttl).then(|| record.clone())
    }

    fn put(&self, record: KeyWithAccount) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= AUTH_CACHE_MAX_ENTRIES {
                entries.retain(|_, (_, read_at)| read_at.elapsed() < self.ttl);
                if entries.len() >= AUTH_CACHE_MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(record.key_id, (record, Instant::now()));
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            ApiError::internal(&"a protected handler was routed without authentication")
        })
    }
}
