//! `POST /forward`: reads the two headers and the raw body, hands them to `domain::forward`, and relays
//! the destination's answer. Also how the idempotency layer keeps a forward's answer: sealed under the
//! account's data key, headers included, so that a replay is the same answer and the table holds no clear.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::auth::{Principal, API_KEY_HEADER};
use super::error::{ApiError, ApiResult, ErrorBody, FieldError};
use super::idempotency::IDEMPOTENCY_HEADER;
use super::tokens::actor;
use super::{AppState, VERSION_HEADER};
use crate::connectors::forward::{SendError, MAX_RESPONSE_BYTES};
use crate::domain::destinations::parse_destination;
use crate::domain::forward::{too_large, ForwardError, ForwardRequest};

pub const PATH: &str = "/forward";
pub const TOKEN_HEADER: &str = "x-hellgate-token";
pub const DESTINATION_HEADER: &str = "x-destination-url";

/// Headers that belong to one connection (RFC 9110 §7.6.1), never relayed either way.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Strongroom's own request headers, which say nothing the destination needs. `accept-encoding` goes
/// too: a compressed answer could not be searched for the card number.
const NOT_FORWARDED: [&str; 9] = [
    API_KEY_HEADER,
    TOKEN_HEADER,
    DESTINATION_HEADER,
    "x-hellgate-version",
    IDEMPOTENCY_HEADER,
    "host",
    "content-length",
    "accept-encoding",
    "expect",
];

/// Marks a response that is the destination's answer (not Strongroom's own error), which the
/// idempotency layer keeps whatever its status: the destination acted on it.
#[derive(Clone, Copy, Debug)]
pub struct Relayed;

impl From<ForwardError> for ApiError {
    fn from(err: ForwardError) -> Self {
        match err {
            ForwardError::InvalidBody(message) => ApiError::invalid("$", message),
            ForwardError::UnknownToken => ApiError::not_found(),
            ForwardError::NotAllowed => ApiError::forbidden_with(
                "The destination is not on this account's forwarding allow-list",
            ),
            ForwardError::SecurityCodeGone => ApiError::conflict(
                "The security code of this token is no longer cached (it expired, was consumed or was used)",
            ),
            ForwardError::Send(SendError::Refused(_)) => ApiError::forbidden_with(
                "The destination's address is not allowed (link-local or cloud metadata)",
            ),
            ForwardError::Send(SendError::TimedOut) => {
                ApiError::gateway_timeout("The destination did not answer in time")
            }
            ForwardError::Send(SendError::TooLarge) => ApiError::bad_gateway(format!(
                "The destination's answer is larger than the limit of {MAX_RESPONSE_BYTES} bytes"
            )),
            ForwardError::Send(SendError::Encoded) => ApiError::bad_gateway(
                "The destination answered with a compressed body, which is not relayed",
            ),
            ForwardError::Send(SendError::Unreachable(cause)) => {
                tracing::warn!(error = %cause, "the forwarding destination could not be reached");
                ApiError::bad_gateway("The destination could not be reached")
            }
            ForwardError::CodeCache(e) => ApiError::unavailable(&e),
            ForwardError::Store(e) => e.into(),
            ForwardError::Vault(e) => ApiError::internal(&e),
            ForwardError::Internal(e) => ApiError::internal(&e),
        }
    }
}

/// Sends the body to the destination with the token's card filled into its placeholders, and relays
/// the destination's status, headers and body (a card number in it masked).
#[utoipa::path(post, path = "/forward", tag = "compliance", operation_id = "forward",
    security(("APIKeyAuth" = [])),
    params(
        ("x-hellgate-token" = Uuid, Header, description = "The token whose card fills the placeholders"),
        ("x-destination-url" = String, Header, description = "The full URL to call: https:// (http:// only for a loopback host), query string allowed; it must match an entry of the account's allow-list"),
        ("x-idempotency-key" = Option<String>, Header, description = "Replays the stored answer without calling the destination again"),
    ),
    request_body(content = String, content_type = "*/*", description = "Any body (JSON, form-encoded, XML, text) with placeholders `{{ account_number }}`, `{{ cardholder_name }}`, `{{ expiration_month }}`, `{{ expiration_year }}`, `{{ security_code }}`; in JSON, inside a string, and `\"{{ expiration_month | unwrap }}\"` (also the year and the number) for a bare number"),
    responses(
        (status = 200, description = "The destination's answer, whatever its status, with its headers and body; a card number in it is masked"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "The destination is not allow-listed, or its address is refused"),
        (status = 404, body = ErrorBody, description = "Unknown, deleted or another account's token"),
        (status = 409, body = ErrorBody, description = "`{{ security_code }}` but the code is no longer cached"),
        (status = 422, body = ErrorBody, description = "A header, or the body (`$`: unknown placeholder or filter, a field the token lacks, too large)"),
        (status = 502, body = ErrorBody, description = "The destination could not be reached (BAD_GATEWAY)"),
        (status = 504, body = ErrorBody, description = "The destination did not answer in time (GATEWAY_TIMEOUT)"),
    ))]
pub async fn forward(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let (token_id, destination) = read_headers(&parts.headers)?;
    let body = read_body(&state, body).await?;
    let actor = actor(&principal);
    let answer = state
        .forward
        .forward(ForwardRequest {
            account_id: principal.account_id,
            actor: &actor,
            token_id,
            destination,
            headers: outbound_headers(&parts.headers),
            body: &body,
        })
        .await?;
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = answer.status;
    *response.headers_mut() = relayed_headers(answer.headers);
    response.extensions_mut().insert(Relayed);
    Ok(response)
}

