//! The audit rows of forwards, written by one task that puts every row waiting at that moment into one
//! transaction: each forward still waits until its row is durable, but concurrent forwards share a
//! commit (an fsync on SQLite) instead of queueing for the write lock one by one.

use tokio::sync::{mpsc, oneshot};

use crate::store::{AuditEvent, DynStore, StoreError, StoreResult};

type Pending = (AuditEvent, oneshot::Sender<StoreResult<()>>);

const MAX_BATCH: usize = 256;

#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Pending>,
}

impl AuditWriter {
    pub fn spawn(store: DynStore) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(write_batches(store, rx));
        Self { tx }
    }

    /// Returns once the row is durable.
    pub async fn write(&self, event: AuditEvent) -> StoreResult<()> {
        let stopped = || StoreError::Unavailable("the forward audit writer has stopped".into());
        let (done, answer) = oneshot::channel();
        self.tx.send((event, done)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn write_batches(store: DynStore, mut rx: mpsc::Receiver<Pending>) {
    let mut pending = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut pending, MAX_BATCH).await > 0 {
        let (events, answers): (Vec<_>, Vec<_>) = pending.drain(..).unzip();
        let written = store.insert_audit_events(&events).await;
        for done in answers {
            let _ = done.send(written.clone());
        }
    }
}
