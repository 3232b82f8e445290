//! The loop both group-commit writers (tokens, payments) run: it gathers what callers queued into a
//! batch of at most `max_batch`, and lets as many batches commit at once as the backend allows.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

use crate::store::{Backend, DynStore};

/// How many batches may commit at once: SQLite takes one writer at a time (a second batch gathering
/// while the first commits only halves the batches), PostgreSQL commits on several connections.
pub(crate) fn batches_in_flight(store: &DynStore) -> usize {
    match store.backend() {
        Backend::Sqlite => 1,
        Backend::Postgres => 4,
    }
}

/// Spawns the loop: each batch goes to `write_batch`, which answers every caller in it.
pub(crate) fn spawn_batches<P, F, Fut>(
    store: DynStore,
    mut rx: mpsc::Receiver<P>,
    max_batch: usize,
    write_batch: F,
) where
    P: Send + 'static,
    F: Fn(DynStore, Vec<P>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(batches_in_flight(&store)));
    tokio::spawn(async move {
        loop {
            // The next batch is gathered once a slot is free: meanwhile callers queue up and join it.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let mut pending = Vec::with_capacity(max_batch);
            if rx.recv_many(&mut pending, max_batch).await == 0 {
                return;
            }
            let batch = write_batch(store.clone(), pending);
            tokio::spawn(async move {
                batch.await;
                drop(slot);
            });
        }
    });
}
