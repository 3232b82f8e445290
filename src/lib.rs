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

/// Locks `mutex`, taking it over if a thread panicked while it held it. For the in-memory maps and
/// buffers locked through this (codes, counters, caches, log lines) a panic elsewhere leaves data that
/// are still usable, and refusing them would turn one panic into failed requests from then on.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
