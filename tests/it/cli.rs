//! The admin command line, run as the built binary against the database of a running server.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{on_both_backends, spawn_app, Backend};

on_both_backends!(admin_commands_work_while_the_server_runs);

async fn admin_commands_work_while_the_server_runs(backend: Backend) {
    let app = spawn_app(backend).await;

    let (ok, stdout, stderr) = app.cli(&[
        "account",
        "create",
        "--name",
        "acme",
        "--feature",
        "cde_import",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let created: Value =
        serde_json::from_str(stdout.trim()).expect("exactly one JSON document on stdout");
    let mut keys: Vec<_> = created.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["api_key", "id", "name"]);
    assert_eq!(created["name"], "acme");
    let account_id = created["id"].as_str().unwrap().to_owned();

    let me = app
        .with_key(created["api_key"].as_str().unwrap())
        .account()
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["id"].as_str(), Some(account_id.as_str()));
    assert_eq!(me.body["features"], serde_json::json!(["cde_import"]));

    let (ok, stdout, stderr) = app.cli(&[
        "key",
        "create",
        "--account",
        &account_id,
        "--label",
        "ci",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let key: Value = serde_json::from_str(stdout.trim()).unwrap();
    let secret = key["api_key"].as_str().unwrap().to_owned();
    let with_key = app.with_key(&secret).account().await;
    assert_eq!(with_key.status, StatusCode::OK);

    let (ok, _, stderr) = app.cli(&["key", "revoke", key["id"].as_str().unwrap()]);
    assert!(ok, "{stderr}");
    let revoked = app.wait_until_refused(&secret).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);

    let (ok, _, stderr) = app.cli(&["key", "revoke", key["id"].as_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("no active API key"), "{stderr}");

    let (ok, _, stderr) = app.cli(&[
        "key",
        "create",
        "--account",
        &uuid::Uuid::new_v4().to_string(),
        "--label",
        "x",
    ]);
    assert!(!ok);
    assert!(stderr.contains("no account with id"), "{stderr}");

    let audit = app
        .store()
        .list_audit_events(account_id.parse().unwrap(), 50)
        .await
        .unwrap();
    let actions: Vec<_> = audit
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    assert!(
        actions.contains(&("api_key.revoke", "success")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("api_key.revoke", "already_revoked")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("account.create", "success")),
        "{actions:?}"
    );
}

#[test]
fn a_database_url_of_an_unknown_backend_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(["migrate"])
        .env("STRONGROOM_DATA_DIR", dir.path())
        .env(
            "STRONGROOM_DATABASE_URL",
            "mysql://root@localhost/strongroom",
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("STRONGROOM_DATABASE_URL: unsupported scheme `mysql`"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_bad_setting_is_named_at_start() {
    let output = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(["serve"])
        .env("STRONGROOM_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("STRONGROOM_LISTEN"), "{stderr}");
}
