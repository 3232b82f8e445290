//! The forwarding allow-list: which URLs an account's card data may be sent to by `POST /forward`. An
//! entry allows one scheme, host and port and a path prefix; entries are added and removed by the admin
//! command line (audited) and read by each node at most once per auth cache window, as keys are.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use reqwest::Url;
use uuid::Uuid;

use crate::connectors::guard::{check_destination, is_loopback_url};
use crate::store::{Action, AuditEvent, DestinationRecord, DynStore, StoreError, StoreResult, Ts};

#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("no account with id {0}")]
    UnknownAccount(Uuid),
    #[error("no destination with id {0}")]
    UnknownDestination(Uuid),
    #[error("--url: {0}")]
    InvalidUrl(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A URL card data may be sent to: `https://`, or `http://` to a loopback host (tests and processors
/// running on the same machine), with a host, no credentials and no fragment.
pub fn parse_destination(url: &str) -> Result<Url, String> {
    let parsed = check_destination(url)?;
    if parsed.scheme() == "http" && !is_loopback_url(&parsed) {
        return Err("must be https:// (http:// only for a loopback host)".into());
    }
    if parsed.fragment().is_some() {
        return Err("must not carry a fragment".into());
    }
    Ok(parsed)
}

/// An allow-list entry as registered: a destination URL without a query string.
pub fn parse_entry(url: &str) -> Result<Url, String> {
    let parsed = parse_destination(url)?;
    if parsed.query().is_some() {
        return Err("must not carry a query string (an entry is a path prefix)".into());
    }
    Ok(parsed)
}

/// Whether `entry` allows `target`: same scheme, host and port (the scheme's default when none is
/// written), and the target's path starts with the entry's path at a segment boundary, so that
/// `/v1` allows `/v1` and `/v1/charges` but not `/v10`. Both paths are normalised by the URL parser
/// (`..` and `%2e%2e` resolved) before they are compared, so a target cannot climb out of its prefix.
pub fn allows(entry: &Url, target: &Url) -> bool {
    if entry.scheme() != target.scheme()
        || entry.host_str().map(str::to_ascii_lowercase)
            != target.host_str().map(str::to_ascii_lowercase)
        || entry.port_or_known_default() != target.port_or_known_default()
    {
        return false;
    }
    let prefix = entry.path();
    let path = target.path();
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Adds an entry for `account_id`; the admin action is audited.
pub async fn add_destination(
    store: &DynStore,
    account_id: Uuid,
    url: &str,
    actor: &str,
) -> Result<DestinationRecord, DestinationError> {
    let url = parse_entry(url).map_err(DestinationError::InvalidUrl)?;
    if store.get_account(account_id).await?.is_none() {
        return Err(DestinationError::UnknownAccount(account_id));
    }
    let destination = DestinationRecord {
        id: crate::new_id(),
        account_id,
        url: url.to_string(),
        created_at: Ts::now(),
        removed_at: None,
    };
    let audit = AuditEvent::new(
        Some(account_id),
        actor,
        Action::DestinationAdd,
        Some(destination.id.to_string()),
        "success",
    );
    store.insert_destination(&destination, &audit).await?;
    Ok(destination)
}

/// Removes an entry (the row stays, marked removed); the admin action is audited.
pub async fn remove_destination(
    store: &DynStore,
    id: Uuid,
    actor: &str,
) -> Result<DestinationRecord, DestinationError> {
    let destination = store
        .get_destination(id)
        .await?
        .filter(|d| d.removed_at.is_none())
        .ok_or(DestinationError::UnknownDestination(id))?;
    let audit = AuditEvent::new(
        Some(destination.account_id),
        actor,
        Action::DestinationRemove,
        Some(id.to_string()),
        "success",
    );
    if !store.remove_destination(id, Ts::now(), &audit).await? {
        return Err(DestinationError::UnknownDestination(id));
    }
    Ok(destination)
}

type Entries = Arc<Vec<Url>>;

/// Each account's allow-list as last read, for `ttl` (the auth cache window): an entry added or
/// removed applies on every node within it, and a forward costs no database read for the list.
pub struct DestinationCache {
    ttl: Duration,
    entries: RwLock<HashMap<Uuid, (Entries, Instant)>>,
}

const CACHE_MAX_ACCOUNTS: usize = 10_000;

impl DestinationCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// Whether an entry of `account_id` allows `target`.
    pub async fn allows(
        &self,
        store: &DynStore,
        account_id: Uuid,
        target: &Url,
    ) -> StoreResult<bool> {
        let entries = self.entries_of(store, account_id).await?;
        Ok(entries.iter().any(|entry| allows(entry, target)))
    }

    async fn entries_of(&self, store: &DynStore, account_id: Uuid) -> StoreResult<Entries> {
        let cached = self.entries.read().ok().and_then(|map| {
            map.get(&account_id)
                .filter(|(_, read_at)| read_at.elapsed() < self.ttl)
                .map(|(entries, _)| entries.clone())
        });
        if let Some(entries) = cached {
            return Ok(entries);
        }
        let rows = store.list_destinations(Some(account_id)).await?;
        // An entry that no longer parses (rules tightened since it was added) allows nothing.
        let entries: Entries = Arc::new(
            rows.iter()
                .filter_map(|r| parse_entry(&r.url).ok())
                .collect(),
        );
        if !self.ttl.is_zero() {
            if let Ok(mut map) = self.entries.write() {
                if map.len() >= CACHE_MAX_ACCOUNTS {
                    map.retain(|_, (_, read_at)| read_at.elapsed() < self.ttl);
                    if map.len() >= CACHE_MAX_ACCOUNTS {
                        map.clear();
                    }
                }
                map.insert(account_id, (entries.clone(), Instant::now()));
            }
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn destinations_are_https_or_loopback_http() {
        assert!(parse_destination("https://api.example.com/v1/charges?x=1").is_ok());
        assert!(parse_destination("http://127.0.0.1:9000/pay").is_ok());
        assert!(parse_destination("http://localhost/pay").is_ok());
        assert!(parse_destination("http://[::1]:81/").is_ok());
        assert!(parse_destination("http://api.example.com/").is_err());
        assert!(parse_destination("http://10.0.0.1/").is_err());
        assert!(parse_destination("ftp://api.example.com/").is_err());
        assert!(parse_destination("https://u:p@api.example.com/").is_err());
        assert!(parse_destination("https://api.example.com/#frag").is_err());
        assert!(parse_entry("https://api.example.com/v1?x=1").is_err());
    }

    #[test]
    fn an_entry_allows_its_scheme_host_port_and_path_prefix() {
        let entry = url("https://api.example.com/v1/");
        assert!(allows(
            &entry,
            &url("https://api.example.com/v1/charges?a=b")
        ));
        assert!(allows(&entry, &url("https://API.example.com:443/v1/x")));
        assert!(!allows(&entry, &url("http://api.example.com/v1/x")));
        assert!(!allows(&entry, &url("https://api.example.com:8443/v1/x")));
        assert!(!allows(
            &entry,
            &url("https://api.example.com.evil.test/v1/x")
        ));
        assert!(!allows(&entry, &url("https://evil.test/v1/x")));
        assert!(!allows(&entry, &url("https://api.example.com/v2/x")));
        assert!(!allows(&entry, &url("https://api.example.com/v1")));
        assert!(!allows(&entry, &url("https://api.example.com/v1/../admin")));
        assert!(!allows(
            &entry,
            &url("https://api.example.com/v1/%2e%2e/admin")
        ));
    }

    #[test]
    fn a_prefix_without_a_slash_stops_at_a_segment_boundary() {
        let entry = url("https://api.example.com/v1");
        assert!(allows(&entry, &url("https://api.example.com/v1")));
        assert!(allows(&entry, &url("https://api.example.com/v1/charges")));
        assert!(!allows(&entry, &url("https://api.example.com/v10")));
        let root = url("https://api.example.com");
        assert!(allows(
            &root,
            &url("https://api.example.com/anything/at/all")
        ));
    }
}
