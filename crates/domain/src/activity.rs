//! Activity events: the audit trail of security-relevant actions. Each is written by the
//! store in the same transaction as the change it records.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::ids::{ActivityId, UserId};
use crate::session::RequestContext;

macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What happened. The names are part of the API (`ActivityEvent.action`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ActivityAction {
            $($(#[$doc])* $variant,)*
        }

        impl ActivityAction {
            /// Every action, in declaration order.
            pub const ALL: &[ActivityAction] = &[$(ActivityAction::$variant,)*];

            /// The stable name, such as `auth.login_succeeded`.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ActivityAction::$variant => $name,)*
                }
            }
        }

        impl FromStr for ActivityAction {
            type Err = UnknownAction;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(ActivityAction::$variant),)*
                    other => Err(UnknownAction(other.to_owned())),
                }
            }
        }
    };
}

actions! {
    /// An account was created.
    UserRegistered => "user.registered",
    /// An email address was verified.
    EmailVerified => "user.email_verified",
    /// A sign-in succeeded.
    LoginSucceeded => "auth.login_succeeded",
    /// A sign-in failed.
    LoginFailed => "auth.login_failed",
    /// An account was locked after failed sign-ins.
    AccountLocked => "auth.account_locked",
    /// A lock was lifted.
    AccountUnlocked => "auth.account_unlocked",
    /// A session was ended by its owner.
    Logout => "auth.logout",
    /// A spent refresh token was presented again; its session was revoked.
    RefreshReused => "auth.refresh_reused",
    /// An OAuth identity was linked.
    OAuthLinked => "auth.oauth_linked",
    /// An OAuth identity was unlinked.
    OAuthUnlinked => "auth.oauth_unlinked",
    /// The password was changed by its owner.
    PasswordChanged => "user.password_changed",
    /// A password reset was requested.
    PasswordResetRequested => "user.password_reset_requested",
    /// The password was reset with an emailed token.
    PasswordReset => "user.password_reset",
    /// Profile fields changed.
    UserUpdated => "user.updated",
    /// Roles changed.
    RolesChanged => "user.roles_changed",
    /// Status changed.
    StatusChanged => "user.status_changed",
    /// The account was soft-deleted.
    UserDeleted => "user.deleted",
    /// A soft-deleted account was restored.
    UserRestored => "user.restored",
    /// The avatar changed.
    AvatarChanged => "user.avatar_changed",
}

/// The name is not a known action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown activity action {0:?}")]
pub struct UnknownAction(pub String);

impl fmt::Display for ActivityAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to record with a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewActivity {
    /// UUIDv7.
    pub id: ActivityId,
    /// The account the event is about.
    pub user_id: UserId,
    /// Who acted: the user themself, an admin, or `None` for the system.
    pub actor_id: Option<UserId>,
    /// What happened.
    pub action: ActivityAction,
    /// Where the request came from.
    pub context: RequestContext,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Extra facts (never secrets): which session, which fields changed…
    pub details: BTreeMap<String, String>,
}

impl NewActivity {
    /// An event that `user_id` caused on their own account.
    #[must_use]
    pub fn by_user(user_id: UserId, action: ActivityAction, context: &RequestContext, at: DateTime<Utc>) -> Self {
        Self {
            id: ActivityId::generate(),
            user_id,
            actor_id: Some(user_id),
            action,
            context: context.clone(),
            created_at: at,
            details: BTreeMap::new(),
        }
    }

    /// The same event with one more detail.
    #[must_use]
    pub fn with_detail(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.details.insert(key.to_owned(), value.to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_round_trips_through_its_name() {
        for action in ActivityAction::ALL {
            assert_eq!(action.as_str().parse::<ActivityAction>(), Ok(*action));
        }
        assert_eq!(ActivityAction::ALL.len(), 19, "the actions API.md lists");
    }
}
