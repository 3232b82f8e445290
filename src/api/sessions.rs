//! Token sessions. The merchant's server makes them with its API key (`POST /tokens/session`,
//! `POST /tokens/{id}/refresh-session`); the hosted card form then reads and completes them with the
//! session id alone (`GET /sessions/{id}`, `POST /sessions/{id}/complete-action`), from the origins the
//! session's account allows (CORS) or from this server's own pages.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::auth::Principal;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{JsonBody, OptionalJsonBody, PathId};
use super::AppState;
use crate::domain::sessions::{
    OpenSession, SessionError, ACTION_REFRESH, ACTION_TOKENIZE, KIND_REFRESH,
};
use crate::domain::tokens::MAX_EXPIRATION_SECONDS;
use crate::domain::FieldError;
use crate::model::card::Scheme;

/// The body of `POST /tokens/session` (documentation; the handler checks every field itself).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenSessionRequest {
    /// Accepted for compatibility; this server performs no cardholder identification.
    bypass_identification: Option<bool>,
    /// Makes the token ephemeral: deleted this many seconds after it is made. 1 to 2592000.
    #[schema(minimum = 1, maximum = 2592000)]
    expiration_time: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenSession {
    /// The session's id: give it to the browser SDK (`Hellgate.init(session_id, …)`). Single use.
    pub session_id: String,
}

/// Opens a session in which the hosted card form collects a new card and makes a token of it.
#[utoipa::path(post, path = "/tokens/session", tag = "tokens_create", operation_id = "create_token_session",
    security(("APIKeyAuth" = [])),
    request_body(content = TokenSessionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Success response", body = TokenSession),
        (status = 401, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
pub async fn create_session(
    State(state): State<AppState>,
    principal: Principal,
    OptionalJsonBody(body): OptionalJsonBody,
) -> ApiResult<Json<TokenSession>> {
    let (bypass, expiration) = session_request(body.as_ref()).map_err(ApiError::validation)?;
    let session_id = state
        .sessions
        .create(principal.account_id, bypass, expiration)
        .await?;
    Ok(Json(TokenSession { session_id }))
}

fn session_request(body: Option<&Value>) -> Result<(bool, Option<u64>), Vec<FieldError>> {
    let Some(body) = body else {
        return Ok((false, None));
    };
    let Some(object) = body.as_object() else {
        return Err(vec![FieldError::new("$", "must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let mut keys: Vec<&String> = object
        .keys()
        .filter(|k| !matches!(k.as_str(), "bypass_identification" | "expiration_time"))
        .collect();
    keys.sort();
    for key in keys {
        errors.push(FieldError::new(format!("$.{key}"), "is not a known field"));
    }
    let bypass = match object.get("bypass_identification") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(FieldError::new(
                "$.bypass_identification",
                "must be a boolean",
            ));
            false
        }
    };
    let expiration = match object.get("expiration_time") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_EXPIRATION_SECONDS).contains(&n) => Some(n),
            _ => {
                errors.push(FieldError::new(
                    "$.expiration_time",
                    format!("must be an integer from 1 to {MAX_EXPIRATION_SECONDS}"),
                ));
                None
            }
        },
    };
    if errors.is_empty() {
        Ok((bypass, expiration))
    } else {
        Err(errors)
    }
}

/// Opens a session in which the hosted card form collects a fresh security code for an existing token.
#[utoipa::path(post, path = "/tokens/{id}/refresh-session", tag = "tokens_create", operation_id = "create_refresh_session",
    security(("APIKeyAuth" = [])),
    params(("id" = Uuid, Path, description = "The token id")),
    responses(
        (status = 200, description = "Success response", body = TokenSession),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
    ))]
pub async fn refresh_session(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id): PathId,
) -> ApiResult<Json<TokenSession>> {
    let session_id = state.sessions.refresh(principal.account_id, id).await?;
    Ok(Json(TokenSession { session_id }))
}

/// The scheme names of the SDK's card form.
fn sdk_scheme(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Visa => "visa",
        Scheme::Mastercard => "mastercard",
        Scheme::AmericanExpress => "american-express",
        Scheme::Discover => "discover",
        Scheme::DinersClub => "diners-club",
        Scheme::Jcb => "jcb",
        Scheme::UnionPay => "unionpay",
        Scheme::Unknown => "unknown",
    }
}

/// The state of an open session, in the shape of the SDK's `SessionStateDTO`.
async fn session_state(state: &AppState, session: &OpenSession) -> ApiResult<Value> {
    if session.record.kind == KIND_REFRESH {
        let card = state.sessions.refreshed_token(session).await?.token;
        return Ok(json!({
            "next_action": ACTION_REFRESH,
            "data": {
                "account_number_last_four": card.account_number_last_four,
                "account_number_length": card.account_number_length,
                "issuer_identification_number": card.issuer_identification_number,
                "expiry_month": card.expiry_month,
                "expiry_year": card.expiry_year,
                "scheme": sdk_scheme(Scheme::parse(&card.scheme)),
            }
        }));
    }
    Ok(json!({
        "next_action": ACTION_TOKENIZE,
        "data": {
            "provider": "strongroom",
            "base_url": state.public_url(),
            "lifecycle": "user_choice",
            "expires_at": session.record.expires_at.rfc3339(),
        }
    }))
}

