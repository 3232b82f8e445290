//! The per-API-key request rate: a token bucket per key, in this node's memory, refilled at the
//! configured rate. Over it a request is answered 429 before it reaches a handler, so it writes
//! nothing (no idempotency record, no audit row).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Above this many keys tracked, buckets that have refilled (keys that went quiet) are forgotten.
const PRUNE_ABOVE: usize = 10_000;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_second` requests a second per key, at most `burst` at once (at least one).
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket, or says how long until there is one.
    pub fn check(&self, key: Uuid) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: Uuid, now: Instant) -> Result<(), Duration> {
        let mut buckets = crate::lock(&self.buckets);
        if buckets.len() > PRUNE_ABOVE {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < burst
            });
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refilled = now.duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refilled).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(2, 3);
        let (key, other) = (crate::new_id(), crate::new_id());
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(key, start).is_ok());
        }
        let wait = limiter.check_at(key, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(limiter.check_at(other, start).is_ok());
        assert!(limiter
            .check_at(key, start + Duration::from_millis(500))
            .is_ok());
        assert!(limiter
            .check_at(key, start + Duration::from_millis(600))
            .is_err());
    }

    #[test]
    fn quiet_keys_are_forgotten_when_many_are_tracked() {
        let limiter = RateLimiter::new(1000, 1);
        let start = Instant::now();
        for _ in 0..=PRUNE_ABOVE {
            let _ = limiter.check_at(crate::new_id(), start);
        }
        let later = start + Duration::from_secs(1);
        assert!(limiter.check_at(crate::new_id(), later).is_ok());
        let tracked = limiter.buckets.lock().unwrap().len();
        assert_eq!(tracked, 1);
    }
}
