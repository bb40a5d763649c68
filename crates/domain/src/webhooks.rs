//! Webhooks: the event types subscribers choose from, the filters they subscribe with, the
//! endpoints and deliveries, and how an audit action becomes a webhook event.
//!
//! Pure values; the wire shapes (JSON bodies, headers, signatures) belong to the adapters.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::ActivityAction;

macro_rules! event_types {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What a webhook event reports. The names are the API's (`user.created`…).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum WebhookEventType {
            $($(#[$doc])* $variant,)*
            /// The ping an admin sends with `POST /webhooks/{id}/test`; never subscribed to.
            Test,
        }

        impl WebhookEventType {
            /// Every type a subscriber can ask for (not [`Test`](Self::Test)).
            pub const SUBSCRIBABLE: &[WebhookEventType] = &[$(WebhookEventType::$variant,)*];

            /// The stable name.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(WebhookEventType::$variant => $name,)*
                    WebhookEventType::Test => "webhook.test",
                }
            }
        }

        impl FromStr for WebhookEventType {
            type Err = UnknownEventType;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(WebhookEventType::$variant),)*
                    "webhook.test" => Ok(WebhookEventType::Test),
                    other => Err(UnknownEventType(other.to_owned())),
                }
            }
        }
    };
}

event_types! {
    /// An account was created.
    UserCreated => "user.created",
    /// Profile fields (or the avatar) changed.
    UserUpdated => "user.updated",
    /// An email address was verified.
    UserEmailVerified => "user.email_verified",
    /// The account was soft-deleted.
    UserDeleted => "user.deleted",
    /// A soft-deleted account was restored.
    UserRestored => "user.restored",
    /// The account's personal data was erased.
    UserPurged => "user.purged",
    /// The status (active, locked, disabled) changed.
    UserStatusChanged => "user.status_changed",
    /// The roles changed.
    UserRolesChanged => "user.roles_changed",
    /// The password was changed or reset.
    UserPasswordChanged => "user.password_changed",
    /// A session started (a sign-in).
    SessionCreated => "session.created",
    /// A session ended (sign-out, revocation, refresh-token reuse).
    SessionRevoked => "session.revoked",
    /// A second factor was added.
    MfaFactorAdded => "mfa.factor_added",
    /// A second factor was removed.
    MfaFactorRemoved => "mfa.factor_removed",
    /// An OAuth identity was linked.
    IdentityLinked => "identity.linked",
    /// An OAuth identity was unlinked.
    IdentityUnlinked => "identity.unlinked",
}

/// The name is not a webhook event type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown webhook event type {0:?}")]
pub struct UnknownEventType(pub String);

impl fmt::Display for WebhookEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl WebhookEventType {
    /// The family: the part before the dot (`user`, `session`…).
    #[must_use]
    pub fn family(self) -> &'static str {
        self.as_str().split('.').next().unwrap_or_default()
    }

    /// The event an audit action publishes, if any. Failed sign-ins, reset requests and other
    /// actions that change no account state publish nothing.
    #[must_use]
    pub const fn for_action(action: ActivityAction) -> Option<Self> {
        match action {
            ActivityAction::UserRegistered => Some(Self::UserCreated),
            ActivityAction::EmailVerified => Some(Self::UserEmailVerified),
            ActivityAction::LoginSucceeded => Some(Self::SessionCreated),
            ActivityAction::Logout | ActivityAction::RefreshReused => Some(Self::SessionRevoked),
            ActivityAction::OAuthLinked => Some(Self::IdentityLinked),
            ActivityAction::OAuthUnlinked => Some(Self::IdentityUnlinked),
            ActivityAction::PasswordChanged | ActivityAction::PasswordReset => Some(Self::UserPasswordChanged),
            ActivityAction::UserUpdated | ActivityAction::AvatarChanged => Some(Self::UserUpdated),
            ActivityAction::RolesChanged => Some(Self::UserRolesChanged),
            ActivityAction::StatusChanged | ActivityAction::AccountLocked | ActivityAction::AccountUnlocked => {
                Some(Self::UserStatusChanged)
            }
            ActivityAction::UserDeleted => Some(Self::UserDeleted),
            ActivityAction::UserRestored => Some(Self::UserRestored),
            ActivityAction::LoginFailed | ActivityAction::PasswordResetRequested => None,
        }
    }
}

/// One entry of an endpoint's `event_types`: a type, a family (`user.*`) or everything (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// `*`.
    All,
    /// `<family>.*`.
    Family(&'static str),
    /// One type.
    Exact(WebhookEventType),
}

