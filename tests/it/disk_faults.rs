//! Faults of the disk: logs that cannot be written, a data directory with no space left.

use std::path::Path;

use reqwest::StatusCode;

use crate::support::{card, Backend, ServerProcess, TestDb};

/// `strongroom serve` with stdout and stderr on `/dev/full` (every write fails with ENOSPC) starts,
/// answers, tokenizes, and counts the log lines it had to drop.
#[tokio::test]
async fn logs_on_dev_full_neither_stop_nor_slow_the_server() {
    let db = TestDb::new(Backend::Sqlite).await;
    // A first start on a writable stdout shows the default account's key.
    let first = ServerProcess::start(&db, "first");
    let key = first.default_api_key();
    first.kill_9();

    let mut server = ServerProcess::start_with_output(&db, &[], Path::new("/dev/full"));
    let api = server.api(&key);
    let health = reqwest::get(format!("{}/health", server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    for pan in ["4111111111111111", "5555555555554444"] {
        let answer = api.tokenize(&card(pan)).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    }
    let ready: serde_json::Value = reqwest::get(format!("{}/ready", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert!(
        ready["log_lines_dropped"].as_u64().unwrap() > 0,
        "the dropped trace lines are counted: {ready}"
    );
    assert!(server.is_running(), "the server is still up");
}
