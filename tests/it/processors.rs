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
