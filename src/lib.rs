//! Strongroom: a self-hosted card vault and payments API speaking the Commerce API v2.
//!
//! `main.rs` only parses the command line; everything else lives here so that the CLI, the tests and
//! the benchmarks start the very same server through [`server::start`].

pub mod api;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod domain;
pub mod jobs;
#[cfg(test)]
mod layers;
pub mod metrics;
pub mod model;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod vault;
