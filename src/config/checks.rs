//! The checks of single settings: each takes the raw value and answers the checked one or what is wrong
//! with it, in words that follow the setting's name.

use std::fmt::Display;
use std::net::SocketAddr;

use super::LogFormat;

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

/// An `http://` or `https://` URL with a host; a trailing `/` is dropped.
pub(super) fn http_url(url: &str) -> Result<String, String> {
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
    fn urls_need_a_scheme_and_a_host() {
        assert_eq!(
            http_url("https://api.example/"),
            Ok("https://api.example".into())
        );
        assert!(http_url("ftp://x").is_err());
        assert!(http_url("http://").is_err());
    }
}
