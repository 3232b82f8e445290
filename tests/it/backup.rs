//! `strongroom backup` while the server tokenizes, and `strongroom restore` into a new data directory:
//! the restored server opens every token acknowledged before the backup began. SQLite only: PostgreSQL
//! is backed up with its own tools, which the command says.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::Mutex;

use crate::support::{card, payment, with_check_digit, Backend, ServerProcess, TestDb};

fn strongroom(db: &TestDb, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(args)
        .env("STRONGROOM_DATA_DIR", db.dir.path())
        .env("STRONGROOM_DATABASE_URL", &db.url)
        .env("STRONGROOM_LISTEN", "127.0.0.1:0")
        .env_remove("STRONGROOM_CONFIG")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_tokenizing_restores_every_token_acknowledged_before_it() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = ServerProcess::start(&db, "live");
    let key = server.default_api_key();
    let api = server.api(&key);

    // Four clients tokenizing without pause until told to stop; each acknowledged id is kept with the
    // moment it was acknowledged relative to the backup's start.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let backup_started = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..4u32 {
        let (api, acknowledged, backup_started, stop) = (
            api.clone(),
            acknowledged.clone(),
            backup_started.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut n = 0u32;
            let mut after = 0u32;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let pan = with_check_digit(&format!("4242{client:02}{n:09}"));
                let answer = api.tokenize(&card(&pan)).await;
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
                // Only what was answered before the backup began counts.
                if !backup_started.load(Ordering::SeqCst) {
                    acknowledged
                        .lock()
                        .await
                        .push(answer.body["id"].as_str().unwrap().to_owned());
                } else {
                    after += 1;
                }
            }
            after
        }));
    }
    while acknowledged.lock().await.len() < 40 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let target = db.dir.path().join("copy.db");
    let target_str = target.to_str().unwrap().to_owned();
    let before: Vec<String> = {
        let guard = acknowledged.lock().await;
        backup_started.store(true, Ordering::SeqCst);
        guard.clone()
    };
    let (ok, err) = tokio::task::spawn_blocking({
        let db_url = db.url.clone();
        let dir = db.dir.path().to_owned();
        move || {
            let output = Command::new(env!("CARGO_BIN_EXE_strongroom"))
                .args(["backup", "--to", &target_str])
                .env("STRONGROOM_DATA_DIR", dir)
                .env("STRONGROOM_DATABASE_URL", db_url)
                .output()
                .unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    // Writes went on during the copy.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let mut after = 0;
    for client in clients {
        after += client.await.unwrap();
    }
    assert!(after > 0, "no writes ran beside the backup");
    // A second backup onto the same file is refused.
    let (ok, err) = strongroom(&db, &["backup", "--to", target.to_str().unwrap()]);
    assert!(!ok && err.contains("never overwrites"), "{err}");

    // Restore into a new data directory; the master key is carried over on its own, as an operator
    // keeps it apart from the database.
    let fresh = TestDb::new(Backend::Sqlite).await;
    std::fs::copy(
        db.dir.path().join("master.key"),
        fresh.dir.path().join("master.key"),
    )
    .unwrap();
    let (ok, err) = strongroom(&fresh, &["restore", "--from", target.to_str().unwrap()]);
    assert!(ok, "{err}");
    // A second restore must be forced.
    let (ok, err) = strongroom(&fresh, &["restore", "--from", target.to_str().unwrap()]);
    assert!(!ok && err.contains("--force"), "{err}");
    let (ok, err) = strongroom(
        &fresh,
        &["restore", "--from", target.to_str().unwrap(), "--force"],
    );
    assert!(ok, "{err}");

    let restored = ServerProcess::start(&fresh, "restored");
    // Restoring under a running server is refused, even with --force.
    let (ok, err) = strongroom(
        &fresh,
        &["restore", "--from", target.to_str().unwrap(), "--force"],
    );
    assert!(!ok && err.contains("running"), "{err}");
    let restored_api = restored.api(&key);
    for id in &before {
        let answer = restored_api.get_token(id).await;
        assert_eq!(answer.status, StatusCode::OK, "token {id}: {}", answer.body);
    }
    // The card data opens: a payment decrypts the card of the first and the last token.
    for id in [&before[0], &before[before.len() - 1]] {
        let paid = restored_api
            .create_payment("one-off", &payment(id, 500, "automatic"))
            .await;
        assert!(paid.status.is_success(), "{}", paid.body);
        assert_eq!(paid.body["status"], "captured", "{}", paid.body);
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_backup_is_left_to_postgresqls_own_tools() {
    let db = TestDb::new(Backend::Sqlite).await;
    let output = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(["backup", "--to", "/tmp/never-written.db"])
        .env("STRONGROOM_DATA_DIR", db.dir.path())
        .env(
            "STRONGROOM_DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/none",
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("pg_dump"));
}