fn read_headers(headers: &HeaderMap) -> ApiResult<(Uuid, reqwest::Url)> {
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
    let mut errors = Vec::new();
    let token = match text(TOKEN_HEADER) {
        None => fault(&mut errors, TOKEN_HEADER, "is required"),
        Some(v) => Uuid::parse_str(v.trim())
            .map_err(|_| errors.push(field(TOKEN_HEADER, "must be a UUID")))
            .ok(),
    };
    let destination = match text(DESTINATION_HEADER) {
        None => fault(&mut errors, DESTINATION_HEADER, "is required"),
        Some(v) => parse_destination(v.trim())
            .map_err(|m| errors.push(field(DESTINATION_HEADER, &m)))
            .ok(),
    };
    match (token, destination) {
        (Some(token), Some(destination)) => Ok((token, destination)),
        _ => Err(ApiError::validation(errors)),
    }
}

fn field(header: &str, message: &str) -> FieldError {
    FieldError::new(format!("header.{header}"), message)
}

fn fault<T>(errors: &mut Vec<FieldError>, header: &str, message: &str) -> Option<T> {
    errors.push(field(header, message));
    None
}

/// The names a `Connection` header lists are hop-by-hop for this message too.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect()
}

fn outbound_headers(incoming: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(incoming);
    let mut out = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        let n = name.as_str();
        if !HOP_BY_HOP.contains(&n) && !NOT_FORWARDED.contains(&n) && !listed.iter().any(|l| l == n)
        {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The destination's headers without hop-by-hop ones; `content-length` is set again for the body as
/// relayed (masking may shorten it), and `x-hellgate-version` and `x-request-id` are Strongroom's.
fn relayed_headers(incoming: HeaderMap) -> HeaderMap {
    let listed = connection_listed(&incoming);
    let mut out = HeaderMap::with_capacity(incoming.len());
    let mut name: Option<HeaderName> = None;
    for (next, value) in incoming {
        // `into_iter` names a header once, then gives its further values with `None`.
        if let Some(next) = next {
            name = Some(next);
        }
        let Some(name) = name.as_ref() else { continue };
        let n = name.as_str();
        if !HOP_BY_HOP.contains(&n) && n != "content-length" && !listed.iter().any(|l| l == n) {
            out.append(name.clone(), value);
        }
    }
    out
}

/// A forward's body read whole, up to the forwarding limit: over it, 422 at `$` (the same answer as a
/// body that grows over the limit once filled).
pub async fn read_body(state: &AppState, body: Body) -> ApiResult<Bytes> {
    let limit = state.forward.max_body_bytes();
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        if super::extract::is_body_timeout(&err) {
            ApiError::request_timeout(state.config.http.body_timeout)
        } else {
            ApiError::invalid("$", too_large(limit))
        }
    })
}

pub fn is_forward(parts: &Parts) -> bool {
    parts.uri.path() == PATH
}

/// What the idempotency fingerprint covers beside the body: for a forward, the token and the
/// destination too, so that the same body sent elsewhere is not answered from another call.
pub fn idempotency_scope(parts: &Parts) -> String {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    match is_forward(parts) {
        false => parts.uri.path().to_owned(),
        true => format!(
            "{}\0{}\0{}",
            PATH,
            header(TOKEN_HEADER),
            header(DESTINATION_HEADER)
        ),
    }
}

/// A forward's answer as kept for a replay.
#[derive(Serialize, Deserialize)]
struct StoredAnswer {
    headers: Vec<(String, String)>,
    body: String,
}

fn replay_aad(key: &str) -> Vec<u8> {
    [b"idempotent-forward:".as_slice(), key.as_bytes()].concat()
}

/// What the idempotency table keeps of an answer: the body as it is, or for a forward the headers and
/// body sealed under the account's data key, bound to the idempotency key (`(account, key)`).
pub async fn kept_answer(
    state: &AppState,
    forward: bool,
    (account, key): (Uuid, &str),
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<u8>, crate::vault::VaultError> {
    if !forward {
        return Ok(body.to_vec());
    }
    let stored = StoredAnswer {
        headers: headers
            .iter()
            .filter(|(name, _)| *name != VERSION_HEADER && name.as_str() != "x-request-id")
            .map(|(name, value)| (name.as_str().to_owned(), B64.encode(value.as_bytes())))
            .collect(),
        body: B64.encode(body),
    };
    let plaintext = Zeroizing::new(serde_json::to_vec(&stored).unwrap_or_default());
    state
        .tokens
        .vault
        .seal_bytes(account, &replay_aad(key), &plaintext)
        .await
}

/// The replay of a sealed forward answer.
pub async fn replay_answer(
    state: &AppState,
    account: Uuid,
    key: &str,
    status: StatusCode,
    sealed: &[u8],
) -> Response {
    let opened = match state
        .tokens
        .vault
        .open_bytes(account, &replay_aad(key), sealed)
        .await
    {
        Ok(opened) => opened,
        Err(err) => return ApiError::internal(&err).into_response(),
    };
    let Ok(stored) = serde_json::from_slice::<StoredAnswer>(&opened) else {
        return ApiError::internal(&"a stored forward answer did not decode").into_response();
    };
    let body = B64.decode(&stored.body).unwrap_or_default();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    for (name, value) in stored.headers {
        let value = B64
            .decode(value)
            .ok()
            .and_then(|v| HeaderValue::from_bytes(&v).ok());
        if let (Ok(name), Some(value)) = (HeaderName::try_from(name), value) {
            headers.append(name, value);
        }
    }
    response
}
