//! User storage.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::activity::NewActivity;
use crate::avatar::{Avatar, AvatarKey};
use crate::email::OutgoingEmail;
use crate::ids::{SessionId, UserId};
use crate::ports::{Identity, PasswordHash, TokenHash, TokenMail, UseTokenError};
use crate::user::{Credentials, NewUser, User};
use crate::values::{DisplayName, Email, Username};

/// What is written together with a new account, in the same transaction.
#[derive(Debug, Clone)]
pub enum AccountCompanion {
    /// Nothing more (an account an admin creates).
    Nothing,
    /// The verification token and its email (self-registration).
    Verification(TokenMail),
    /// The provider identity the account signs in with, and the event recording the link
    /// (sign-up through a provider): an account never exists without the identity that made it.
    Identity(Identity, NewActivity),
}

/// Why a user could not be inserted.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// A non-deleted user already has this email (compared case-insensitively).
    #[error("the email address is already registered")]
    EmailTaken,
    /// A non-deleted user already has this username (compared case-insensitively).
    #[error("the username is already taken")]
    UsernameTaken,
    /// The companion identity is linked already (another sign-up through the same provider
    /// account won a race).
    #[error("the identity is already linked")]
    IdentityTaken,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Why a user could not be updated.
#[derive(Debug, thiserror::Error)]
pub enum UpdateUserError {
    /// No non-deleted user has this id.
    #[error("no such user")]
    NotFound,
    /// Another non-deleted user has the new username (compared case-insensitively).
    #[error("the username is already taken")]
    UsernameTaken,
    /// The change would leave no active, non-deleted admin.
    #[error("the last active admin must stay an active admin")]
    LastAdmin,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Profile fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChanges {
    /// `Some(None)` clears the display name.
    pub display_name: Option<Option<DisplayName>>,
    /// A new username.
    pub username: Option<Username>,
}

impl ProfileChanges {
    /// Whether nothing would change.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.display_name.is_none() && self.username.is_none()
    }
}

/// What [`UserRepository::set_avatar`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvatarChange {
    /// The user as stored after the change.
    pub user: User,
    /// The avatar the user had just before the change, read under the same row lock, so
    /// that of two racing changes each sees the other's result and no file is forgotten.
    pub previous: Option<Avatar>,
}

/// What [`UserRepository::soft_delete`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoftDeleted {
    /// The sessions that were live and are now revoked.
    pub revoked_sessions: Vec<SessionId>,
    /// The avatar the user had; the reference is cleared, so its bytes may be removed.
    pub avatar: Option<Avatar>,
}

/// The lock a failed sign-in applies when it reaches the threshold.
#[derive(Debug, Clone)]
pub struct Lockout {
    /// Consecutive failures that lock the account.
    pub threshold: u32,
    /// When the lock ends.
    pub until: DateTime<Utc>,
    /// The unlock token and the email that carries it.
    pub mail: TokenMail,
    /// `auth.account_locked`.
    pub event: NewActivity,
}

