//! The HTTP front of the fake: routing a request to its endpoint, the rate limit, authentication and
//! injected failures in Stripe's order, and parsing the form-encoded parameters Stripe takes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::json;

use super::cards::last4;
use super::customers::list_customers;
use super::errors::{no_key_body, rate_limit_body, reply, Refusal};
use super::faults::injected_body;
use super::forwarding::forward;
use super::payment_methods::list_payment_methods;
use super::{Route, Shared, ACCOUNT_ID};

enum Endpoint {
    Customers,
    PaymentMethods(String),
    Forwarding,
}

impl Endpoint {
    fn resolve(method: &Method, path: &str) -> Option<Endpoint> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method.as_str(), segments.as_slice()) {
            ("GET", ["v1", "customers"]) => Some(Endpoint::Customers),
            ("GET", ["v1", "customers", id, "payment_methods"]) if !id.is_empty() => {
                Some(Endpoint::PaymentMethods(percent_decode(id)))
            }
            ("POST", ["v1", "forwarding", "requests"]) => Some(Endpoint::Forwarding),
            _ => None,
        }
    }

    fn route(&self) -> Route {
        match self {
            Endpoint::Customers => Route::Customers,
            Endpoint::PaymentMethods(_) => Route::PaymentMethods,
            Endpoint::Forwarding => Route::Forwarding,
        }
    }
}

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::GET && uri.path() == "/_fake/stats" {
        let stats = shared.data().stats;
        return Json(stats).into_response();
    }
    let response = dispatch(&shared, &method, &uri, &headers, &body).await;
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    response
}

async fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    {
        let mut data = shared.data();
        data.stats.requests += 1;
        if let Some(bucket) = data.bucket.as_mut() {
            if !bucket.take() {
                data.stats.rate_limited += 1;
                return reply(429, rate_limit_body());
            }
        }
    }

    let restricted = match api_key(headers) {
        None => return reply(401, no_key_body()),
        Some(key) if key == shared.config.api_key => false,
        Some(key) if shared.config.restricted_key.as_deref() == Some(key.as_str()) => true,
        Some(key) => {
            return reply(
                401,
                json!({"error": {
                    "message": format!("Invalid API Key provided: {}", mask_key(&key)),
                    "type": "invalid_request_error",
                }}),
            )
        }
    };

    let Some(endpoint) = Endpoint::resolve(method, uri.path()) else {
        return reply(
            404,
            json!({"error": {
                "message": format!(
                    "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
                    method, uri.path()
                ),
                "type": "invalid_request_error",
            }}),
        );
    };

    {
        let mut data = shared.data();
        match endpoint {
            Endpoint::Customers => data.stats.customer_lists += 1,
            Endpoint::PaymentMethods(_) => data.stats.payment_method_lists += 1,
            Endpoint::Forwarding => data.stats.forwards += 1,
        }
        if restricted {
            let key = shared.config.restricted_key.as_deref().unwrap_or("");
            return reply(
                403,
                json!({"error": {
                    "message": format!(
                        "The provided key '{}' does not have the required permissions for this endpoint on account '{ACCOUNT_ID}'.",
                        mask_key(key)
                    ),
                    "type": "invalid_request_error",
                }}),
            );
        }
        if let Some(status) = data.take_injection(endpoint.route()) {
            data.count_injected(status);
            let subject = match &endpoint {
                Endpoint::PaymentMethods(customer) => Some(customer.as_str()),
                _ => None,
            };
            return reply(status, injected_body(endpoint.route(), status, subject));
        }
    }

    let query = parse_pairs(uri.query().unwrap_or(""));
    match endpoint {
        Endpoint::Customers => list_customers(shared, &query),
        Endpoint::PaymentMethods(customer) => list_payment_methods(shared, &customer, &query),
        Endpoint::Forwarding => forward(shared, headers, body).await,
    }
}

pub(super) fn parse_limit(query: &[(String, String)]) -> Result<usize, Refusal> {
    let invalid = |message: String| {
        (
            400,
            json!({"error": {
                "code": "parameter_invalid_integer",
                "param": "limit",
                "message": message,
                "type": "invalid_request_error",
            }}),
        )
    };
    match param(query, "limit") {
        None => Ok(10),
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n < 1 => Err(invalid(
                "This value must be greater than or equal to 1.".to_owned(),
            )),
            Ok(n) if n > 100 => Err(invalid(
                "This value must be less than or equal to 100.".to_owned(),
            )),
            Ok(n) => Ok(usize::try_from(n).unwrap_or(10)),
            Err(_) => Err(invalid(format!("Invalid integer: {raw}"))),
        },
    }
}

pub(super) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `k=v&k=v` with percent-escapes and `+` as space.
pub(super) fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes.get(i).copied().unwrap_or(b'%');
        if byte == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(decoded) = hex {
                out.push(decoded);
                i += 3;
                continue;
            }
        }
        out.push(byte);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The key of `Authorization: Bearer <key>` or of HTTP basic with the key as user.
fn api_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let key = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        decoded.split(':').next().unwrap_or("").to_owned()
    } else {
        return None;
    };
    Some(key).filter(|k| !k.is_empty())
}

/// `sk_test_****abcd`: the prefix up to the second underscore, then the last four characters.
fn mask_key(key: &str) -> String {
    let prefix_len = key
        .match_indices('_')
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap_or(0);
    let prefix = key.get(..prefix_len).unwrap_or("");
    format!("{prefix}****{}", last4(key))
}
