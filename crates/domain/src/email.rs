//! Outgoing email as the domain sees it: who gets which message, with what facts. The words,
//! the links and the MIME shape are the mail adapter's business; the domain only says what
//! happened.

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::ids::EmailId;
use crate::values::Email;

/// What a message says, with the facts its template needs.
///
/// Tokens are secrets: the outbox keeps them only until the message is sent.
#[derive(Debug, Clone)]
pub enum EmailContent {
    /// "Confirm your email address", with a link carrying `token`.
    VerifyEmail {
        /// The verification token (single use).
        token: SecretString,
        /// When the token stops working.
        expires_at: DateTime<Utc>,
    },
    /// "Reset your password", with a link carrying `token`.
    PasswordReset {
        /// The reset token (single use).
        token: SecretString,
        /// When the token stops working.
        expires_at: DateTime<Utc>,
    },
    /// "Your password was changed": a notice, no link to act on.
    PasswordChanged {
        /// When it changed.
        changed_at: DateTime<Utc>,
    },
    /// "Your account was locked", with a one-time unlock link.
    AccountLocked {
        /// The unlock token (single use).
        token: SecretString,
        /// When the lock ends by itself.
        locked_until: DateTime<Utc>,
    },
    /// To an admin: "A webhook endpoint was disabled" after failing too long; no link, no
    /// secret.
    WebhookDisabled {
        /// The endpoint's URL.
        url: String,
        /// When its deliveries started failing.
        failing_since: DateTime<Utc>,
    },
}

impl EmailContent {
    /// The stable name of the template, as stored in the outbox.
    #[must_use]
    pub const fn template(&self) -> EmailTemplate {
        match self {
            Self::VerifyEmail { .. } => EmailTemplate::VerifyEmail,
            Self::PasswordReset { .. } => EmailTemplate::PasswordReset,
            Self::PasswordChanged { .. } => EmailTemplate::PasswordChanged,
            Self::AccountLocked { .. } => EmailTemplate::AccountLocked,
            Self::WebhookDisabled { .. } => EmailTemplate::WebhookDisabled,
        }
    }
}

/// Which template a message uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmailTemplate {
    /// See [`EmailContent::VerifyEmail`].
    VerifyEmail,
    /// See [`EmailContent::PasswordReset`].
    PasswordReset,
    /// See [`EmailContent::PasswordChanged`].
    PasswordChanged,
    /// See [`EmailContent::AccountLocked`].
    AccountLocked,
    /// See [`EmailContent::WebhookDisabled`].
    WebhookDisabled,
}

impl EmailTemplate {
    /// Every template.
    pub const ALL: &[EmailTemplate] =
        &[Self::VerifyEmail, Self::PasswordReset, Self::PasswordChanged, Self::AccountLocked, Self::WebhookDisabled];

    /// The stable name used in storage.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::AccountLocked => "account_locked",
            Self::WebhookDisabled => "webhook_disabled",
        }
    }
}

impl std::str::FromStr for EmailTemplate {
    type Err = UnknownTemplate;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|t| t.as_str() == s).ok_or_else(|| UnknownTemplate(s.to_owned()))
    }
}

/// The name is not a known template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown email template {0:?}")]
pub struct UnknownTemplate(pub String);

/// A message to queue in the outbox, in the same transaction as the change that causes it.
#[derive(Debug, Clone)]
pub struct OutgoingEmail {
    /// UUIDv7; also the `Message-ID`'s local part, so retries of one message share it.
    pub id: EmailId,
    /// The recipient.
    pub to: Email,
    /// How to greet them (their display name, else their username).
    pub recipient_name: String,
    /// What the message says.
    pub content: EmailContent,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_round_trips_through_its_name() {
        for template in EmailTemplate::ALL {
            assert_eq!(template.as_str().parse::<EmailTemplate>(), Ok(*template));
        }
        assert!("spam".parse::<EmailTemplate>().is_err());
    }
}
