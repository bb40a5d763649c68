//! The read cache: users and live sessions kept in this process so an authenticated read
//! (`/users/me`) needs no storage round trip in the steady state.
//!
//! Storage stays the truth. Every write through the ports wrapped by [`Invalidating`] drops
//! the affected entries here at once and is published on the [`ChangeFeed`] to the other
//! instances, which drop them too. A time-to-live only bounds the damage of a change that
//! escaped the feed; the capacity bounds memory. While the feed is down (see
//! [`ReadCache::set_connected`]) the cache answers nothing and every read goes to storage.

use std::collections::HashMap;
use std::collections::HashSet;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::activity::NewActivity;
use crate::avatar::{Avatar, AvatarKey};
use crate::email::OutgoingEmail;
use crate::ids::{SessionId, UserId};
use crate::pagination::Page;
use crate::ports::{
    AccountCompanion, AdminChangeError, AdminChangeOutcome, AdminChanges, AvatarChange, Change, ChangeFeed, Clock,
    CreateUserError, EnsureAdmin, Lockout, PasswordHash, ProfileChanges, Rotation, SessionRepository, SoftDeleted,
    TokenHash, TokenMail, UpdateUserError, UseTokenError, UserCursor, UserDirectory, UserQuery, UserRepository,
};
use crate::session::{NewSession, Session};
use crate::user::{Credentials, NewUser, User};
use crate::values::{Email, Username};

/// How big the cache may grow and how long an entry may live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// The most users kept, and separately the most sessions; 0 turns the cache off.
    pub capacity: usize,
    /// How long an entry is trusted without a change notification: the safety net for a
    /// change that escaped the feed.
    pub ttl: Duration,
}

/// Counters since start, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that went to storage.
    pub misses: u64,
    /// Entries dropped to stay within the capacity.
    pub evictions: u64,
    /// Changes applied (from this instance or the feed), flushes included.
    pub invalidations: u64,
    /// Users cached now.
    pub users: u64,
    /// Sessions cached now.
    pub sessions: u64,
}

/// A live session as the access-token check needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CachedSession {
    user_id: UserId,
    expires_at: DateTime<Utc>,
}

#[derive(Debug)]
struct Entry<T> {
    value: T,
    stored_at: DateTime<Utc>,
}

/// A map that never holds more than `capacity` entries: inserting into a full map evicts an
/// arbitrary entry (the map's first), which is cheap and, for uniformly random ids, fair.
#[derive(Debug)]
struct Bounded<K, V> {
    map: HashMap<K, Entry<V>>,
}

impl<K: Eq + Hash + Copy, V> Bounded<K, V> {
    fn new() -> Self {
        Self { map: HashMap::new() }
    }

    /// Inserts, returning how many entries were evicted to make room.
    fn insert(&mut self, key: K, entry: Entry<V>, capacity: usize) -> u64 {
        let mut evicted = 0;
        while self.map.len() >= capacity && !self.map.contains_key(&key) {
            let Some(victim) = self.map.keys().next().copied() else { break };
            self.map.remove(&victim);
            evicted += 1;
        }
        self.map.insert(key, entry);
        evicted
    }
}

#[derive(Debug)]
struct Entries {
    users: Bounded<UserId, User>,
    sessions: Bounded<SessionId, CachedSession>,
}

/// Users and live sessions of this process; see the module documentation.
pub struct ReadCache {
    settings: CacheSettings,
    clock: Arc<dyn Clock>,
    entries: Mutex<Entries>,
    /// Bumped by every change: a storage read that started before a change may not fill the
    /// cache with what it found.
    generation: AtomicU64,
    connected: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    invalidations: AtomicU64,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache").field("settings", &self.settings).field("stats", &self.stats()).finish()
    }
}

/// What a storage read must hand back to fill the cache: the generation when it started.
#[derive(Debug, Clone, Copy)]
pub struct FillTicket(u64);

