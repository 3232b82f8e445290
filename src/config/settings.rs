//! The raw settings, declared once for the three places they come from: command-line flags, `STRONGROOM_*`
//! environment variables (both through clap) and the TOML file (through serde), and their layering.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ConfigError;

/// Every setting, declared once: clap reads it from a flag or its `STRONGROOM_*` variable, serde from the
/// TOML file (same name, lower case). Values are raw here; [`Config::resolve`] checks them.
#[derive(Args, Deserialize, Serialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TOML file with the same settings (keys without the STRONGROOM_ prefix, in lower case).
    #[arg(long, global = true, env = "STRONGROOM_CONFIG")]
    #[serde(skip)]
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
    /// How long a request waits for a database connection before it is answered 503, in milliseconds.
    #[arg(long, global = true, env = "STRONGROOM_DB_ACQUIRE_TIMEOUT_MS")]
    pub db_acquire_timeout_ms: Option<u64>,
    /// File holding the master key; default: a development key generated in the data directory.
    #[arg(long, global = true, env = "STRONGROOM_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Who keeps the master key: `file` (default) or `pkcs11` (an HSM).
    #[arg(long, global = true, env = "STRONGROOM_KEY_PROVIDER")]
    pub key_provider: Option<String>,
    /// The PKCS#11 library (`pkcs11` provider), e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, global = true, env = "STRONGROOM_PKCS11_MODULE")]
    pub pkcs11_module: Option<PathBuf>,
    /// Label of the HSM token holding the master key.
    #[arg(long, global = true, env = "STRONGROOM_PKCS11_TOKEN_LABEL")]
    pub pkcs11_token_label: Option<String>,
    /// File holding the token's user PIN.
    #[arg(long, global = true, env = "STRONGROOM_PKCS11_PIN_FILE")]
    pub pkcs11_pin_file: Option<PathBuf>,
    /// Label of the master key's objects in the token (one per version).
    #[arg(long, global = true, env = "STRONGROOM_PKCS11_KEY_LABEL")]
    pub pkcs11_key_label: Option<String>,
    /// Sealed values a data-key rotation job re-seals per transaction.
    #[arg(long, global = true, env = "STRONGROOM_DATA_KEY_ROTATION_BATCH")]
    pub data_key_rotation_batch: Option<i64>,
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
    /// Background job workers this node runs beside the API in each pool (payment steps, imports,
    /// webhook deliveries) whose own size is not set (0: none).
    #[arg(long, global = true, env = "STRONGROOM_WORKERS")]
    pub workers: Option<usize>,
    /// Workers of the payment-step pool (authorize, capture, void, settle, refund, undo); default `workers`.
    #[arg(long, global = true, env = "STRONGROOM_PAYMENT_WORKERS")]
    pub payment_workers: Option<usize>,
    /// Workers of the import pool; default `workers`.
    #[arg(long, global = true, env = "STRONGROOM_IMPORT_WORKERS")]
    pub import_workers: Option<usize>,
    /// Workers of the webhook-delivery pool; default `workers`.
    #[arg(long, global = true, env = "STRONGROOM_WEBHOOK_WORKERS")]
    pub webhook_workers: Option<usize>,
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
    /// How long after its creation a payment still `processing` (its node died mid-authorization) is
    /// authorized again by its recovery job, in seconds; keep it above every processor's timeout.
    #[arg(long, global = true, env = "STRONGROOM_AUTHORIZE_RECOVERY_SECONDS")]
    pub authorize_recovery_seconds: Option<u64>,
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
    /// How many deliveries one node sends at once to one destination (`host:port`); more wait their
    /// turn without holding a worker.
    #[arg(
        long,
        global = true,
        env = "STRONGROOM_WEBHOOK_DESTINATION_CONCURRENCY"
    )]
    pub webhook_destination_concurrency: Option<usize>,
    /// After this many timeouts in a row from one destination, deliveries to it are postponed for the
    /// cool-down instead of occupying workers (0: never).
    #[arg(long, global = true, env = "STRONGROOM_WEBHOOK_BREAKER_TIMEOUTS")]
    pub webhook_breaker_timeouts: Option<u32>,
    /// How long deliveries to a destination that keeps timing out are postponed, in seconds.
    #[arg(
        long,
        global = true,
        env = "STRONGROOM_WEBHOOK_BREAKER_COOLDOWN_SECONDS"
    )]
    pub webhook_breaker_cooldown_seconds: Option<u64>,
    /// How many nice levels (0..19) the thread that sends webhooks runs below the server: above 0,
    /// deliveries yield the CPU to API requests when both want it, and catch up when it is free.
    #[arg(long, global = true, env = "STRONGROOM_WEBHOOK_SENDER_NICE")]
    pub webhook_sender_nice: Option<i32>,
    /// How long `POST /forward` waits for its destination (connect, send, answer), in seconds.
    #[arg(long, global = true, env = "STRONGROOM_FORWARD_TIMEOUT_SECONDS")]
    pub forward_timeout_seconds: Option<u64>,
    /// How long a client may take to send a request's headers, in seconds, counted from when the
    /// connection waits for a request; idle keep-alive connections are closed after it too.
    #[arg(long, global = true, env = "STRONGROOM_HEADER_TIMEOUT_SECONDS")]
    pub header_timeout_seconds: Option<u64>,
    /// How long a client may take to send a request's body after its headers, in seconds.
    #[arg(long, global = true, env = "STRONGROOM_BODY_TIMEOUT_SECONDS")]
    pub body_timeout_seconds: Option<u64>,
    /// Most client connections served at once; further ones wait until one closes.
    #[arg(long, global = true, env = "STRONGROOM_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Requests per second each API key may make, then 429 (0: no limit).
    #[arg(long, global = true, env = "STRONGROOM_RATE_LIMIT_PER_SECOND")]
    pub rate_limit_per_second: Option<u32>,
    /// Most idempotency records an account may hold from the last 24 hours; then a POST with a new
    /// `x-idempotency-key` is 429 (0: no cap).
    #[arg(
        long,
        global = true,
        env = "STRONGROOM_IDEMPOTENCY_RECORDS_PER_ACCOUNT"
    )]
    pub idempotency_records_per_account: Option<u64>,
    /// How long a token session (the hosted card form's) stays usable after it is made, in seconds.
    #[arg(long, global = true, env = "STRONGROOM_SESSION_TTL_SECONDS")]
    pub session_ttl_seconds: Option<u64>,
    /// PEM certificate chain: with the key, the API is served over HTTPS (rustls).
    #[arg(long, global = true, env = "STRONGROOM_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, global = true, env = "STRONGROOM_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Requests a key may make in a burst above its rate (default: one second's worth).
    #[arg(long, global = true, env = "STRONGROOM_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
    /// Address of the Prometheus metrics listener (`GET /metrics`); off unless set, and never the
    /// API's own address.
    #[arg(long, global = true, env = "STRONGROOM_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// This node's name in the audit trail (default: the host name).
    #[arg(long, global = true, env = "STRONGROOM_NODE_NAME")]
    pub node_name: Option<String>,
}

