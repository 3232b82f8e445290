//! The security-code cache: a code lives for a TTL (15 minutes by default) and is dropped on use, on
//! consume, on token deletion and when the TTL passes; it is never written to disk or the database. One
//! node keeps codes in its own memory; several nodes share them through Redis (run it without
//! persistence), where each code is stored sealed under its account's data key, bound to its token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue};
use uuid::Uuid;

use super::Vault;
use crate::lock;
use crate::model::card::SecurityCode;

pub enum CvcCache {
    Memory(MemoryCvc),
    Redis(Box<RedisCvc>),
}

impl CvcCache {
    pub fn memory(ttl: Duration) -> Self {
        CvcCache::Memory(MemoryCvc::new(ttl))
    }

    /// Connects to Redis at `url`; the error names the setting.
    pub async fn redis(url: &str, ttl: Duration, vault: Arc<Vault>) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("STRONGROOM_REDIS_URL: {e}"))?;
        // A lost connection is re-made by the manager in the background, quickly and with a short
        // backoff (the default grows to a minute); requests never wait longer than REDIS_DEADLINE.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_DEADLINE)
            .set_response_timeout(REDIS_DEADLINE)
            .set_number_of_retries(3)
            .set_factor(50)
            .set_max_delay(1000);
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| "STRONGROOM_REDIS_URL: Redis did not answer within 10 s".to_owned())?
        .map_err(|e| format!("STRONGROOM_REDIS_URL: cannot connect: {e}"))?;
        Ok(CvcCache::Redis(Box::new(RedisCvc { conn, ttl, vault })))
    }

    /// Keeps the code for the TTL. Fails (within [`REDIS_DEADLINE`]) when Redis cannot take it: the
    /// caller must not then commit a token whose code it said it kept.
    pub async fn put(
        &self,
        account_id: Uuid,
        token_id: Uuid,
        code: SecurityCode,
    ) -> Result<(), CacheUnavailable> {
        match self {
            CvcCache::Memory(m) => {
                m.put(token_id, code);
                Ok(())
            }
            CvcCache::Redis(r) => r.put(account_id, token_id, &code).await.map_err(|err| {
                tracing::warn!(token = %token_id, error = %err, "the security code could not be cached");
                CacheUnavailable
            }),
        }
    }

    /// Takes the code out for one use; it is gone afterwards. Fails (within [`REDIS_DEADLINE`]) when
    /// Redis does not answer, which is not the same as holding no code.
    pub async fn take(
        &self,
        account_id: Uuid,
        token_id: Uuid,
    ) -> Result<Option<SecurityCode>, CacheUnavailable> {
        match self {
            CvcCache::Memory(m) => Ok(m.take(token_id)),
            CvcCache::Redis(r) => r.take(account_id, token_id).await.map_err(|err| {
                tracing::warn!(token = %token_id, error = %err, "the security code cache is unreachable");
                CacheUnavailable
            }),
        }
    }

    /// Whether a live code is held for the token.
    pub async fn holds(&self, token_id: Uuid) -> bool {
        match self {
            CvcCache::Memory(m) => m.holds(token_id),
            CvcCache::Redis(r) => r.holds(token_id).await.unwrap_or(false),
        }
    }

    /// Drops the code, if any; true if one was live.
    pub async fn drop_code(&self, token_id: Uuid) -> bool {
        match self {
            CvcCache::Memory(m) => m.drop_code(token_id),
            CvcCache::Redis(r) => r.drop_code(token_id).await.unwrap_or_else(|err| {
                tracing::warn!(token = %token_id, error = %err, "the security code cache is unreachable");
                false
            }),
        }
    }

    /// Whether the cache answers: Redis must answer `PING` within the deadline; memory always does.
    pub async fn ping(&self) -> Result<(), String> {
        match self {
            CvcCache::Memory(_) => Ok(()),
            CvcCache::Redis(r) => query::<String>(&r.conn, &redis::cmd("PING"))
                .await
                .map(drop),
        }
    }

    /// Removes expired codes from memory (Redis expires its own).
    pub fn sweep(&self) -> usize {
        match self {
            CvcCache::Memory(m) => m.sweep(),
            CvcCache::Redis(_) => 0,
        }
    }
}

/// How long one Redis command may take, connection included, before the request goes on without it.
pub const REDIS_DEADLINE: Duration = Duration::from_millis(500);

/// Redis did not take a security code in time.
#[derive(Debug, thiserror::Error)]
#[error("the security code cache is unavailable")]
pub struct CacheUnavailable;

/// Runs `cmd` on Redis within [`REDIS_DEADLINE`].
async fn query<T: FromRedisValue>(conn: &ConnectionManager, cmd: &Cmd) -> Result<T, String> {
    let mut conn = conn.clone();
    match tokio::time::timeout(REDIS_DEADLINE, cmd.query_async(&mut conn)).await {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "Redis did not answer within {} ms",
            REDIS_DEADLINE.as_millis()
        )),
    }
}

