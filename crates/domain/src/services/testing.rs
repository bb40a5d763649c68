//! Fixtures shared by the use-case tests.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::ids::UserId;
use crate::ports::{
    MockAccessTokens, MockActivityLog, MockAvatarProcessor, MockAvatarStore, MockClock, MockOneTimeTokenRepository,
    MockOpaqueTokens, MockPasswordHasher, MockRefreshSuccessors, MockRevocationList, MockSessionRepository,
    MockUserDirectory, MockUserRepository,
};
use crate::read_cache::{CacheSettings, ReadCache};
use crate::services::Ports;
use crate::services::auth::AuthSettings;
use crate::user::{Role, User, UserStatus};
use crate::values::{Email, Username};

/// The instant every test runs at.
pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).single().expect("valid date")
}

/// A verified, active user.
pub(crate) fn sample_user() -> User {
    User {
        id: UserId::generate(),
        email: Email::parse("ada@example.com").expect("valid"),
        username: Username::parse("ada").expect("valid"),
        display_name: None,
        roles: vec![Role::User],
        status: UserStatus::Active,
        locked_until: None,
        email_verified_at: Some(now()),
        last_login_at: None,
        created_at: now(),
        updated_at: now(),
        deleted_at: None,
        avatar: None,
    }
}

/// The mocks a test sets expectations on; the rest of the ports get no expectations, so
/// any call to them fails the test.
#[derive(Default)]
pub(crate) struct Mocks {
    pub hasher: MockPasswordHasher,
    pub access_tokens: MockAccessTokens,
    pub opaque_tokens: MockOpaqueTokens,
    pub refresh_successors: MockRefreshSuccessors,
    pub revocations: MockRevocationList,
    pub directory: MockUserDirectory,
    pub activity: MockActivityLog,
    pub tokens: MockOneTimeTokenRepository,
    pub avatar_processor: MockAvatarProcessor,
    pub avatar_store: MockAvatarStore,
}

/// Ports over the given mocks, with a clock fixed at [`now`].
pub(crate) fn ports_with(users: MockUserRepository, sessions: MockSessionRepository) -> Ports {
    ports_with_mocks(users, sessions, Mocks::default())
}

/// Like [`ports_with`], with expectations on the hasher and token ports too.
pub(crate) fn ports_with_mocks(users: MockUserRepository, sessions: MockSessionRepository, mocks: Mocks) -> Ports {
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    let clock: Arc<MockClock> = Arc::new(clock);
    let cache_settings = CacheSettings { capacity: 1_000, ttl: Duration::minutes(5) };
    Ports {
        users: Arc::new(users),
        sessions: Arc::new(sessions),
        tokens: Arc::new(mocks.tokens),
        hasher: Arc::new(mocks.hasher),
        access_tokens: Arc::new(mocks.access_tokens),
        opaque_tokens: Arc::new(mocks.opaque_tokens),
        refresh_successors: Arc::new(mocks.refresh_successors),
        cache: Arc::new(ReadCache::new(cache_settings, clock.clone())),
        clock,
        revocations: Arc::new(mocks.revocations),
        directory: Arc::new(mocks.directory),
        activity: Arc::new(mocks.activity),
        avatar_processor: Arc::new(mocks.avatar_processor),
        avatar_store: Arc::new(mocks.avatar_store),
    }
}

/// The default policy: verification required, 15 min access tokens, 30 day sessions, no
/// reuse grace, verification links for 24 h and reset links for 1 h.
pub(crate) fn settings() -> AuthSettings {
    AuthSettings {
        require_verified_email: true,
        access_ttl: Duration::minutes(15),
        refresh_ttl: Duration::days(30),
        refresh_reuse_grace: Duration::zero(),
        verification_ttl: Duration::hours(24),
        password_reset_ttl: Duration::hours(1),
        lockout_threshold: 5,
        lockout_duration: Duration::minutes(15),
    }
}
