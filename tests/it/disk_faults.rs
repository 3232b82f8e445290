//! Faults of the disk: logs that cannot be written, a data directory with no space left.

use std::path::Path;

use reqwest::StatusCode;
use strongroom::store::Feature;

use crate::support::{card, Backend, ServerProcess, TestDb};

/// `strongroom serve` with stdout and stderr on `/dev/full` (every write fails with ENOSPC) starts,
/// answers, tokenizes, and counts the log lines it had to drop.
#[tokio::test]
async fn logs_on_dev_full_neither_stop_nor_slow_the_server() {
    let db = TestDb::new(Backend::Sqlite).await;
    // A first start: the default account's key it prints on stdout is lost, not a crash.
    let mut server = ServerProcess::start_with_output(&db, &[], Path::new("/dev/full"));
    // Answered once start-up (migrations, the default account) is over.
    let health = reqwest::get(format!("{}/health", server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let store = db.open_store().await;
    let (_, _, key) = strongroom::domain::accounts::create_account(
        &store,
        "logs",
        [Feature::CdeImport].into_iter().collect(),
        "test",
    )
    .await
    .unwrap();
    store.close().await;
    let key = key.expose().to_owned();
    let api = server.api(&key);
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

/// A log reader that stops reading (stderr on a pipe nobody drains, as a stalled log shipper or a paused
/// terminal leaves it) holds up the server's log-writer thread, not its requests: they are answered,
/// and the lines that found no room are dropped and counted.
#[tokio::test]
async fn a_log_reader_that_stops_reading_does_not_stop_the_server() {
    let db = TestDb::new(Backend::Sqlite).await;
    let fifo = db.dir.path().join("stderr.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Open for reading (and writing, so that opening does not wait for a writer) and never read: once
    // the pipe's buffer is full, every write to it blocks.
    let _never_read = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    // Logging at trace level, as every test server does: several lines a request.
    let server = ServerProcess::start_with_output(&db, &[], &fifo);
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let mut requests = 0;
    let dropped = loop {
        for _ in 0..200 {
            let answer = client
                .get(format!("{}/health", server.base))
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await
                .unwrap_or_else(|e| panic!("request {requests} was not answered: {e}"));
            assert_eq!(answer.status(), StatusCode::OK);
            requests += 1;
        }
        let ready: serde_json::Value = client
            .get(format!("{}/ready", server.base))
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ready["status"], "ready");
        let dropped = ready["log_lines_dropped"].as_u64().unwrap();
        if dropped > 0 {
            break dropped;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{requests} requests and no line dropped: the log never filled the pipe and the buffer"
        );
    };
    assert!(
        dropped > 0 && requests >= 200,
        "{dropped} lines dropped after {requests} requests"
    );
}

/// A tmpfs of `megabytes` mounted on a fresh directory, unmounted when dropped (needs root).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with a file, up to its last byte.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.write_all(&[0u8]);
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// SQLite's data directory on a small tmpfs filled to the last byte: writes answer 503 with
/// `Retry-After` (never 500), `/ready` answers 503 naming the cause, the server stays up, and once space
/// is freed `/ready` is 200 again and writes succeed.
#[tokio::test]
async fn a_full_data_disk_answers_503_and_recovers_when_space_returns() {
    let Some(disk) = SmallDisk::mount(16) else {
        eprintln!("skipped: cannot mount a tmpfs (not root?)");
        return;
    };
    let db = TestDb::new(Backend::Sqlite).await;
    let data_dir = disk.path().to_str().unwrap().to_owned();
    let url = format!("sqlite://{data_dir}/strongroom.db");
    let env = [
        ("STRONGROOM_DATA_DIR", data_dir.as_str()),
        ("STRONGROOM_DATABASE_URL", url.as_str()),
        ("RUST_LOG", "info"),
    ];
    let mut server = ServerProcess::start_with(&db, "small-disk", &env);
    let key = server.default_api_key();
    let api = server.api(&key);
    let ready = api.anonymous(reqwest::Method::GET, "/ready");
    assert_eq!(crate::support::send(ready).await.status, StatusCode::OK);
    api.tokenize(&card("4111111111111111")).await.ok_body();

    let filler = disk.fill();
    // SQLite may still find room in pages it holds; the disk being full shows within a few writes.
    let mut refused = None;
    for _ in 0..200 {
        let answer = api.tokenize(&card("4111111111111111")).await;
        match answer.status {
            StatusCode::OK => continue,
            _ => {
                refused = Some(answer);
                break;
            }
        }
    }
    let refused = refused.expect("a write on a full disk is refused");
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["classifier"], "UNAVAILABLE");
    assert!(refused.header("retry-after").is_some());

    let ready = crate::support::send(api.anonymous(reqwest::Method::GET, "/ready")).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.body
    );
    assert!(
        ready.body["message"].as_str().unwrap().contains("space"),
        "{}",
        ready.body
    );
    assert!(ready.header("retry-after").is_some());
    assert!(server.is_running(), "the server stays up on a full disk");

    std::fs::remove_file(filler).unwrap();
    let ready = crate::support::send(api.anonymous(reqwest::Method::GET, "/ready")).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    for pan in ["4111111111111111", "5555555555554444"] {
        api.tokenize(&card(pan)).await.ok_body();
    }
    assert!(server.is_running());
    drop(server);
    drop(disk);
}
