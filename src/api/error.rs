//! The one API error type and the one place where lower-layer errors become HTTP answers.
//! Every error body is `{code, classifier, message}`; 422 adds `validation_errors`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::imports::{ImportError, IngestError};
use crate::domain::payments::PaymentError;
use crate::domain::tokens::TokenError;
use crate::domain::webhooks::EventError;
use crate::domain::InternalError;
use crate::store::StoreError;

pub use crate::domain::FieldError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    classifier: &'static str,
    message: String,
    validation_errors: Vec<FieldError>,
    /// Seconds for a `Retry-After` header (429, 503).
    retry_after: Option<u64>,
}

/// The error body of every failed request.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The HTTP status code.
    pub code: u16,
    /// A stable, machine-readable name of the error.
    pub classifier: String,
    pub message: String,
    /// Present on 422: each fault with its path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_errors: Option<Vec<FieldError>>,
}

impl ApiError {
    fn new(status: StatusCode, classifier: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            classifier,
            message: message.into(),
            validation_errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "No valid means of authentication was provided",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "Not allowed to access this resource or feature",
        )
    }

    /// A 403 that says why, for refusals that are not about the key's features.
    pub fn forbidden_with(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// A third party called for the client failed (`POST /forward`).
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "BAD_GATEWAY", message)
    }

    /// A third party called for the client did not answer in time (`POST /forward`).
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "GATEWAY_TIMEOUT", message)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource was not found",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "This method is not allowed on this resource",
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "CONFLICT", message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("The request body is larger than the limit of {limit} bytes"),
        )
    }

    /// The request body did not arrive within the body timeout (the connection is closed after).
    pub fn request_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            format!(
                "The request body did not arrive within {} seconds",
                limit.as_secs()
            ),
        )
    }

    /// The key is over its request rate; `wait` is how long until it may send again.
    pub fn too_many_requests(wait: std::time::Duration) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            "This API key is over its request rate; retry after the time in Retry-After",
        )
        .retry_after(wait)
    }

    /// The account holds its cap of idempotency records made in the last 24 hours.
    pub fn too_many_idempotency_keys(cap: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            format!(
                "This account has used {cap} idempotency keys in the last 24 hours, its limit; \
                 retry later or without x-idempotency-key"
            ),
        )
        .retry_after(std::time::Duration::from_secs(60))
    }

    /// Adds a `Retry-After` of `wait`, rounded up to whole seconds (at least one).
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "The request body must be sent with Content-Type: application/json",
        )
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self {
            validation_errors: errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_ERROR",
                "Validation error",
            )
        }
    }

    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(path, message)])
    }

    /// A failure whose cause must not reach the client; the cause is logged here, inside the request span.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "An internal error occurred",
        )
    }

    /// A dependency (the database, Redis) is down or too slow: 503 with `Retry-After: 1`.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "a dependency is unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is temporarily unavailable",
        )
        .retry_after(std::time::Duration::from_secs(1))
    }

    /// Like `unavailable`, telling the client which dependency is missing (`message` must carry no
    /// data, no path).
    pub fn unavailable_because(message: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "{message}");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
            .retry_after(std::time::Duration::from_secs(1))
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.status.as_u16(),
            classifier: self.classifier.to_owned(),
            message: self.message.clone(),
            validation_errors: (self.status == StatusCode::UNPROCESSABLE_ENTITY)
                .then(|| self.validation_errors.clone()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

// The one table from every lower-layer error to the answer the client gets. A cause that must not reach
// the client goes through `ApiError::internal` (logged, bare 500) or `ApiError::unavailable` (503).
//
//   StoreError      Unavailable → 503 UNAVAILABLE; Constraint → 409 CONFLICT; Corrupt, Other → 500
//   InternalError   any → 500 (an object that would not encode, a flow that could not settle)
//   EventError      Store → as StoreError; Internal → as InternalError
//   TokenError      Store → as StoreError; CodeCache → 503 UNAVAILABLE; Vault, Internal → 500
//   ImportError     AlreadyActive, AlreadyEnded → 409 CONFLICT; Store → as StoreError; Vault, Internal → 500
//   IngestError     Invalid → 422 VALIDATION_ERROR; Token → as TokenError
//   PaymentError    NotFound → 404; Invalid → 422 at its path; Conflict → 409; BadSignature → 401;
//                   NotYet → 503; Token → as TokenError; Store → as StoreError; Internal → 500

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => ApiError::unavailable(&err),
            StoreError::Constraint(_) => {
                ApiError::conflict("The request conflicts with the current state")
            }
            StoreError::Corrupt(_) | StoreError::Other(_) => ApiError::internal(&err),
        }
    }
}

impl From<InternalError> for ApiError {
    fn from(err: InternalError) -> Self {
        ApiError::internal(&err)
    }
}

impl From<EventError> for ApiError {
    fn from(err: EventError) -> Self {
        match err {
            EventError::Store(e) => e.into(),
            EventError::Internal(e) => e.into(),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        match err {
            TokenError::Store(e) => e.into(),
            TokenError::Vault(e) => ApiError::internal(&e),
            TokenError::Internal(e) => e.into(),
            TokenError::CodeCache(e) => ApiError::unavailable(&e),
        }
    }
}

impl From<ImportError> for ApiError {
    fn from(err: ImportError) -> Self {
        match err {
            ImportError::AlreadyActive => {
                ApiError::conflict("another import of this account is preparing or running")
            }
            ImportError::AlreadyEnded => ApiError::conflict("the import has already ended"),
            ImportError::Vault(e) => ApiError::internal(&e),
            ImportError::Store(e) => e.into(),
            ImportError::Internal(e) => e.into(),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(err: IngestError) -> Self {
        match err {
            IngestError::Invalid(errors) => ApiError::validation(errors),
            IngestError::Token(e) => e.into(),
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(err: PaymentError) -> Self {
        match err {
            PaymentError::NotFound => ApiError::not_found(),
            PaymentError::Invalid(path, message) => ApiError::invalid(path, message),
            PaymentError::Conflict(message) => ApiError::conflict(message),
            PaymentError::BadSignature => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "The notification's signature is not valid",
            ),
            PaymentError::NotYet(why) => ApiError::unavailable(&why),
            PaymentError::Token(e) => e.into(),
            PaymentError::Store(e) => e.into(),
            PaymentError::Internal(e) => e.into(),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The body of a 500 for a handler that panicked; the panic payload is not looked at (it could hold data).
pub fn panic_response(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal(&"a request handler panicked").into_response()
}
