//! Stepping the durable jobs by hand: test servers run no background workers, so a test runs the due
//! jobs when it wants them done.

use std::time::Duration;

use strongroom::jobs::{Step, Worker};

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
