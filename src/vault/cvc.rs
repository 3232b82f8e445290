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
use crate::model::card::SecurityCode;

pub enum CvcCache {
    Memory(MemoryCvc),
    Redis(RedisCvc),
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
        Ok(CvcCache::Redis(RedisCvc { conn, ttl, vault }))
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

pub struct MemoryCvc {
    ttl: Duration,
    entries: Mutex<HashMap<Uuid, (SecurityCode, Instant)>>,
}

impl MemoryCvc {
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
    use crate::model::card::Scheme;

    #[test]
    fn a_code_is_taken_once() {
        let cache = MemoryCvc::new(Duration::from_secs(60));
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
        let cache = MemoryCvc::new(Duration::from_millis(1));
        let id = Uuid::new_v4();
        cache.put(id, SecurityCode::parse("123", Scheme::Visa).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        assert!(!cache.holds(id));
        assert_eq!(cache.sweep(), 1);
        assert!(cache.take(id).is_none());
    }
}
