//! Rate limiting: how many requests a key (an IP, an email, a user) may make per window.

use std::time::Duration;

use async_trait::async_trait;

/// The outcome of counting one request against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request is within the limit.
    pub allowed: bool,
    /// The limit of the window.
    pub limit: u32,
    /// Requests left in the current window after this one.
    pub remaining: u32,
    /// Seconds until the window resets (at least 1).
    pub reset_after_secs: u32,
}

impl RateDecision {
    /// The decision for `count` requests so far in a window of `limit` that resets in
    /// `reset_after`.
    #[must_use]
    pub fn from_count(count: u64, limit: u32, reset_after: Duration) -> Self {
        let secs = u32::try_from(reset_after.as_millis().div_ceil(1000)).unwrap_or(u32::MAX).max(1);
        Self {
            allowed: count <= u64::from(limit),
            limit,
            remaining: u32::try_from(u64::from(limit).saturating_sub(count)).unwrap_or(0),
            reset_after_secs: secs,
        }
    }
}

/// Counts requests per key in fixed windows.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request on `key` in a window of `window` that starts with the key's first
    /// request, and says whether it is within `limit`. Counting and checking MUST be one
    /// atomic step: N concurrent callers (also on other server instances sharing the store)
    /// together get exactly `limit` allowed decisions per window.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures (the shared store is unreachable or too slow).
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> anyhow::Result<RateDecision>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_counts_down_to_the_limit_and_then_refuses() {
        let window = Duration::from_millis(59_001);
        assert_eq!(
            RateDecision::from_count(1, 10, window),
            RateDecision { allowed: true, limit: 10, remaining: 9, reset_after_secs: 60 }
        );
        assert!(RateDecision::from_count(10, 10, window).allowed);
        let over = RateDecision::from_count(11, 10, Duration::ZERO);
        assert!(!over.allowed);
        assert_eq!((over.remaining, over.reset_after_secs), (0, 1));
    }
}