/// Codes in Redis under `strongroom:cvc:<token id>`, sealed, with Redis's own expiry.
pub struct RedisCvc {
    conn: ConnectionManager,
    ttl: Duration,
    vault: Arc<Vault>,
}

fn redis_key(token_id: Uuid) -> String {
    format!("strongroom:cvc:{token_id}")
}

fn aad(token_id: Uuid) -> Vec<u8> {
    [&b"cvc/"[..], token_id.as_bytes()].concat()
}

impl RedisCvc {
    async fn put(
        &self,
        account_id: Uuid,
        token_id: Uuid,
        code: &SecurityCode,
    ) -> Result<(), String> {
        let sealed = self
            .vault
            .seal_bytes(account_id, &aad(token_id), code.peek().as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(redis_key(token_id))
            .arg(sealed)
            .arg("EX")
            .arg(self.ttl.as_secs().max(1));
        query::<()>(&self.conn, &cmd).await
    }

    async fn take(&self, account_id: Uuid, token_id: Uuid) -> Result<Option<SecurityCode>, String> {
        let sealed: Option<Vec<u8>> =
            query(&self.conn, redis::cmd("GETDEL").arg(redis_key(token_id))).await?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let plain = self
            .vault
            .open_bytes(account_id, &aad(token_id), &sealed)
            .await
            .map_err(|e| e.to_string())?;
        let code =
            std::str::from_utf8(&plain).map_err(|_| "a cached code is not text".to_owned())?;
        Ok(SecurityCode::from_cache(code))
    }

    async fn holds(&self, token_id: Uuid) -> Result<bool, String> {
        query(&self.conn, redis::cmd("EXISTS").arg(redis_key(token_id))).await
    }

    async fn drop_code(&self, token_id: Uuid) -> Result<bool, String> {
        let removed: i64 = query(&self.conn, redis::cmd("DEL").arg(redis_key(token_id))).await?;
        Ok(removed > 0)
    }
}

/// Codes in this node's memory, split by token id over [`SHARDS`] maps, each behind a lock of its own.
///
/// With one map for every code, every request waited while it grew: each doubling rehashed all the codes
/// under the one lock, on a worker thread, while requests on the other worker queued on the lock (README,
/// "Other protections"), and the sweep walked them all under it too. At the default TTL and a few
/// thousand cards a second it holds millions. A shard holds a [`SHARDS`]th of the codes, so its growth
/// and its sweep take that much less and hold up only the requests whose token lands on it.
pub struct MemoryCvc {
    ttl: Duration,
    shards: Box<[Mutex<Codes>]>,
}

/// How many maps the codes are split over (a power of two).
const SHARDS: usize = 4096;

/// A shard's codes with their expiry. Each stays a `SecurityCode`, its digits on the heap and wiped
/// when it is dropped: a map's growth moves its entries, and would leave copies of digits kept inline
/// in the memory it frees.
type Codes = HashMap<Uuid, (SecurityCode, Instant)>;

/// Removes the shard's codes that expired by `now`; returns how many.
fn sweep_shard(codes: &mut Codes, now: Instant) -> usize {
    let before = codes.len();
    codes.retain(|_, (_, expires)| now < *expires);
    // Give back what a burst grew once most of it has gone.
    if codes.capacity() > 64 && codes.len() * 4 < codes.capacity() {
        codes.shrink_to(codes.len() * 2);
    }
    before - codes.len()
}

impl MemoryCvc {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, token_id: Uuid) -> std::sync::MutexGuard<'_, Codes> {
        lock(&self.shards[shard_of(token_id)])
    }

    pub fn put(&self, token_id: Uuid, code: SecurityCode) {
        self.put_at(token_id, code, Instant::now());
    }

    fn put_at(&self, token_id: Uuid, code: SecurityCode, now: Instant) {
        self.shard(token_id)
            .insert(token_id, (code, now + self.ttl));
    }

    /// Takes the code out for one use; it is gone afterwards.
    pub fn take(&self, token_id: Uuid) -> Option<SecurityCode> {
        let (code, expires) = self.shard(token_id).remove(&token_id)?;
        (Instant::now() < expires).then_some(code)
    }

    /// Whether a live code is held for the token.
    pub fn holds(&self, token_id: Uuid) -> bool {
        self.shard(token_id)
            .get(&token_id)
            .is_some_and(|(_, expires)| Instant::now() < *expires)
    }

    /// Drops the code, if any; true if one was live.
    pub fn drop_code(&self, token_id: Uuid) -> bool {
        self.shard(token_id)
            .remove(&token_id)
            .is_some_and(|(_, expires)| Instant::now() < expires)
    }

    /// Removes every expired code, one shard at a time; returns how many.
    pub fn sweep(&self) -> usize {
        self.sweep_at(Instant::now())
    }

    fn sweep_at(&self, now: Instant) -> usize {
        self.shards
            .iter()
            .map(|shard| sweep_shard(&mut lock(shard), now))
            .sum()
    }
}

