//! One-time tokens: email verification, password reset, and later OAuth login codes and
//! unlock links. Random, stored only as hashes, single use, expiring.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::activity::NewActivity;
use crate::email::OutgoingEmail;
use crate::ids::UserId;
use crate::ports::TokenHash;

/// What a one-time token is for. A token only ever works for its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Proves the user reads the mailbox of their email address.
    EmailVerification,
    /// Lets the user choose a new password.
    PasswordReset,
    /// Trades an OAuth sign-in for a token pair (`/auth/oauth/exchange`).
    OAuthLoginCode,
    /// Ends an account lock (`/auth/unlock`).
    AccountUnlock,
}

impl TokenKind {
    /// Every kind.
    pub const ALL: &[TokenKind] =
        &[Self::EmailVerification, Self::PasswordReset, Self::OAuthLoginCode, Self::AccountUnlock];

    /// The stable name used in storage.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EmailVerification => "email_verification",
            Self::PasswordReset => "password_reset",
            Self::OAuthLoginCode => "oauth_login_code",
            Self::AccountUnlock => "account_unlock",
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not a known token kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown token kind {0:?}")]
pub struct UnknownTokenKind(pub String);

impl FromStr for TokenKind {
    type Err = UnknownTokenKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s).ok_or_else(|| UnknownTokenKind(s.to_owned()))
    }
}

/// A token to store. Only its hash; the secret goes to the user (in an email) and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOneTimeToken {
    /// What it is for.
    pub kind: TokenKind,
    /// Whose it is.
    pub user_id: UserId,
    /// The hash of the secret ([`crate::ports::OpaqueTokens::hash`]).
    pub hash: TokenHash,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// A stored token that has not been used and has not expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeToken {
    /// What it is for.
    pub kind: TokenKind,
    /// Whose it is.
    pub user_id: UserId,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// A token together with the email that delivers it, written in one transaction: a token
/// nobody was told about, or an email whose token was never stored, cannot happen.
#[derive(Debug, Clone)]
pub struct TokenMail {
    /// The token to store.
    pub token: NewOneTimeToken,
    /// The email carrying its secret.
    pub email: OutgoingEmail,
}

/// Why a one-time token could not be spent.
#[derive(Debug, thiserror::Error)]
pub enum UseTokenError {
    /// No unused, unexpired token of this kind with this hash belongs to the user (or the user
    /// is gone). Also what the loser of two racing uses gets.
    #[error("the token is invalid, expired or already used")]
    Invalid,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Stores one-time tokens. Spending one happens together with its effect, in the
/// repository that owns the effect (for example [`crate::ports::UserRepository::verify_email`]).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait OneTimeTokenRepository: Send + Sync {
    /// Stores `mail.token`, deletes every other unused token of the same kind and user (a newer
    /// token invalidates older ones), queues `mail.email` in the outbox and records `event`,
    /// in one transaction.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures (including a user id that does not exist); nothing is
    /// written then.
    async fn issue(&self, mail: TokenMail, event: Option<NewActivity>) -> anyhow::Result<()>;

    /// The token of `kind` with this hash, if it is unused and `expires_at > now`.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown, used or expired token is `Ok(None)`.
    async fn find_live(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<OneTimeToken>>;
}
