//! Key custody as an operator meets it: key-file modes, `master-key init | rotate | retire` with the
//! `file` provider and with SoftHSM2 over PKCS#11, twenty rotations at once, data-key rotation killed
//! half-way, and deletion that an earlier copy of the database cannot undo after a data-key rotation.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use strongroom::domain::data_keys::rotation_progress;
use strongroom::store::{AccountKeysRecord, DynStore, JobStatus, SealedColumn, Ts};
use strongroom::vault::master::MasterKeys;
use strongroom::vault::{open_from_backup, sealed_version, Vault};
use uuid::Uuid;

use crate::support::fake_stripe::{FakeStripe, FakeStripeConfig};
use crate::support::{
    card, cli_with_env, on_both_backends, payment, spawn_app, stored_token, visa_cards, Backend,
    ServerProcess, SoftHsm, TestDb, STRIPE_KEY,
};

on_both_backends!(
    a_key_file_readable_by_others_stops_the_start_with_the_documented_message,
    twenty_master_key_rotations_at_once_leave_a_valid_key_file_and_every_card_opens,
    with_an_hsm_cards_tokenize_and_pay_through_rotation_retirement_and_restart,
    a_deleted_card_cannot_be_recovered_from_an_earlier_copy_after_a_data_key_rotation,
    a_deleted_card_can_be_recovered_from_an_earlier_copy_without_a_data_key_rotation,
    a_data_key_rotation_killed_half_way_under_load_resumes_and_every_token_opens,
);