/// The origin a browser request came from, and whether the session's account (or this server's own
/// pages) allows it. Requests without `Origin` (not from a browser's cross-origin fetch) pass.
async fn check_origin(
    state: &AppState,
    headers: &HeaderMap,
    account_id: uuid::Uuid,
) -> ApiResult<Option<HeaderValue>> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(None);
    };
    let text = origin.to_str().unwrap_or_default();
    if is_own_origin(state, headers, text) {
        return Ok(Some(origin.clone()));
    }
    let allowed = state
        .store
        .list_origins(Some(account_id))
        .await?
        .iter()
        .any(|o| o.origin == text);
    if allowed {
        Ok(Some(origin.clone()))
    } else {
        Err(ApiError::forbidden_with(
            "This origin is not allowed for the session's account",
        ))
    }
}

/// Whether `origin` is this server itself (the hosted pages calling their own API).
pub fn is_own_origin(state: &AppState, headers: &HeaderMap, origin: &str) -> bool {
    let public = state.public_url().trim_end_matches('/');
    if !public.is_empty() && public == origin {
        return true;
    }
    let scheme = if state.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| origin == format!("{scheme}://{host}"))
}

fn with_cors(mut response: Response, origin: Option<HeaderValue>) -> Response {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An error answered with CORS headers when the origin is allowed, so the page can read it.
fn answer(result: ApiResult<Value>, origin: Option<HeaderValue>) -> Response {
    match result {
        Ok(body) => with_cors(Json(body).into_response(), origin),
        Err(err) => with_cors(err.into_response(), origin),
    }
}

/// Opens the session named in the path and checks the request's origin against its account.
async fn open(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(OpenSession, Option<HeaderValue>), Response> {
    let session = match state.sessions.open(id).await {
        Ok(session) => session,
        Err(err) => {
            // Unknown sessions have no account to ask: only this server's own pages read the error.
            let own = headers
                .get(header::ORIGIN)
                .filter(|o| is_own_origin(state, headers, o.to_str().unwrap_or_default()))
                .cloned();
            return Err(with_cors(ApiError::from(err).into_response(), own));
        }
    };
    match check_origin(state, headers, session.record.account_id).await {
        Ok(origin) => Ok((session, origin)),
        Err(err) => Err(with_cors(err.into_response(), None)),
    }
}

/// What the hosted card form must do next in this session.
#[utoipa::path(get, path = "/sessions/{id}", tag = "sessions", operation_id = "get_session",
    params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "The session's state: `next_action` is `tokenize_card` or `refresh_security_code`", body = Object),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ))]
pub async fn get_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (session, origin) = match open(&state, &headers, &id).await {
        Ok(opened) => opened,
        Err(response) => return response,
    };
    answer(session_state(&state, &session).await, origin)
}

/// Completes the session's action: `{"action": "tokenize_card", "result": {account_number,
/// expiry_month, expiry_year, security_code, cardholder_name?, additional_data?}}` or
/// `{"action": "refresh_security_code", "result": {security_code}}`. Answers the final state.
#[utoipa::path(post, path = "/sessions/{id}/complete-action", tag = "sessions", operation_id = "complete_session_action",
    params(("id" = String, Path, description = "The session id")),
    request_body(content = Object, content_type = "application/json"),
    responses(
        (status = 200, description = "`{next_action: null, status: \"success\", data: {token_id}}`", body = Object),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn complete_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<JsonBody, ApiError>,
) -> Response {
    let (session, origin) = match open(&state, &headers, &id).await {
        Ok(opened) => opened,
        Err(response) => return response,
    };
    let result = match body {
        Ok(JsonBody(body)) => complete(&state, &session, &body).await,
        Err(err) => Err(err),
    };
    answer(result, origin)
}

async fn complete(state: &AppState, session: &OpenSession, body: &Value) -> ApiResult<Value> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::invalid("$", "must be a JSON object"));
    };
    let refresh = session.record.kind == KIND_REFRESH;
    let kind = if refresh {
        ACTION_REFRESH
    } else {
        ACTION_TOKENIZE
    };
    let mut errors = Vec::new();
    for key in object
        .keys()
        .filter(|k| !matches!(k.as_str(), "action" | "result"))
    {
        errors.push(FieldError::new(format!("$.{key}"), "is not a known field"));
    }
    match object.get("action") {
        Some(Value::String(a)) if a == kind => {}
        None => errors.push(FieldError::new("$.action", "is required")),
        Some(_) => errors.push(FieldError::new(
            "$.action",
            format!("must be `{kind}` in this session"),
        )),
    }
    let empty = Map::new();
    let result = match object.get("result") {
        Some(Value::Object(result)) => result,
        None => {
            errors.push(FieldError::new("$.result", "is required"));
            &empty
        }
        Some(_) => {
            errors.push(FieldError::new("$.result", "must be an object"));
            &empty
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let token_id = if refresh {
        state.sessions.complete_refresh(session, result).await?
    } else {
        state
            .sessions
            .complete_tokenize(session, result, chrono::Utc::now())
            .await?
            .id
    };
    Ok(json!({
        "next_action": null,
        "status": "success",
        "data": {"token_id": token_id},
    }))
}

/// The CORS preflight of the session endpoints: allowed for the session's account's origins.
pub async fn preflight(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(params): Path<std::collections::HashMap<String, String>>,
) -> Response {
    let id = params.get("id").map(String::as_str).unwrap_or_default();
    let (_, origin) = match open(&state, &headers, id).await {
        Ok(opened) => opened,
        Err(response) => return response,
    };
    let mut response = with_cors(StatusCode::NO_CONTENT.into_response(), origin);
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::NotFound => ApiError::not_found(),
            SessionError::Invalid(errors) => ApiError::validation(errors),
            SessionError::Token(e) => e.into(),
            SessionError::Store(e) => e.into(),
        }
    }
}
