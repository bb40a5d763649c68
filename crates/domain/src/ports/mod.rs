//! The ports: every capability the use cases need from the outside world.
//!
//! Each trait documents, per method, what an implementation MUST return, so adapters and
//! the mockall mocks (feature `mocks`) share one specification. Infrastructure failures
//! that callers cannot act on are `anyhow::Error`s; outcomes callers branch on are enums.

mod avatars;
mod clock;
mod password;
mod revocations;
mod sessions;
mod tokens;
mod users;

pub use avatars::{AvatarProcessor, AvatarStore};
pub use clock::{Clock, SystemClock};
pub use password::{HashError, PasswordCheck, PasswordHash, PasswordHasher};
pub use revocations::RevocationList;
pub use sessions::{Rotation, SessionRepository};
pub use tokens::{AccessClaims, AccessTokens, InvalidAccessToken, OpaqueToken, OpaqueTokens, TokenHash};
pub use users::{AvatarChange, CreateUserError, ProfileChanges, SoftDeleted, UpdateUserError, UserRepository};

#[cfg(any(test, feature = "mocks"))]
pub use avatars::{MockAvatarProcessor, MockAvatarStore};
#[cfg(any(test, feature = "mocks"))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mocks"))]
pub use password::MockPasswordHasher;
#[cfg(any(test, feature = "mocks"))]
pub use revocations::MockRevocationList;
#[cfg(any(test, feature = "mocks"))]
pub use sessions::MockSessionRepository;
#[cfg(any(test, feature = "mocks"))]
pub use tokens::{MockAccessTokens, MockOpaqueTokens};
#[cfg(any(test, feature = "mocks"))]
pub use users::MockUserRepository;
