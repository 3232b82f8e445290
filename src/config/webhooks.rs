//! The webhook delivery settings: timeout, retry schedule, the address rule and the subscription cache.

use std::time::Duration;

use super::checks::{at_most, in_range};
use super::settings::Layered;
use super::ConfigError;

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

/// The webhook settings in force, each checked.
pub(super) fn resolve(layered: &Layered) -> Result<WebhookSettings, ConfigError> {
    let s = &layered.values;
    let mut webhooks = WebhookSettings::default();
    if let Some(seconds) = s.webhook_timeout_seconds {
        let seconds = layered.check("webhook_timeout_seconds", in_range(seconds, 1, 300))?;
        webhooks.timeout = Duration::from_secs(seconds);
    }
    if let Some(ms) = s.webhook_retry_base_ms {
        let ms = layered.check("webhook_retry_base_ms", in_range(ms, 1, 3_600_000))?;
        webhooks.retry_base = Duration::from_millis(ms);
    }
    if let Some(seconds) = s.webhook_deadline_seconds {
        let seconds = layered.check(
            "webhook_deadline_seconds",
            in_range(seconds, 1, 30 * 24 * 3600),
        )?;
        webhooks.deadline = Duration::from_secs(seconds);
    }
    if let Some(allow) = s.webhook_allow_link_local {
        webhooks.allow_link_local = allow;
    }
    if let Some(seconds) = s.webhook_cache_seconds {
        let seconds = layered.check("webhook_cache_seconds", at_most(seconds, 60))?;
        webhooks.cache_ttl = Duration::from_secs(seconds);
    }
    Ok(webhooks)
}
