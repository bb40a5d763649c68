//! The ports: every capability the use cases need from the outside world.
//!
//! Each trait documents, per method, what an implementation MUST return, so adapters and
//! the mockall mocks (feature `mocks`) share one specification. Infrastructure failures
//! that callers cannot act on are `anyhow::Error`s; outcomes callers branch on are enums.

mod activity;
mod avatars;
mod changes;
mod clock;
mod directory;
mod mail;
mod oauth;
mod one_time_tokens;
mod password;
mod rate_limits;
mod revocations;
mod secrets;
mod sessions;
mod tokens;
mod users;
mod webhooks;

pub use activity::{ActivityCursor, ActivityEvent, ActivityLog, ActivityQuery};
pub use avatars::{AvatarProcessor, AvatarStore};
pub use changes::{Change, ChangeFeed, NoOtherInstances};
pub use clock::{Clock, SystemClock};
pub use directory::{
    AdminChangeError, AdminChangeOutcome, AdminChanges, EnsureAdmin, UserCursor, UserDirectory, UserQuery, UserSort,
    UserSortKey,
};
pub use mail::{ClaimedEmail, EmailOutbox, EmailSender, SendError};
pub use oauth::{
    AuthorizationRequest, Identity, IdentityRepository, LinkIdentityError, OAuthProvider, ProviderDescription,
    ProviderError, ProviderIdentity, UnlinkIdentityError,
};
pub use one_time_tokens::{
    NewOneTimeToken, OneTimeToken, OneTimeTokenRepository, TokenKind, TokenMail, UnknownTokenKind, UseTokenError,
};
pub(crate) use password::from_hash_error;
pub use password::{HashError, PasswordCheck, PasswordHash, PasswordHasher};
pub use rate_limits::{RateDecision, RateLimiter};
pub use revocations::RevocationList;
pub use secrets::{KeyId, OpenError, SecretCipher};
pub use sessions::{Rotation, SessionRepository};
pub use tokens::{
    AccessClaims, AccessTokens, InvalidAccessToken, OpaqueToken, OpaqueTokens, RefreshSuccessors, TokenHash,
};
pub use users::{
    AccountCompanion, AvatarChange, CreateUserError, Lockout, ProfileChanges, SoftDeleted, UpdateUserError,
    UserRepository,
};
pub use webhooks::{
    AttemptEffect, AttemptOutcome, AttemptRecord, ClaimedDelivery, EndpointChanges, NewEndpoint, QueueStats,
    TargetRejected, WebhookCursor, WebhookRepository, WebhookTransport,
};

#[cfg(any(test, feature = "mocks"))]
pub use activity::MockActivityLog;
#[cfg(any(test, feature = "mocks"))]
pub use avatars::{MockAvatarProcessor, MockAvatarStore};
#[cfg(any(test, feature = "mocks"))]
pub use changes::MockChangeFeed;
#[cfg(any(test, feature = "mocks"))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mocks"))]
pub use directory::MockUserDirectory;
#[cfg(any(test, feature = "mocks"))]
pub use mail::{MockEmailOutbox, MockEmailSender};
#[cfg(any(test, feature = "mocks"))]
pub use oauth::{MockIdentityRepository, MockOAuthProvider};
#[cfg(any(test, feature = "mocks"))]
pub use one_time_tokens::MockOneTimeTokenRepository;
#[cfg(any(test, feature = "mocks"))]
pub use password::MockPasswordHasher;
#[cfg(any(test, feature = "mocks"))]
pub use rate_limits::MockRateLimiter;
#[cfg(any(test, feature = "mocks"))]
pub use revocations::MockRevocationList;
#[cfg(any(test, feature = "mocks"))]
pub use secrets::MockSecretCipher;
#[cfg(any(test, feature = "mocks"))]
pub use sessions::MockSessionRepository;
#[cfg(any(test, feature = "mocks"))]
pub use tokens::{MockAccessTokens, MockOpaqueTokens, MockRefreshSuccessors};
#[cfg(any(test, feature = "mocks"))]
pub use users::MockUserRepository;
#[cfg(any(test, feature = "mocks"))]
pub use webhooks::{MockWebhookRepository, MockWebhookTransport};
