//! Processors and routing: the admin commands and their refusals, each use case through the Stripe
//! connector against a fake Stripe, failover between processors, and no processor secret at rest or in
//! the logs.

mod abandon;
mod admin;
mod crash;
mod failover;
mod retries;
mod secrets;
mod stripe;
