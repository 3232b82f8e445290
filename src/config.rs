//! Configuration: defaults in code, then an optional TOML file, then `STRONGROOM_*` environment variables,
//! then command-line flags (the last one given wins). Checked once at start with errors naming the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod checks;
mod http;
mod settings;
mod webhooks;

pub use http::HttpSettings;
pub use settings::Settings;
pub use webhooks::WebhookSettings;

use checks::{at_least, at_most, in_range, listen_address, log_format, not_empty, secure_url};
use settings::Layered;

use crate::vault::master::KeyFile;
use crate::vault::pkcs11::Pkcs11Settings;

/// Who keeps the master key.
#[derive(Clone, Debug)]
pub enum KeyProviderConfig {
    File,
    Pkcs11(Pkcs11Settings),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// How many job workers a node runs in each pool: each pool claims only its own kinds of job, so a
/// backlog of one kind never delays another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSizes {
    pub payments: usize,
    pub imports: usize,
    pub webhooks: usize,
}

/// The checked configuration the server and the admin commands run with.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub database_max_connections: u32,
    /// How long a database connection is waited for (every pool) before the store answers unavailable.
    pub db_acquire_timeout: Duration,
    pub master_key_file: Option<PathBuf>,
    pub key_provider: KeyProviderConfig,
    /// Sealed values a data-key rotation job re-seals per transaction.
    pub data_key_rotation_batch: i64,
    /// How Stripe and clients reach this server; `None` until known: then `http://` + the bound address.
    pub public_url: Option<String>,
    pub stripe_api_base: String,
    pub redis_url: Option<String>,
    pub max_body_bytes: usize,
    /// Size of each worker pool whose own size is not set (0: no background work on this node).
    pub workers: usize,
    /// Worker pool sizes by job kind; `None`: `workers`.
    pub payment_workers: Option<usize>,
    pub import_workers: Option<usize>,
    pub webhook_workers: Option<usize>,
    pub log_format: LogFormat,
    /// How long a job lease lasts before another worker may take the job over.
    pub job_lease: Duration,
    /// How often an idle worker looks for new jobs.
    pub job_poll_interval: Duration,
    /// How long a security code is kept in memory.
    pub cvc_ttl: Duration,
    /// How long a node trusts an API key it has read (bounds how long a revocation takes to apply).
    pub auth_cache_ttl: Duration,
    /// Delay of the sandbox processor.
    pub sandbox_latency: Duration,
    /// How long after capture a payment is settled.
    pub settle_after: Duration,
    /// The lease a request holds on its payment's recovery job while it authorizes (renewed meanwhile): a
    /// payment left `processing` by a node that died is authorized again once it runs out; `None`: the
    /// job lease.
    pub authorize_recovery_after: Option<Duration>,
    /// Ceiling on requests per second to Stripe during an import; `None`: unthrottled.
    pub stripe_rate_limit: Option<u32>,
    /// First retry delay for Stripe requests (429, 5xx, network, forwarding 402), doubled each time.
    pub stripe_retry_base: Duration,
    /// Cards forwarded at once by an import.
    pub import_concurrency: usize,
    /// How long one step of an import holds its worker before it saves its position and is queued again
    /// (plus the batch of up to 100 cards under way).
    pub import_step: Duration,
    /// Webhook delivery: timeout, retry schedule, address rule and subscription cache.
    pub webhooks: WebhookSettings,
    /// How long `POST /forward` waits for its destination, connection included.
    pub forward_timeout: Duration,
    /// The API listener's timeouts, connection cap and per-key rate limit.
    pub http: HttpSettings,
    /// Cap on an account's idempotency records of the last 24 hours; `None`: no cap.
    pub idempotency_records_per_account: Option<u64>,
    /// Where the Prometheus metrics are served; `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// This node's name, recorded with every audit event it writes.
    pub node_name: String,
    /// How long a token session stays usable.
    pub session_ttl: Duration,
    /// Certificate chain and key files (PEM): HTTPS when set.
    pub tls: Option<TlsFiles>,
}

/// The PEM files the listener serves HTTPS with.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub(crate) String);

