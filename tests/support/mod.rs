//! The black-box test harness: a real server on port 0 over a fresh database per test (`TestApp`, with
//! one method per endpoint), the real binary as a process, a webhook receiver and a fake Stripe.
//! Test modules take everything they share from here, never from one another.

mod answer;
mod app;
mod backend;
mod cli;
pub use cli::cli_with_env;
mod client;
mod db;
pub mod fake_adyen;
pub mod fake_stripe;
mod hsm;
mod imports;
mod jobs;
pub use jobs::held;
mod payments;
mod process;
mod processors;
pub mod receiver;
pub mod relay;
pub mod stripe_client;
mod tokens;
mod tools;
mod webhooks;

pub use answer::{error_body, send, validation_body, Answer};
pub use app::{spawn_app, spawn_app_with, TestApp};
pub(crate) use backend::on_both_backends;
pub use backend::{postgres_available, redis_url, Backend, POSTGRES_URL_VAR};
pub use client::ApiClient;
pub use db::TestDb;
pub use hsm::SoftHsm;
pub use imports::{spawn_app_for_stripe, stripe_settings, visa_cards, STRIPE_KEY};
pub use payments::payment;
pub use process::ServerProcess;
pub use processors::{
    cli_with_input, contains, database_bytes, spawn_app_with_adyen, STRIPE_SECRET,
};
pub use tokens::{card, stored_token, with_check_digit};
pub use tools::{softhsm_available, tool_available};
pub use webhooks::fast_webhooks;
