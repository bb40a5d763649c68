//! The use cases. Each service takes the ports it needs through [`Ports`] and returns
//! per-operation error enums that the HTTP layer maps to responses in one place.

pub mod account;
pub mod auth;
pub mod avatars;
pub mod sessions;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::avatar::Avatar;
use crate::ids::SessionId;
use crate::ports::{
    AccessClaims, AccessTokens, AvatarProcessor, AvatarStore, Clock, OpaqueTokens, PasswordHasher, RevocationList,
    SessionRepository, UserRepository,
};
use crate::services::auth::AuthSettings;
use crate::user::User;

/// Every port the use cases use, shared by the services.
#[derive(Clone)]
pub struct Ports {
    /// User storage.
    pub users: Arc<dyn UserRepository>,
    /// Session storage.
    pub sessions: Arc<dyn SessionRepository>,
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
    /// Validation and re-encoding of uploaded images.
    pub avatar_processor: Arc<dyn AvatarProcessor>,
    /// Where avatar images are kept.
    pub avatar_store: Arc<dyn AvatarStore>,
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

/// Removes the bytes of an avatar no user points at any more. Storage of the reference is the
/// truth and is already committed; a file that cannot be removed is only wasted space, so it
/// is logged (with its name, for a manual clean-up) rather than failing the request.
async fn discard_avatar(ports: &Ports, avatar: &Avatar) {
    if let Err(e) = ports.avatar_store.delete(avatar).await {
        tracing::error!(error = %e, file = %avatar.file_name(), "an unused avatar could not be removed");
    }
}