/// The host name (from the kernel, else the environment), or `strongroom`.
fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "strongroom".to_owned())
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_DATA_DIR: &str = "./strongroom-data";

impl Config {
    /// A configuration for a server on `data_dir` with every other setting at its default.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let listen: SocketAddr = ([127, 0, 0, 1], 8080).into();
        Self {
            listen,
            database_url: default_database_url(&data_dir),
            data_dir,
            database_max_connections: 16,
            db_acquire_timeout: Duration::from_millis(1500),
            master_key_file: None,
            key_provider: KeyProviderConfig::File,
            data_key_rotation_batch: 500,
            public_url: None,
            stripe_api_base: "https://api.stripe.com".to_owned(),
            redis_url: None,
            max_body_bytes: 256 * 1024,
            workers: 2,
            payment_workers: None,
            import_workers: None,
            webhook_workers: None,
            log_format: LogFormat::Text,
            job_lease: Duration::from_secs(30),
            job_poll_interval: Duration::from_millis(250),
            cvc_ttl: Duration::from_secs(15 * 60),
            auth_cache_ttl: Duration::from_secs(2),
            sandbox_latency: Duration::ZERO,
            settle_after: Duration::from_secs(3600),
            authorize_recovery_after: None,
            stripe_rate_limit: Some(20),
            stripe_retry_base: Duration::from_millis(500),
            import_concurrency: 16,
            import_step: Duration::from_secs(2),
            webhooks: WebhookSettings::default(),
            forward_timeout: Duration::from_secs(30),
            http: HttpSettings::default(),
            idempotency_records_per_account: None,
            metrics_listen: None,
            node_name: default_node_name(),
            session_ttl: Duration::from_secs(15 * 60),
            tls: None,
        }
    }

    /// Resolves flags and environment (already merged by clap) over the optional file over the defaults,
    /// checking each setting given.
    pub fn resolve(flags: &Settings) -> Result<Self, ConfigError> {
        let layered = Layered::new(flags)?;
        let s = &layered.values;
        let mut config = Self::for_data_dir(
            s.data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        );
        config.listen = layered.check(
            "listen",
            listen_address(s.listen.as_deref().unwrap_or(DEFAULT_LISTEN)),
        )?;
        if let Some(url) = &s.database_url {
            config.database_url = layered.check("database_url", not_empty(url))?;
        }
        if let Some(n) = s.database_max_connections {
            config.database_max_connections =
                layered.check("database_max_connections", at_least(n, 1))?;
        }
        config.master_key_file = s.master_key_file.clone();
        if let Some(n) = s.data_key_rotation_batch {
            config.data_key_rotation_batch =
                layered.check("data_key_rotation_batch", in_range(n, 1, 10_000))?;
        }
        config.key_provider = match s.key_provider.as_deref() {
            None | Some("file") => KeyProviderConfig::File,
            Some("pkcs11") => {
                let need = |name: &str, v: Option<String>| {
                    layered.check(
                        name,
                        v.filter(|v| !v.trim().is_empty())
                            .ok_or_else(|| "required with key_provider = pkcs11".to_owned()),
                    )
                };
                let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
                KeyProviderConfig::Pkcs11(Pkcs11Settings {
                    module: need("pkcs11_module", path(&s.pkcs11_module))?.into(),
                    token_label: need("pkcs11_token_label", s.pkcs11_token_label.clone())?,
                    pin_file: need("pkcs11_pin_file", path(&s.pkcs11_pin_file))?.into(),
                    key_label: need("pkcs11_key_label", s.pkcs11_key_label.clone())?,
                })
            }
            Some(_) => layered.check::<KeyProviderConfig>(
                "key_provider",
                Err("expected `file` or `pkcs11`".to_owned()),
            )?,
        };
        if let Some(url) = &s.public_url {
            config.public_url = Some(layered.check("public_url", secure_url(url))?);
        }
        if let Some(url) = &s.stripe_api_base {
            config.stripe_api_base = layered.check("stripe_api_base", secure_url(url))?;
        }
        config.redis_url = s.redis_url.clone();
        if let Some(addr) = &s.metrics_listen {
            let addr = layered.check("metrics_listen", listen_address(addr))?;
            if addr == config.listen && addr.port() != 0 {
                return Err(ConfigError(
                    "metrics_listen: must differ from listen (metrics are never served on the API's port)"
                        .to_owned(),
                ));
            }
            config.metrics_listen = Some(addr);
        }
        if let Some(name) = &s.node_name {
            config.node_name = layered.check("node_name", not_empty(name))?;
        }
        if let Some(n) = s.max_body_bytes {
            config.max_body_bytes = layered.check("max_body_bytes", at_least(n, 1024))?;
        }
        config.workers = layered.check(
            "workers",
            in_range(s.workers.unwrap_or(config.workers), 0, 256),
        )?;
        for (key, value, pool) in [
            (
                "payment_workers",
                s.payment_workers,
                &mut config.payment_workers,
            ),
            (
                "import_workers",
                s.import_workers,
                &mut config.import_workers,
            ),
            (
                "webhook_workers",
                s.webhook_workers,
                &mut config.webhook_workers,
            ),
        ] {
            if let Some(n) = value {
                *pool = Some(layered.check(key, in_range(n, 0, 256))?);
            }
        }
        if let Some(ms) = s.db_acquire_timeout_ms {
            let ms = layered.check("db_acquire_timeout_ms", in_range(ms, 100, 60_000))?;
            config.db_acquire_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = s.sandbox_latency_ms {
            config.sandbox_latency = Duration::from_millis(ms.min(60_000));
        }
        if let Some(seconds) = s.settle_after_seconds {
            config.settle_after = Duration::from_secs(seconds);
        }
        if let Some(seconds) = s.authorize_recovery_seconds {
            let seconds =
                layered.check("authorize_recovery_seconds", in_range(seconds, 1, 3600))?;
            config.authorize_recovery_after = Some(Duration::from_secs(seconds));
        }
        if let Some(seconds) = s.job_lease_seconds {
            let seconds = layered.check("job_lease_seconds", in_range(seconds, 2, 3600))?;
            config.job_lease = Duration::from_secs(seconds);
        }
        if let Some(rate) = s.stripe_rate_limit {
            config.stripe_rate_limit = (rate > 0).then_some(rate);
        }
        if let Some(ms) = s.stripe_retry_base_ms {
            config.stripe_retry_base = Duration::from_millis(ms.clamp(1, 60_000));
        }
        if let Some(n) = s.import_concurrency {
            config.import_concurrency = layered.check("import_concurrency", in_range(n, 1, 256))?;
        }
        if let Some(seconds) = s.auth_cache_seconds {
            let seconds = layered.check("auth_cache_seconds", at_most(seconds, 60))?;
            config.auth_cache_ttl = Duration::from_secs(seconds);
        }
        if let Some(seconds) = s.cvc_ttl_seconds {
            let seconds = layered.check("cvc_ttl_seconds", in_range(seconds, 1, 24 * 3600))?;
            config.cvc_ttl = Duration::from_secs(seconds);
        }
        config.webhooks = webhooks::resolve(&layered)?;
        config.http = http::resolve(&layered)?;
        if let Some(cap) = s.idempotency_records_per_account {
            let cap = layered.check(
                "idempotency_records_per_account",
                in_range(cap, 0, 1_000_000_000),
            )?;
            config.idempotency_records_per_account = (cap > 0).then_some(cap);
        }
        if let Some(seconds) = s.forward_timeout_seconds {
            let seconds = layered.check("forward_timeout_seconds", in_range(seconds, 1, 300))?;
            config.forward_timeout = Duration::from_secs(seconds);
        }
        if let Some(seconds) = s.session_ttl_seconds {
            let seconds = layered.check("session_ttl_seconds", in_range(seconds, 10, 24 * 3600))?;
            config.session_ttl = Duration::from_secs(seconds);
        }
        config.tls = match (&s.tls_cert_file, &s.tls_key_file) {
            (Some(cert_file), Some(key_file)) => Some(TlsFiles {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            }),
            (None, None) => None,
            (Some(_), None) => {
                layered.check("tls_key_file", Err("must be set with tls_cert_file".into()))?
            }
            (None, Some(_)) => {
                layered.check("tls_cert_file", Err("must be set with tls_key_file".into()))?
            }
        };
        if let Some(format) = &s.log_format {
            config.log_format = layered.check("log_format", log_format(format))?;
        }
        Ok(config)
    }

    /// The public base URL, given or derived from the address actually bound.
    pub fn public_url_or(&self, bound: SocketAddr) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            format!("{scheme}://{bound}")
        })
    }

    /// The size of each job worker pool: payment steps, imports, webhook deliveries.
    pub fn pool_sizes(&self) -> PoolSizes {
        PoolSizes {
            payments: self.payment_workers.unwrap_or(self.workers),
            imports: self.import_workers.unwrap_or(self.workers),
            webhooks: self.webhook_workers.unwrap_or(self.workers),
        }
    }

    /// Where the master key is read from: the configured file, or the development key in the data directory.
    pub fn master_key(&self) -> KeyFile {
        KeyFile::new(self.master_key_file.clone(), &self.data_dir)
    }

    pub fn sqlite_file(&self) -> Option<PathBuf> {
        self.database_url
            .strip_prefix("sqlite://")
            .map(|rest| PathBuf::from(rest.split('?').next().unwrap_or(rest)))
    }
}

