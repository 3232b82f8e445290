//! A database for one test: SQLite in a temp dir, or a PostgreSQL database created for the test and
//! dropped after; plus the server config that points at it.

use std::time::Duration;

use sqlx::{Connection, Executor};
use strongroom::config::Config;
use strongroom::store::DynStore;
use strongroom::vault::file_provider::FileProvider;
use strongroom::vault::master::{KeyFile, DEV_KEY_FILE};
use tempfile::TempDir;
use uuid::Uuid;

use super::backend::{Backend, POSTGRES_URL_VAR};

/// A database for one test: removed when dropped.
pub struct TestDb {
    pub url: String,
    pub dir: TempDir,
    postgres: Option<(String, String)>,
}

impl TestDb {
    /// The file key provider over the master key file of this test's data directory, as a fresh node
    /// would open it.
    pub fn file_provider(&self) -> FileProvider {
        FileProvider::open(&KeyFile::Configured(self.dir.path().join(DEV_KEY_FILE))).unwrap()
    }

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
        let store = strongroom::store::open(&self.url, 8, Duration::from_secs(10))
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
        // Tests share two loaded cores: a connection may be slow to come without the database being down.
        config.db_acquire_timeout = Duration::from_secs(10);
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
