//! Trouble on demand: failures injected per route or per payment method (with Stripe's error body for
//! each status), payment methods deleted between listing and forwarding, and the rate limit.

use std::time::Instant;

use serde_json::{json, Value};

use super::errors::{
    api_error_body, no_such_payment_method, rate_limit_body, resource_missing,
    upstream_connection_error,
};
use super::{Data, FakeStripe, Route};

pub(super) struct Injection {
    pub(super) route: Route,
    pub(super) status: u16,
    pub(super) remaining: u32,
}

pub(super) struct Bucket {
    pub(super) capacity: f64,
    pub(super) rate: f64,
    pub(super) tokens: f64,
    pub(super) last: Instant,
}

impl Bucket {
    pub(super) fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Data {
    /// The status of the next injected failure for `route`, used up.
    pub(super) fn take_injection(&mut self, route: Route) -> Option<u16> {
        let injection = self
            .injections
            .iter_mut()
            .find(|i| i.remaining > 0 && (i.route == route || i.route == Route::Any))?;
        if injection.remaining != u32::MAX {
            injection.remaining -= 1;
        }
        let status = injection.status;
        self.injections.retain(|i| i.remaining > 0);
        Some(status)
    }

    pub(super) fn take_forward_failure(&mut self, pm: &str) -> Option<u16> {
        let (status, remaining) = self.forward_failures.get_mut(pm)?;
        let status = *status;
        if *remaining != u32::MAX {
            *remaining -= 1;
        }
        if *remaining == 0 {
            self.forward_failures.remove(pm);
        }
        Some(status)
    }

    pub(super) fn count_injected(&mut self, status: u16) {
        self.stats.injected_failures += 1;
        if status == 429 {
            self.stats.rate_limited += 1;
        }
    }
}

impl FakeStripe {
    /// The next `times` requests to `route` (after authentication) answer `status` with Stripe's
    /// error body for it: 429 rate limit, 5xx `api_error`, 409 on forwarding `idempotency_key_in_use`, 402 on forwarding the upstream connect
    /// timeout, 502 on forwarding the upstream connection error. `u32::MAX`: always.
    pub fn fail_next(&self, route: Route, status: u16, times: u32) {
        if times > 0 {
            self.shared.data().injections.push(Injection {
                route,
                status,
                remaining: times,
            });
        }
    }

    /// Like `fail_next`, only for forwards of `pm` (checked once the request is valid and `pm`
    /// known). Replaces an earlier setting for `pm`; `times` 0 clears it.
    pub fn fail_forward_of(&self, pm: &str, status: u16, times: u32) {
        let mut data = self.shared.data();
        if times == 0 {
            data.forward_failures.remove(pm);
        } else {
            data.forward_failures.insert(pm.to_owned(), (status, times));
        }
    }

    /// `pm` stays in its customer's list, but forwarding it answers 404 `resource_missing`.
    pub fn delete_at_forward(&self, pm: &str) {
        self.shared.data().deleted_at_forward.insert(pm.to_owned());
    }

    /// Forgets every injected failure (`fail_next`, `fail_forward_of`).
    pub fn clear_failures(&self) {
        let mut data = self.shared.data();
        data.injections.clear();
        data.forward_failures.clear();
    }
}

/// Stripe's body for an injected `status` on `route`; `subject` is the payment method (forwarding)
/// or the customer (payment method lists) when known.
pub(super) fn injected_body(route: Route, status: u16, subject: Option<&str>) -> Value {
    match (route, status) {
        (_, 429) => rate_limit_body(),
        (Route::Forwarding, 402) => json!({"error": {
            "code": "forwarding_api_upstream_connection_timeout",
            "message": "The request to the destination endpoint timed out before a connection to the destination was established. Please try again.",
            "type": "invalid_request_error",
        }}),
        (Route::Forwarding, 502) => upstream_connection_error(),
        (Route::Forwarding, 409) => json!({"error": {
            "code": "idempotency_key_in_use",
            "message": "There is currently another in-progress request using this Idempotency Key. Please try again later.",
            "type": "invalid_request_error",
        }}),
        (Route::Forwarding, 404) => no_such_payment_method(subject.unwrap_or("pm_unknown")),
        (Route::PaymentMethods, 404) => resource_missing(
            "customer",
            &format!("No such customer: '{}'", subject.unwrap_or("cus_unknown")),
        ),
        (_, 500..=599) => api_error_body(),
        (_, 401) => json!({"error": {
            "message": "Invalid API Key provided: sk_test_****fake",
            "type": "invalid_request_error",
        }}),
        _ => json!({"error": {
            "message": format!("Injected failure ({status})."),
            "type": "invalid_request_error",
        }}),
    }
}
