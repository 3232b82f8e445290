//! The vault as a user would check it: no card data in the database files, the dumps or the trace logs;
//! nothing lost to a kill -9 after a 200, even with batches in flight; tokens sealed before a
//! master-key rotation open after it.

use std::io::Read;
use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, Row};
use strongroom::store::Feature;
use strongroom::vault::file_provider::FileProvider;
use strongroom::vault::Vault;

use crate::support::{
    card, on_both_backends, send, spawn_app, stored_token, with_check_digit, Backend,
    ServerProcess, TestDb,
};

on_both_backends!(
    no_card_data_reaches_the_database_or_the_trace_logs_and_a_kill_loses_nothing,
    a_kill_while_batches_are_in_flight_loses_no_answered_token,
    tokens_sealed_before_a_master_key_rotation_open_after_it,
    a_new_accounts_first_burst_makes_its_keys_once,
);

fn file_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        file.read_to_end(&mut bytes).unwrap();
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every row of every table as text, as a dump would show it (bytea as hex).
async fn postgres_dump(url: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut dump = String::new();
    for table in tables {
        for row in sqlx::query(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(&mut conn)
            .await
            .unwrap()
        {
            dump.push_str(&row.get::<String, _>(0));
            dump.push('\n');
        }
    }
    dump
}

async fn no_card_data_reaches_the_database_or_the_trace_logs_and_a_kill_loses_nothing(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let server = ServerProcess::start(&db, "first");
    let key = server.default_api_key();
    let api = server.api(&key);

    let cards = [
        ("4111111111111111", "\"737\""),
        ("5555555555554444", "\"862\""),
        ("378282246310005", "\"8642\""),
        ("6011111111111117", "\"419\""),
        ("3530111333300000", "\"503\""),
    ];
    let mut ids = Vec::new();
    for (n, (pan, code)) in cards.iter().enumerate() {
        let mut body = card(pan);
        body["security_code"] = serde_json::from_str::<Value>(code).unwrap();
        let answer = if n % 2 == 0 {
            api.tokenize_idempotent(&format!("card-{n}"), &body).await
        } else {
            api.tokenize(&body).await
        };
        assert_eq!(answer.status, StatusCode::OK);
        ids.push(answer.body["id"].as_str().unwrap().to_owned());
    }
    // A card and a fresh code that come through a token session must not leak either.
    let session = api.post_json("/tokens/session", &json!({})).await.body["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let through_session = send(
        api.anonymous(
            reqwest::Method::POST,
            &format!("/sessions/{session}/complete-action"),
        )
        .json(
            &json!({"action": "tokenize_card", "result": {"account_number": "4000002500003155",
            "expiry_month": 4, "expiry_year": 2031, "security_code": "573"}}),
        ),
    )
    .await;
    assert_eq!(
        through_session.status,
        StatusCode::OK,
        "{}",
        through_session.body
    );
    ids.push(
        through_session.body["data"]["token_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let refresh = api
        .post_empty(&format!("/tokens/{}/refresh-session", ids[0]))
        .await
        .body["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let refreshed = send(
        api.anonymous(
            reqwest::Method::POST,
            &format!("/sessions/{refresh}/complete-action"),
        )
        .json(&json!({"action": "refresh_security_code", "result": {"security_code": "628"}})),
    )
    .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    // Rejected card data must not leak either.
    let rejected = json!({"account_number": "4000056655665556", "expiry_month": 1, "expiry_year": 2020, "security_code": "9137"});
    let answer = api.tokenize(&rejected).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);

    // kill -9 straight after the 200s: every token must still be there on the next start.
    let (first_out, first_log) = server.kill_9();
    let server = ServerProcess::start(&db, "second");
    let listed = server.api(&key).list_tokens("limit=500").await.body;
    let mut found: Vec<String> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    found.sort();
    ids.sort();
    assert_eq!(found, ids, "a token answered 200 survives kill -9");
    let (second_out, second_log) = server.kill_9();
    assert!(
        first_log.contains("TRACE"),
        "the server logged at trace level"
    );

    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("first run's log".into(), first_log.into_bytes()),
        ("second run's log".into(), second_log.into_bytes()),
        (
            "stdout".into(),
            format!("{first_out}{second_out}").into_bytes(),
        ),
    ];
    match backend {
        Backend::Sqlite => {
            for suffix in ["", "-wal", "-shm"] {
                let path = db.dir.path().join(format!("strongroom.db{suffix}"));
                places.push((path.display().to_string(), file_bytes(&path)));
            }
        }
        Backend::Postgres => places.push((
            "the PostgreSQL tables".into(),
            postgres_dump(&db.url).await.into_bytes(),
        )),
    }
    // The scan reads the real data: the masked number, which is meant to be stored, is found.
    let stored = places
        .iter()
        .skip(3)
        .any(|(_, bytes)| contains(bytes, "411111XXXXXX1111"));
    assert!(stored, "the database scan found no token at all");
    let mut secrets: Vec<String> = cards
        .iter()
        .flat_map(|(pan, code)| [pan.to_string(), hex::encode(pan), code.to_string()])
        .collect();
    secrets.extend([
        "4000002500003155".to_owned(),
        "\"573\"".to_owned(),
        "\"628\"".to_owned(),
        "4000056655665556".to_owned(),
        "\"9137\"".to_owned(),
        "security_code".to_owned(),
    ]);
    for (place, bytes) in &places {
        assert!(
            !bytes.is_empty() || place.ends_with("-shm") || place.ends_with("-wal"),
            "{place} is empty"
        );
        for secret in &secrets {
            assert!(!contains(bytes, secret), "{secret} found in {place}");
        }
    }
}

async fn tokens_sealed_before_a_master_key_rotation_open_after_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let account = app.account_id().await;
    let mut tokens = Vec::new();
    for pan in ["4111111111111111", "5555555555554444"] {
        tokens.push((
            account,
            app.new_token(&card(pan)).await["id"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
            pan,
        ));
    }

    let (ok, stdout, stderr) = app.cli(&["master-key", "rotate", "--json"]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report, json!({"new_version": 2, "rewrapped_accounts": 1}));

    // The running server goes on tokenizing, for old accounts and new ones.
    tokens.push((
        account,
        app.new_token(&card("6011111111111117")).await["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        "6011111111111117",
    ));
    let (other, other_key) = app
        .create_account("after-rotation", &[Feature::CdeImport])
        .await;
    let answer = app
        .with_key(&other_key)
        .tokenize(&card("3530111333300000"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    tokens.push((
        other,
        answer.body["id"].as_str().unwrap().parse().unwrap(),
        "3530111333300000",
    ));
    for owner in [account, other] {
        assert_eq!(
            app.store()
                .get_account_keys(owner)
                .await
                .unwrap()
                .unwrap()
                .master_version,
            2
        );
    }

    // Retire version 1: a fresh process with only version 2 opens every token, old and new.
    let key_file = app.db.dir.path().join("master.key");
    let text = std::fs::read_to_string(&key_file).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| l.starts_with("v2:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&key_file, kept).unwrap();
    let fresh = Vault::new(
        app.store().clone(),
        std::sync::Arc::new(app.db.file_provider()),
    );
    for (owner, id, pan) in tokens {
        let record = stored_token(app.store(), &fresh, owner, id).await.unwrap();
        let card = fresh.open(owner, id, &record.sealed_card).await.unwrap();
        assert_eq!(card.pan.peek(), pan);
        // Sealed for one token, a ciphertext does not open as another.
        assert!(fresh
            .open(owner, uuid::Uuid::new_v4(), &record.sealed_card)
            .await
            .is_err());
    }
    let audit = app.store().list_audit_events(account, 100).await.unwrap();
    assert!(audit.iter().all(|e| !e.action.as_str().is_empty()));
}

/// How many clients tokenize at once while the server is killed: enough that the writer has batches
/// committing and others gathering at the moment of the kill.
const KILL_CLIENTS: usize = 32;

async fn a_kill_while_batches_are_in_flight_loses_no_answered_token(backend: Backend) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let db = TestDb::new(backend).await;
    let server = ServerProcess::start(&db, "first");
    let key = server.default_api_key();
    let account = server.api(&key).account_id().await;

    // Clients tokenize distinct cards in a loop; each keeps the cards answered 200 with their token id.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(Vec::<(uuid::Uuid, String)>::new()));
    let mut clients = Vec::new();
    for client in 0..KILL_CLIENTS {
        let api = server.api(&key);
        let (stop, answered) = (stop.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            let mut unanswered = 0;
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let pan = with_check_digit(&format!("4{client:03}{n:011}"));
                let sent = api
                    .request(reqwest::Method::POST, "/cde-import")
                    .json(&card(&pan))
                    .send()
                    .await;
                // A request cut off by the kill has no answer, and promises nothing.
                let Ok(response) = sent else {
                    unanswered += 1;
                    continue;
                };
                if response.status() != StatusCode::OK {
                    continue;
                }
                let Ok(body) = response.json::<Value>().await else {
                    continue;
                };
                let id = body["id"].as_str().unwrap().parse().unwrap();
                answered.lock().unwrap().push((id, pan));
            }
            unanswered
        }));
    }
    // Kill once the writer is busy: some hundreds of tokens answered, requests still streaming in.
    let started = std::time::Instant::now();
    while answered.lock().unwrap().len() < 300 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the clients got too few answers to test with"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = server.kill_9();
    stop.store(true, Ordering::Relaxed);
    let mut unanswered = 0;
    for client in clients {
        unanswered += client.await.unwrap();
    }
    let answered = std::mem::take(&mut *answered.lock().unwrap());
    assert!(
        unanswered > 0,
        "the kill cut off no request: nothing was in flight"
    );

    // Every token answered 200 is stored and opens to its card, with only the master key on disk.
    let store = db.open_store().await;
    let vault = Vault::new(store.clone(), std::sync::Arc::new(db.file_provider()));
    for (id, pan) in &answered {
        let record = stored_token(&store, &vault, account, *id).await;
        let record = record.unwrap_or_else(|| panic!("token {id} answered 200 is lost"));
        let opened = vault.open(account, *id, &record.sealed_card).await.unwrap();
        assert_eq!(opened.pan.peek(), pan.as_str());
    }

    // The restarted server serves them, and its total counts exactly the tokens stored: tokens cut off
    // in flight are there whole (counted) or not at all.
    let server = ServerProcess::start(&db, "second");
    let listed = server.api(&key).list_tokens("limit=1").await;
    assert_eq!(listed.status, StatusCode::OK);
    let stored = store
        .count_tokens(&strongroom::store::TokenQuery {
            account_id: account,
            from: None,
            until: None,
            oldest_first: true,
            limit: 1,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(listed.body["pagination"]["total_items"], json!(stored));
    assert!(stored >= answered.len() as u64);
    let first = &answered[0];
    let shown = server.api(&key).get_token(first.0).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["id"], json!(first.0.to_string()));
    let _ = server.kill_9();
}

/// A key provider that counts its wraps, over the file provider of a test's data directory.
struct CountingProvider {
    inner: FileProvider,
    wraps: std::sync::atomic::AtomicUsize,
}

impl strongroom::vault::provider::KeyProvider for CountingProvider {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn versions(&self) -> Vec<u32> {
        self.inner.versions()
    }
    fn reload(&self) -> strongroom::vault::provider::ProviderResult<()> {
        self.inner.reload()
    }
    fn wrap(
        &self,
        version: u32,
        aad: &[u8],
        key: &strongroom::vault::master::KeyBytes,
    ) -> strongroom::vault::provider::ProviderResult<Vec<u8>> {
        self.wraps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.wrap(version, aad, key)
    }
    fn unwrap(
        &self,
        version: u32,
        aad: &[u8],
        wrapped: &[u8],
    ) -> strongroom::vault::provider::ProviderResult<strongroom::vault::master::KeyBytes> {
        self.inner.unwrap(version, aad, wrapped)
    }
    fn init(&self) -> strongroom::vault::provider::ProviderResult<u32> {
        self.inner.init()
    }
    fn add_version(&self) -> strongroom::vault::provider::ProviderResult<u32> {
        self.inner.add_version()
    }
    fn destroy_version(&self, version: u32) -> strongroom::vault::provider::ProviderResult<()> {
        self.inner.destroy_version(version)
    }
    fn check(&self) -> strongroom::vault::provider::ProviderResult<()> {
        self.inner.check()
    }
    fn lock_file(&self) -> std::path::PathBuf {
        self.inner.lock_file()
    }
}

/// The first requests of a new account arrive together and all find it without keys: one makes them
/// (three wraps: the data key, the fingerprint key and the token id key) and the others use the same, where each used to
/// make its own and race to insert it (on SQLite some of those requests then slept 130–550 ms in the
/// busy handler).
async fn a_new_accounts_first_burst_makes_its_keys_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (account, _) = app
        .create_account("first-burst", &[Feature::CdeImport])
        .await;
    assert!(app
        .store()
        .get_account_keys(account)
        .await
        .unwrap()
        .is_none());
    let provider = std::sync::Arc::new(CountingProvider {
        inner: app.db.file_provider(),
        wraps: Default::default(),
    });
    let vault = std::sync::Arc::new(Vault::new(app.store().clone(), provider.clone()));
    let seals = (0..16u8).map(|n| {
        let vault = vault.clone();
        tokio::spawn(async move {
            let sealed = vault.seal_bytes(account, b"aad", &[n]).await.unwrap();
            (n, sealed)
        })
    });
    let sealed: Vec<(u8, Vec<u8>)> = futures_util::future::join_all(seals)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        provider.wraps.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "the account's keys were made more than once"
    );
    // Every one of them sealed under the keys that were stored: a fresh vault opens them all.
    let fresh = Vault::new(
        app.store().clone(),
        std::sync::Arc::new(app.db.file_provider()),
    );
    for (n, sealed) in sealed {
        assert_eq!(
            *fresh.open_bytes(account, b"aad", &sealed).await.unwrap(),
            [n]
        );
    }
}
