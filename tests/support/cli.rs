//! The admin command line: the built binary run against the test app's data directory and database.

use std::process::Command;

use super::app::TestApp;
use super::db::TestDb;

/// Runs `strongroom ARGS` on `db` with `env` added; returns (exited 0, stdout, stderr).
pub fn cli_with_env(
    db: &TestDb,
    args: &[&str],
    env: &[(String, String)],
) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(args)
        .env("STRONGROOM_DATA_DIR", db.dir.path())
        .env("STRONGROOM_DATABASE_URL", &db.url)
        .env_remove("STRONGROOM_CONFIG")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("the binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

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
