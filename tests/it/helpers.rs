//! Test harness: a real server on port 0 over a fresh database (SQLite in a temp dir, or a PostgreSQL
//! database created for the test and dropped after), and one helper per kind of call.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use sqlx::{Connection, Executor};
use strongroom::config::Config;
use strongroom::server::{self, RunningServer};
use strongroom::store::{DynStore, Feature, FeatureSet};
use tempfile::TempDir;
use uuid::Uuid;

pub const POSTGRES_URL_VAR: &str = "STRONGROOM_TEST_POSTGRES_URL";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs `$name(backend)` as two tests, `$name::sqlite` and `$name::postgres`; the second says it is
/// skipped when no PostgreSQL URL is given.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::helpers::postgres_available() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        }
    )*};
}

pub fn postgres_available() -> bool {
    if std::env::var(POSTGRES_URL_VAR)
        .map(|v| !v.is_empty())
        .unwrap_or(false)
    {
        true
    } else {
        eprintln!("skipped: set {POSTGRES_URL_VAR} (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run the PostgreSQL half");
        false
    }
}

/// A database for one test: removed when dropped.
pub struct TestDb {
    pub url: String,
    pub dir: TempDir,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("strongroom.db").display());
                Self {
                    url,
                    dir,
                    postgres: None,
                }
            }
            Backend::Postgres => {
                let admin = std::env::var(POSTGRES_URL_VAR).expect("postgres url");
                let name = format!("strongroom_test_{}", Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect to the PostgreSQL admin URL");
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
                conn.close().await.ok();
                let base = admin.split('?').next().unwrap_or(&admin);
                let url = format!(
                    "{}/{name}",
                    base.rsplit_once('/').map(|(b, _)| b).unwrap_or(base)
                );
                Self {
                    url,
                    dir,
                    postgres: Some((admin, name)),
                }
            }
        }
    }

    pub async fn open_store(&self) -> DynStore {
        let store = strongroom::store::open(&self.url, 8)
            .await
            .expect("open store");
        store.migrate().await.expect("migrate");
        store
    }

    pub fn config(&self) -> Config {
        let mut config = Config::for_data_dir(self.dir.path());
        config.database_url = self.url.clone();
        config.workers = 0;
        // Short, so that revocation tests (which wait for it) run quickly.
        config.auth_cache_ttl = Duration::from_millis(300);
        config.database_max_connections = 8;
        config
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else {
            return;
        };
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop a test database");
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub api_key: String,
    pub client: reqwest::Client,
    pub server: Option<RunningServer>,
    pub db: TestDb,
}

/// Starts the real server on port 0 over a fresh database, with no background workers (tests step them).
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    adjust(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = server::start(config, listener)
        .await
        .expect("server starts");
    let api_key = server
        .default_api_key
        .as_ref()
        .expect("a fresh database bootstraps")
        .expose()
        .to_owned();
    let base = format!("http://{}", server.local_addr());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    TestApp {
        base,
        api_key,
        client,
        server: Some(server),
        db,
    }
}

/// A response read whole: status, headers and the body as JSON (`Value::Null` if empty or not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn send(request: RequestBuilder) -> Answer {
    let response = request.send().await.expect("request is answered");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

impl TestApp {
    pub fn store(&self) -> &DynStore {
        self.server.as_ref().expect("running").store()
    }

    /// A request with the default account's key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("X-API-Key", &self.api_key)
    }

    /// A request with no key at all.
    pub fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// Calls `GET /account` with `key` until it is refused (a node trusts a key it has read for the auth
    /// cache's TTL), for at most three seconds; returns the last answer.
    pub async fn wait_until_refused(&self, key: &str) -> Answer {
        let started = std::time::Instant::now();
        loop {
            let answer = send(
                self.anonymous(Method::GET, "/account")
                    .header("X-API-Key", key),
            )
            .await;
            if answer.status != StatusCode::OK || started.elapsed() > Duration::from_secs(3) {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        send(self.request(Method::GET, path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Answer {
        send(self.request(Method::POST, path).json(body)).await
    }

    /// Creates another account with `features`, returning its id and key.
    pub async fn create_account(&self, name: &str, features: &[Feature]) -> (Uuid, String) {
        let features: FeatureSet = features.iter().copied().collect();
        let (account, _, key) =
            strongroom::domain::accounts::create_account(self.store(), name, features, "test")
                .await
                .expect("account");
        (account.id, key.expose().to_owned())
    }
}

/// The exact error body the API gives for `status`.
pub fn error_body(code: u16, classifier: &str, message: &str) -> Value {
    serde_json::json!({"code": code, "classifier": classifier, "message": message})
}

pub fn validation_body(errors: &[(&str, &str)]) -> Value {
    serde_json::json!({
        "code": 422,
        "classifier": "VALIDATION_ERROR",
        "message": "Validation error",
        "validation_errors": errors.iter().map(|(p, m)| serde_json::json!({"path": p, "message": m})).collect::<Vec<_>>(),
    })
}

/// The real binary, serving on a port of its own choosing, with every log line at trace level kept.
pub struct ServerProcess {
    child: Child,
    pub base: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl ServerProcess {
    pub fn start(db: &TestDb, run: &str) -> Self {
        Self::start_with(db, run, &[])
    }

    /// Starts the binary with `env` added to its environment.
    pub fn start_with(db: &TestDb, run: &str, env: &[(&str, &str)]) -> Self {
        let stdout = db.dir.path().join(format!("{run}.stdout"));
        let stderr = db.dir.path().join(format!("{run}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_strongroom"))
            .arg("serve")
            .env("STRONGROOM_DATA_DIR", db.dir.path())
            .env("STRONGROOM_DATABASE_URL", &db.url)
            .env("STRONGROOM_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "trace")
            .envs(env.iter().copied())
            .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .spawn()
            .unwrap();
        let started = Instant::now();
        let base = loop {
            let log = std::fs::read_to_string(&stderr).unwrap_or_default();
            if let Some(addr) = log
                .lines()
                .find(|l| l.contains("strongroom is serving"))
                .and_then(|l| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .map(str::to_owned)
                })
            {
                break format!("http://{addr}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the server did not start:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Self {
            child,
            base,
            stdout,
            stderr,
        }
    }

    pub fn kill_9(mut self) -> (String, String) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        (
            std::fs::read_to_string(&self.stdout).unwrap(),
            std::fs::read_to_string(&self.stderr).unwrap(),
        )
    }
}
