//! Start-up: the one function that the CLI, the tests and the benchmarks use to run the very same server
//! on a listener they bound, and the handle to stop it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::auth::AuthCache;
use crate::api::rate_limit::RateLimiter;
use crate::api::{self, AppState};
use crate::config::Config;
use crate::config::KeyProviderConfig;
use crate::connectors::processor::Sandbox;
use crate::domain::accounts::{self, ApiKeySecret};
use crate::domain::forward::Forwarder;
use crate::domain::imports::job::ImportJob;
use crate::domain::imports::{ImportSettings, Imports};
use crate::domain::payments::{PaymentStep, Payments};
use crate::domain::routing::Routing;
use crate::domain::sessions::Sessions;
use crate::domain::tokens::Tokens;
use crate::domain::webhooks::Webhooks;
use crate::jobs::{JobHandler, Worker};
use crate::store::{self, DynStore, Ts};
use crate::store::{Action, AuditEvent};
use crate::vault::cvc::CvcCache;
use crate::vault::file_provider::{create_private_dir, FileProvider};
use crate::vault::pkcs11::Pkcs11Provider;
use crate::vault::provider::{DynProvider, MasterKeyError};
use crate::vault::Vault;

mod http;
pub mod metrics;

/// The length of the listening socket's queue of connections the kernel completed and the server has
/// not yet taken. Rust's standard bind asks for 128: a burst of more clients connecting at once than
/// that (256 payment clients starting together, or clients waiting while the server is at its
/// connection cap) had the rest of their handshakes dropped, each retried by the client's kernel only
/// after a second. The kernel caps it at `net.core.somaxconn` (4096 on current Linux).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds the API's listening socket (address reuse on, as the standard bind has it) with
/// `LISTEN_BACKLOG`. Called inside the runtime, which the socket is registered with.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Opens the configured store (creating the data directory for SQLite) and applies its migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<DynStore> {
    store::set_node_name(&config.node_name);
    if let Some(file) = config.sqlite_file() {
        // The data directory holds the database (and the development key): 0700; the database 0600,
        // made before SQLite opens it so that its WAL and shared-memory files take the same mode.
        create_private_dir(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)
                .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        }
        if !file.exists() {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&file) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "cannot create the database file {}: {e}",
                        file.display()
                    ))
                }
            }
        }
    }
    let store = store::open(
        &config.database_url,
        config.database_max_connections,
        config.db_acquire_timeout,
    )
    .await?;
    store.migrate().await?;
    Ok(store)
}

/// Opens the configured key provider. A key file that group or others may read is refused, and the
/// refusal is audited.
pub async fn open_provider(config: &Config, store: &DynStore) -> anyhow::Result<DynProvider> {
    let opened: Result<DynProvider, MasterKeyError> = match &config.key_provider {
        KeyProviderConfig::File => {
            FileProvider::open(&config.master_key()).map(|p| Arc::new(p) as DynProvider)
        }
        KeyProviderConfig::Pkcs11(settings) => {
            Pkcs11Provider::open(settings, &config.data_dir).map(|p| Arc::new(p) as DynProvider)
        }
    };
    match opened {
        Ok(provider) => Ok(provider),
        Err(err) => {
            if let MasterKeyError::Permissions { path, mode } = &err {
                let _ = store
                    .insert_audit_event(&AuditEvent::new(
                        None,
                        "system",
                        Action::KeyFileRefuse,
                        Some(format!("{} mode {mode:04o}", path.display())),
                        "refused",
                    ))
                    .await;
            }
            Err(err.into())
        }
    }
}

/// A provider for the admin commands that make the key (`master-key init`): the file need not exist.
pub fn unopened_provider(config: &Config) -> anyhow::Result<DynProvider> {
    Ok(match &config.key_provider {
        KeyProviderConfig::File => Arc::new(FileProvider::unopened(config.master_key().path())),
        KeyProviderConfig::Pkcs11(settings) => {
            Arc::new(Pkcs11Provider::open(settings, &config.data_dir)?)
        }
    })
}

/// The job handlers this build knows, by worker pool. Each capability that brings a job kind registers
/// it here, in the pool whose workers run it.
pub fn job_pools(state: &AppState) -> Vec<JobPool> {
    let sizes = state.config.pool_sizes();
    vec![
        JobPool {
            name: "payments",
            size: sizes.payments,
            handlers: PaymentStep::all(&state.payments),
        },
        JobPool {
            name: "imports",
            size: sizes.imports,
            // Data-key rotations are bulk background work like imports, in steps of a batch each.
            handlers: vec![
                Arc::new(ImportJob(state.imports.clone())),
                Arc::new(crate::domain::data_keys::DataKeyRotation::new(
                    state.tokens.vault.clone(),
                    state.config.data_key_rotation_batch,
                )),
            ],
        },
        JobPool {
            name: "webhooks",
            size: sizes.webhooks,
            handlers: [state.webhooks.deliverer()]
                .into_iter()
                .chain(state.webhooks.carried_deliverers())
                .collect(),
        },
    ]
}

