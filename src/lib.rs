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

/// A new random id (a version 4 UUID, as every id of the API is), drawn from the thread's CSPRNG
/// (`rand::thread_rng`: ChaCha, seeded and reseeded from the OS) rather than a `getrandom` system call
/// per id as `Uuid::new_v4` makes it; a tokenization makes two (its request's and its token's).
pub fn new_id() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// Locks `mutex`, taking it over if a thread panicked while it held it. For the in-memory maps and
/// buffers locked through this (codes, counters, caches, log lines) a panic elsewhere leaves data that
/// are still usable, and refusing them would turn one panic into failed requests from then on.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn new_ids_are_distinct_version_4_uuids_on_every_thread() {
        let here: HashSet<_> = (0..10_000).map(|_| super::new_id()).collect();
        let there: HashSet<_> =
            std::thread::spawn(|| (0..10_000).map(|_| super::new_id()).collect())
                .join()
                .unwrap();
        assert_eq!(here.len(), 10_000);
        assert_eq!(there.len(), 10_000);
        assert!(here.is_disjoint(&there));
        for id in here.iter().chain(&there) {
            assert_eq!(id.get_version(), Some(uuid::Version::Random));
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
    }
}
