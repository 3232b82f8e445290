//! Stepping the durable jobs by hand: test servers run no background workers, so a test runs the due
//! jobs when it wants them done.

use std::time::Duration;

use strongroom::jobs::{Step, Worker};
use strongroom::store::Fence;

use super::app::TestApp;

impl TestApp {
    /// A worker over this server's store with every job handler the server registers.
    pub fn worker(&self) -> Worker {
        Worker::new(
            self.store().clone(),
            strongroom::server::job_handlers(self.server().state()),
            Duration::from_secs(30),
        )
    }

    /// Runs every due job until none is left.
    pub async fn run_jobs(&self) {
        let worker = self.worker();
        while worker.step().await.unwrap() != Step::Idle {}
    }
}

/// The fence `owner` would write under on job `id`: its current lease generation with that owner (so
/// an owner that lost the job is refused by its owner, and the one holding it passes).
pub async fn held(store: &strongroom::store::DynStore, id: uuid::Uuid, owner: &str) -> Fence {
    let generation = store
        .get_job(id)
        .await
        .unwrap()
        .map(|j| j.lease_generation)
        .unwrap_or_default();
    Fence {
        job: id,
        owner: owner.to_owned(),
        generation,
    }
}
