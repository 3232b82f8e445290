//! The ingest endpoint's reads of imports, in rounds: Stripe forwards an import's cards many at a time,
//! and each forward must find its import still running before its card is written. Every request
//! waiting when a round starts is answered by that round's one read of its import, so that the forwards
//! in flight cost the database a few reads rather than one each; and since a round only starts after
//! every one of its requests arrived, no answer is older than the request it answers (an import ended
//! before a forward arrived is never seen running by it).

use std::collections::HashMap;

use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::domain::group_commit::spawn_batches;
use crate::store::{DynStore, ImportRecord, StoreError, StoreResult};

type Answer = oneshot::Sender<StoreResult<Option<ImportRecord>>>;

/// The most requests one round answers; more wait for the next.
const ROUND: usize = 1024;

#[derive(Clone)]
pub(crate) struct ImportReads {
    tx: mpsc::Sender<(Uuid, Answer)>,
}

impl ImportReads {
    /// One round at a time, through the loop the group-commit writers run (`spawn_batches`).
    pub(crate) fn spawn(store: DynStore) -> Self {
        let (tx, rx) = mpsc::channel::<(Uuid, Answer)>(ROUND);
        spawn_batches(store, rx, ROUND, |store, waiting| async move {
            let mut by_import: HashMap<Uuid, Vec<Answer>> = HashMap::new();
            for (id, answer) in waiting {
                by_import.entry(id).or_default().push(answer);
            }
            // Imports of several accounts are read side by side.
            join_all(by_import.into_iter().map(|(id, answers)| {
                let store = store.clone();
                async move {
                    let read = store.get_import(id).await;
                    for answer in answers {
                        let _ = answer.send(read.clone());
                    }
                }
            }))
            .await;
        });
        Self { tx }
    }

    /// The import as stored, read after this call was made.
    pub(crate) async fn get(&self, id: Uuid) -> StoreResult<Option<ImportRecord>> {
        let stopped = || StoreError::Unavailable("the import reader has stopped".into());
        let (answer, read) = oneshot::channel();
        self.tx.send((id, answer)).await.map_err(|_| stopped())?;
        read.await.map_err(|_| stopped())?
    }
}
