//! Configuration: defaults in code, then an optional TOML file, then `STRONGROOM_*` environment variables,
//! then command-line flags (the last one given wins). Checked once at start with errors naming the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

mod webhooks;
pub use webhooks::WebhookSettings;

/// The settings every command accepts, as flags or `STRONGROOM_*` variables.
#[derive(Args, Debug, Default, Clone)]
pub struct Settings {
    /// TOML file with the same settings (keys without the STRONGROOM_ prefix, in lower case).
    #[arg(long, global = true, env = "STRONGROOM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address the API listens on.
    #[arg(long, global = true, env = "STRONGROOM_LISTEN")]
    pub listen: Option<String>,
    /// Directory for the SQLite file and the development master key.
    #[arg(long, global = true, env = "STRONGROOM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`; default: SQLite in the data directory.
    #[arg(
        long,
        global = true,
        env = "STRONGROOM_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Most connections the pool opens to the database.
    #[arg(long, global = true, env = "STRONGROOM_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
    /// File holding the master key; default: a development key generated in the data directory.
    #[arg(long, global = true, env = "STRONGROOM_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// How Stripe reaches this server; default `http://` + the listen address.
    #[arg(long, global = true, env = "STRONGROOM_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Base URL of Stripe's API.
    #[arg(long, global = true, env = "STRONGROOM_STRIPE_API_BASE")]
    pub stripe_api_base: Option<String>,
    /// Optional Redis for the shared security-code cache of several nodes.
    #[arg(
        long,
        global = true,
        env = "STRONGROOM_REDIS_URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, global = true, env = "STRONGROOM_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Background job workers this node runs beside the API (0: none).
    #[arg(long, global = true, env = "STRONGROOM_WORKERS")]
    pub workers: Option<usize>,
    /// Log lines as `text` or `json`.
    #[arg(long, global = true, env = "STRONGROOM_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// How long a security code stays in memory after tokenization, in seconds.
    #[arg(long, global = true, env = "STRONGROOM_CVC_TTL_SECONDS")]
    pub cvc_ttl_seconds: Option<u64>,
    /// How long a node trusts an API key it has read before reading it again, in seconds; a revoked
    /// key is refused everywhere within this time (0: read on every request).
    #[arg(long, global = true, env = "STRONGROOM_AUTH_CACHE_SECONDS")]
    pub auth_cache_seconds: Option<u64>,
    /// Delay the built-in sandbox processor adds to every call, in milliseconds (for benchmarks).
    #[arg(long, global = true, env = "STRONGROOM_SANDBOX_LATENCY_MS")]
    pub sandbox_latency_ms: Option<u64>,
    /// How long after capture a payment is settled, in seconds.
    #[arg(long, global = true, env = "STRONGROOM_SETTLE_AFTER_SECONDS")]
    pub settle_after_seconds: Option<u64>,
    /// Most requests per second an import sends to Stripe (0: no ceiling).
    #[arg(long, global = true, env = "STRONGROOM_STRIPE_RATE_LIMIT")]
    pub stripe_rate_limit: Option<u32>,
    /// First delay before retrying a Stripe request that failed for a passing reason, in milliseconds
    /// (doubling on each retry).
    #[arg(long, global = true, env = "STRONGROOM_STRIPE_RETRY_BASE_MS")]
    pub stripe_retry_base_ms: Option<u64>,
    /// How many cards an import forwards at once.
    #[arg(long, global = true, env = "STRONGROOM_IMPORT_CONCURRENCY")]
    pub import_concurrency: Option<usize>,
    /// How long a worker holds a job before another node may take it over, in seconds (it is renewed
    /// while the worker lives; this bounds how long a crashed node's job waits).
    #[arg(long, global = true, env = "STRONGROOM_JOB_LEASE_SECONDS")]
    pub job_lease_seconds: Option<u64>,
    /// How long a webhook delivery may take (connect, send, answer), in seconds.
    #[arg(long, global = true, env = "STRONGROOM_WEBHOOK_TIMEOUT_SECONDS")]
    pub webhook_timeout_seconds: Option<u64>,
    /// The first retry delay of a failed webhook delivery, in milliseconds; it doubles with every
    /// attempt (with jitter), up to an hour.
    #[arg(long, global = true, env = "STRONGROOM_WEBHOOK_RETRY_BASE_MS")]
    pub webhook_retry_base_ms: Option<u64>,
    /// How long after its event a webhook delivery is retried before it is recorded as failed, in seconds.
    #[arg(long, global = true, env = "STRONGROOM_WEBHOOK_DEADLINE_SECONDS")]
    pub webhook_deadline_seconds: Option<u64>,
    /// Lets webhooks reach link-local and cloud metadata addresses (refused by default).
    #[arg(long, global = true, env = "STRONGROOM_WEBHOOK_ALLOW_LINK_LOCAL")]
    pub webhook_allow_link_local: Option<bool>,
    /// How long a node trusts the list of webhooks of an account it has read, in seconds (0: read it
    /// for every change); a webhook added within this time may miss events until it passes.
    #[arg(long, global = true, env = "STRONGROOM_WEBHOOK_CACHE_SECONDS")]
    pub webhook_cache_seconds: Option<u64>,
}

