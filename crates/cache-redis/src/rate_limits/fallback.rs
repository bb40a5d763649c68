//! Redis when it answers, this process otherwise: limits keep holding through an outage.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gatehouse_domain::ports::{RateDecision, RateLimiter};
use tokio::sync::Mutex;

use super::{InProcessRateLimiter, RedisRateLimiter};

/// How long after a Redis failure requests go to the in-process limiter before Redis is tried
/// again: a dead Redis costs one failed attempt per interval, not one per request.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A [`RateLimiter`] on Redis that falls back to an [`InProcessRateLimiter`] while Redis is
/// unreachable (limits then hold per instance), reports itself degraded meanwhile, and goes
/// back to Redis by itself once it answers again. Redis need not be up at start-up.
pub struct FallbackRateLimiter {
    url: String,
    key_prefix: String,
    redis: Mutex<Option<RedisRateLimiter>>,
    retry_at: std::sync::Mutex<Option<Instant>>,
    degraded: AtomicBool,
    local: Arc<InProcessRateLimiter>,
}

impl FallbackRateLimiter {
    /// A limiter for the Redis at `url` (connected on first use), keys starting with
    /// `key_prefix`.
    #[must_use]
    pub fn new(url: &str, key_prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            key_prefix: key_prefix.to_owned(),
            redis: Mutex::new(None),
            retry_at: std::sync::Mutex::new(None),
            degraded: AtomicBool::new(false),
            local: Arc::new(InProcessRateLimiter::new()),
        }
    }

    /// Whether the last attempt to reach Redis failed (limits are per instance meanwhile).
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Checks Redis now (connecting if needed) and updates the degraded flag.
    ///
    /// # Errors
    ///
    /// When Redis does not answer.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let result = match self.connection().await {
            Ok(redis) => redis.ping().await,
            Err(e) => Err(e),
        };
        self.note(&result);
        result
    }

    async fn connection(&self) -> anyhow::Result<RedisRateLimiter> {
        let mut slot = self.redis.lock().await;
        if let Some(redis) = slot.as_ref() {
            return Ok(redis.clone());
        }
        let redis = RedisRateLimiter::connect(&self.url, &self.key_prefix).await?;
        *slot = Some(redis.clone());
        Ok(redis)
    }

    fn note<T>(&self, result: &anyhow::Result<T>) {
        let mut retry_at = self.retry_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(_) => {
                *retry_at = None;
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("rate limits: Redis answers again; limits are shared again");
                }
            }
            Err(e) => {
                *retry_at = Some(Instant::now() + RETRY_AFTER);
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "rate limits: Redis is unreachable; limiting per instance");
                }
            }
        }
    }

    fn waiting_to_retry(&self) -> bool {
        let retry_at = self.retry_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        retry_at.is_some_and(|at| Instant::now() < at)
    }
}

impl fmt::Debug for FallbackRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackRateLimiter")
            .field("key_prefix", &self.key_prefix)
            .field("degraded", &self.is_degraded())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimiter for FallbackRateLimiter {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> anyhow::Result<RateDecision> {
        if !self.waiting_to_retry() {
            let result = match self.connection().await {
                Ok(redis) => redis.hit(key, limit, window).await,
                Err(e) => Err(e),
            };
            self.note(&result);
            if let Ok(decision) = result {
                return Ok(decision);
            }
        }
        Ok(self.local.hit_now(key, limit, window))
    }
}