/// Stores users and their roles. Soft-deleted users (`deleted_at` set) are invisible to
/// every lookup here.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Inserts a user and their roles (always including `user`), records `event`, and writes
    /// `companion` (a verification token and its email, or a linked identity and its event),
    /// in one transaction; returns the user as stored.
    ///
    /// # Errors
    ///
    /// MUST return [`CreateUserError::EmailTaken`] when a non-deleted user has the same
    /// email ignoring case, and [`CreateUserError::UsernameTaken`] likewise for the
    /// username, also when two inserts race: exactly one of them succeeds. The email check
    /// wins when both collide. MUST return [`CreateUserError::IdentityTaken`] when the
    /// companion identity is linked already. Each writes nothing.
    async fn create(
        &self,
        user: NewUser,
        event: NewActivity,
        companion: AccountCompanion,
    ) -> Result<User, CreateUserError>;

    /// The non-deleted user with this id.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown id is `Ok(None)`.
    async fn find_by_id(&self, id: UserId) -> anyhow::Result<Option<User>>;

    /// The non-deleted user with this id and their password hash.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown id is `Ok(None)`.
    async fn find_credentials_by_id(&self, id: UserId) -> anyhow::Result<Option<Credentials>>;

    /// The non-deleted user with this email (ignoring case) and their password hash. Sign-in
    /// looks accounts up with it, so it MUST do the same work (the same queries) whether or
    /// not the account exists: the time to answer must not tell.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown email is `Ok(None)`.
    async fn find_credentials_by_email(&self, email: &Email) -> anyhow::Result<Option<Credentials>>;

    /// The non-deleted user with this username (ignoring case) and their password hash. The
    /// same work whether or not the account exists, as for
    /// [`UserRepository::find_credentials_by_email`].
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown username is `Ok(None)`.
    async fn find_credentials_by_username(&self, username: &Username) -> anyhow::Result<Option<Credentials>>;

    /// Replaces the stored password hash with one of the same password (used to upgrade
    /// hashing parameters on login). Records nothing: the password did not change.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown id changes nothing and is `Ok(())`.
    async fn update_password_hash(&self, id: UserId, hash: PasswordHash, at: DateTime<Utc>) -> anyhow::Result<()>;

    /// Applies `changes`, sets `updated_at`, and records `event`, in one transaction.
    ///
    /// # Errors
    ///
    /// [`UpdateUserError::NotFound`] for an unknown or deleted user,
    /// [`UpdateUserError::UsernameTaken`] when another non-deleted user has the username
    /// (also under a race, as for [`UserRepository::create`]).
    async fn update_profile(
        &self,
        id: UserId,
        changes: ProfileChanges,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<User, UpdateUserError>;

    /// Sets a new password hash, revokes every live session of the user except `keep`,
    /// and records `event`, in one transaction. Returns the revoked session ids.
    ///
    /// # Errors
    ///
    /// [`UpdateUserError::NotFound`] for an unknown or deleted user.
    async fn change_password(
        &self,
        id: UserId,
        hash: PasswordHash,
        keep: Option<SessionId>,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<Vec<SessionId>, UpdateUserError>;

    /// Soft-deletes the user (sets `deleted_at`, which frees the email and username for
    /// new accounts while the row and its history stay), clears their avatar reference,
    /// revokes all their sessions, and records `event`, in one transaction. Returns the
    /// revoked session ids and the avatar that was cleared (its bytes are the caller's to
    /// remove).
    ///
    /// # Errors
    ///
    /// [`UpdateUserError::NotFound`] for an unknown or already deleted user; MUST return
    /// [`UpdateUserError::LastAdmin`], writing nothing, when the user is the last active
    /// admin (checked inside the transaction, as [`crate::ports::UserDirectory::update`]
    /// does).
    async fn soft_delete(
        &self,
        id: UserId,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<SoftDeleted, UpdateUserError>;

    /// Spends the email-verification token with hash `token` of `user_id`, sets the user's
    /// `email_verified_at` to `at` (unless already set) and records `event`, in one
    /// transaction.
    ///
    /// # Errors
    ///
    /// MUST return [`UseTokenError::Invalid`], writing nothing, unless the token is an unused
    /// [`crate::ports::TokenKind::EmailVerification`] token of this non-deleted user with
    /// `expires_at > at`; of two racing calls with one token, exactly one succeeds.
    async fn verify_email(
        &self,
        token: TokenHash,
        user_id: UserId,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<(), UseTokenError>;

    /// Spends the password-reset token with hash `token` of `user_id`, sets the new password
    /// hash, marks the email verified if it was not (the reset link proved the mailbox),
    /// revokes every session of the user, records `event` and queues `notice`, in one
    /// transaction. Returns the revoked session ids.
    ///
    /// # Errors
    ///
    /// MUST return [`UseTokenError::Invalid`], writing nothing, unless the token is an unused
    /// [`crate::ports::TokenKind::PasswordReset`] token of this non-deleted user with
    /// `expires_at > at`; of two racing calls with one token, exactly one succeeds.
    async fn reset_password(
        &self,
        token: TokenHash,
        user_id: UserId,
        hash: PasswordHash,
        at: DateTime<Utc>,
        event: NewActivity,
        notice: OutgoingEmail,
    ) -> Result<Vec<SessionId>, UseTokenError>;

    /// Records the failed password sign-in `event` of the non-deleted user `id`, attempted at
    /// `attempted_at`, and counts it, in one transaction. Counting MUST be atomic: of N
    /// concurrent failures each is counted once, and exactly the one that brings the count to
    /// `lockout.threshold` locks the account as [`UserRepository::lock`] does (until
    /// `lockout.until`, storing `lockout.mail` and recording `lockout.event`) and starts the
    /// count again. A failure attempted before the account's last successful sign-in is
    /// recorded but not counted (its bookkeeping ran late). Returns whether it locked the
    /// account.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; nothing is written then.
    async fn record_failed_login(
        &self,
        id: UserId,
        attempted_at: DateTime<Utc>,
        event: NewActivity,
        lockout: Lockout,
    ) -> anyhow::Result<bool>;

    /// Locks an active account (or one whose earlier lock has run out) until `until`, stores
    /// the unlock token and queues its email (`mail`), and records `event`, in one
    /// transaction. Returns `false`, writing nothing, when the account is already locked at
    /// `at`, disabled, deleted or unknown.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; nothing is written then.
    async fn lock(
        &self,
        id: UserId,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
        mail: TokenMail,
        event: NewActivity,
    ) -> anyhow::Result<bool>;

    /// Spends the unlock token with hash `token` of `user_id`, makes a locked account active
    /// again (clearing `locked_until`) and records `event`, in one transaction.
    ///
    /// # Errors
    ///
    /// MUST return [`UseTokenError::Invalid`], writing nothing, unless the token is an unused
    /// [`crate::ports::TokenKind::AccountUnlock`] token of this non-deleted user with
    /// `expires_at > at`; of two racing calls with one token, exactly one succeeds.
    async fn unlock(
        &self,
        token: TokenHash,
        user_id: UserId,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<(), UseTokenError>;

    /// Points the user at `avatar` (or at none), sets `updated_at`, and records `event`, in
    /// one transaction. Returns the user as stored and the avatar replaced, read under the
    /// row's write lock.
    ///
    /// # Errors
    ///
    /// [`UpdateUserError::NotFound`] for an unknown or deleted user.
    async fn set_avatar(
        &self,
        id: UserId,
        avatar: Option<Avatar>,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<AvatarChange, UpdateUserError>;

    /// Which of `keys` a user row references as its avatar, whether the user is deleted or
    /// not (deleting a user clears the reference, so a deleted user references none).
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn referenced_avatar_keys(&self, keys: Vec<AvatarKey>) -> anyhow::Result<HashSet<AvatarKey>>;
}