/// The same settings as read from a TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    database_max_connections: Option<u32>,
    master_key_file: Option<PathBuf>,
    public_url: Option<String>,
    stripe_api_base: Option<String>,
    redis_url: Option<String>,
    max_body_bytes: Option<usize>,
    workers: Option<usize>,
    log_format: Option<String>,
    cvc_ttl_seconds: Option<u64>,
    auth_cache_seconds: Option<u64>,
    sandbox_latency_ms: Option<u64>,
    settle_after_seconds: Option<u64>,
    stripe_rate_limit: Option<u32>,
    stripe_retry_base_ms: Option<u64>,
    import_concurrency: Option<usize>,
    job_lease_seconds: Option<u64>,
    webhook_timeout_seconds: Option<u64>,
    webhook_retry_base_ms: Option<u64>,
    webhook_deadline_seconds: Option<u64>,
    webhook_allow_link_local: Option<bool>,
    webhook_cache_seconds: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The checked configuration the server and the admin commands run with.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub database_max_connections: u32,
    pub master_key_file: Option<PathBuf>,
    /// How Stripe and clients reach this server; `None` until known: then `http://` + the bound address.
    pub public_url: Option<String>,
    pub stripe_api_base: String,
    pub redis_url: Option<String>,
    pub max_body_bytes: usize,
    pub workers: usize,
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
    /// Ceiling on requests per second to Stripe during an import; `None`: unthrottled.
    pub stripe_rate_limit: Option<u32>,
    /// First retry delay for Stripe requests (429, 5xx, network, forwarding 402), doubled each time.
    pub stripe_retry_base: Duration,
    /// Cards forwarded at once by an import.
    pub import_concurrency: usize,
    /// Webhook delivery: timeout, retry schedule, address rule and subscription cache.
    pub webhooks: WebhookSettings,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

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
            master_key_file: None,
            public_url: None,
            stripe_api_base: "https://api.stripe.com".to_owned(),
            redis_url: None,
            max_body_bytes: 256 * 1024,
            workers: 2,
            log_format: LogFormat::Text,
            job_lease: Duration::from_secs(30),
            job_poll_interval: Duration::from_millis(250),
            cvc_ttl: Duration::from_secs(15 * 60),
            auth_cache_ttl: Duration::from_secs(2),
            sandbox_latency: Duration::ZERO,
            settle_after: Duration::from_secs(3600),
            stripe_rate_limit: Some(20),
            stripe_retry_base: Duration::from_millis(500),
            import_concurrency: 16,
            webhooks: WebhookSettings::default(),
        }
    }

    /// Resolves flags and environment (already merged by clap) over the optional file over the defaults.
    pub fn resolve(settings: &Settings) -> Result<Self, ConfigError> {
        let file = match &settings.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let webhook_settings = webhooks::resolve(settings, &file)?;
        let data_dir = settings
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let mut config = Self::for_data_dir(&data_dir);

        let listen = pick(&settings.listen, file.listen, "listen", "STRONGROOM_LISTEN");
        let listen_text = listen
            .value
            .clone()
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        config.listen = listen_text.parse().map_err(|_| {
            listen.error(&format!(
                "`{listen_text}` is not an address like 127.0.0.1:8080"
            ))
        })?;

        let db = pick(
            &settings.database_url,
            file.database_url,
            "database_url",
            "STRONGROOM_DATABASE_URL",
        );
        if let Some(url) = db.value.clone() {
            if url.trim().is_empty() {
                return Err(db.error("is empty"));
            }
            config.database_url = url;
        }
        config.database_max_connections = settings
            .database_max_connections
            .or(file.database_max_connections)
            .unwrap_or(config.database_max_connections);
        if config.database_max_connections == 0 {
            return Err(ConfigError(
                "STRONGROOM_DATABASE_MAX_CONNECTIONS (database_max_connections) must be at least 1"
                    .into(),
            ));
        }
        config.master_key_file = settings.master_key_file.clone().or(file.master_key_file);

        let public = pick(
            &settings.public_url,
            file.public_url,
            "public_url",
            "STRONGROOM_PUBLIC_URL",
        );
        if let Some(url) = public.value.clone() {
            config.public_url = Some(check_http_url(&url).map_err(|m| public.error(&m))?);
        }
        let stripe = pick(
            &settings.stripe_api_base,
            file.stripe_api_base,
            "stripe_api_base",
            "STRONGROOM_STRIPE_API_BASE",
        );
        if let Some(url) = stripe.value.clone() {
            config.stripe_api_base = check_http_url(&url).map_err(|m| stripe.error(&m))?;
        }
        config.redis_url = settings.redis_url.clone().or(file.redis_url);
        config.max_body_bytes = settings
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(config.max_body_bytes);
        if config.max_body_bytes < 1024 {
            return Err(ConfigError(
                "STRONGROOM_MAX_BODY_BYTES (max_body_bytes) must be at least 1024".into(),
            ));
        }
        config.workers = settings.workers.or(file.workers).unwrap_or(config.workers);
        if let Some(ms) = settings.sandbox_latency_ms.or(file.sandbox_latency_ms) {
            config.sandbox_latency = Duration::from_millis(ms.min(60_000));
        }
        if let Some(seconds) = settings.settle_after_seconds.or(file.settle_after_seconds) {
            config.settle_after = Duration::from_secs(seconds);
        }
        if let Some(seconds) = settings.job_lease_seconds.or(file.job_lease_seconds) {
            if !(2..=3600).contains(&seconds) {
                return Err(ConfigError(
                    "STRONGROOM_JOB_LEASE_SECONDS (job_lease_seconds) must be from 2 to 3600"
                        .into(),
                ));
            }
            config.job_lease = Duration::from_secs(seconds);
        }
        if let Some(rate) = settings.stripe_rate_limit.or(file.stripe_rate_limit) {
            config.stripe_rate_limit = (rate > 0).then_some(rate);
        }
        if let Some(ms) = settings.stripe_retry_base_ms.or(file.stripe_retry_base_ms) {
            config.stripe_retry_base = Duration::from_millis(ms.clamp(1, 60_000));
        }
        if let Some(n) = settings.import_concurrency.or(file.import_concurrency) {
            if n == 0 || n > 256 {
                return Err(ConfigError(
                    "STRONGROOM_IMPORT_CONCURRENCY (import_concurrency) must be from 1 to 256"
                        .into(),
                ));
            }
            config.import_concurrency = n;
        }
        if let Some(seconds) = settings.auth_cache_seconds.or(file.auth_cache_seconds) {
            if seconds > 60 {
                return Err(ConfigError(
                    "STRONGROOM_AUTH_CACHE_SECONDS (auth_cache_seconds) must be at most 60".into(),
                ));
            }
            config.auth_cache_ttl = Duration::from_secs(seconds);
        }
        if let Some(seconds) = settings.cvc_ttl_seconds.or(file.cvc_ttl_seconds) {
            if seconds == 0 || seconds > 24 * 3600 {
                return Err(ConfigError(
                    "STRONGROOM_CVC_TTL_SECONDS (cvc_ttl_seconds) must be from 1 to 86400".into(),
                ));
            }
            config.cvc_ttl = Duration::from_secs(seconds);
        }

        config.webhooks = webhook_settings;

        let format = pick(
            &settings.log_format,
            file.log_format,
            "log_format",
            "STRONGROOM_LOG_FORMAT",
        );
        config.log_format = match format.value.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(format.error(&format!("`{other}` is neither `text` nor `json`")))
            }
        };
        Ok(config)
    }

    /// The public base URL, given or derived from the address actually bound.
    pub fn public_url_or(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
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

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.message())))
}

/// A setting's value and where it came from, so that an error can name it.
struct Picked {
    value: Option<String>,
    from_file: bool,
    key: &'static str,
    env: &'static str,
}

impl Picked {
    fn error(&self, message: &str) -> ConfigError {
        if self.from_file {
            ConfigError(format!("`{}` in the config file: {message}", self.key))
        } else {
            ConfigError(format!(
                "{} (--{}): {message}",
                self.env,
                self.key.replace('_', "-")
            ))
        }
    }
}

fn pick(
    flag_or_env: &Option<String>,
    file: Option<String>,
    key: &'static str,
    env: &'static str,
) -> Picked {
    match flag_or_env {
        Some(v) => Picked {
            value: Some(v.clone()),
            from_file: false,
            key,
            env,
        },
        None => Picked {
            from_file: file.is_some(),
            value: file,
            key,
            env,
        },
    }
}

fn check_http_url(url: &str) -> Result<String, String> {
    let trimmed = url.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .ok_or_else(|| format!("`{url}` must start with http:// or https://"))?;
    if rest.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    Ok(trimmed.to_owned())
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
}
