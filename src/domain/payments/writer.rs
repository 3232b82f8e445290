//! The group-commit payment writer: concurrent payment writes (creations and steps) share one
//! transaction, so that one durable commit (one fsync on SQLite, one WAL flush on PostgreSQL) serves
//! many payments, and each count row is written once per commit rather than once per payment.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::store::{Backend, DynStore, PaymentWrite, StoreError};

type Pending = (PaymentWrite, oneshot::Sender<Result<bool, StoreError>>);

const MAX_BATCH: usize = 256;

/// Hands payment writes to batches; a caller is answered only once its batch committed.
#[derive(Clone)]
pub struct PaymentWriter {
    tx: mpsc::Sender<Pending>,
}

impl PaymentWriter {
    /// SQLite takes one writer at a time, so one batch commits while the next gathers; PostgreSQL
    /// commits several batches at once on several connections.
    pub fn spawn(store: DynStore) -> Self {
        let in_flight = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_batches(store, rx, in_flight));
        Self { tx }
    }

    /// Makes the write durably; `false`: a change of a payment that moved on, and nothing was written.
    pub async fn write(&self, write: PaymentWrite) -> Result<bool, StoreError> {
        let stopped = || StoreError::Unavailable("the payment writer has stopped".into());
        let (done, answer) = oneshot::channel();
        self.tx.send((write, done)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn write_batches(store: DynStore, mut rx: mpsc::Receiver<Pending>, in_flight: usize) {
    let slots = Arc::new(Semaphore::new(in_flight));
    loop {
        // Gather the next batch only once a slot is free: while the last commits, writes queue up.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut pending = Vec::with_capacity(MAX_BATCH);
        if rx.recv_many(&mut pending, MAX_BATCH).await == 0 {
            return;
        }
        let store = store.clone();
        tokio::spawn(async move {
            write_batch(&store, pending).await;
            drop(slot);
        });
    }
}

async fn write_batch(store: &DynStore, pending: Vec<Pending>) {
    let (writes, answers): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
    match store.write_payments(&writes).await {
        Ok(made) => {
            for (done, made) in answers.into_iter().zip(made) {
                let _ = done.send(Ok(made));
            }
        }
        // One bad write must not fail its neighbours (other payments, maybe other tenants'): after
        // a failure that is not the database being away, each is written on its own.
        Err(ref err) if writes.len() > 1 && !matches!(err, StoreError::Unavailable(_)) => {
            for (write, done) in writes.into_iter().zip(answers) {
                let made = store.write_payments(std::slice::from_ref(&write)).await;
                let _ = done.send(made.map(|made| made.first() == Some(&true)));
            }
        }
        Err(err) => {
            for done in answers {
                let _ = done.send(Err(err.clone()));
            }
        }
    }
}