/// Workers that claim only the jobs of their own handlers' kinds: a backlog or a slow run of one kind
/// (a receiver that never answers, a long import) never holds a worker another kind needs.
pub struct JobPool {
    pub name: &'static str,
    /// How many workers of this pool a node runs.
    pub size: usize,
    pub handlers: Vec<Arc<dyn JobHandler>>,
}

/// Every job handler this build knows, whatever its pool (for tests that step the jobs by hand).
pub fn job_handlers(state: &AppState) -> Vec<Arc<dyn JobHandler>> {
    job_pools(state)
        .into_iter()
        .flat_map(|pool| pool.handlers)
        .collect()
}

/// A server running on its listener, with its workers.
pub struct RunningServer {
    addr: SocketAddr,
    state: AppState,
    shutdown: CancellationToken,
    http: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
    /// The key of the `default` account if this start created it (shown once).
    pub default_api_key: Option<ApiKeySecret>,
    /// Where the metrics are served, when they are.
    pub metrics_addr: Option<SocketAddr>,
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> &DynStore {
        &self.state.store
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A token that stops the server when cancelled (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops taking requests, lets those in flight finish, stops the workers and closes the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the server stops (after its shutdown token is cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        let served = self.http.await;
        for task in self.background {
            let _ = task.await;
        }
        self.state.store.close().await;
        served
            .context("the HTTP server task failed")?
            .context("the HTTP server failed")
    }
}

/// Builds the application state for `config`: store, keys, settings.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let store = open_store(&config).await?;
    let provider = open_provider(&config, &store).await?;
    let vault = Arc::new(Vault::new(store.clone(), provider));
    let cvc = Arc::new(match &config.redis_url {
        Some(url) => CvcCache::redis(url, config.cvc_ttl, vault.clone())
            .await
            .map_err(anyhow::Error::msg)?,
        None => CvcCache::memory(config.cvc_ttl),
    });
    let public_url = config.public_url.clone().unwrap_or_default();
    let webhooks = Arc::new(
        Webhooks::new(
            store.clone(),
            vault.clone(),
            public_url.clone(),
            &config.webhooks,
        )
        .context("cannot start the webhook sender")?,
    );
    let sandbox = Arc::new(Sandbox::new(config.sandbox_latency));
    let router = Routing::new(
        store.clone(),
        vault.clone(),
        sandbox,
        public_url,
        config.auth_cache_ttl,
    );
    let tokens = Arc::new(Tokens::new(store.clone(), vault, cvc, webhooks.clone()));
    let payments = Arc::new(Payments::new(
        store.clone(),
        tokens.clone(),
        router,
        config.settle_after,
        config.authorize_recovery_after.unwrap_or(config.job_lease),
        webhooks.clone(),
    ));
    let imports = Arc::new(
        Imports::new(
            store.clone(),
            tokens.clone(),
            ImportSettings {
                stripe_api_base: config.stripe_api_base.clone(),
                ingest_url: format!(
                    "{}/tokens/imports/ingest",
                    config.public_url_or(config.listen)
                ),
                rate_limit: config.stripe_rate_limit,
                retry_base: config.stripe_retry_base,
                concurrency: config.import_concurrency,
                step: config.import_step,
            },
            webhooks.clone(),
        )
        .context("cannot build the HTTP client for Stripe")?,
    );
    let auth_cache = Arc::new(AuthCache::new(config.auth_cache_ttl));
    let forward = Arc::new(
        Forwarder::new(
            store.clone(),
            tokens.clone(),
            config.forward_timeout,
            config.auth_cache_ttl,
            config.max_body_bytes,
        )
        .context("cannot build the forwarding HTTP client")?,
    );
    let sessions = Arc::new(Sessions::new(
        store.clone(),
        tokens.clone(),
        config.session_ttl,
    ));
    let rate_limit = config
        .http
        .rate_limit
        .map(|per_second| Arc::new(RateLimiter::new(per_second, config.http.rate_limit_burst)));
    Ok(AppState::new(crate::api::Services {
        store,
        rate_limit,
        config: Arc::new(config),
        tokens,
        auth_cache,
        payments,
        imports,
        webhooks,
        forward,
        sessions,
    }))
}

/// Starts the server on `listener` with `config`: migrations, first-start bootstrap, the API and
/// the job worker pools (`Config::pool_sizes`).
pub async fn start(mut config: Config, listener: TcpListener) -> anyhow::Result<RunningServer> {
    let addr = listener.local_addr()?;
    config.public_url = Some(config.public_url_or(addr));
    let state = build_state(config).await?;
    let default_api_key = accounts::bootstrap_default_account(&state.store)
        .await?
        .map(|(_, key)| key);

    let shutdown = CancellationToken::new();
    let app = api::app(state.clone());
    let stop = shutdown.clone();
    let tls = match &state.config.tls {
        Some(files) => Some(http::tls_acceptor(files)?),
        None => None,
    };
    let http = tokio::spawn(http::serve(
        listener,
        app,
        state.config.http.clone(),
        stop,
        tls,
    ));

    let mut background = Vec::new();
    let handlers = job_handlers(&state);
    let m = crate::metrics::metrics();
    m.declare_job_kinds(&handlers.iter().map(|h| h.kind()).collect::<Vec<_>>());
    m.set_build_info(state.store.backend().label());
    let mut metrics_addr = None;
    if let Some(at) = state.config.metrics_listen {
        let (bound, task) = metrics::spawn(at, state.store.clone(), shutdown.clone())
            .await
            .with_context(|| format!("cannot listen for metrics on {at}"))?;
        metrics_addr = Some(bound);
        background.push(task);
    }
    for pool in job_pools(&state) {
        for _ in 0..pool.size {
            let worker = Worker::new(
                state.store.clone(),
                pool.handlers.clone(),
                state.config.job_lease,
            );
            background.push(tokio::spawn(
                worker.run(state.config.job_poll_interval, shutdown.clone()),
            ));
        }
    }
    background.push(tokio::spawn(housekeeping(state.clone(), shutdown.clone())));
    background.push(tokio::spawn(refresh_statistics(
        state.store.clone(),
        shutdown.clone(),
    )));
    let pools = state.config.pool_sizes();
    let metrics_at = metrics_addr
        .map(|a| a.to_string())
        .unwrap_or_else(|| "off".into());
    tracing::info!(
        %addr,
        metrics_addr = %metrics_at,
        backend = ?state.store.backend(),
        payment_workers = pools.payments,
        import_workers = pools.imports,
        webhook_workers = pools.webhooks,
        "strongroom is serving"
    );
    Ok(RunningServer {
        addr,
        state,
        shutdown,
        http,
        background,
        default_api_key,
        metrics_addr,
    })
}

/// Every few seconds, the planner statistics of the tables that changed enough since they were last
/// analyzed (see `Store::refresh_stale_statistics`). A task of its own: an `ANALYZE` of a big table
/// takes as long as it takes, and must not hold back the sweeps of `housekeeping`.
async fn refresh_statistics(store: DynStore, shutdown: CancellationToken) {
    loop {
        match store.refresh_stale_statistics().await {
            Ok(tables) if tables.is_empty() => {}
            Ok(tables) => tracing::debug!(?tables, "planner statistics refreshed"),
            Err(err) => tracing::warn!(error = %err, "could not refresh the planner statistics"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// How long ended jobs stay in the table, for inspection.
const FINISHED_JOBS_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Periodic clean-up: security codes past their TTL (every few seconds), then idempotency records past
/// their 24 hours, jobs and webhook deliveries ended a week ago (every ten minutes); ephemeral tokens
/// past their expiry every few seconds (an indexed query that finds nothing most of the time).
async fn housekeeping(state: AppState, shutdown: CancellationToken) {
    let tick = Duration::from_secs(5);
    let mut ticks = 0u64;
    loop {
        // Off the runtime's workers: a sweep walks every code (about 7 ms a million) and frees the expired.
        let cvc = Arc::clone(&state.tokens.cvc);
        // A panic's message is not logged (README, "Other protections"): only that it did not finish.
        if tokio::task::spawn_blocking(move || cvc.sweep())
            .await
            .is_err()
        {
            tracing::warn!("the sweep of expired security codes did not finish");
        }
        if ticks % 120 == 0 {
            let store = &state.store;
            let now = Ts::now();
            if let Err(err) = store
                .purge_idempotency_records(now.minus(Duration::from_secs(24 * 3600)))
                .await
            {
                tracing::warn!(error = %err, "could not purge idempotency records");
            }
            if let Err(err) = store
                .purge_finished_jobs(now.minus(FINISHED_JOBS_KEPT))
                .await
            {
                tracing::warn!(error = %err, "could not purge finished jobs");
            }
            if let Err(err) = store
                .purge_webhook_deliveries(now.minus(FINISHED_JOBS_KEPT))
                .await
            {
                tracing::warn!(error = %err, "could not purge webhook deliveries");
            }
            // A session past its end opens nothing; its row only records that it existed.
            if let Err(err) = store
                .purge_sessions(now.minus(Duration::from_secs(24 * 3600)))
                .await
            {
                tracing::warn!(error = %err, "could not purge token sessions");
            }
        }
        // Ephemeral tokens are already 404 once expired; the sweep destroys their card data soon after.
        match state.tokens.sweep_expired(Ts::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "expired tokens deleted"),
            Err(err) => tracing::warn!(error = %err, "could not delete expired tokens"),
        }
        ticks += 1;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}
