//! Idempotency keys on forwarding requests, as Stripe keeps them: a successful answer is stored and
//! replayed for the same key, and a key whose first request is still running is refused with 409.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use serde_json::{json, Value};

use super::errors::reply;
use super::Shared;

/// Removes the in-flight mark of an idempotency key when the request ends, however it ends.
pub(super) struct InFlight {
    shared: Arc<Shared>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.data().in_flight.remove(&self.key);
    }
}

impl InFlight {
    /// Stores the successful answer, replayed from now on for the same key.
    pub(super) fn remember(&self, object: &Value) {
        self.shared
            .data()
            .idempotent
            .insert(self.key.clone(), object.clone());
    }
}

/// What the request's `Idempotency-Key` means for it.
pub(super) enum Claim {
    /// No key: run the request, remember nothing.
    Unkeyed,
    /// Run it: the key is the request's until the guard drops.
    Claimed(InFlight),
    /// Answer this at once: the stored answer replayed, or 409 while the key's first request runs.
    Answer(Response),
}

/// Claims the request's `Idempotency-Key`, if it has one.
pub(super) fn claim(shared: &Arc<Shared>, headers: &HeaderMap) -> Claim {
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
    else {
        return Claim::Unkeyed;
    };
    let mut data = shared.data();
    if let Some(stored) = data.idempotent.get(&key) {
        let mut response = reply(200, stored.clone());
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return Claim::Answer(response);
    }
    if !data.in_flight.insert(key.clone()) {
        return Claim::Answer(reply(
            409,
            json!({"error": {
                "code": "idempotency_key_in_use",
                "message": "There is currently another in-progress request using this Idempotency Key. Please try again later.",
                "type": "invalid_request_error",
            }}),
        ));
    }
    Claim::Claimed(InFlight {
        shared: shared.clone(),
        key,
    })
}
