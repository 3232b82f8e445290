//! The domain layer: validation, state machines and multi-step flows over the store.

pub mod accounts;
pub mod destinations;
pub mod forward;
pub mod import_job;
pub mod imports;
pub mod payment_input;
pub mod payments;
pub mod tokens;
pub mod webhooks;

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

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
