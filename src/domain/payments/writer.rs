//! The group-commit payment writer: concurrent payment writes (creations and steps) share one
//! transaction, so that one durable commit (one fsync on SQLite, one WAL flush on PostgreSQL) serves
//! many payments, and each count row is written once per commit rather than once per payment.

use tokio::sync::{mpsc, oneshot};

use crate::domain::group_commit::spawn_batches;
use crate::store::{DynStore, PaymentWrite, StoreError};

type Pending = (PaymentWrite, oneshot::Sender<Result<bool, StoreError>>);

const MAX_BATCH: usize = 256;

/// Hands payment writes to batches; a caller is answered only once its batch committed.
#[derive(Clone)]
pub struct PaymentWriter {
    tx: mpsc::Sender<Pending>,
}

impl PaymentWriter {
    /// One batch commits while the next gathers (see `group_commit`).
    pub fn spawn(store: DynStore) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        spawn_batches(store, rx, MAX_BATCH, |store, pending| async move {
            write_batch(&store, pending).await
        });
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
