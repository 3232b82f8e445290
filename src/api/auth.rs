//! `X-API-Key` authentication: a missing, malformed, unknown or revoked key is 401; the authenticated
//! principal travels in the request's extensions to the handlers, which check features (403).

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::domain::accounts::{parse_presented_key, secret_matches};
use crate::store::{Feature, FeatureSet};

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
    match authenticate(&state, req.headers()).await {
        Ok(principal) => {
            tracing::Span::current()
                .record("account", tracing::field::display(principal.account_id));
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(err) => err.into_response(),
    }
}

async fn authenticate(state: &AppState, headers: &axum::http::HeaderMap) -> ApiResult<Principal> {
    let presented = headers
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(ApiError::unauthorized)?;
    let (key_id, secret) =
        parse_presented_key(presented.trim()).ok_or_else(ApiError::unauthorized)?;
    let record = state
        .store
        .get_key_with_account(key_id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    if record.revoked_at.is_some() || !secret_matches(secret, &record.secret_digest) {
        return Err(ApiError::unauthorized());
    }
    Ok(Principal {
        account_id: record.account_id,
        key_id: record.key_id,
        features: record.features,
    })
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            ApiError::internal(&"a protected handler was routed without authentication")
        })
    }
}
