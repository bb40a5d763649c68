//! Fixed-window counters in this process's memory.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gatehouse_domain::ports::{RateDecision, RateLimiter};

/// Expired windows are dropped when the map reaches this many keys, or twice its size after
/// the last prune: pruning stays amortised O(1) per request.
const MIN_PRUNE_AT: usize = 4096;

/// A [`RateLimiter`] held in this process: limits are per instance.
pub struct InProcessRateLimiter {
    state: Mutex<State>,
}

struct State {
    /// Key → (requests in the window, when the window ends).
    windows: HashMap<String, (u64, Instant)>,
    prune_at: usize,
}

impl InProcessRateLimiter {
    /// An empty limiter.
    #[must_use]
    pub fn new() -> Self {
        Self { state: Mutex::new(State { windows: HashMap::new(), prune_at: MIN_PRUNE_AT }) }
    }

    /// Counts one request on `key`, synchronously (no I/O).
    #[must_use]
    pub fn hit_now(&self, key: &str, limit: u32, window: Duration) -> RateDecision {
        let now = Instant::now();
        // The lock is never held across a call that can panic, so a poisoned map is consistent.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.windows.len() >= state.prune_at {
            state.windows.retain(|_, (_, ends)| *ends > now);
            state.prune_at = (state.windows.len() * 2).max(MIN_PRUNE_AT);
        }
        let entry = state.windows.entry(key.to_owned()).or_insert((0, now + window));
        if entry.1 <= now {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        RateDecision::from_count(entry.0, limit, entry.1.saturating_duration_since(now))
    }
}

impl Default for InProcessRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for InProcessRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.state.lock().map_or(0, |state| state.windows.len());
        f.debug_struct("InProcessRateLimiter").field("keys", &keys).finish()
    }
}

#[async_trait]
impl RateLimiter for InProcessRateLimiter {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> anyhow::Result<RateDecision> {
        Ok(self.hit_now(key, limit, window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_limit_is_admitted_per_window() {
        let limiter = InProcessRateLimiter::new();
        let window = Duration::from_secs(60);
        let allowed = (0..15).filter(|_| limiter.hit_now("ip:1", 10, window).allowed).count();
        assert_eq!(allowed, 10);
        assert!(limiter.hit_now("ip:2", 10, window).allowed, "keys are counted separately");
    }

    #[test]
    fn a_new_window_starts_afresh() {
        let limiter = InProcessRateLimiter::new();
        let window = Duration::from_millis(500);
        assert!(limiter.hit_now("k", 1, window).allowed);
        assert!(!limiter.hit_now("k", 1, window).allowed);
        std::thread::sleep(Duration::from_millis(600));
        assert!(limiter.hit_now("k", 1, window).allowed);
    }
}