impl ReadCache {
    /// An empty cache, connected (a single instance has no feed to lose).
    #[must_use]
    pub fn new(settings: CacheSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings,
            clock,
            entries: Mutex::new(Entries { users: Bounded::new(), sessions: Bounded::new() }),
            generation: AtomicU64::new(0),
            connected: AtomicBool::new(true),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        }
    }

    /// A cache that holds nothing (capacity 0), for tests and tools.
    #[must_use]
    pub fn disabled(clock: Arc<dyn Clock>) -> Self {
        Self::new(CacheSettings { capacity: 0, ttl: Duration::zero() }, clock)
    }

    /// Its settings.
    #[must_use]
    pub fn settings(&self) -> CacheSettings {
        self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn usable(&self) -> bool {
        self.settings.capacity > 0 && self.connected.load(Ordering::Acquire)
    }

    fn fresh(&self, stored_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now - stored_at < self.settings.ttl
    }

    fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Take before reading storage; pass to the `fill_*` method with what was read.
    #[must_use]
    pub fn ticket(&self) -> FillTicket {
        FillTicket(self.generation.load(Ordering::Acquire))
    }

    /// The cached user, if fresh.
    #[must_use]
    pub fn user(&self, id: UserId) -> Option<User> {
        if !self.usable() {
            self.count(false);
            return None;
        }
        let now = self.clock.now();
        let found = self.lock().users.map.get(&id).filter(|e| self.fresh(e.stored_at, now)).map(|e| e.value.clone());
        self.count(found.is_some());
        found
    }

    /// The owner of a cached session that is live at `now`.
    #[must_use]
    pub fn session_owner(&self, id: SessionId, now: DateTime<Utc>) -> Option<UserId> {
        if !self.usable() {
            self.count(false);
            return None;
        }
        let found = self
            .lock()
            .sessions
            .map
            .get(&id)
            .filter(|e| self.fresh(e.stored_at, now) && e.value.expires_at > now)
            .map(|e| e.value.user_id);
        self.count(found.is_some());
        found
    }

    /// Caches `user` as read from storage after `ticket` was taken, unless something changed
    /// since.
    pub fn fill_user(&self, ticket: FillTicket, user: &User) {
        let now = self.clock.now();
        self.fill(ticket, |entries, capacity| {
            entries.users.insert(user.id, Entry { value: user.clone(), stored_at: now }, capacity)
        });
    }

    /// Caches a session that storage found live after `ticket` was taken, unless something
    /// changed since.
    pub fn fill_session(&self, ticket: FillTicket, session: &Session) {
        let now = self.clock.now();
        let value = CachedSession { user_id: session.user_id, expires_at: session.expires_at };
        self.fill(ticket, |entries, capacity| {
            entries.sessions.insert(session.id, Entry { value, stored_at: now }, capacity)
        });
    }

    fn fill(&self, ticket: FillTicket, insert: impl FnOnce(&mut Entries, usize) -> u64) {
        if !self.usable() {
            return;
        }
        let mut entries = self.lock();
        // Checked under the lock that `apply` bumps it under: no change slips in between.
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        let evicted = insert(&mut entries, self.settings.capacity);
        if evicted > 0 {
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
    }

    /// Forgets what `change` touches.
    pub fn apply(&self, change: &Change) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        match change {
            Change::User(id) => {
                entries.users.map.remove(id);
            }
            Change::Sessions(ids) => {
                for id in ids {
                    entries.sessions.map.remove(id);
                }
            }
            Change::All => {
                entries.users.map.clear();
                entries.sessions.map.clear();
            }
        }
        drop(entries);
        self.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets everything.
    pub fn flush(&self) {
        self.apply(&Change::All);
    }

    /// Whether the feed that keeps this cache right is up. While it is down, changes on other
    /// instances may be missed, so the cache is flushed and answers nothing until it is back
    /// (and flushed again, for what was missed in between).
    pub fn set_connected(&self, connected: bool) {
        self.flush();
        self.connected.store(connected, Ordering::Release);
        if connected {
            self.flush();
        }
    }

    /// Whether the feed is up.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Counters and sizes now.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        let (users, sessions) = {
            let entries = self.lock();
            (entries.users.map.len() as u64, entries.sessions.map.len() as u64)
        };
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            users,
            sessions,
        }
    }
}