const TOKENS: SealedColumn = SealedColumn {
    table: "tokens",
    id: "id",
    column: "sealed_card",
    account: "account_id",
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

async fn a_key_file_readable_by_others_stops_the_start_with_the_documented_message(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let key = db.dir.path().join("operator.key");
    std::fs::write(&key, format!("v1:{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .arg("serve")
        .env("STRONGROOM_DATA_DIR", db.dir.path())
        .env("STRONGROOM_DATABASE_URL", &db.url)
        .env("STRONGROOM_LISTEN", "127.0.0.1:0")
        .env("STRONGROOM_MASTER_KEY_FILE", &key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: master key file {} has mode 0644: it must not be readable by group or others (run `chmod 600 {}`)",
            key.display(),
            key.display()
        )),
        "{stderr}"
    );
    // The refusal is in the audit trail.
    let store = db.open_store().await;
    let refusals: i64 = count_audit(&store, "master_key.file_refuse").await;
    assert_eq!(refusals, 1);
    store.close().await;

    // Once the operator fixes the mode, the server starts.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = ServerProcess::start_with(
        &db,
        "fixed",
        &[("STRONGROOM_MASTER_KEY_FILE", key.to_str().unwrap())],
    );
    drop(server);

    // A new data directory is made 0700, with the database and the development key 0600.
    if backend == Backend::Sqlite {
        let data = db.dir.path().join("new").join("data");
        let out = Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .args(["master-key", "init", "--json"])
            .env("STRONGROOM_DATA_DIR", &data)
            .env_remove("STRONGROOM_DATABASE_URL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("strongroom.db")), 0o600);
        assert_eq!(mode(&data.join("master.key")), 0o600);
        // And the generated key passes its own check at the next start.
        MasterKeys::read(&data.join("master.key")).unwrap();
    }
}

async fn count_audit(store: &DynStore, action: &str) -> i64 {
    // Key operations are not an account's: read the trail the way an assessor would, by action.
    store.count_audit_events_with_action(action).await.unwrap()
}

fn token_id(answer: &Value) -> Uuid {
    answer["id"].as_str().unwrap().parse().unwrap()
}

async fn twenty_master_key_rotations_at_once_leave_a_valid_key_file_and_every_card_opens(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let account = app.account_id().await;
    let pans = ["4242424242424242", "4111111111111111", "5555555555554444"];
    let mut ids = Vec::new();
    for pan in pans {
        ids.push(token_id(&app.new_token(&card(pan)).await));
    }
    let children: Vec<_> = (0..20)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_strongroom"))
                .args(["master-key", "rotate", "--json"])
                .env("STRONGROOM_DATA_DIR", app.db.dir.path())
                .env("STRONGROOM_DATABASE_URL", &app.db.url)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut succeeded = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            succeeded += 1;
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(report["new_version"].as_u64().unwrap() >= 2);
        } else {
            // A clean failure: one error line, nothing half-written.
            assert!(stderr.starts_with("error: "), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
    let key_file = app.db.dir.path().join("master.key");
    let keys = MasterKeys::read(&key_file).unwrap();
    assert_eq!(keys.versions().len(), 1 + succeeded);
    assert_eq!(keys.current_version() as usize, 1 + succeeded);
    assert_eq!(mode(&key_file), 0o600);
    // No temporary file is left beside the key.
    let leftovers: Vec<_> = std::fs::read_dir(app.db.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(
        app.store()
            .get_account_keys(account)
            .await
            .unwrap()
            .unwrap()
            .master_version as u32,
        keys.current_version()
    );
    // Every card opens, in a fresh process's vault and through the running server.
    let fresh = Vault::new(app.store().clone(), Arc::new(app.db.file_provider()));
    for (id, pan) in ids.iter().zip(pans) {
        let record = stored_token(app.store(), &fresh, account, *id)
            .await
            .unwrap();
        let card = fresh.open(account, *id, &record.sealed_card).await.unwrap();
        assert_eq!(card.pan.peek(), pan);
        app.pay("one-off", &payment(&id.to_string(), 1000, "automatic"))
            .await;
    }
}

fn hsm_env(hsm: &SoftHsm, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = hsm.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn start(db: &TestDb, run: &str, env: &[(String, String)]) -> ServerProcess {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ServerProcess::start_with(db, run, &pairs)
}

async fn with_an_hsm_cards_tokenize_and_pay_through_rotation_retirement_and_restart(
    backend: Backend,
) {
    if !crate::support::softhsm_available() {
        return;
    }
    let db = TestDb::new(backend).await;
    let hsm = SoftHsm::new();
    // A few tens of cards stored at a fake Stripe, imported through the HSM-wrapped data key.
    let stripe = FakeStripe::start(FakeStripeConfig::default())
        .await
        .unwrap();
    let (_, stored) = stripe.add_customer(visa_cards(1, 24));
    let base = stripe.base_url();
    let env = hsm_env(
        &hsm,
        &[
            ("STRONGROOM_STRIPE_API_BASE", base.as_str()),
            ("STRONGROOM_STRIPE_RATE_LIMIT", "0"),
            ("STRONGROOM_STRIPE_RETRY_BASE_MS", "5"),
        ],
    );
    let (ok, stdout, stderr) = cli_with_env(&db, &["master-key", "init", "--json"], &env);
    assert!(ok, "{stderr}");
    let init: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(init["provider"], "pkcs11");
    assert_eq!(init["version"], 1);
    // A second init is refused: the key exists.
    let (ok, _, stderr) = cli_with_env(&db, &["master-key", "init"], &env);
    assert!(!ok);
    assert!(stderr.contains("already holds the key"), "{stderr}");

    let server = start(&db, "first", &env);
    let api = server.api(&server.default_api_key());
    let first = token_id(&api.new_token(&card("4242424242424242")).await);
    api.pay("one-off", &payment(&first.to_string(), 1200, "automatic"))
        .await;
    let (_, ended) = api.stripe_import_to_its_end(STRIPE_KEY).await;
    assert_eq!(
        (&ended["status"], &ended["successes"], &ended["failures"]),
        (
            &serde_json::json!("finished"),
            &serde_json::json!(24),
            &serde_json::json!(0)
        ),
        "{ended}"
    );
    let imported: Vec<(Uuid, String)> = api
        .all_tokens()
        .await
        .iter()
        .filter(|t| t["import_provider"] == "stripe")
        .map(|t| (token_id(t), t["business_key"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(imported.len(), stored.len());
    // An imported card is sealed like any other (the last four digits are Stripe's) and pays.
    let (paid_import, pm) = imported[0].clone();
    assert_eq!(
        api.get_token(paid_import).await.body["account_number_last_four"],
        stripe.card_of(&pm).unwrap().last4()
    );
    let paid = api
        .pay(
            "one-off",
            &payment(&paid_import.to_string(), 1500, "automatic"),
        )
        .await;
    assert_eq!(paid["status"], "captured", "{paid}");
    // No key file was made: the master key is in the token only.
    assert!(!db.dir.path().join("master.key").exists());

    // Rotate the HSM key while the server serves; a version still in use cannot be retired.
    let (ok, _, stderr) = cli_with_env(&db, &["master-key", "retire", "v1"], &env);
    assert!(!ok);
    assert!(
        stderr.contains(
            "error: master key v1 still wraps 1 account key set(s); run `master-key rotate` first"
        ),
        "{stderr}"
    );
    let (ok, stdout, stderr) = cli_with_env(&db, &["master-key", "rotate", "--json"], &env);
    assert!(ok, "{stderr}");
    let rotation: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rotation["new_version"], 2);
    assert_eq!(rotation["rewrapped_accounts"], 1);
    let second = token_id(&api.new_token(&card("5555555555554444")).await);
    for id in [first, second] {
        api.pay("one-off", &payment(&id.to_string(), 700, "automatic"))
            .await;
    }
    let (ok, stdout, stderr) = cli_with_env(&db, &["master-key", "retire", "v1", "--json"], &env);
    assert!(ok, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["remaining_versions"],
        serde_json::json!([2])
    );
    let key = server.default_api_key();
    drop(server);

    // A restart opens everything with v2 alone, imported cards included.
    let server = start(&db, "second", &env);
    let api = server.api(&key);
    let last_import = imported[imported.len() - 1].0;
    for id in [first, second, paid_import, last_import] {
        api.pay("one-off", &payment(&id.to_string(), 300, "automatic"))
            .await;
    }
    let third = token_id(&api.new_token(&card("378282246310005")).await);
    assert_eq!(api.get_token(third).await.status, StatusCode::OK);
    let store = db.open_store().await;
    for action in ["master_key.init", "master_key.rotate", "master_key.retire"] {
        assert!(count_audit(&store, action).await >= 1, "{action}");
    }
    store.close().await;
    // The token files hold the key encrypted under the PIN, never the plain value the process could read:
    // the key was generated sensitive and not extractable (see `vault/pkcs11.rs`), so no call returns it.
    assert!(hsm.token_dir().read_dir().unwrap().count() > 0);
}

/// What a backup holds of one card: the account's key record and the token's sealed card.
struct Backup {
    keys: AccountKeysRecord,
    sealed: Vec<u8>,
    /// The token's creation time, by which its row is found (with its id) in the copy.
    created_at: Ts,
}

/// Copies the database as a backup would: the SQLite files themselves, or the rows of PostgreSQL.
async fn copy_database(
    app: &crate::support::TestApp,
    account: Uuid,
    id: Uuid,
) -> (Option<tempfile::TempDir>, Backup) {
    let keys = app
        .store()
        .get_account_keys(account)
        .await
        .unwrap()
        .unwrap();
    let record = app.stored_token(account, id).await.unwrap();
    let (sealed, created_at) = (record.sealed_card, record.created_at);
    if app.db.url.starts_with("sqlite://") {
        // With `cp` in a process of its own: closing a descriptor of the database in this process (which
        // runs the server) would drop every POSIX lock SQLite holds on it here.
        let copy = tempfile::tempdir().unwrap();
        for suffix in ["", "-wal"] {
            let from = app.db.dir.path().join(format!("strongroom.db{suffix}"));
            if from.exists() {
                let copied = Command::new("cp")
                    .arg(&from)
                    .arg(copy.path().join(format!("strongroom.db{suffix}")))
                    .status()
                    .unwrap();
                assert!(copied.success());
            }
        }
        return (
            Some(copy),
            Backup {
                keys,
                sealed,
                created_at,
            },
        );
    }
    (
        None,
        Backup {
            keys,
            sealed,
            created_at,
        },
    )
}

/// Reads the card's rows back out of the copy (the SQLite files, opened as a database of their own).
async fn backup_rows(
    copy: &Option<tempfile::TempDir>,
    rows: Backup,
    account: Uuid,
    id: Uuid,
) -> Backup {
    let Some(copy) = copy else {
        return rows;
    };
    let url = format!("sqlite://{}", copy.path().join("strongroom.db").display());
    let store = strongroom::store::open(&url, 1, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let keys = store.get_account_keys(account).await.unwrap().unwrap();
    let sealed = store
        .get_token(account, id, Some(rows.created_at))
        .await
        .unwrap()
        .unwrap()
        .sealed_card;
    store.close().await;
    Backup {
        keys,
        sealed,
        created_at: rows.created_at,
    }
}

async fn deleted_card_after_copy(backend: Backend, rotate: bool) -> Result<String, String> {
    let app = spawn_app(backend).await;
    let account = app.account_id().await;
    let kept = token_id(&app.new_token(&card("4111111111111111")).await);
    let doomed = token_id(&app.new_token(&card("4242424242424242")).await);
    let (copy, rows) = copy_database(&app, account, doomed).await;

    assert_eq!(
        app.delete_token(doomed).await.status,
        StatusCode::NO_CONTENT
    );
    if rotate {
        let (ok, stdout, stderr) = app.cli(&[
            "data-key",
            "rotate",
            "--account",
            &account.to_string(),
            "--json",
        ]);
        assert!(ok, "{stderr}");
        let job: Uuid = serde_json::from_str::<Value>(&stdout).unwrap()["job_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        // What the command's progress bar reads: nothing re-sealed yet, then everything.
        let rotating = [(account, 2)];
        let (done, total) = rotation_progress(app.store(), &rotating).await.unwrap();
        assert_eq!(done, 0);
        assert!(total >= 1, "{total}");
        app.run_jobs().await;
        assert_eq!(
            rotation_progress(app.store(), &rotating).await.unwrap(),
            (total, total)
        );
        let ran = app.store().get_job(job).await.unwrap().unwrap();
        assert_eq!(ran.status, JobStatus::Done, "{:?}", ran.last_error);
        let live = app
            .store()
            .get_account_keys(account)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(live.dek_version, 2);
        assert!(live.previous_wrapped_dek.is_none());
        assert_ne!(live.wrapped_dek, rows.keys.wrapped_dek);
        // The token kept is re-sealed under the new data key and still pays.
        let record = app.stored_token(account, kept).await.unwrap();
        assert_eq!(sealed_version(&record.sealed_card), Some(2));
        app.pay("one-off", &payment(&kept.to_string(), 900, "automatic"))
            .await;
        let store = app.store().clone();
        assert_eq!(count_audit(&store, "data_key.rotate_start").await, 1);
        assert_eq!(count_audit(&store, "data_key.rotate_end").await, 1);
    }

    // An attacker with the copy and today's master key (the key file as it is now).
    let rows = backup_rows(&copy, rows, account, doomed).await;
    let provider = app.db.file_provider();
    open_from_backup(&provider, &rows.keys, doomed, &rows.sealed)
        .map(|card| card.pan.peek().to_owned())
        .map_err(|e| e.to_string())
}

async fn a_deleted_card_cannot_be_recovered_from_an_earlier_copy_after_a_data_key_rotation(
    backend: Backend,
) {
    let recovered = deleted_card_after_copy(backend, true).await;
    assert_eq!(
        recovered,
        Err("master key version 1 does not exist".to_owned())
    );
}

async fn a_deleted_card_can_be_recovered_from_an_earlier_copy_without_a_data_key_rotation(
    backend: Backend,
) {
    // The control: without the rotation, the same attempt succeeds, so the test above can fail.
    let recovered = deleted_card_after_copy(backend, false).await;
    assert_eq!(recovered, Ok("4242424242424242".to_owned()));
}

/// How many tokens the kill test rotates: `STRONGROOM_TEST_ROTATION_TOKENS`, default 10,000.
fn rotation_tokens() -> usize {
    std::env::var("STRONGROOM_TEST_ROTATION_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

async fn sealed_under(store: &DynStore, account: Uuid, version: u32) -> (usize, usize) {
    let rows = store
        .list_sealed(TOKENS, account, None, 1_000_000)
        .await
        .unwrap();
    let under = rows
        .iter()
        .filter(|(_, _, s)| sealed_version(s) == Some(version))
        .count();
    (under, rows.len())
}

async fn a_data_key_rotation_killed_half_way_under_load_resumes_and_every_token_opens(
    backend: Backend,
) {
    if !crate::support::softhsm_available() {
        return;
    }
    let db = TestDb::new(backend).await;
    let hsm = SoftHsm::new();
    let env = hsm_env(
        &hsm,
        &[
            ("STRONGROOM_JOB_LEASE_SECONDS", "2"),
            ("STRONGROOM_DATA_KEY_ROTATION_BATCH", "25"),
            ("STRONGROOM_WORKERS", "1"),
        ],
    );
    let (ok, _, stderr) = cli_with_env(&db, &["master-key", "init"], &env);
    assert!(ok, "{stderr}");
    let server = start(&db, "first", &env);
    let key = server.default_api_key();
    let api = server.api(&key);
    let account = api.account_id().await;
    let n = rotation_tokens();
    let pans = ["4242424242424242", "4111111111111111", "5555555555554444"];
    let ids: Vec<Uuid> = {
        use futures_util::StreamExt;
        futures_util::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                async move { token_id(&api.new_token(&card(pans[i % 3])).await) }
            })
            .buffer_unordered(16)
            .collect()
            .await
    };

    // Tokenization goes on during the rotation, up to the kill.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let background = {
        let api = api.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut made = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let answer = api.tokenize(&card("4111111111111111")).await;
                if answer.status != StatusCode::OK {
                    break;
                }
                made.push(token_id(&answer.body));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            made
        })
    };
    let (ok, stdout, stderr) = cli_with_env(
        &db,
        &[
            "data-key",
            "rotate",
            "--account",
            &account.to_string(),
            "--json",
        ],
        &env,
    );
    assert!(ok, "{stderr}");
    let job: Uuid = serde_json::from_str::<Value>(&stdout).unwrap()["job_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (ok, stdout, _) = cli_with_env(&db, &["job", "list", "--json"], &env);
    assert!(ok);
    assert!(stdout.contains(&job.to_string()), "{stdout}");

    let store = db.open_store().await;
    let started = Instant::now();
    let at_kill = loop {
        let (under, total) = sealed_under(&store, account, 2).await;
        if under >= n / 4 {
            break (under, total);
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Release);
    let made = background.await.unwrap();
    server.kill_9();
    // Killed half-way: some, not all, were re-sealed.
    assert!(
        at_kill.0 < at_kill.1,
        "the job finished before the kill: {at_kill:?}"
    );

    let server = start(&db, "second", &env);
    let started = Instant::now();
    loop {
        let status = store.get_job(job).await.unwrap().unwrap().status;
        if status == JobStatus::Done {
            break;
        }
        assert_ne!(status, JobStatus::Failed);
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the job did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (under, total) = sealed_under(&store, account, 2).await;
    assert_eq!(under, total);
    assert_eq!(total, n + made.len());
    let keys = store.get_account_keys(account).await.unwrap().unwrap();
    assert_eq!(keys.dek_version, 2);
    assert!(keys.previous_wrapped_dek.is_none() && keys.previous_dek_version.is_none());
    // Tokens open: a sample of the first ones, and every one made during the rotation.
    let api = server.api(&key);
    for id in ids.iter().step_by((n / 20).max(1)).chain(made.iter()) {
        api.pay("one-off", &payment(&id.to_string(), 100, "automatic"))
            .await;
    }
    let (ok, stdout, _) = cli_with_env(&db, &["job", "list", "--json"], &env);
    assert!(ok);
    assert!(!stdout.contains(&job.to_string()), "{stdout}");
    store.close().await;
}
