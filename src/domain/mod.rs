//! The domain layer: one service per resource (accounts, tokens, payments, imports, webhooks) holding the
//! validation, the state machines and the multi-step flows over the store, the vault and the connectors.
//! Handlers in `api/` parse, call a service and shape its answer; nothing here knows HTTP.

pub mod accounts;
pub mod data_keys;
pub mod destinations;
pub mod forward;
mod group_commit;
pub mod imports;
pub mod objects;
pub mod payments;
pub mod processors;
pub mod routing;
pub mod sessions;
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

/// The message for a text holding a control character.
pub(crate) const CONTROL_CHARACTER: &str =
    "must not contain control characters (such as NUL, a tab or a line break)";

/// Whether `text` holds a control character (Unicode `Cc`: NUL, C0, DEL, C1). Every text the API
/// stores is refused with one: PostgreSQL's `text` and `jsonb` cannot hold a NUL (the write would fail
/// with a database error, not a 422), and line breaks or escape sequences in stored names and
/// references garble logs, exports and terminals.
pub(crate) fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// Checks a stored text field: a string, not blank, at most `max_chars` characters, without control
/// characters. Yields the text, or records one fault at `path`.
pub(crate) fn text_field(
    errors: &mut Vec<FieldError>,
    path: &str,
    value: &Value,
    max_chars: usize,
) -> Option<String> {
    match value {
        Value::String(s) if s.trim().is_empty() => fault(errors, path, "must not be empty"),
        Value::String(s) if s.chars().count() > max_chars => fault(
            errors,
            path,
            &format!("must be at most {max_chars} characters"),
        ),
        Value::String(s) if has_control(s) => fault(errors, path, CONTROL_CHARACTER),
        Value::String(s) => Some(s.clone()),
        _ => fault(errors, path, "must be a string"),
    }
}

/// Records a fault at `path` and yields nothing, for use where a checked value is expected.
pub(crate) fn fault<T>(errors: &mut Vec<FieldError>, path: &str, message: &str) -> Option<T> {
    errors.push(FieldError::new(path, message));
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_text_refuses_every_control_character_but_not_other_unicode() {
        for bad in [
            "a\u{0}b",
            "a\tb",
            "a\r\nb",
            "\u{1b}[2J",
            "a\u{7f}",
            "a\u{9b}b",
        ] {
            let mut errors = Vec::new();
            assert_eq!(text_field(&mut errors, "$.x", &json!(bad), 80), None);
            assert_eq!(errors, vec![FieldError::new("$.x", CONTROL_CHARACTER)]);
        }
        let mut errors = Vec::new();
        assert_eq!(
            text_field(&mut errors, "$.x", &json!("Zoë O'Brien-Ōno 李"), 80),
            Some("Zoë O'Brien-Ōno 李".to_owned())
        );
        assert!(errors.is_empty());
    }
}
