//! User storage.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ids::UserId;
use crate::ports::PasswordHash;
use crate::user::{Credentials, NewUser, User};
use crate::values::{Email, Username};

/// Why a user could not be inserted.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// A non-deleted user already has this email (compared case-insensitively).
    #[error("the email address is already registered")]
    EmailTaken,
    /// A non-deleted user already has this username (compared case-insensitively).
    #[error("the username is already taken")]
    UsernameTaken,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Stores users and their roles. Soft-deleted users (`deleted_at` set) are invisible to
/// every lookup here.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Inserts a user and their roles (always including `user`) in one transaction, and
    /// returns it as stored.
    ///
    /// # Errors
    ///
    /// MUST return [`CreateUserError::EmailTaken`] when a non-deleted user has the same
    /// email ignoring case, and [`CreateUserError::UsernameTaken`] likewise for the
    /// username, also when two inserts race: exactly one of them succeeds. The email check
    /// wins when both collide.
    async fn create(&self, user: NewUser) -> Result<User, CreateUserError>;

    /// The non-deleted user with this id.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown id is `Ok(None)`.
    async fn find_by_id(&self, id: UserId) -> anyhow::Result<Option<User>>;

    /// The non-deleted user with this email (ignoring case) and their password hash.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown email is `Ok(None)`.
    async fn find_credentials_by_email(&self, email: &Email) -> anyhow::Result<Option<Credentials>>;

    /// The non-deleted user with this username (ignoring case) and their password hash.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown username is `Ok(None)`.
    async fn find_credentials_by_username(&self, username: &Username) -> anyhow::Result<Option<Credentials>>;

    /// Replaces the stored password hash (used to upgrade hashing parameters on login).
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown id changes nothing and is `Ok(())`.
    async fn update_password_hash(&self, id: UserId, hash: PasswordHash, at: DateTime<Utc>) -> anyhow::Result<()>;
}
