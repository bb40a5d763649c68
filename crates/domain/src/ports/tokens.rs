//! Access tokens (signed, self-contained) and opaque tokens (random, stored as hashes).

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use crate::ids::{SessionId, UserId};
use crate::user::Role;

/// What an access token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// `sub`: the user.
    pub user_id: UserId,
    /// `sid`: the session the token belongs to.
    pub session_id: SessionId,
    /// `roles` at the time of issue.
    pub roles: Vec<Role>,
    /// `iat`.
    pub issued_at: DateTime<Utc>,
    /// `exp`.
    pub expires_at: DateTime<Utc>,
    /// `jti`: unique per token.
    pub token_id: Uuid,
}

/// An access token failed verification. Deliberately carries no reason: every failure
/// looks the same to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the access token is invalid or expired")]
pub struct InvalidAccessToken;

/// Issues and verifies access tokens.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait AccessTokens: Send + Sync {
    /// Signs `claims` into a compact token.
    ///
    /// # Errors
    ///
    /// Returns an error only when signing itself fails (a broken key).
    fn issue(&self, claims: &AccessClaims) -> anyhow::Result<String>;

    /// Verifies a token's signature, algorithm and expiry, and returns its claims.
    ///
    /// # Errors
    ///
    /// MUST return [`InvalidAccessToken`] for a bad signature, an algorithm other than the
    /// configured ones (including `none`), an expired token, or malformed claims.
    fn verify(&self, token: &str) -> Result<AccessClaims, InvalidAccessToken>;
}

/// The one-way hash of an opaque token (refresh, verification, reset…), as stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    /// Wraps a hash computed by [`OpaqueTokens`] or read from storage.
    #[must_use]
    pub fn new(hash: String) -> Self {
        Self(hash)
    }

    /// The hash, for storage and lookups.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A freshly generated opaque token: the secret goes to the client, the hash to storage.
#[derive(Debug)]
pub struct OpaqueToken {
    /// The token itself; shown to its owner once, never stored.
    pub secret: SecretString,
    /// What storage keeps.
    pub hash: TokenHash,
}

/// Generates random opaque tokens and hashes presented ones.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait OpaqueTokens: Send + Sync {
    /// A new token with at least 256 bits from a cryptographically secure generator.
    fn generate(&self) -> OpaqueToken;

    /// The hash of a token a client presented, comparable with [`OpaqueToken::hash`].
    fn hash(&self, presented: &str) -> TokenHash;
}

/// Derives the refresh token that succeeds a presented one when it is spent.
///
/// A successor is a keyed function of its predecessor, so presenting a just-spent token again
/// within `auth.refresh_reuse_grace_secs` gives back the very successor issued the first time,
/// on any instance sharing the key, with nothing but its hash ever stored. Without the key it
/// is as unpredictable as a random token.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait RefreshSuccessors: Send + Sync {
    /// The successor of `presented`: always the same token for the same `presented` and key,
    /// 256 bits, with its hash as [`OpaqueTokens::hash`] computes it.
    fn successor_of(&self, presented: &str) -> OpaqueToken;
}