/// The settings in force: flags and environment over the file. Remembers which came from the file, so
/// that an error names the setting the way the operator wrote it.
pub(super) struct Layered {
    pub values: Settings,
    from_file: BTreeSet<String>,
}

impl Layered {
    pub fn new(flags: &Settings) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => Settings::default(),
        };
        let (Value::Object(mut merged), Value::Object(file)) = (to_value(flags)?, to_value(&file)?)
        else {
            return Err(ConfigError("settings did not serialise as a map".into()));
        };
        let mut from_file = BTreeSet::new();
        for (key, value) in file {
            let flag_given = matches!(merged.get(&key), Some(v) if !v.is_null());
            if !value.is_null() && !flag_given {
                from_file.insert(key.clone());
                merged.insert(key, value);
            }
        }
        let values = serde_json::from_value(Value::Object(merged))
            .map_err(|e| ConfigError(format!("settings: {e}")))?;
        Ok(Self { values, from_file })
    }

    /// Turns the outcome of a check of setting `key` into an error that names it.
    pub fn check<T>(&self, key: &str, checked: Result<T, String>) -> Result<T, ConfigError> {
        checked.map_err(|message| {
            if self.from_file.contains(key) {
                ConfigError(format!("`{key}` in the config file: {message}"))
            } else {
                ConfigError(format!(
                    "STRONGROOM_{} (--{}): {message}",
                    key.to_uppercase(),
                    key.replace('_', "-")
                ))
            }
        })
    }
}

fn to_value(settings: &Settings) -> Result<Value, ConfigError> {
    serde_json::to_value(settings).map_err(|e| ConfigError(format!("settings: {e}")))
}

fn read_file(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.message())))
}
