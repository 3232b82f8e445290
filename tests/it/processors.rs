//! Processors and routing: the admin commands and their refusals, each use case through the Stripe and
//! Adyen connectors against their fakes, failover between processors, and no processor secret at rest or in
//! the logs.

mod abandon;
mod admin;
mod adyen;
mod adyen_abandon;
mod adyen_notifications;
mod crash;
mod failover;
mod retries;
mod secrets;
mod stripe;

use serde_json::Value;

/// The rows of a `GET /payments/{id}/transactions` answer (its paginated envelope), oldest first.
fn transaction_rows(list: &Value) -> Vec<Value> {
    list["data"]
        .as_array()
        .expect("the transactions in their paginated envelope")
        .clone()
}

/// Each transaction's `(type, status)`, oldest first.
fn transaction_steps(list: &Value) -> Vec<(String, String)> {
    transaction_rows(list)
        .iter()
        .map(|t| {
            (
                t["type"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}
