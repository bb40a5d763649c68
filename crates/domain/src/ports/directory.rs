//! The administrators' view of user storage: search, filters, keyset pagination, and
//! changes with the last-admin rule enforced inside the transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::activity::NewActivity;
use crate::ids::{SessionId, UserId};
use crate::pagination::{Page, PageLimit};
use crate::ports::SoftDeleted;
use crate::user::{NewUser, Role, User, UserStatus};
use crate::values::{DisplayName, Email, Username};

/// The orders a user list can be sorted in. Every order ends with the id, so positions
/// are unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UserSort {
    /// Oldest first.
    CreatedAt,
    /// Newest first (the default).
    #[default]
    CreatedAtDesc,
    /// By email, A→Z (case-insensitive).
    Email,
    /// By email, Z→A.
    EmailDesc,
}

/// The sort key of the last item of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSortKey {
    /// For [`UserSort::CreatedAt`] and [`UserSort::CreatedAtDesc`].
    CreatedAt(DateTime<Utc>),
    /// For [`UserSort::Email`] and [`UserSort::EmailDesc`]: the lower-cased email.
    Email(String),
}

/// Where a user list continues: after the user with this sort key and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCursor {
    /// The sort key of the last user shown.
    pub key: UserSortKey,
    /// Its id, breaking ties.
    pub id: UserId,
}

impl UserCursor {
    /// The position of `user` in a list sorted by `sort`.
    #[must_use]
    pub fn of(user: &User, sort: UserSort) -> Self {
        let key = match sort {
            UserSort::CreatedAt | UserSort::CreatedAtDesc => UserSortKey::CreatedAt(user.created_at),
            UserSort::Email | UserSort::EmailDesc => UserSortKey::Email(user.email.as_ref().to_lowercase()),
        };
        Self { key, id: user.id }
    }
}

/// A user list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuery {
    /// A case-insensitive substring of the email, username or display name (lower-cased).
    pub search: Option<String>,
    /// Only users holding this role.
    pub role: Option<Role>,
    /// Only users with this effective status at `now` (an expired lock counts as active).
    pub status: Option<UserStatus>,
    /// Whether soft-deleted users are listed too.
    pub include_deleted: bool,
    /// The order.
    pub sort: UserSort,
    /// The page size.
    pub limit: PageLimit,
    /// Continue after this position; `None` for the first page. Its key matches `sort`.
    pub after: Option<UserCursor>,
    /// The instant effective statuses are judged at.
    pub now: DateTime<Utc>,
}

/// What an administrator changes about a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminChanges {
    /// A new email.
    pub email: Option<Email>,
    /// A new username.
    pub username: Option<Username>,
    /// `Some(None)` clears the display name.
    pub display_name: Option<Option<DisplayName>>,
    /// The complete new set of roles (`user` is always kept).
    pub roles: Option<Vec<Role>>,
    /// A new status. `Locked` locks until an admin unlocks (no end time); `Active` clears
    /// any lock.
    pub status: Option<UserStatus>,
}

impl AdminChanges {
    /// Whether nothing would change.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Why an administrative change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminChangeError {
    /// No user (for restore: no soft-deleted user) has this id.
    #[error("no such user")]
    NotFound,
    /// Another non-deleted user has the email.
    #[error("the email address is already registered")]
    EmailTaken,
    /// Another non-deleted user has the username.
    #[error("the username is already taken")]
    UsernameTaken,
    /// The change would leave no active, non-deleted admin.
    #[error("the last active admin must stay an active admin")]
    LastAdmin,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The outcome of an administrative change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminChangeOutcome {
    /// The user after the change.
    pub user: User,
    /// Sessions revoked by it.
    pub revoked: Vec<SessionId>,
}

/// What [`UserDirectory::ensure_admin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnsureAdmin {
    /// An active admin existed already; nothing changed.
    AlreadyPresent,
    /// The account was created as an admin.
    Created(User),
    /// An account with the email existed and was handed to the operator as an admin (see
    /// [`UserDirectory::ensure_admin`]).
    Promoted {
        /// The account, now an admin with the operator's password.
        admin: User,
        /// Its sessions, all revoked.
        revoked: Vec<SessionId>,
    },
}

/// User storage as administrators use it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait UserDirectory: Send + Sync {
    /// One page of users matching `query`, in its order. MUST use indexes so that a page
    /// deep in the list costs what the first page costs (keyset, never OFFSET).
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn list(&self, query: UserQuery) -> anyhow::Result<Page<User, UserCursor>>;

    /// The user with this id, soft-deleted or not.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown id is `Ok(None)`.
    async fn find(&self, id: UserId) -> anyhow::Result<Option<User>>;

    /// Applies `changes` to a non-deleted user and records `events`, in one transaction.
    /// When `revoke_sessions` is set, every live session of the user is revoked in it too.
    ///
    /// # Errors
    ///
    /// [`AdminChangeError::NotFound`] for unknown or deleted users; `EmailTaken` /
    /// `UsernameTaken` on conflicts (also under races); MUST return
    /// [`AdminChangeError::LastAdmin`], writing nothing, when afterwards no active,
    /// non-deleted user would hold the admin role — checked inside the transaction so two
    /// admins demoting themselves at once cannot both succeed.
    async fn update(
        &self,
        id: UserId,
        changes: AdminChanges,
        revoke_sessions: bool,
        at: DateTime<Utc>,
        events: Vec<NewActivity>,
    ) -> Result<AdminChangeOutcome, AdminChangeError>;

    /// Soft-deletes a user, clears their avatar reference, revokes all their sessions and
    /// records `event`, in one transaction.
    ///
    /// # Errors
    ///
    /// `NotFound` for unknown or already deleted users; `LastAdmin` as for
    /// [`UserDirectory::update`].
    async fn delete(&self, id: UserId, at: DateTime<Utc>, event: NewActivity) -> Result<SoftDeleted, AdminChangeError>;

    /// Restores a soft-deleted user and records `event`, in one transaction.
    ///
    /// # Errors
    ///
    /// `NotFound` unless the user exists and is deleted; `EmailTaken` / `UsernameTaken`
    /// when another non-deleted user took the email or username meanwhile.
    async fn restore(&self, id: UserId, at: DateTime<Utc>, event: NewActivity) -> Result<User, AdminChangeError>;

    /// Makes sure an active admin exists: when none does, creates `admin` (with the admin
    /// role) or, if a non-deleted user has its email, hands that account to the operator;
    /// records `event` (re-targeted to the affected user) when something changed. Safe
    /// when several instances call it at once: exactly one creates or promotes.
    ///
    /// Handing an existing account over MUST leave whoever registered the address before
    /// without a way in: the account gets the admin role, `admin.password_hash` replaces its
    /// password, its email counts as verified, any lock or disablement ends, every session is
    /// revoked and every outstanding one-time token deleted, in one transaction.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn ensure_admin(&self, admin: NewUser, event: NewActivity) -> anyhow::Result<EnsureAdmin>;

    /// Makes `admin.email` an admin whether or not an admin exists (the `create-admin`
    /// command): creates `admin`, or hands the existing account over exactly as
    /// [`UserDirectory::ensure_admin`] does. Never [`EnsureAdmin::AlreadyPresent`].
    ///
    /// # Errors
    ///
    /// Only infrastructure failures (a derived username that is taken included).
    async fn make_admin(&self, admin: NewUser, event: NewActivity) -> anyhow::Result<EnsureAdmin>;
}
