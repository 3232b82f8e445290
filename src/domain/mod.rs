//! The domain layer: validation, state machines and multi-step flows over the store.

pub mod accounts;
pub mod cards;
pub mod payment_input;
pub mod payments;
pub mod processor;
pub mod tokens;

use serde::Serialize;
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
