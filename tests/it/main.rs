//! Black-box tests: each starts the real server (or opens the real store) on SQLite and on PostgreSQL.
//! The harness they share (the app, its client, the fakes) is in `tests/support/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod api_basics;
mod audit;
mod background_fairness;
mod backup;
mod card_form;
mod cli;
mod db_outage;
mod disk_faults;
mod fake_stripe_selftest;
mod forward;
mod forward_receiver;
mod forward_refusals;
mod http_server;
mod idempotency;
mod imports;
mod jobs;
mod key_custody;
mod metrics;
mod openapi;
mod payments;
mod payments_list;
mod processors;
mod rate_limit;
mod ready;
mod redis_faults;
mod sessions;
mod store_contract;
mod text_fields;
mod tokens;
mod vault;
mod webhooks;
