//! Extractors that turn every malformed input into the spec's 415, 413 or 422 with the path of the fault,
//! in place of axum's own plain-text rejections. Error messages never repeat the value that was sent,
//! since it could be card data.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;
use super::AppState;

/// A JSON body, deserialized with the path of the first fault on failure.
pub struct ApiJson<T>(pub T);

/// The raw JSON body as a value, for handlers that validate every field themselves and report all faults.
pub struct JsonBody(pub serde_json::Value);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(json_error)?;
        de.end()
            .map_err(|e| ApiError::invalid("$", syntax_message(&e)))?;
        Ok(ApiJson(value))
    }
}

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::invalid("$", syntax_message(&e)))
    }
}

/// A JSON body that may be left out altogether (an empty body); when sent, it is held to the same rules.
pub struct OptionalJsonBody(pub Option<serde_json::Value>);

impl FromRequest<AppState> for OptionalJsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map(|bytes| WipedBody(Some(bytes)))
            .map_err(|rejection| body_rejection(rejection, state))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(None));
        }
        if !is_json(&parts.headers) {
            return Err(ApiError::unsupported_media_type());
        }
        serde_json::from_slice(&bytes)
            .map(|v| OptionalJsonBody(Some(v)))
            .map_err(|e| ApiError::invalid("$", syntax_message(&e)))
    }
}

/// A request body that is overwritten with zeros when dropped, once parsed: bodies carry card numbers
/// and security codes (`/cde-import`, `/forward`, payments with card data), which must not stay in freed
/// heap. A body that arrived in one piece may still share the connection's read buffer (hyper's), which
/// is not ours to wipe: then only the copy the parser made (a `String` the card types zeroize) is wiped.
pub(crate) struct WipedBody(Option<Bytes>);

impl std::ops::Deref for WipedBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_deref().unwrap_or_default()
    }
}

impl Drop for WipedBody {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        if let Some(bytes) = self.0.take() {
            if let Ok(mut owned) = bytes.try_into_mut() {
                owned.as_mut().zeroize();
            }
        }
    }
}

async fn json_bytes(req: Request, state: &AppState) -> Result<WipedBody, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::unsupported_media_type());
    }
    let bytes = Bytes::from_request(req, state)
        .await
        .map(|bytes| WipedBody(Some(bytes)))
        .map_err(|rejection| body_rejection(rejection, state))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "$",
            "the request body is empty; a JSON object is expected",
        ));
    }
    Ok(bytes)
}

/// The error a request body gives when it did not arrive within the body timeout (set by the server).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// Whether `err` or one of its causes is [`BodyTimedOut`].
pub fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if err.is::<BodyTimedOut>() {
            return true;
        }
        cause = err.source();
    }
    false
}

pub fn body_rejection(rejection: BytesRejection, state: &AppState) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large(state.config.max_body_bytes)
    } else if is_body_timeout(&rejection) {
        ApiError::request_timeout(state.config.http.body_timeout)
    } else {
        ApiError::invalid("$", "the request body could not be read")
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Converts serde's error into a 422 whose message names what was expected, never what was sent.
fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = err.inner();
    let mut path = json_path(&err.path().to_string());
    let message = match inner.classify() {
        serde_json::error::Category::Data => {
            let text = inner.to_string();
            let text = text.split(" at line ").next().unwrap_or(&text).to_owned();
            if let Some(field) = text
                .strip_prefix("missing field `")
                .and_then(|t| t.split('`').next())
            {
                path = if path == "$" {
                    format!("$.{field}")
                } else {
                    format!("{path}.{field}")
                };
                "is required".to_owned()
            } else if let Some(field) = text
                .strip_prefix("unknown field `")
                .and_then(|t| t.split('`').next())
            {
                path = if path == "$" {
                    format!("$.{field}")
                } else {
                    format!("{path}.{field}")
                };
                "is not a known field".to_owned()
            } else {
                match text.rsplit_once("expected ") {
                    Some((_, expected)) => format!("invalid value; expected {expected}"),
                    None => "invalid value".to_owned(),
                }
            }
        }
        _ => {
            path = "$".to_owned();
            syntax_message(inner)
        }
    };
    ApiError::invalid(path, message)
}

fn syntax_message(err: &serde_json::Error) -> String {
    match err.classify() {
        serde_json::error::Category::Eof => "the JSON document ends too early".to_owned(),
        _ => format!(
            "malformed JSON at line {} column {}",
            err.line(),
            err.column()
        ),
    }
}

/// `a.b[0]` (serde_path_to_error's form, `.` for the root) as `$.a.b[0]`.
fn json_path(serde_path: &str) -> String {
    if serde_path.is_empty() || serde_path == "." {
        "$".to_owned()
    } else {
        format!("$.{serde_path}")
    }
}

/// The `{id}` segment of a path, which must be a UUID.
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::invalid("path.id", "must be a UUID"))?;
        let id = raw
            .get("id")
            .ok_or_else(|| ApiError::invalid("path.id", "is required"))?;
        Uuid::try_parse(id)
            .map(PathId)
            .map_err(|_| ApiError::invalid("path.id", "must be a UUID"))
    }
}

/// The query string as a map; each list endpoint parses its own parameters from it so that every fault
/// can name its parameter. A name given twice (`status=a&status=b`) is refused at `query.<name>` rather
/// than one value silently winning: lists of values are written as one comma-separated value.
pub struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::invalid("query", "the query string is malformed"))?;
        single_values(pairs).map(QueryMap)
    }
}

fn single_values(pairs: Vec<(String, String)>) -> Result<HashMap<String, String>, ApiError> {
    let mut map = HashMap::with_capacity(pairs.len());
    let mut repeated = Vec::new();
    for (name, value) in pairs {
        match map.entry(name) {
            std::collections::hash_map::Entry::Occupied(seen) => {
                if !repeated.contains(seen.key()) {
                    repeated.push(seen.key().clone());
                }
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(value);
            }
        }
    }
    if repeated.is_empty() {
        return Ok(map);
    }
    repeated.sort();
    Err(ApiError::validation(
        repeated
            .into_iter()
            .map(|name| {
                super::error::FieldError::new(
                    format!("query.{name}"),
                    "must be given only once; send several values as one comma-separated list",
                )
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_paths_become_json_paths() {
        assert_eq!(json_path(""), "$");
        assert_eq!(json_path("."), "$");
        assert_eq!(json_path("source.token_id"), "$.source.token_id");
        assert_eq!(json_path("items[2].name"), "$.items[2].name");
    }

    #[test]
    fn a_name_given_twice_is_refused_and_others_are_kept() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let map = single_values(vec![pair("limit", "5"), pair("page", "2")]).unwrap();
        assert_eq!(map.len(), 2);
        assert!(single_values(vec![pair("status", "a"), pair("status", "b")]).is_err());
    }
}
