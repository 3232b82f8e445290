//! The security-code cache: codes live in this process's memory only, for a TTL (15 minutes by default),
//! and are dropped on use, on consume, on token deletion and when the TTL passes. Never written anywhere.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::domain::cards::SecurityCode;

pub struct CvcCache {
    ttl: Duration,
    entries: Mutex<HashMap<Uuid, (SecurityCode, Instant)>>,
}

impl CvcCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (SecurityCode, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn put(&self, token_id: Uuid, code: SecurityCode) {
        self.entries()
            .insert(token_id, (code, Instant::now() + self.ttl));
    }

    /// Takes the code out for one use; it is gone afterwards.
    pub fn take(&self, token_id: Uuid) -> Option<SecurityCode> {
        let (code, expires) = self.entries().remove(&token_id)?;
        (Instant::now() < expires).then_some(code)
    }

    /// Whether a live code is held for the token.
    pub fn holds(&self, token_id: Uuid) -> bool {
        self.entries()
            .get(&token_id)
            .is_some_and(|(_, expires)| Instant::now() < *expires)
    }

    /// Drops the code, if any; true if one was live.
    pub fn drop_code(&self, token_id: Uuid) -> bool {
        self.entries()
            .remove(&token_id)
            .is_some_and(|(_, expires)| Instant::now() < expires)
    }

    /// Removes every expired code; returns how many.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut entries = self.entries();
        let before = entries.len();
        entries.retain(|_, (_, expires)| now < *expires);
        before - entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cards::Scheme;

    #[test]
    fn a_code_is_taken_once() {
        let cache = CvcCache::new(Duration::from_secs(60));
        let id = Uuid::new_v4();
        cache.put(id, SecurityCode::parse("123", Scheme::Visa).unwrap());
        assert!(cache.holds(id));
        assert_eq!(
            cache.take(id).map(|c| c.peek().to_owned()),
            Some("123".to_owned())
        );
        assert!(cache.take(id).is_none());
    }

    #[test]
    fn an_expired_code_is_gone() {
        let cache = CvcCache::new(Duration::from_millis(1));
        let id = Uuid::new_v4();
        cache.put(id, SecurityCode::parse("123", Scheme::Visa).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        assert!(!cache.holds(id));
        assert_eq!(cache.sweep(), 1);
        assert!(cache.take(id).is_none());
    }
}
