//! The admin command line: the built binary run against the test app's data directory and database.

use std::process::Command;

use super::app::TestApp;

impl TestApp {
    /// Runs `strongroom ARGS` on this app's database; returns (exited 0, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .args(args)
            .env("STRONGROOM_DATA_DIR", self.db.dir.path())
            .env("STRONGROOM_DATABASE_URL", &self.db.url)
            .env_remove("STRONGROOM_CONFIG")
            .output()
            .expect("the binary runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}
