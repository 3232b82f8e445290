//! The HTTP server's limits: how long a client may take to send a request's headers and body, how
//! many connections are served at once, and the per-API-key request rate.

use std::time::Duration;

use super::checks::in_range;
use super::settings::Layered;
use super::ConfigError;

/// Limits on clients of the API listener.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// From when a connection waits for a request (a new connection, or a kept-alive one after its
    /// last answer) until the request's headers are complete; then the connection is closed. This
    /// bounds slow-header clients and idle keep-alive connections alike.
    pub header_timeout: Duration,
    /// From the end of the headers until the whole request body has arrived.
    pub body_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Requests per second each API key may make; `None`: no limit.
    pub rate_limit: Option<u32>,
    /// Requests a key may make at once (the bucket's size); by default one second's worth.
    pub rate_limit_burst: u32,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
            rate_limit: None,
            rate_limit_burst: 0,
        }
    }
}

/// The HTTP settings in force, each checked.
pub(super) fn resolve(layered: &Layered) -> Result<HttpSettings, ConfigError> {
    let s = &layered.values;
    let mut http = HttpSettings::default();
    if let Some(seconds) = s.header_timeout_seconds {
        let seconds = layered.check("header_timeout_seconds", in_range(seconds, 1, 300))?;
        http.header_timeout = Duration::from_secs(seconds);
    }
    if let Some(seconds) = s.body_timeout_seconds {
        let seconds = layered.check("body_timeout_seconds", in_range(seconds, 1, 3600))?;
        http.body_timeout = Duration::from_secs(seconds);
    }
    if let Some(n) = s.max_connections {
        http.max_connections = layered.check("max_connections", in_range(n, 1, 1_000_000))?;
    }
    if let Some(rate) = s.rate_limit_per_second {
        let rate = layered.check("rate_limit_per_second", in_range(rate, 0, 1_000_000))?;
        http.rate_limit = (rate > 0).then_some(rate);
    }
    http.rate_limit_burst = match s.rate_limit_burst {
        Some(burst) => layered.check("rate_limit_burst", in_range(burst, 1, 10_000_000))?,
        None => http.rate_limit.unwrap_or(0),
    };
    Ok(http)
}
