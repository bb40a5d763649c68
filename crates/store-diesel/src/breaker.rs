//! The store's circuit breaker: after a few consecutive connection failures the database is
//! taken as down, and every call fails at once with [`Unavailable`] instead of waiting for a
//! pool checkout that cannot succeed. After a pause one call is let through as a probe; its
//! success (or a new connection opened by the pool in the background) closes the circuit.
//!
//! Failures of the database itself (a checkout that timed out while the pool could not open
//! connections, a connection lost mid-query, a statement timeout) count; answers the
//! application did not like (a unique violation, no such row) are successes here.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use gatehouse_domain::Unavailable;

/// When the circuit opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit (at least 1).
    pub threshold: u32,
    /// How long an open circuit refuses every call before it lets one probe through.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self { threshold: 3, open_for: Duration::from_millis(500) }
    }
}

/// What the breaker lets a call do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The circuit is closed: go ahead.
    Go,
    /// The circuit is half open and this call is its one probe.
    Probe,
    /// The circuit is open: fail at once.
    Refuse,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// A circuit breaker shared by every clone of a [`Database`](crate::Database).
#[derive(Debug)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        let settings = BreakerSettings { threshold: settings.threshold.max(1), ..settings };
        Self { settings, state: Mutex::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a call may go ahead now.
    pub(crate) fn admit(&self) -> Admission {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Admission {
        let mut state = self.state();
        match state.open_until {
            None => Admission::Go,
            Some(until) if now < until || state.probing => Admission::Refuse,
            Some(_) => {
                state.probing = true;
                Admission::Probe
            }
        }
    }

    /// The database answered (or the pool opened a connection): close the circuit.
    pub(crate) fn succeeded(&self) {
        let mut state = self.state();
        if state.open_until.is_some() {
            tracing::warn!("the database answers again: circuit closed");
        }
        *state = State::default();
    }

    /// A probe ended without telling whether the database is back (it never reached it).
    pub(crate) fn probe_abandoned(&self, admission: Admission) {
        if admission == Admission::Probe {
            self.state().probing = false;
        }
    }

    /// The database failed this call: count it, and open the circuit at the threshold (or at
    /// once when the call was the probe).
    pub(crate) fn failed(&self, admission: Admission) {
        self.failed_at(admission, Instant::now());
    }

    fn failed_at(&self, admission: Admission, now: Instant) {
        let mut state = self.state();
        state.failures = state.failures.saturating_add(1);
        // While open, only a failed probe reschedules the next one: failures of calls that
        // were already under way when it opened (or of the pool's own attempts) do not keep
        // pushing the probe back.
        let opens = state.open_until.is_none() && state.failures >= self.settings.threshold;
        if admission == Admission::Probe || opens {
            if state.open_until.is_none() {
                tracing::warn!(
                    failures = state.failures,
                    open_ms = u64::try_from(self.settings.open_for.as_millis()).unwrap_or(u64::MAX),
                    "the database keeps failing: circuit open, calls fail at once"
                );
            }
            state.open_until = Some(now + self.settings.open_for);
            state.probing = false;
        }
    }

    /// Whether the circuit is open or half open now.
    pub(crate) fn is_open(&self) -> bool {
        self.state().open_until.is_some()
    }

    /// The error a refused or failed call returns.
    pub(crate) fn unavailable(&self) -> Unavailable {
        let millis = self.settings.open_for.as_millis().max(1);
        let secs = u32::try_from(millis.div_ceil(1000)).unwrap_or(u32::MAX).max(1);
        Unavailable { dependency: "database", retry_after_secs: secs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings { threshold: 3, open_for: Duration::from_millis(500) })
    }

    #[test]
    fn the_circuit_opens_after_the_threshold_of_consecutive_failures() {
        let breaker = breaker();
        let now = Instant::now();
        breaker.failed_at(Admission::Go, now);
        breaker.failed_at(Admission::Go, now);
        assert_eq!(breaker.admit_at(now), Admission::Go, "two failures stay under the threshold");
        breaker.failed_at(Admission::Go, now);
        assert_eq!(breaker.admit_at(now), Admission::Refuse, "the third opens the circuit");
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = breaker();
        let now = Instant::now();
        breaker.failed_at(Admission::Go, now);
        breaker.failed_at(Admission::Go, now);
        breaker.succeeded();
        breaker.failed_at(Admission::Go, now);
        assert_eq!(breaker.admit_at(now), Admission::Go);
    }

    #[test]
    fn an_open_circuit_lets_exactly_one_probe_through_after_the_pause() {
        let breaker = breaker();
        let now = Instant::now();
        for _ in 0..3 {
            breaker.failed_at(Admission::Go, now);
        }
        let later = now + Duration::from_millis(501);
        assert_eq!(breaker.admit_at(later), Admission::Probe);
        assert_eq!(breaker.admit_at(later), Admission::Refuse, "one probe at a time");
        breaker.failed_at(Admission::Probe, later);
        assert_eq!(breaker.admit_at(later + Duration::from_millis(100)), Admission::Refuse, "a failed probe reopens");
        let again = later + Duration::from_millis(501);
        assert_eq!(breaker.admit_at(again), Admission::Probe);
        breaker.succeeded();
        assert_eq!(breaker.admit_at(again), Admission::Go, "a successful probe closes the circuit");
        assert!(!breaker.is_open());
    }

    #[test]
    fn failures_while_open_do_not_postpone_the_probe() {
        let breaker = breaker();
        let now = Instant::now();
        for _ in 0..3 {
            breaker.failed_at(Admission::Go, now);
        }
        breaker.failed_at(Admission::Go, now + Duration::from_millis(400));
        assert_eq!(breaker.admit_at(now + Duration::from_millis(501)), Admission::Probe);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let breaker = breaker();
        let now = Instant::now();
        for _ in 0..3 {
            breaker.failed_at(Admission::Go, now);
        }
        let later = now + Duration::from_millis(501);
        let probe = breaker.admit_at(later);
        breaker.probe_abandoned(probe);
        assert_eq!(breaker.admit_at(later), Admission::Probe);
    }

    #[test]
    fn retry_after_is_the_pause_rounded_up_to_whole_seconds() {
        assert_eq!(breaker().unavailable().retry_after_secs, 1);
        let long = Breaker::new(BreakerSettings { threshold: 1, open_for: Duration::from_millis(2500) });
        assert_eq!(long.unavailable().retry_after_secs, 3);
    }
}
