//! The checks of single settings: each takes the raw value and answers the checked one or what is wrong
//! with it, in words that follow the setting's name.

use std::fmt::Display;
use std::net::SocketAddr;

use super::LogFormat;
use crate::connectors::guard::check_secure_url;

pub(super) fn in_range<T: PartialOrd + Display>(value: T, min: T, max: T) -> Result<T, String> {
    if value < min || value > max {
        return Err(format!("must be from {min} to {max}"));
    }
    Ok(value)
}

pub(super) fn at_least<T: PartialOrd + Display>(value: T, min: T) -> Result<T, String> {
    if value < min {
        return Err(format!("must be at least {min}"));
    }
    Ok(value)
}

pub(super) fn at_most<T: PartialOrd + Display>(value: T, max: T) -> Result<T, String> {
    if value > max {
        return Err(format!("must be at most {max}"));
    }
    Ok(value)
}

pub(super) fn not_empty(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("is empty".into());
    }
    Ok(value.to_owned())
}

pub(super) fn listen_address(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("`{value}` is not an address like 127.0.0.1:8080"))
}

/// A base URL that secrets or card data travel to (Stripe's API, this server's public address, which
/// Stripe forwards cards to): `https://`, or `http://` only to a loopback host, since anything else
/// would send them in clear text over a network. A trailing `/` is dropped.
pub(super) fn secure_url(url: &str) -> Result<String, String> {
    let trimmed = url.trim_end_matches('/');
    check_secure_url(trimmed).map_err(|message| format!("`{url}` {message}"))?;
    Ok(trimmed.to_owned())
}

pub(super) fn log_format(value: &str) -> Result<LogFormat, String> {
    match value {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("`{other}` is neither `text` nor `json`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_name_their_bounds() {
        assert_eq!(in_range(5, 1, 10), Ok(5));
        assert_eq!(in_range(0, 1, 10), Err("must be from 1 to 10".into()));
        assert_eq!(at_least(0u32, 1), Err("must be at least 1".into()));
        assert_eq!(at_most(61u64, 60), Err("must be at most 60".into()));
    }

    #[test]
    fn urls_need_a_scheme_and_a_host_and_http_only_for_loopback() {
        assert_eq!(
            secure_url("https://api.example/"),
            Ok("https://api.example".into())
        );
        assert_eq!(
            secure_url("http://127.0.0.1:12111/"),
            Ok("http://127.0.0.1:12111".into())
        );
        assert!(secure_url("ftp://x").is_err());
        assert!(secure_url("http://").is_err());
        assert_eq!(
            secure_url("http://api.example"),
            Err("`http://api.example` must be https:// (http:// only for a loopback host: localhost, 127.0.0.0/8, ::1)".into())
        );
    }
}
