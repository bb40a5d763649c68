//! The use cases. Each service takes the ports it needs through [`Ports`] and returns
//! per-operation error enums that the HTTP layer maps to responses in one place.

pub mod account;
pub mod activity;
pub mod admin;
pub mod auth;
pub mod avatars;
pub mod mail_relay;
pub mod oauth;
pub mod recovery;
pub mod sessions;
#[cfg(test)]
pub(crate) mod testing;
pub mod webhooks;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::activity::NewActivity;
use crate::avatar::Avatar;
use crate::email::{EmailContent, OutgoingEmail};
use crate::ids::{EmailId, SessionId, UserId};
use crate::ports::{
    AccessClaims, AccessTokens, AccountCompanion, ActivityLog, AvatarProcessor, AvatarStore, Clock, CreateUserError,
    NewOneTimeToken, OneTimeTokenRepository, OpaqueToken, OpaqueTokens, PasswordHash, PasswordHasher,
    RefreshSuccessors, RevocationList, SessionRepository, TokenKind, UserDirectory, UserRepository,
};
use crate::services::auth::AuthSettings;
use crate::session::RequestContext;
use crate::user::{NewUser, Role, User};
use crate::values::{DisplayName, Email, Username};

/// How many usernames derived from an email are tried before giving up; after the first,
/// each carries a random suffix, so running out means storage is misbehaving.
const DERIVED_USERNAME_ATTEMPTS: u32 = 5;

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
    /// The successors of spent refresh tokens.
    pub refresh_successors: Arc<dyn RefreshSuccessors>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Sessions whose access tokens must stop working before they expire.
    pub revocations: Arc<dyn RevocationList>,
    /// User storage as administrators use it.
    pub directory: Arc<dyn UserDirectory>,
    /// The audit trail.
    pub activity: Arc<dyn ActivityLog>,
    /// Validation and re-encoding of uploaded images.
    pub avatar_processor: Arc<dyn AvatarProcessor>,
    /// Where avatar images are kept.
    pub avatar_store: Arc<dyn AvatarStore>,
    /// Users and live sessions kept in this process for authenticated reads; the storage
    /// ports above must be wrapped in [`crate::read_cache::Invalidating`] with it.
    pub cache: Arc<crate::read_cache::ReadCache>,
}

/// An account about to be created, whatever the path (sign-up, admin, bootstrap).
#[derive(Debug, Clone)]
pub(crate) struct AccountDraft {
    pub email: Email,
    /// Derived from the email (made unique with a random suffix) when `None`.
    pub username: Option<Username>,
    pub display_name: Option<DisplayName>,
    pub password_hash: Option<PasswordHash>,
    pub roles: Vec<Role>,
    pub email_verified_at: Option<DateTime<Utc>>,
}

/// Inserts an account, recording `event(id)` with it and writing `companion(user)` (a
/// verification token and its email, or a linked identity), all in one transaction. A chosen
/// username that is taken is an error; a derived one is retried with a random suffix.
async fn create_account(
    ports: &Ports,
    draft: AccountDraft,
    now: DateTime<Utc>,
    event: impl Fn(UserId) -> NewActivity,
    companion: impl Fn(&NewUser) -> AccountCompanion,
) -> Result<User, CreateUserError> {
    let id = UserId::generate();
    for attempt in 0..DERIVED_USERNAME_ATTEMPTS {
        let username = match &draft.username {
            Some(chosen) => chosen.clone(),
            None if attempt == 0 => Username::derive_from(&draft.email, None),
            None => Username::derive_from(&draft.email, Some(&random_suffix())),
        };
        let new_user = NewUser {
            id,
            email: draft.email.clone(),
            username,
            display_name: draft.display_name.clone(),
            password_hash: draft.password_hash.clone(),
            roles: draft.roles.clone(),
            email_verified_at: draft.email_verified_at,
            created_at: now,
        };
        let companion = companion(&new_user);
        match ports.users.create(new_user, event(id), companion).await {
            Err(CreateUserError::UsernameTaken) if draft.username.is_none() => {}
            outcome => return outcome,
        }
    }
    Err(anyhow::anyhow!("no free username derived from the email after {DERIVED_USERNAME_ATTEMPTS} attempts").into())
}

/// Four random digits to make a derived username unique. The random bits of a fresh
/// UUIDv7 suffice: this is about avoiding collisions, not secrecy.
fn random_suffix() -> String {
    let random_bits = Uuid::now_v7().as_u128() & u128::from(u64::MAX);
    format!("{:04}", random_bits % 10_000)
}

/// Starts a session for `user` who just proved who they are (`method`: `password`,
/// `oauth`), recording `auth.login_succeeded` with it, and returns its first token pair.
async fn start_session(
    ports: &Ports,
    settings: &AuthSettings,
    user: &User,
    context: RequestContext,
    method: &str,
) -> anyhow::Result<crate::services::auth::TokenPair> {
    let now = ports.clock.now();
    let refresh = ports.opaque_tokens.generate();
    let session_id = SessionId::generate();
    let event = NewActivity::by_user(user.id, crate::activity::ActivityAction::LoginSucceeded, &context, now)
        .with_detail("session_id", session_id)
        .with_detail("method", method);
    let new_session = crate::session::NewSession {
        id: session_id,
        user_id: user.id,
        refresh_token_hash: refresh.hash,
        context,
        created_at: now,
        expires_at: now + settings.refresh_ttl,
    };
    let session = ports.sessions.start(new_session, event).await?;
    let access_token = issue_access_token(ports, settings, user, session.id, now)?;
    Ok(crate::services::auth::TokenPair {
        access_token,
        expires_in: settings.access_ttl.num_seconds(),
        refresh_token: refresh.secret,
        refresh_expires_in: settings.refresh_ttl.num_seconds(),
        session_id: session.id,
        user_id: user.id,
    })
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
    // This instance forgets them at once even if the storage ports are not wrapped.
    ports.cache.apply(&crate::ports::Change::Sessions(sessions.clone()));
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

/// Removes the bytes of a deleted user's avatar, at once: a deleted user can no longer be
/// pointed at an image, so no request can be about to reference it (images a user replaces go
/// through the grace period instead, see `avatars`). Storage of the reference is the truth and
/// is already committed; a file that cannot be removed is only wasted space until the next
/// sweep, so it is logged rather than failing the request.
async fn discard_avatar(ports: &Ports, avatar: &Avatar) {
    if let Err(e) = ports.avatar_store.delete(avatar).await {
        tracing::error!(error = %e, file = %avatar.file_name(), "an unused avatar could not be removed");
    }
}