/// Wraps the storage ports so every write forgets what it changed, here and (through the
/// feed) on every other instance, before the use case answers.
#[derive(Clone)]
pub struct Invalidating<T: ?Sized> {
    inner: Arc<T>,
    cache: Arc<ReadCache>,
    feed: Arc<dyn ChangeFeed>,
}

impl<T: ?Sized> Invalidating<T> {
    /// `inner`, invalidating `cache` and publishing on `feed`.
    #[must_use]
    pub fn new(inner: Arc<T>, cache: Arc<ReadCache>, feed: Arc<dyn ChangeFeed>) -> Self {
        Self { inner, cache, feed }
    }

    async fn changed(&self, change: Change) {
        self.cache.apply(&change);
        if let Err(e) = self.feed.publish(change).await {
            tracing::error!(error = %e, "a change could not be published to the other instances");
        }
    }

    async fn user_changed(&self, id: UserId) {
        self.changed(Change::User(id)).await;
    }

    async fn sessions_revoked(&self, ids: &[SessionId]) {
        if !ids.is_empty() {
            self.changed(Change::Sessions(ids.to_vec())).await;
        }
    }
}

#[async_trait]
impl UserRepository for Invalidating<dyn UserRepository> {
    async fn create(
        &self,
        user: NewUser,
        event: NewActivity,
        companion: AccountCompanion,
    ) -> Result<User, CreateUserError> {
        // A new user is in no cache: nothing to forget.
        self.inner.create(user, event, companion).await
    }

    async fn find_by_id(&self, id: UserId) -> anyhow::Result<Option<User>> {
        self.inner.find_by_id(id).await
    }

    async fn find_credentials_by_id(&self, id: UserId) -> anyhow::Result<Option<Credentials>> {
        self.inner.find_credentials_by_id(id).await
    }

    async fn find_credentials_by_email(&self, email: &Email) -> anyhow::Result<Option<Credentials>> {
        self.inner.find_credentials_by_email(email).await
    }

    async fn find_credentials_by_username(&self, username: &Username) -> anyhow::Result<Option<Credentials>> {
        self.inner.find_credentials_by_username(username).await
    }

    async fn update_password_hash(&self, id: UserId, hash: PasswordHash, at: DateTime<Utc>) -> anyhow::Result<()> {
        let outcome = self.inner.update_password_hash(id, hash, at).await;
        self.user_changed(id).await;
        outcome
    }