fn default_database_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("strongroom.db").display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_put_sqlite_in_the_data_dir() {
        let config = Config::resolve(&Settings::default()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            config.database_url,
            "sqlite://./strongroom-data/strongroom.db"
        );
        assert_eq!(config.public_url, None);
    }

    #[test]
    fn outbound_base_urls_take_http_only_for_loopback_hosts() {
        let settings = Settings {
            stripe_api_base: Some("http://api.stripe.com".into()),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(&settings).unwrap_err().to_string(),
            "configuration: STRONGROOM_STRIPE_API_BASE (--stripe-api-base): `http://api.stripe.com` \
             must be https:// (http:// only for a loopback host: localhost, 127.0.0.0/8, ::1)"
        );
        let settings = Settings {
            public_url: Some("http://vault.example.com".into()),
            ..Default::default()
        };
        let err = Config::resolve(&settings).unwrap_err().to_string();
        assert!(err.contains("STRONGROOM_PUBLIC_URL"), "{err}");
        let settings = Settings {
            public_url: Some("http://localhost:8080/".into()),
            stripe_api_base: Some("http://127.0.0.1:12111".into()),
            ..Default::default()
        };
        let config = Config::resolve(&settings).unwrap();
        assert_eq!(config.public_url.as_deref(), Some("http://localhost:8080"));
    }

    #[test]
    fn the_listener_limits_have_defaults_and_checked_ranges() {
        let config = Config::resolve(&Settings::default()).unwrap();
        assert_eq!(config.http.header_timeout, Duration::from_secs(10));
        assert_eq!(config.http.body_timeout, Duration::from_secs(30));
        assert_eq!(config.http.max_connections, 512);
        assert_eq!(config.http.rate_limit, None);
        assert_eq!(config.idempotency_records_per_account, None);
        let settings = Settings {
            header_timeout_seconds: Some(0),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(&settings).unwrap_err().to_string(),
            "configuration: STRONGROOM_HEADER_TIMEOUT_SECONDS (--header-timeout-seconds): must be from 1 to 300"
        );
        let settings = Settings {
            rate_limit_per_second: Some(50),
            ..Default::default()
        };
        let config = Config::resolve(&settings).unwrap();
        assert_eq!(
            (config.http.rate_limit, config.http.rate_limit_burst),
            (Some(50), 50)
        );
    }

    #[test]
    fn the_webhook_sender_nice_defaults_to_10_within_0_to_19() {
        let config = Config::resolve(&Settings::default()).unwrap();
        assert_eq!(config.webhooks.sender_nice, 10);
        let nice = |n| {
            Config::resolve(&Settings {
                webhook_sender_nice: Some(n),
                ..Default::default()
            })
        };
        assert_eq!(nice(0).unwrap().webhooks.sender_nice, 0);
        assert_eq!(nice(19).unwrap().webhooks.sender_nice, 19);
        for bad in [-1, 20] {
            assert_eq!(
                nice(bad).unwrap_err().to_string(),
                "configuration: STRONGROOM_WEBHOOK_SENDER_NICE (--webhook-sender-nice): must be from 0 to 19"
            );
        }
    }

    #[test]
    fn a_bad_listen_address_names_the_setting() {
        let settings = Settings {
            listen: Some("nowhere".into()),
            ..Default::default()
        };
        let err = Config::resolve(&settings).unwrap_err().to_string();
        assert!(err.contains("STRONGROOM_LISTEN"), "{err}");
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strongroom.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9999\"\nworkers = 5\n").unwrap();
        let settings = Settings {
            config: Some(path.clone()),
            workers: Some(1),
            ..Default::default()
        };
        let config = Config::resolve(&settings).unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.workers, 1);
    }

    #[test]
    fn each_worker_pool_defaults_to_workers_and_takes_its_own_size() {
        let config = Config::resolve(&Settings::default()).unwrap();
        assert_eq!(
            config.pool_sizes(),
            PoolSizes {
                payments: 2,
                imports: 2,
                webhooks: 2
            }
        );
        assert_eq!(config.db_acquire_timeout, Duration::from_millis(1500));
        let settings = Settings {
            workers: Some(3),
            payment_workers: Some(4),
            import_workers: Some(0),
            db_acquire_timeout_ms: Some(500),
            ..Default::default()
        };
        let config = Config::resolve(&settings).unwrap();
        assert_eq!(
            config.pool_sizes(),
            PoolSizes {
                payments: 4,
                imports: 0,
                webhooks: 3
            }
        );
        assert_eq!(config.db_acquire_timeout, Duration::from_millis(500));
        let settings = Settings {
            db_acquire_timeout_ms: Some(10),
            ..Default::default()
        };
        let err = Config::resolve(&settings).unwrap_err().to_string();
        assert!(err.contains("STRONGROOM_DB_ACQUIRE_TIMEOUT_MS"), "{err}");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strongroom.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:9999\"\n").unwrap();
        let settings = Settings {
            config: Some(path),
            ..Default::default()
        };
        let err = Config::resolve(&settings).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn an_out_of_range_value_is_named_where_it_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strongroom.toml");
        std::fs::write(&path, "cvc_ttl_seconds = 0\n").unwrap();
        let from_file = Settings {
            config: Some(path.clone()),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(&from_file).unwrap_err().to_string(),
            "configuration: `cvc_ttl_seconds` in the config file: must be from 1 to 86400"
        );
        let from_flag = Settings {
            config: Some(path),
            cvc_ttl_seconds: Some(90_000),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(&from_flag).unwrap_err().to_string(),
            "configuration: STRONGROOM_CVC_TTL_SECONDS (--cvc-ttl-seconds): must be from 1 to 86400"
        );
    }

    #[test]
    fn tls_takes_both_files_and_session_ttl_is_bounded() {
        let half = Settings {
            tls_cert_file: Some(PathBuf::from("cert.pem")),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(&half).unwrap_err().to_string(),
            "configuration: STRONGROOM_TLS_KEY_FILE (--tls-key-file): must be set with tls_cert_file"
        );
        let both = Settings {
            tls_cert_file: Some(PathBuf::from("cert.pem")),
            tls_key_file: Some(PathBuf::from("key.pem")),
            session_ttl_seconds: Some(60),
            ..Default::default()
        };
        let config = Config::resolve(&both).unwrap();
        assert!(config.tls.is_some());
        assert_eq!(config.session_ttl, Duration::from_secs(60));
        assert!(config.public_url_or(config.listen).starts_with("https://"));
        let short = Settings {
            session_ttl_seconds: Some(5),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(&short).unwrap_err().to_string(),
            "configuration: STRONGROOM_SESSION_TTL_SECONDS (--session-ttl-seconds): must be from 10 to 86400"
        );
    }
}
