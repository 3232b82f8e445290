//! The webhook delivery settings: timeout, retry schedule, the address rule and the subscription cache.

use std::time::Duration;

use super::{ConfigError, FileSettings, Settings};

/// How webhooks are delivered.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// Timeout of one delivery request, connection included.
    pub timeout: Duration,
    /// The delay before the first retry; it doubles with each attempt, capped at an hour.
    pub retry_base: Duration,
    /// After this long since its event, a delivery that still fails is recorded as failed.
    pub deadline: Duration,
    /// Whether link-local and metadata addresses may be webhook destinations.
    pub allow_link_local: bool,
    /// How long a node trusts an account's list of webhooks it has read.
    pub cache_ttl: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            deadline: Duration::from_secs(24 * 3600),
            allow_link_local: false,
            cache_ttl: Duration::from_secs(2),
        }
    }
}

/// The webhook settings from flags and environment over the file over the defaults.
pub(super) fn resolve(
    settings: &Settings,
    file: &FileSettings,
) -> Result<WebhookSettings, ConfigError> {
    let mut webhooks = WebhookSettings::default();
    if let Some(seconds) = settings
        .webhook_timeout_seconds
        .or(file.webhook_timeout_seconds)
    {
        if seconds == 0 || seconds > 300 {
            return Err(ConfigError(
                "STRONGROOM_WEBHOOK_TIMEOUT_SECONDS (webhook_timeout_seconds) must be from 1 to 300"
                    .into(),
            ));
        }
        webhooks.timeout = Duration::from_secs(seconds);
    }
    if let Some(ms) = settings
        .webhook_retry_base_ms
        .or(file.webhook_retry_base_ms)
    {
        if ms == 0 || ms > 3_600_000 {
            return Err(ConfigError(
                "STRONGROOM_WEBHOOK_RETRY_BASE_MS (webhook_retry_base_ms) must be from 1 to 3600000"
                    .into(),
            ));
        }
        webhooks.retry_base = Duration::from_millis(ms);
    }
    if let Some(seconds) = settings
        .webhook_deadline_seconds
        .or(file.webhook_deadline_seconds)
    {
        if seconds == 0 || seconds > 30 * 24 * 3600 {
            return Err(ConfigError(
                "STRONGROOM_WEBHOOK_DEADLINE_SECONDS (webhook_deadline_seconds) must be from 1 to 2592000"
                    .into(),
            ));
        }
        webhooks.deadline = Duration::from_secs(seconds);
    }
    if let Some(allow) = settings
        .webhook_allow_link_local
        .or(file.webhook_allow_link_local)
    {
        webhooks.allow_link_local = allow;
    }
    if let Some(seconds) = settings
        .webhook_cache_seconds
        .or(file.webhook_cache_seconds)
    {
        if seconds > 60 {
            return Err(ConfigError(
                "STRONGROOM_WEBHOOK_CACHE_SECONDS (webhook_cache_seconds) must be at most 60"
                    .into(),
            ));
        }
        webhooks.cache_ttl = Duration::from_secs(seconds);
    }
    Ok(webhooks)
}
