//! The use cases. Each service takes the ports it needs through [`Ports`] and returns
//! per-operation error enums that the HTTP layer maps to responses in one place.

pub mod account;
pub mod auth;
pub mod mail_relay;
pub mod recovery;
pub mod sessions;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::email::{EmailContent, OutgoingEmail};
use crate::ids::SessionId;
use crate::ids::{EmailId, UserId};
use crate::ports::{
    AccessClaims, AccessTokens, Clock, NewOneTimeToken, OneTimeTokenRepository, OpaqueToken, OpaqueTokens,
    PasswordHasher, RevocationList, SessionRepository, TokenKind, UserRepository,
};
use crate::services::auth::AuthSettings;
use crate::user::User;
use crate::values::{DisplayName, Username};

/// Every port the use cases use, shared by the services.
#[derive(Clone)]
pub struct Ports {
    /// User storage.
    pub users: Arc<dyn UserRepository>,
    /// Session storage.
    pub sessions: Arc<dyn SessionRepository>,
    /// One-time tokens (verification, reset…) and the emails that carry them.
    pub tokens: Arc<dyn OneTimeTokenRepository>,
    /// Password hashing.
    pub hasher: Arc<dyn PasswordHasher>,
    /// Access-token signing and verification.
    pub access_tokens: Arc<dyn AccessTokens>,
    /// Opaque-token generation and hashing.
    pub opaque_tokens: Arc<dyn OpaqueTokens>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Sessions whose access tokens must stop working before they expire.
    pub revocations: Arc<dyn RevocationList>,
}

/// Signs an access token for `user` in `session`, valid from `now` for the configured
/// lifetime, carrying the user's current roles.
fn issue_access_token(
    ports: &Ports,
    settings: &AuthSettings,
    user: &User,
    session: SessionId,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    ports.access_tokens.issue(&AccessClaims {
        user_id: user.id,
        session_id: session,
        roles: user.roles.clone(),
        issued_at: now,
        expires_at: now + settings.access_ttl,
        token_id: Uuid::now_v7(),
    })
}

/// Tells the revocation list about sessions storage has just revoked, so their access
/// tokens stop working at once. Storage stays the truth: if the list cannot be told, the
/// tokens live on until they expire (at most one access-token lifetime), which is logged
/// as an error rather than failing a change that is already committed.
async fn publish_revocations(ports: &Ports, settings: &AuthSettings, sessions: Vec<SessionId>, now: DateTime<Utc>) {
    if sessions.is_empty() {
        return;
    }
    let count = sessions.len();
    if let Err(e) = ports.revocations.revoke(sessions, now + settings.access_ttl).await {
        tracing::error!(error = %e, count, "revoked sessions could not be published; their access tokens live until they expire");
    }
}

/// The record of a fresh one-time token of `kind` for `user_id`, valid from `now` for `ttl`.
fn new_token(
    kind: TokenKind,
    user_id: UserId,
    token: &OpaqueToken,
    now: DateTime<Utc>,
    ttl: chrono::Duration,
) -> NewOneTimeToken {
    NewOneTimeToken { kind, user_id, hash: token.hash.clone(), created_at: now, expires_at: now + ttl }
}

/// The name a message greets its recipient by: the display name, else the username.
fn recipient_name(display_name: Option<&DisplayName>, username: &Username) -> String {
    display_name.map_or_else(|| username.to_string(), ToString::to_string)
}

/// A message to `user`, queued at `now`.
fn email_to(user: &User, content: EmailContent, now: DateTime<Utc>) -> OutgoingEmail {
    OutgoingEmail {
        id: EmailId::generate(),
        to: user.email.clone(),
        recipient_name: recipient_name(user.display_name.as_ref(), &user.username),
        content,
        created_at: now,
    }
}
