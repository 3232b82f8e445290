//! `TestApp`: the real server started in-process on port 0 over a fresh `TestDb`, with no background
//! workers unless a test asks; its HTTP helpers come from `ApiClient`, which it dereferences to.

use std::ops::{Deref, DerefMut};

use strongroom::config::Config;
use strongroom::server::{self, RunningServer};
use strongroom::store::{DynStore, Feature, FeatureSet};
use uuid::Uuid;

use super::backend::Backend;
use super::client::ApiClient;
use super::db::TestDb;

/// A running server, its database, and a client holding the default account's key.
pub struct TestApp {
    pub api: ApiClient,
    pub server: Option<RunningServer>,
    pub db: TestDb,
}

/// `app.tokenize(..)`, `app.base`, `app.api_key`: the endpoint helpers are the client's, with the default
/// account's key; `app.with_key(..)` calls the same server as another account.
impl Deref for TestApp {
    type Target = ApiClient;

    fn deref(&self) -> &ApiClient {
        &self.api
    }
}

impl DerefMut for TestApp {
    fn deref_mut(&mut self) -> &mut ApiClient {
        &mut self.api
    }
}

/// Starts the real server on port 0 over a fresh database, with no background workers (tests step them).
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// `spawn_app`, with the config changed by `adjust` first.
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::new(backend).await;
    let mut config = db.config();
    adjust(&mut config);
    let server = start_server(config).await;
    let api_key = server
        .default_api_key
        .as_ref()
        .expect("a fresh database bootstraps")
        .expose()
        .to_owned();
    let api = ApiClient::new(format!("http://{}", server.local_addr()), api_key);
    TestApp {
        api,
        server: Some(server),
        db,
    }
}

async fn start_server(config: Config) -> RunningServer {
    let listener = server::listen("127.0.0.1:0".parse().unwrap()).expect("bind");
    server::start(config, listener)
        .await
        .expect("server starts")
}

impl TestApp {
    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("running")
    }

    pub fn store(&self) -> &DynStore {
        self.server().store()
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

    /// Stops the server and starts a new one on the same database, with the test config changed by
    /// `adjust`; the client follows it to its new port.
    pub async fn restart(&mut self, adjust: impl FnOnce(&mut Config)) {
        let server = self.server.take().expect("running");
        server.shutdown().await.unwrap();
        let mut config = self.db.config();
        adjust(&mut config);
        let server = start_server(config).await;
        self.api.base = format!("http://{}", server.local_addr());
        self.server = Some(server);
    }

    /// A second node on the same database (test config changed by `adjust`), and a client for it with
    /// the default account's key. The caller shuts it down.
    pub async fn start_another_node(
        &self,
        adjust: impl FnOnce(&mut Config),
    ) -> (RunningServer, ApiClient) {
        let mut config = self.db.config();
        adjust(&mut config);
        let node = start_server(config).await;
        let api = ApiClient {
            base: format!("http://{}", node.local_addr()),
            ..self.api.clone()
        };
        (node, api)
    }
}
