//! The user entity, its roles and its status.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::avatar::Avatar;
use crate::ids::UserId;
use crate::ports::PasswordHash;
use crate::values::{DisplayName, Email, Username};

/// A role grants permissions. Every user has [`Role::User`]; operators also have
/// [`Role::Admin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Any signed-up user.
    User,
    /// May use the administration API.
    Admin,
}

impl Role {
    /// The stable name used in storage, tokens and the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

/// The name is not a known role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an account may sign in, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserStatus {
    /// May sign in.
    Active,
    /// Temporarily locked (after failed logins, or by an admin) until `locked_until`.
    Locked,
    /// Switched off by an admin until switched back on.
    Disabled,
}

impl UserStatus {
    /// The stable name used in storage and the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Locked => "locked",
            UserStatus::Disabled => "disabled",
        }
    }
}

/// The name is not a known status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown user status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for UserStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(UserStatus::Active),
            "locked" => Ok(UserStatus::Locked),
            "disabled" => Ok(UserStatus::Disabled),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

impl fmt::Display for UserStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user account as the domain sees it. Never carries the password hash: see
/// [`Credentials`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id (UUIDv7).
    pub id: UserId,
    /// Trimmed email, unique case-insensitively among non-deleted users.
    pub email: Email,
    /// Unique case-insensitively among non-deleted users.
    pub username: Username,
    /// Optional human name.
    pub display_name: Option<DisplayName>,
    /// Always contains [`Role::User`]; sorted, without duplicates.
    pub roles: Vec<Role>,
    /// The stored status; see [`User::status_at`] for the effective one.
    pub status: UserStatus,
    /// When a [`UserStatus::Locked`] account unlocks by itself; `None` locks until an admin
    /// unlocks it.
    pub locked_until: Option<DateTime<Utc>>,
    /// When the email address was proven to belong to the user.
    pub email_verified_at: Option<DateTime<Utc>>,
    /// The last successful sign-in.
    pub last_login_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change to the account.
    pub updated_at: DateTime<Utc>,
    /// Set when soft-deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// The profile image, if the user has uploaded one.
    pub avatar: Option<Avatar>,
}

impl User {
    /// The status in effect at `now`: a lock whose time has passed no longer counts.
    #[must_use]
    pub fn status_at(&self, now: DateTime<Utc>) -> UserStatus {
        match (self.status, self.locked_until) {
            (UserStatus::Locked, Some(until)) if until <= now => UserStatus::Active,
            (status, _) => status,
        }
    }

    /// Whether the email address has been verified.
    #[must_use]
    pub fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }

    /// Whether the user holds `role`.
    #[must_use]
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// A user together with what proves their identity. Only the login path loads this.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The account.
    pub user: User,
    /// `None` for accounts that sign in only through an OAuth provider.
    pub password_hash: Option<PasswordHash>,
}

/// Everything needed to insert a new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Generated by the use case, UUIDv7.
    pub id: UserId,
    /// The account's email.
    pub email: Email,
    /// Chosen or derived username.
    pub username: Username,
    /// Optional human name.
    pub display_name: Option<DisplayName>,
    /// The argon2id PHC string; `None` for OAuth-only accounts.
    pub password_hash: Option<PasswordHash>,
    /// Roles to grant; [`Role::User`] is always granted too.
    pub roles: Vec<Role>,
    /// Set when the email is already proven (OAuth, admin creation).
    pub email_verified_at: Option<DateTime<Utc>>,
    /// Creation time, also the first `updated_at`.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn user(status: UserStatus, locked_until: Option<DateTime<Utc>>) -> User {
        let now = Utc::now();
        User {
            id: UserId::generate(),
            email: Email::parse("ada@example.com").expect("valid"),
            username: Username::parse("ada").expect("valid"),
            display_name: None,
            roles: vec![Role::User],
            status,
            locked_until,
            email_verified_at: None,
            last_login_at: None,
            created_at: now,
            updated_at: now,
            deleted_at: None,
            avatar: None,
        }
    }

    #[test]
    fn an_expired_lock_no_longer_counts() {
        let now = Utc::now();
        assert_eq!(user(UserStatus::Locked, Some(now - Duration::seconds(1))).status_at(now), UserStatus::Active);
        assert_eq!(user(UserStatus::Locked, Some(now + Duration::minutes(5))).status_at(now), UserStatus::Locked);
        assert_eq!(user(UserStatus::Locked, None).status_at(now), UserStatus::Locked);
        assert_eq!(user(UserStatus::Disabled, None).status_at(now), UserStatus::Disabled);
    }

    #[test]
    fn roles_and_statuses_round_trip_through_their_names() {
        for role in [Role::User, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        for status in [UserStatus::Active, UserStatus::Locked, UserStatus::Disabled] {
            assert_eq!(status.as_str().parse::<UserStatus>(), Ok(status));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