/// The shard of a token: its id's two halves folded, so that any random bits of it count.
fn shard_of(token_id: Uuid) -> usize {
    let (high, low) = token_id.as_u64_pair();
    ((high ^ low) as usize) & (SHARDS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::card::Scheme;

    #[test]
    fn a_code_is_taken_once() {
        let cache = MemoryCvc::new(Duration::from_secs(60));
        let id = crate::new_id();
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
        let cache = MemoryCvc::new(Duration::from_millis(1));
        let id = crate::new_id();
        cache.put(id, SecurityCode::parse("123", Scheme::Visa).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        assert!(!cache.holds(id));
        assert_eq!(cache.sweep(), 1);
        assert!(cache.take(id).is_none());
    }

    fn code(digits: &str, scheme: Scheme) -> SecurityCode {
        SecurityCode::parse(digits, scheme).unwrap()
    }

    #[test]
    fn codes_spread_over_the_shards_and_each_comes_back_as_put() {
        // Even ids a Visa code of 3 digits, odd ones an American Express code of 4.
        let digits = |i: usize| match i % 2 {
            0 => (format!("{:03}", i % 1000), Scheme::Visa),
            _ => (format!("{i:04}"), Scheme::AmericanExpress),
        };
        let cache = MemoryCvc::new(Duration::from_secs(60));
        let ids: Vec<Uuid> = (0..10_000).map(|_| crate::new_id()).collect();
        for (i, id) in ids.iter().enumerate() {
            let (put, scheme) = digits(i);
            cache.put(*id, code(&put, scheme));
        }
        // 10,000 random ids over 4,096 shards leave about 350 of them empty.
        let used = cache.shards.iter().filter(|s| !lock(s).is_empty()).count();
        assert!(used > SHARDS * 3 / 4, "only {used} shards hold codes");
        for (i, id) in ids.iter().enumerate() {
            let taken = cache.take(*id).map(|c| c.peek().to_owned());
            assert_eq!(taken, Some(digits(i).0));
        }
    }

    #[test]
    fn a_sweep_removes_only_what_expired() {
        let cache = MemoryCvc::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let (early, late) = (crate::new_id(), crate::new_id());
        cache.put_at(early, code("123", Scheme::Visa), t0);
        cache.put_at(
            late,
            code("456", Scheme::Visa),
            t0 + Duration::from_secs(30),
        );
        assert_eq!(cache.sweep_at(t0 + Duration::from_secs(59)), 0);
        assert_eq!(cache.sweep_at(t0 + Duration::from_secs(60)), 1);
        assert!(!lock(&cache.shards[shard_of(early)]).contains_key(&early));
        assert!(cache.holds(late));
        assert_eq!(cache.sweep_at(t0 + Duration::from_secs(90)), 1);
        assert!(cache.shards.iter().all(|s| lock(s).is_empty()));
    }

    #[test]
    fn a_code_put_again_lives_until_its_last_expiry() {
        let cache = MemoryCvc::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let id = crate::new_id();
        cache.put_at(id, code("123", Scheme::Visa), t0);
        cache.put_at(id, code("789", Scheme::Visa), t0 + Duration::from_secs(30));
        // The second put replaced the first, expiry and all.
        assert_eq!(cache.sweep_at(t0 + Duration::from_secs(61)), 0);
        assert!(cache.holds(id));
        assert_eq!(cache.sweep_at(t0 + Duration::from_secs(90)), 1);
        assert!(cache.take(id).is_none());
    }

    #[test]
    fn a_code_taken_or_dropped_before_it_expires_is_not_counted_by_the_sweep() {
        let cache = MemoryCvc::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let (taken, dropped) = (crate::new_id(), crate::new_id());
        cache.put_at(taken, code("123", Scheme::Visa), t0);
        cache.put_at(dropped, code("123", Scheme::Visa), t0);
        assert!(cache.take(taken).is_some());
        assert!(cache.drop_code(dropped));
        assert_eq!(cache.sweep_at(t0 + Duration::from_secs(60)), 0);
    }

    #[test]
    fn a_shard_gives_back_what_a_burst_grew_once_it_has_expired() {
        let mut codes = Codes::default();
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            let at = t0 + Duration::from_millis(i);
            codes.insert(Uuid::from_u64_pair(0, i), (code("123", Scheme::Visa), at));
        }
        let grown = codes.capacity();
        assert_eq!(
            sweep_shard(&mut codes, t0 + Duration::from_millis(9_900)),
            9_901
        );
        assert_eq!(codes.len(), 99);
        assert!(
            codes.capacity() < grown / 8,
            "{} of {grown}",
            codes.capacity()
        );
    }
}
