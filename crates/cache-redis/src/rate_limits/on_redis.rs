//! Fixed-window counters on Redis, shared by every server instance.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_domain::ports::{RateDecision, RateLimiter};

use crate::connection::Redis;

/// Counts and sets the window's expiry in one atomic step: `INCR`, `PEXPIRE` on the first
/// request of a window (or when a key lost its expiry), and the time left.
const HIT_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if count == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
";

/// A [`RateLimiter`] on Redis: one key per limited key and window, `{key_prefix}rl:{key}`,
/// updated by a Lua script so N instances share one exact limit. Every call fails within a
/// short timeout when Redis is slow or unreachable.
#[derive(Clone)]
pub struct RedisRateLimiter {
    redis: Redis,
    script: redis::Script,
    key_prefix: String,
}

impl RedisRateLimiter {
    /// Connects to the Redis at `url`; keys start with `key_prefix`.
    ///
    /// # Errors
    ///
    /// When the URL is invalid or Redis does not answer within half a second. Errors name the
    /// server's `host:port`, never the URL.
    pub async fn connect(url: &str, key_prefix: &str) -> anyhow::Result<Self> {
        let redis = Redis::connect(url).await?;
        Ok(Self { redis, script: redis::Script::new(HIT_SCRIPT), key_prefix: key_prefix.to_owned() })
    }

    /// Checks that Redis answers `PING`.
    ///
    /// # Errors
    ///
    /// When it does not within the command timeout.
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.redis.ping().await
    }
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("addr", &self.redis.addr())
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> anyhow::Result<RateDecision> {
        let redis_key = format!("{}rl:{key}", self.key_prefix);
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let script = self.script.clone();
        let (count, ttl_ms): (u64, i64) =
            self.redis
                .run("rate limit", |mut conn| async move {
                    script.key(redis_key).arg(window_ms).invoke_async(&mut conn).await
                })
                .await?;
        let reset = Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(window_ms));
        Ok(RateDecision::from_count(count, limit, reset))
    }
}
