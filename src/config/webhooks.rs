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
    /// Deliveries one node sends at once to one destination (`host:port`).
    pub destination_concurrency: usize,
    /// Timeouts in a row after which a destination's breaker opens (0: never).
    pub breaker_timeouts: u32,
    /// How long deliveries to a destination whose breaker is open are postponed.
    pub breaker_cooldown: Duration,
    /// How many nice levels the thread that sends webhooks runs below the server (Linux; 0: none).
    pub sender_nice: i32,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            deadline: Duration::from_secs(24 * 3600),
            allow_link_local: false,
            cache_ttl: Duration::from_secs(2),
            destination_concurrency: 1,
            breaker_timeouts: 3,
            breaker_cooldown: Duration::from_secs(30),
            sender_nice: 10,
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
    if let Some(n) = s.webhook_destination_concurrency {
        webhooks.destination_concurrency =
            layered.check("webhook_destination_concurrency", in_range(n, 1, 1000))?;
    }
    if let Some(n) = s.webhook_breaker_timeouts {
        webhooks.breaker_timeouts = layered.check("webhook_breaker_timeouts", at_most(n, 1000))?;
    }
    if let Some(seconds) = s.webhook_breaker_cooldown_seconds {
        let seconds = layered.check(
            "webhook_breaker_cooldown_seconds",
            in_range(seconds, 1, 3600),
        )?;
        webhooks.breaker_cooldown = Duration::from_secs(seconds);
    }
    if let Some(nice) = s.webhook_sender_nice {
        webhooks.sender_nice = layered.check("webhook_sender_nice", in_range(nice, 0, 19))?;
    }
    Ok(webhooks)
}
