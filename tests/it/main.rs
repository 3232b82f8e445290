//! Black-box tests: each starts the real server (or opens the real store) on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api_basics;
mod cli;
#[path = "../support/fake_stripe.rs"]
mod fake_stripe;
mod fake_stripe_selftest;
mod forward;
mod forward_receiver;
mod forward_refusals;
mod helpers;
mod idempotency;
mod imports;
mod jobs;
mod payments;
mod payments_list;
mod receiver;
mod store_contract;
mod tokens;
mod vault;
mod webhooks;