/// The filter is neither a known type, nor `<family>.*` of a known family, nor `*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a webhook event type, a <family>.* wildcard or *")]
pub struct InvalidFilter(pub String);

impl FromStr for EventFilter {
    type Err = InvalidFilter;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" {
            return Ok(Self::All);
        }
        if let Some(family) = s.strip_suffix(".*") {
            return WebhookEventType::SUBSCRIBABLE
                .iter()
                .map(|t| t.family())
                .find(|f| *f == family)
                .map(Self::Family)
                .ok_or_else(|| InvalidFilter(s.to_owned()));
        }
        match s.parse::<WebhookEventType>() {
            Ok(WebhookEventType::Test) | Err(_) => Err(InvalidFilter(s.to_owned())),
            Ok(t) => Ok(Self::Exact(t)),
        }
    }
}

impl fmt::Display for EventFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Family(family) => write!(f, "{family}.*"),
            Self::Exact(t) => f.write_str(t.as_str()),
        }
    }
}

impl EventFilter {
    /// Whether an event of type `t` passes this filter.
    #[must_use]
    pub fn matches(&self, t: WebhookEventType) -> bool {
        match self {
            Self::All => t != WebhookEventType::Test,
            Self::Family(family) => t.family() == *family,
            Self::Exact(exact) => *exact == t,
        }
    }

    /// Whether any of `filters` lets `t` through.
    #[must_use]
    pub fn any_matches(filters: &[Self], t: WebhookEventType) -> bool {
        filters.iter().any(|f| f.matches(t))
    }
}

/// Why an endpoint was disabled by Gatehouse rather than by an admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisabledReason {
    /// Every delivery failed for `webhooks.disable_after_hours`.
    Failing,
}

impl DisabledReason {
    /// The API's name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        "failing"
    }
}

/// A subscriber, without its secret (which is shown once and stored sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// UUIDv7.
    pub id: Uuid,
    /// Where events are POSTed.
    pub url: String,
    /// Free text for the admins.
    pub description: Option<String>,
    /// What it subscribes to.
    pub event_types: Vec<EventFilter>,
    /// Whether deliveries are attempted.
    pub enabled: bool,
    /// Set when Gatehouse disabled it.
    pub disabled_reason: Option<DisabledReason>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not attempted yet.
    Pending,
    /// A 2xx answered.
    Succeeded,
    /// Given up on after `webhooks.max_retry_hours`.
    Failed,
    /// Failed at least once; another attempt is due at `next_attempt_at`.
    Retrying,
}

impl DeliveryStatus {
    /// The API's name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Retrying => "retrying",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = UnknownEventType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            "retrying" => Ok(Self::Retrying),
            other => Err(UnknownEventType(other.to_owned())),
        }
    }
}

/// One event on its way to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// UUIDv7.
    pub id: Uuid,
    /// The event (its API id is `evt_` + the simple form).
    pub event_id: Uuid,
    /// The event's type.
    pub event_type: WebhookEventType,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The HTTP status of the last attempt, when one answered.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due, while one is.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// The API id of an event: `evt_` and the UUID's simple form. Also the `webhook-id` header and
/// the subscriber's idempotency key.
#[must_use]
pub fn event_api_id(id: Uuid) -> String {
    format!("evt_{}", id.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_types_families_and_the_wildcard_and_nothing_else() {
        assert_eq!("*".parse::<EventFilter>(), Ok(EventFilter::All));
        assert_eq!("user.*".parse::<EventFilter>(), Ok(EventFilter::Family("user")));
        assert_eq!("mfa.factor_added".parse::<EventFilter>(), Ok(EventFilter::Exact(WebhookEventType::MfaFactorAdded)));
        for bad in ["", "user", "users.*", "user.nope", "webhook.test", "webhook.*", "**", "user.**"] {
            assert!(bad.parse::<EventFilter>().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn a_family_filter_matches_its_family_only_and_no_filter_matches_the_test_event() {
        let users = EventFilter::Family("user");
        assert!(users.matches(WebhookEventType::UserPurged));
        assert!(!users.matches(WebhookEventType::SessionCreated));
        assert!(!EventFilter::All.matches(WebhookEventType::Test));
        assert!(EventFilter::All.matches(WebhookEventType::IdentityLinked));
    }

    #[test]
    fn every_type_name_round_trips() {
        for t in WebhookEventType::SUBSCRIBABLE.iter().copied().chain([WebhookEventType::Test]) {
            assert_eq!(t.as_str().parse::<WebhookEventType>(), Ok(t));
        }
        assert_eq!(WebhookEventType::SUBSCRIBABLE.len(), 15);
    }
}
