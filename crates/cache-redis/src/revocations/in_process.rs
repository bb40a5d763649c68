//! The revocation list in this process's memory, for single-node deployments.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gatehouse_domain::ids::SessionId;
use gatehouse_domain::ports::{Clock, RevocationList};

/// The map is pruned when it reaches this many entries, or twice its size after the last
/// prune, whichever is larger: pruning stays amortised O(1) per revocation.
const MIN_PRUNE_AT: usize = 1024;

/// A [`RevocationList`] held in this process: correct only when one server instance runs.
///
/// Lookups take a read lock and do no I/O. Entries are forgotten once their `until` has
/// passed; expired entries are dropped when the map grows, so memory stays proportional to
/// the sessions revoked within one access-token lifetime.
pub struct InProcessRevocationList {
    clock: Arc<dyn Clock>,
    state: RwLock<State>,
}

struct State {
    /// Session → the instant its entry may be forgotten.
    revoked: HashMap<SessionId, DateTime<Utc>>,
    /// Prune expired entries when `revoked` reaches this length.
    prune_at: usize,
}

impl InProcessRevocationList {
    /// An empty list that reads the time from `clock` to decide which entries have expired.
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { clock, state: RwLock::new(State { revoked: HashMap::new(), prune_at: MIN_PRUNE_AT }) }
    }

    /// Entries held, expired or not.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.state.read().unwrap_or_else(PoisonError::into_inner).revoked.len()
    }
}

impl fmt::Debug for InProcessRevocationList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self.state.read().map_or(0, |state| state.revoked.len());
        f.debug_struct("InProcessRevocationList").field("held", &held).finish_non_exhaustive()
    }
}

// The lock is never held across a call that can panic, so a poisoned map is still consistent.
#[async_trait]
impl RevocationList for InProcessRevocationList {
    async fn revoke(&self, sessions: Vec<SessionId>, until: DateTime<Utc>) -> anyhow::Result<()> {
        let now = self.clock.now();
        if until <= now {
            return Ok(());
        }
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        for session in sessions {
            state.revoked.entry(session).and_modify(|held| *held = (*held).max(until)).or_insert(until);
        }
        if state.revoked.len() >= state.prune_at {
            state.revoked.retain(|_, held| *held > now);
            state.prune_at = MIN_PRUNE_AT.max(state.revoked.len().saturating_mul(2));
        }
        Ok(())
    }

    async fn is_revoked(&self, session: SessionId) -> anyhow::Result<bool> {
        let until = self.state.read().unwrap_or_else(PoisonError::into_inner).revoked.get(&session).copied();
        Ok(until.is_some_and(|until| until > self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::TimeDelta;

    use super::*;

    /// A clock the test moves by hand.
    struct TestClock(Mutex<DateTime<Utc>>);

    impl TestClock {
        fn starting_now() -> Arc<Self> {
            Arc::new(Self(Mutex::new(Utc::now())))
        }

        fn advance(&self, by: TimeDelta) {
            *self.0.lock().expect("test clock") += by;
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().expect("test clock")
        }
    }

    fn list_with_clock() -> (InProcessRevocationList, Arc<TestClock>) {
        let clock = TestClock::starting_now();
        (InProcessRevocationList::new(clock.clone()), clock)
    }

    const LIFETIME: TimeDelta = TimeDelta::minutes(15);

    #[tokio::test]
    async fn a_revoked_session_is_revoked() {
        let (list, clock) = list_with_clock();
        let (a, b) = (SessionId::generate(), SessionId::generate());

        list.revoke(vec![a, b], clock.now() + LIFETIME).await.expect("in-process list");

        assert!(list.is_revoked(a).await.expect("in-process list"));
        assert!(list.is_revoked(b).await.expect("in-process list"));
    }

    #[tokio::test]
    async fn an_unknown_session_is_not_revoked() {
        let (list, clock) = list_with_clock();
        list.revoke(vec![SessionId::generate()], clock.now() + LIFETIME).await.expect("in-process list");

        assert!(!list.is_revoked(SessionId::generate()).await.expect("in-process list"));
    }

    #[tokio::test]
    async fn a_session_is_no_longer_revoked_once_until_has_passed() {
        let (list, clock) = list_with_clock();
        let session = SessionId::generate();
        list.revoke(vec![session], clock.now() + LIFETIME).await.expect("in-process list");

        clock.advance(LIFETIME - TimeDelta::seconds(1));
        assert!(list.is_revoked(session).await.expect("in-process list"), "revoked until `until`");

        clock.advance(TimeDelta::seconds(1));
        assert!(!list.is_revoked(session).await.expect("in-process list"), "forgotten at `until`");
    }

    #[tokio::test]
    async fn expired_entries_are_pruned_when_the_list_grows() {
        let (list, clock) = list_with_clock();
        let expired = SessionId::generate();
        list.revoke(vec![expired], clock.now() + LIFETIME).await.expect("in-process list");
        clock.advance(LIFETIME);

        let live: Vec<SessionId> = (0..MIN_PRUNE_AT).map(|_| SessionId::generate()).collect();
        list.revoke(live.clone(), clock.now() + LIFETIME).await.expect("in-process list");

        assert_eq!(list.held(), MIN_PRUNE_AT, "only the expired entry is dropped");
        assert!(!list.is_revoked(expired).await.expect("in-process list"));
        for session in live {
            assert!(list.is_revoked(session).await.expect("in-process list"));
        }
    }

    #[tokio::test]
    async fn memory_stays_bounded_by_the_sessions_revoked_within_one_lifetime() {
        let (list, clock) = list_with_clock();

        for _ in 0..20 {
            let batch: Vec<SessionId> = (0..500).map(|_| SessionId::generate()).collect();
            list.revoke(batch, clock.now() + LIFETIME).await.expect("in-process list");
            clock.advance(LIFETIME);
        }

        assert!(
            list.held() < 2 * MIN_PRUNE_AT,
            "10,000 revocations, at most 500 live at a time, yet {} entries held",
            list.held()
        );
    }

    #[tokio::test]
    async fn an_until_already_past_records_nothing() {
        let (list, clock) = list_with_clock();
        let session = SessionId::generate();

        list.revoke(vec![session], clock.now() - TimeDelta::seconds(1)).await.expect("in-process list");

        assert!(!list.is_revoked(session).await.expect("in-process list"));
        assert_eq!(list.held(), 0);
    }

    #[tokio::test]
    async fn a_second_revocation_never_shortens_the_first() {
        let (list, clock) = list_with_clock();
        let session = SessionId::generate();
        list.revoke(vec![session], clock.now() + LIFETIME).await.expect("in-process list");

        list.revoke(vec![session], clock.now() + TimeDelta::seconds(1)).await.expect("in-process list");
        clock.advance(TimeDelta::minutes(1));

        assert!(list.is_revoked(session).await.expect("in-process list"));
    }
}
