//! Processors and routing rules for the tests: the admin commands run with their input on standard
//! input, a Stripe processor pointed at a fake, and everything the database holds, for secret scans.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use serde_json::Value;
use sqlx::{Connection, Row};
use uuid::Uuid;

use super::app::spawn_app;
use super::app::TestApp;
use super::backend::Backend;
use super::db::TestDb;
use super::fake_adyen::{FakeAdyen, FakeAdyenConfig};

/// The secret key the fake payments Stripe accepts.
pub const STRIPE_SECRET: &str = "sk_test_processor_51SeCrEt";

impl TestApp {
    /// Runs `strongroom ARGS` on this app's database with `input` on standard input; returns (exited 0,
    /// stdout, stderr).
    pub fn cli_with_input(&self, args: &[&str], input: &str) -> (bool, String, String) {
        cli_with_input(&self.db, args, input)
    }

    /// Adds a processor of the default account (or `account`) through the CLI; returns its JSON line.
    pub async fn add_processor(
        &self,
        account: Option<Uuid>,
        name: &str,
        kind: &str,
        api_base: &str,
        secrets: &Value,
        extra: &[&str],
    ) -> Value {
        let account = match account {
            Some(a) => a,
            None => self.account_id().await,
        }
        .to_string();
        let mut args = vec![
            "processor",
            "add",
            "--account",
            &account,
            "--name",
            name,
            "--kind",
            kind,
            "--api-base",
            api_base,
            "--json",
        ];
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = self.cli_with_input(&args, &secrets.to_string());
        assert!(ok, "processor add failed: {stderr}");
        serde_json::from_str(stdout.trim()).expect("one JSON document")
    }

    /// Adds a Stripe processor pointed at `base`, with a short deadline for each call.
    pub async fn add_stripe(&self, name: &str, base: &str) -> Value {
        let secrets = serde_json::json!({"api_key": STRIPE_SECRET});
        self.add_processor(
            None,
            name,
            "stripe",
            base,
            &secrets,
            &["--timeout-ms", "1000"],
        )
        .await
    }

    /// Adds an Adyen processor pointed at `fake` (its key, merchant account and HMAC key), with a short
    /// deadline for each call, and points the fake's notifications at this server; returns the
    /// processor's id.
    pub async fn add_adyen(&self, name: &str, fake: &FakeAdyen) -> String {
        let config = fake.config();
        let secrets = serde_json::json!({"api_key": config.api_key,
            "merchant_account": config.merchant_account, "hmac_key": config.hmac_key});
        let added = self
            .add_processor(
                None,
                name,
                "adyen",
                &fake.base_url(),
                &secrets,
                &["--timeout-ms", "1000"],
            )
            .await;
        let id = added["id"].as_str().expect("an id").to_owned();
        fake.set_notify_url(&format!("{}/processors/{id}/notifications", self.base));
        id
    }

    /// `route set` for the default account; returns (exited 0, stdout, stderr) once the server applies
    /// the new rules (it reads them at most once per auth cache window, 300 ms in tests).
    pub async fn set_routes(&self, rules: &Value) -> (bool, String, String) {
        let account = self.account_id().await.to_string();
        let done = self.cli_with_input(
            &["route", "set", "--account", &account, "--json"],
            &rules.to_string(),
        );
        tokio::time::sleep(std::time::Duration::from_millis(350)).await;
        done
    }
}

pub fn cli_with_input(db: &TestDb, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .args(args)
        .env("STRONGROOM_DATA_DIR", db.dir.path())
        .env("STRONGROOM_DATABASE_URL", &db.url)
        .env_remove("STRONGROOM_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Everything the database holds: the SQLite files, or every PostgreSQL row as text (bytea as hex).
pub async fn database_bytes(db: &TestDb, backend: Backend) -> Vec<u8> {
    let mut bytes = Vec::new();
    match backend {
        Backend::Sqlite => {
            for suffix in ["", "-wal", "-shm"] {
                let path = db.dir.path().join(format!("strongroom.db{suffix}"));
                if let Ok(mut file) = std::fs::File::open(path) {
                    file.read_to_end(&mut bytes).unwrap();
                }
            }
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            for table in tables {
                for row in sqlx::query(&format!("SELECT t::text FROM {table} t"))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap()
                {
                    bytes.extend_from_slice(row.get::<String, _>(0).as_bytes());
                }
            }
        }
    }
    bytes
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// An app routing everything to a fake Adyen named `adyen` (then to `then`, if given); returns the app,
/// the fake (its notifications pointed at the app) and the processor's id.
pub async fn spawn_app_with_adyen(
    backend: Backend,
    then: Option<&str>,
) -> (TestApp, FakeAdyen, String) {
    let adyen = FakeAdyen::start(FakeAdyenConfig::default())
        .await
        .expect("the fake Adyen starts");
    let app = spawn_app(backend).await;
    let id = app.add_adyen("adyen", &adyen).await;
    let mut processors = vec!["adyen"];
    processors.extend(then);
    let (ok, _, stderr) = app
        .set_routes(&serde_json::json!([{"name": "to-adyen", "processors": processors}]))
        .await;
    assert!(ok, "{stderr}");
    (app, adyen, id)
}
