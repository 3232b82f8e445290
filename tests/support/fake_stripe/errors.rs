//! Stripe's answers: every reply with its `request-id`, and the error bodies in Stripe's words for each
//! refusal the fake makes.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::cards::random_id;

/// A refused request: the status and Stripe's error body.
pub(super) type Refusal = (u16, Value);

pub(super) fn reply(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(body)).into_response();
    let request_id = format!("req_{}", random_id(&mut rand::thread_rng(), 14));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("request-id", value);
    }
    response
}

pub(super) fn rate_limit_body() -> Value {
    json!({"error": {
        "code": "rate_limit",
        "message": "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits.",
        "type": "invalid_request_error",
    }})
}

pub(super) fn no_key_body() -> Value {
    json!({"error": {
        "message": "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
        "type": "invalid_request_error",
    }})
}

pub(super) fn api_error_body() -> Value {
    json!({"error": {
        "message": "An unknown error occurred",
        "type": "api_error",
    }})
}

pub(super) fn upstream_connection_error() -> Value {
    json!({"error": {
        "code": "forwarding_api_upstream_connection_error",
        "message": "An error occurred while connecting to the destination endpoint. Please try again.",
        "type": "invalid_request_error",
    }})
}

pub(super) fn resource_missing(param: &str, message: &str) -> Value {
    json!({"error": {
        "code": "resource_missing",
        "param": param,
        "message": message,
        "type": "invalid_request_error",
    }})
}

pub(super) fn no_such_payment_method(pm: &str) -> Value {
    resource_missing("payment_method", &format!("No such PaymentMethod: '{pm}'"))
}

pub(super) fn missing_parameter(param: &str) -> Value {
    json!({"error": {
        "code": "parameter_missing",
        "param": param,
        "message": format!("Missing required param: {param}."),
        "type": "invalid_request_error",
    }})
}

pub(super) fn unknown_parameter(param: &str) -> Value {
    json!({"error": {
        "code": "parameter_unknown",
        "param": param,
        "message": format!("Received unknown parameter: {param}"),
        "type": "invalid_request_error",
    }})
}

pub(super) fn invalid_parameter(param: &str, message: &str) -> Value {
    json!({"error": {
        "param": param,
        "message": message,
        "type": "invalid_request_error",
    }})
}
