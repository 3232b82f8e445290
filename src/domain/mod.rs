//! The domain layer: one service per resource (accounts, tokens, payments, imports, webhooks) holding the
//! validation, the state machines and the multi-step flows over the store, the vault and the connectors.
//! Handlers in `api/` parse, call a service and shape its answer; nothing here knows HTTP.

pub mod accounts;
pub mod destinations;
pub mod forward;
pub mod imports;
pub mod objects;
pub mod payments;
pub mod processors;
pub mod routing;
pub mod tokens;
pub mod webhooks;

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A fault of this server that is neither the store's nor the client's. Answered as a bare 500; the
/// text goes to the log only, and never holds card data or secrets.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    /// An object would not encode as JSON (a webhook body, a job payload).
    #[error("could not encode {0} as JSON: {1}")]
    Encode(&'static str, #[source] serde_json::Error),
    /// A flow could not reach a consistent end: it kept racing another writer, or what it had just
    /// seen was gone.
    #[error("{0}")]
    Unsettled(&'static str),
    /// A step would move an object between two statuses its state machine does not join.
    #[error("a {what} cannot move from {from} to {to}")]
    IllegalMove {
        what: &'static str,
        from: &'static str,
        to: &'static str,
    },
}

/// One fault in a request: `path` is a JSON path into the body (`$.expiry_month`) or names the
/// parameter (`query.limit`, `path.id`, `header.x-idempotency-key`). The message never repeats the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The field's value, treating JSON `null` as absent (`null` unsets).
pub(crate) fn present<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|v| !v.is_null())
}

/// Records a fault at `path` and yields nothing, for use where a checked value is expected.
pub(crate) fn fault<T>(errors: &mut Vec<FieldError>, path: &str, message: &str) -> Option<T> {
    errors.push(FieldError::new(path, message));
    None
}
