//! Connectors: every HTTP client that leaves the process on the domain's behalf — the Stripe client of
//! the import job, the payment processors, the webhook sender and the forwarding client — with the
//! address guard they share.
//! Connectors know HTTP and the third party's shapes; when to call them and what to record is the domain's.

pub mod adyen;
pub mod adyen_notifications;
pub mod forward;
pub mod guard;
pub mod processor;
pub mod stripe;
pub mod stripe_payments;
pub mod webhook;

/// A transport error with its causes (the resolver's refusal is the cause of a connect error).
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