    async fn update_profile(
        &self,
        id: UserId,
        changes: ProfileChanges,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<User, UpdateUserError> {
        let outcome = self.inner.update_profile(id, changes, at, event).await;
        self.user_changed(id).await;
        outcome
    }

    async fn change_password(
        &self,
        id: UserId,
        hash: PasswordHash,
        keep: Option<SessionId>,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<Vec<SessionId>, UpdateUserError> {
        let outcome = self.inner.change_password(id, hash, keep, at, event).await;
        self.user_changed(id).await;
        if let Ok(revoked) = &outcome {
            self.sessions_revoked(revoked).await;
        }
        outcome
    }

    async fn soft_delete(
        &self,
        id: UserId,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<SoftDeleted, UpdateUserError> {
        let outcome = self.inner.soft_delete(id, at, event).await;
        self.user_changed(id).await;
        if let Ok(deleted) = &outcome {
            self.sessions_revoked(&deleted.revoked_sessions).await;
        }
        outcome
    }

    async fn verify_email(
        &self,
        token: TokenHash,
        user_id: UserId,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<(), UseTokenError> {
        let outcome = self.inner.verify_email(token, user_id, at, event).await;
        self.user_changed(user_id).await;
        outcome
    }

    async fn reset_password(
        &self,
        token: TokenHash,
        user_id: UserId,
        hash: PasswordHash,
        at: DateTime<Utc>,
        event: NewActivity,
        notice: OutgoingEmail,
    ) -> Result<Vec<SessionId>, UseTokenError> {
        let outcome = self.inner.reset_password(token, user_id, hash, at, event, notice).await;
        self.user_changed(user_id).await;
        if let Ok(revoked) = &outcome {
            self.sessions_revoked(revoked).await;
        }
        outcome
    }

    async fn record_failed_login(
        &self,
        id: UserId,
        attempted_at: DateTime<Utc>,
        event: NewActivity,
        lockout: Lockout,
    ) -> anyhow::Result<bool> {
        let outcome = self.inner.record_failed_login(id, attempted_at, event, lockout).await;
        self.user_changed(id).await;
        outcome
    }

    async fn lock(
        &self,
        id: UserId,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
        mail: TokenMail,
        event: NewActivity,
    ) -> anyhow::Result<bool> {
        let outcome = self.inner.lock(id, until, at, mail, event).await;
        self.user_changed(id).await;
        outcome
    }

    async fn unlock(
        &self,
        token: TokenHash,
        user_id: UserId,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<(), UseTokenError> {
        let outcome = self.inner.unlock(token, user_id, at, event).await;
        self.user_changed(user_id).await;
        outcome
    }

    async fn set_avatar(
        &self,
        id: UserId,
        avatar: Option<Avatar>,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<AvatarChange, UpdateUserError> {
        let outcome = self.inner.set_avatar(id, avatar, at, event).await;
        self.user_changed(id).await;
        outcome
    }

    async fn referenced_avatar_keys(&self, keys: Vec<AvatarKey>) -> anyhow::Result<HashSet<AvatarKey>> {
        self.inner.referenced_avatar_keys(keys).await
    }
}

#[async_trait]
impl SessionRepository for Invalidating<dyn SessionRepository> {
    async fn start(&self, session: NewSession, event: NewActivity) -> anyhow::Result<Session> {
        let user_id = session.user_id;
        let outcome = self.inner.start(session, event).await;
        // The user's `last_login_at` changed.
        self.user_changed(user_id).await;
        outcome
    }

    async fn find(&self, id: SessionId) -> anyhow::Result<Option<Session>> {
        self.inner.find(id).await
    }

    async fn find_by_refresh_token(&self, token: &TokenHash) -> anyhow::Result<Option<Session>> {
        self.inner.find_by_refresh_token(token).await
    }

    async fn rotate(
        &self,
        presented: TokenHash,
        successor: TokenHash,
        now: DateTime<Utc>,
        grace: Duration,
    ) -> anyhow::Result<Rotation> {
        // Only `last_used_at` changes, which no cached read shows.
        self.inner.rotate(presented, successor, now, grace).await
    }

    async fn revoke(
        &self,
        user_id: UserId,
        session: SessionId,
        now: DateTime<Utc>,
        event: NewActivity,
    ) -> anyhow::Result<bool> {
        let outcome = self.inner.revoke(user_id, session, now, event).await;
        self.sessions_revoked(&[session]).await;
        outcome
    }

    async fn revoke_all(
        &self,
        user_id: UserId,
        keep: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<SessionId>> {
        let outcome = self.inner.revoke_all(user_id, keep, now).await;
        match &outcome {
            Ok(revoked) => self.sessions_revoked(revoked).await,
            // What was revoked is unknown: forget everything rather than guess.
            Err(_) => self.changed(Change::All).await,
        }
        outcome
    }

    async fn list_live(&self, user_id: UserId, now: DateTime<Utc>) -> anyhow::Result<Vec<Session>> {
        self.inner.list_live(user_id, now).await
    }
}

#[async_trait]
impl UserDirectory for Invalidating<dyn UserDirectory> {
    async fn list(&self, query: UserQuery) -> anyhow::Result<Page<User, UserCursor>> {
        self.inner.list(query).await
    }

    async fn find(&self, id: UserId) -> anyhow::Result<Option<User>> {
        self.inner.find(id).await
    }

    async fn update(
        &self,
        id: UserId,
        changes: AdminChanges,
        revoke_sessions: bool,
        at: DateTime<Utc>,
        events: Vec<NewActivity>,
    ) -> Result<AdminChangeOutcome, AdminChangeError> {
        let outcome = self.inner.update(id, changes, revoke_sessions, at, events).await;
        self.user_changed(id).await;
        match &outcome {
            Ok(changed) => self.sessions_revoked(&changed.revoked).await,
            Err(_) if revoke_sessions => self.changed(Change::All).await,
            Err(_) => {}
        }
        outcome
    }

    async fn delete(&self, id: UserId, at: DateTime<Utc>, event: NewActivity) -> Result<SoftDeleted, AdminChangeError> {
        let outcome = self.inner.delete(id, at, event).await;
        self.user_changed(id).await;
        if let Ok(deleted) = &outcome {
            self.sessions_revoked(&deleted.revoked_sessions).await;
        }
        outcome
    }

    async fn restore(&self, id: UserId, at: DateTime<Utc>, event: NewActivity) -> Result<User, AdminChangeError> {
        let outcome = self.inner.restore(id, at, event).await;
        self.user_changed(id).await;
        outcome
    }

    async fn ensure_admin(&self, admin: NewUser, event: NewActivity) -> anyhow::Result<EnsureAdmin> {
        let outcome = self.inner.ensure_admin(admin, event).await;
        self.admin_named(&outcome).await;
        outcome
    }

    async fn make_admin(&self, admin: NewUser, event: NewActivity) -> anyhow::Result<EnsureAdmin> {
        let outcome = self.inner.make_admin(admin, event).await;
        self.admin_named(&outcome).await;
        outcome
    }
}

impl Invalidating<dyn UserDirectory> {
    /// Forgets what naming an admin changed: a handed-over account and its revoked sessions.
    async fn admin_named(&self, outcome: &anyhow::Result<EnsureAdmin>) {
        match outcome {
            Ok(EnsureAdmin::Promoted { admin, revoked }) => {
                self.user_changed(admin.id).await;
                self.sessions_revoked(revoked).await;
            }
            Ok(EnsureAdmin::AlreadyPresent | EnsureAdmin::Created(_)) => {}
            Err(_) => self.changed(Change::All).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{MockChangeFeed, MockClock, MockSessionRepository};
    use crate::services::testing::{now, sample_user};
    use crate::session::RequestContext;

    fn cache_at(at: fn() -> DateTime<Utc>, capacity: usize) -> ReadCache {
        let mut clock = MockClock::new();
        clock.expect_now().returning(at);
        ReadCache::new(CacheSettings { capacity, ttl: Duration::minutes(5) }, Arc::new(clock))
    }

    fn live_session(user_id: UserId) -> Session {
        Session {
            id: SessionId::generate(),
            user_id,
            context: RequestContext::default(),
            created_at: now(),
            last_used_at: now(),
            expires_at: now() + Duration::days(1),
            revoked_at: None,
        }
    }

    #[test]
    fn a_filled_entry_is_answered_until_a_change_touches_it() {
        let cache = cache_at(now, 10);
        let user = sample_user();
        let session = live_session(user.id);
        assert_eq!(cache.user(user.id), None);
        cache.fill_user(cache.ticket(), &user);
        cache.fill_session(cache.ticket(), &session);
        assert_eq!(cache.user(user.id), Some(user.clone()));
        assert_eq!(cache.session_owner(session.id, now()), Some(user.id));

        cache.apply(&Change::Sessions(vec![session.id]));
        assert_eq!(cache.session_owner(session.id, now()), None, "a revoked session is forgotten");
        assert_eq!(cache.user(user.id), Some(user.clone()), "other entries stay");
        cache.apply(&Change::User(user.id));
        assert_eq!(cache.user(user.id), None);

        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.invalidations), (3, 3, 2));
    }

    #[test]
    fn a_read_that_started_before_a_change_does_not_fill() {
        let cache = cache_at(now, 10);
        let user = sample_user();
        let ticket = cache.ticket();
        cache.apply(&Change::User(user.id));
        cache.fill_user(ticket, &user);
        assert_eq!(cache.user(user.id), None, "the stale read was not cached");
    }

    #[test]
    fn the_capacity_bounds_the_entries_and_evictions_are_counted() {
        let cache = cache_at(now, 3);
        for _ in 0..10 {
            cache.fill_session(cache.ticket(), &live_session(UserId::generate()));
        }
        let stats = cache.stats();
        assert_eq!((stats.sessions, stats.evictions), (3, 7));
    }

    #[test]
    fn expired_sessions_and_stale_entries_are_not_answered() {
        let cache = cache_at(now, 10);
        let session = live_session(UserId::generate());
        cache.fill_session(cache.ticket(), &session);
        assert_eq!(cache.session_owner(session.id, session.expires_at), None, "expired at its expiry");

        fn later() -> DateTime<Utc> {
            now() + Duration::minutes(6)
        }
        let stale = cache_at(later, 10);
        let user = sample_user();
        // Stored at `later` too, so shift the clock by filling with a cache whose clock is now.
        stale.lock().users.map.insert(user.id, Entry { value: user.clone(), stored_at: now() });
        assert_eq!(stale.user(user.id), None, "beyond the time-to-live");
    }

    #[test]
    fn while_the_feed_is_down_nothing_is_answered_or_filled() {
        let cache = cache_at(now, 10);
        let user = sample_user();
        cache.fill_user(cache.ticket(), &user);
        cache.set_connected(false);
        assert_eq!(cache.user(user.id), None);
        cache.fill_user(cache.ticket(), &user);
        cache.set_connected(true);
        assert_eq!(cache.user(user.id), None, "flushed on reconnection");
        assert_eq!(cache.stats().users, 0);
    }

    #[test]
    fn a_disabled_cache_holds_nothing() {
        let cache = ReadCache::disabled(Arc::new(crate::ports::SystemClock));
        let user = sample_user();
        cache.fill_user(cache.ticket(), &user);
        assert_eq!(cache.user(user.id), None);
    }

    #[tokio::test]
    async fn a_revocation_is_forgotten_here_and_published_before_it_answers() {
        let cache = Arc::new(cache_at(now, 10));
        let session = live_session(UserId::generate());
        cache.fill_session(cache.ticket(), &session);
        let mut inner = MockSessionRepository::new();
        inner.expect_revoke().returning(|_, _, _, _| Ok(true));
        let mut feed = MockChangeFeed::new();
        let id = session.id;
        feed.expect_publish().withf(move |change| *change == Change::Sessions(vec![id])).times(1).returning(|_| Ok(()));
        let sessions: Invalidating<dyn SessionRepository> =
            Invalidating::new(Arc::new(inner), cache.clone(), Arc::new(feed));
        let event =
            NewActivity::by_user(session.user_id, crate::ActivityAction::Logout, &RequestContext::default(), now());
        assert!(sessions.revoke(session.user_id, session.id, now(), event).await.expect("revoked"));
        assert_eq!(cache.session_owner(session.id, now()), None);
    }

    #[tokio::test]
    async fn a_feed_failure_does_not_fail_the_committed_change() {
        let cache = Arc::new(cache_at(now, 10));
        let user = sample_user();
        cache.fill_user(cache.ticket(), &user);
        let mut inner = MockSessionRepository::new();
        let returned = live_session(user.id);
        inner.expect_start().return_once(move |_, _| Ok(returned));
        let mut feed = MockChangeFeed::new();
        feed.expect_publish().returning(|_| Err(anyhow::anyhow!("down")));
        let sessions: Invalidating<dyn SessionRepository> =
            Invalidating::new(Arc::new(inner), cache.clone(), Arc::new(feed));
        let new = NewSession {
            id: SessionId::generate(),
            user_id: user.id,
            refresh_token_hash: TokenHash::new("h".to_owned()),
            context: RequestContext::default(),
            created_at: now(),
            expires_at: now() + Duration::days(1),
        };
        let event =
            NewActivity::by_user(user.id, crate::ActivityAction::LoginSucceeded, &RequestContext::default(), now());
        assert!(sessions.start(new, event).await.is_ok());
        assert_eq!(cache.user(user.id), None, "last_login_at changed: the user is forgotten here");
    }
}
