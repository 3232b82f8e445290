//! The hosted card form at `/web/{version}/iframe/`: one HTML page, script and style sheet embedded in
//! the binary (no build step), serving both the field frames and the coordinator frame of the Commerce
//! Web SDK. Each page is sent with a strict Content-Security-Policy whose `frame-ancestors` are the
//! origins allowed to embed it: those of the session's account for the coordinator, and for a field
//! frame (whose URL names no session) the parent origin it names, if an account allows it.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::error::ApiError;
use super::AppState;
use crate::domain::sessions::parse_origin;

const PAGE: &str = include_str!("web/iframe.html");
const SCRIPT: &str = include_str!("web/iframe.js");
const STYLE: &str = include_str!("web/iframe.css");

/// The routes of the hosted pages (outside the OpenAPI document: they are pages, not API).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/web/{version}/iframe/", get(page))
        .route("/web/{version}/iframe/iframe.js", get(script))
        .route("/web/{version}/iframe/iframe.css", get(style))
}

/// `v3.11.0`: any SDK version names the same pages, which speak the 3.11 protocol.
fn known_version(version: &str) -> bool {
    version
        .strip_prefix('v')
        .map(|v| v.split('.').collect::<Vec<_>>())
        .is_some_and(|parts| {
            parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Who may frame the page: the session's account's origins (coordinator), else the `origin` the URL
/// names if some account allows it, else nobody.
async fn frame_ancestors(state: &AppState, query: &HashMap<String, String>) -> String {
    if query.get("type").map(String::as_str) == Some("coordinator") {
        if let Some(id) = query.get("sessionId") {
            if let Ok(session) = state.sessions.open(id).await {
                if let Ok(origins) = state
                    .store
                    .list_origins(Some(session.record.account_id))
                    .await
                {
                    if !origins.is_empty() {
                        let list: Vec<&str> = origins.iter().map(|o| o.origin.as_str()).collect();
                        return list.join(" ");
                    }
                }
            }
        }
    }
    if let Some(Ok(origin)) = query.get("origin").map(|o| parse_origin(o)) {
        if state
            .store
            .origin_allowed_anywhere(&origin)
            .await
            .unwrap_or(false)
        {
            return origin;
        }
    }
    "'none'".to_owned()
}

async fn page(
    State(state): State<AppState>,
    Path(version): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !known_version(&version) {
        return ApiError::not_found().into_response();
    }
    let coordinator = query.get("type").map(String::as_str) == Some("coordinator");
    let connect = if coordinator { "'self'" } else { "'none'" };
    let ancestors = frame_ancestors(&state, &query).await;
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src {connect}; \
         img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    );
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    secure_headers(headers);
    response
}

fn secure_headers(headers: &mut axum::http::HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

fn asset(version: &str, content_type: &'static str, body: &'static str) -> Response {
    if !known_version(version) {
        return ApiError::not_found().into_response();
    }
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response();
    secure_headers(response.headers_mut());
    response
}

async fn script(Path(version): Path<String>) -> Response {
    asset(&version, "text/javascript; charset=utf-8", SCRIPT)
}

async fn style(Path(version): Path<String>) -> Response {
    asset(&version, "text/css; charset=utf-8", STYLE)
}

#[cfg(test)]
mod tests {
    use super::known_version;

    #[test]
    fn sdk_versions_name_the_pages_and_nothing_else_does() {
        assert!(known_version("v3.11.0"));
        assert!(known_version("v3.8.1"));
        assert!(!known_version("3.11.0"));
        assert!(!known_version("v3.11"));
        assert!(!known_version("v3.x.0"));
    }
}
