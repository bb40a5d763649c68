//! Sign-in through OAuth providers: the providers themselves and the identities they vouch
//! for, linked to accounts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::activity::NewActivity;
use crate::ids::UserId;
use crate::ports::{NewOneTimeToken, TokenHash, UseTokenError};
use crate::values::Email;

/// Where to send the browser to start a sign-in, and the secrets the callback needs. The
/// caller binds the secrets to the browser (they must come back with the callback, and only
/// with the callback of this sign-in).
#[derive(Debug)]
pub struct AuthorizationRequest {
    /// The provider's authorization URL with client id, redirect URI, scopes, `state`, the
    /// PKCE S256 challenge and, for OpenID Connect, the `nonce`.
    pub url: String,
    /// The PKCE verifier whose S256 challenge is in `url`.
    pub pkce_verifier: SecretString,
    /// The OpenID Connect nonce in `url`, if the provider uses one.
    pub nonce: Option<SecretString>,
}

/// Who the provider says signed in, after every check the provider needs (signature,
/// audience, issuer, expiry and nonce of an id token; primary verified email…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderIdentity {
    /// The provider's configured name (`google`, `github`, `keycloak`…).
    pub provider: String,
    /// The provider's stable id of the account.
    pub provider_user_id: String,
    /// The account's email as the provider knows it.
    pub email: Option<Email>,
    /// Whether the provider vouches that the account owns `email`.
    pub email_verified: bool,
    /// A login or name to derive a username from.
    pub login: Option<String>,
    /// The person's name, for the display name of a new account.
    pub name: Option<String>,
    /// The URL of the person's picture at the provider (informational; never fetched).
    pub picture: Option<String>,
}

/// What a sign-in UI needs to show a provider's button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderDescription {
    /// The configured name, as in `/auth/oauth/{name}/authorize`.
    pub name: String,
    /// The label for people (`Google`, `Company SSO`).
    pub display_name: String,
    /// The kind of protocol (`oidc`, `github`).
    pub kind: String,
}

/// Why a provider could not identify the user.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the code, or its answer failed a check (a bad id token…).
    #[error("the provider's answer was refused: {0}")]
    Rejected(String),
    /// The provider gave no email, neither in the ID token nor at userinfo, and one is needed
    /// (to check `allowed_domains`).
    #[error("the provider gave no email")]
    EmailMissing,
    /// The identity is valid but the configuration does not admit it (an email domain, a Google
    /// `hd` or an Entra ID tenant outside the allowed ones).
    #[error("the provider's identity is not allowed here: {0}")]
    NotAllowed(String),
    /// The provider could not be reached, timed out or answered garbage.
    #[error("the provider is unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// One OAuth 2.0 / OpenID Connect provider, as configured under a name. Another kind of
/// provider is one more implementation.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait OAuthProvider: Send + Sync {
    /// The provider's stable, configured name, as in URLs and storage (`google`, `github`).
    fn name(&self) -> String;

    /// The name, label and kind shown to sign-in UIs.
    fn describe(&self) -> ProviderDescription;

    /// A fresh authorization request carrying `state`, with a new PKCE verifier (S256) and,
    /// for OpenID Connect, a new nonce.
    ///
    /// # Errors
    ///
    /// MUST return [`ProviderError::Unavailable`] when the provider's endpoints must be
    /// discovered first and discovery fails (unreachable, slow, not a discovery document).
    async fn authorize(&self, state: &str) -> Result<AuthorizationRequest, ProviderError>;

    /// Exchanges `code` (with the PKCE `verifier`) and returns the verified identity. For
    /// OpenID Connect, the id token MUST be checked against the provider's keys, issuer,
    /// audience (the client id, and `azp` with several audiences), expiry and `nonce`, and
    /// claims from userinfo MUST belong to the same `sub`.
    ///
    /// # Errors
    ///
    /// MUST return [`ProviderError::Rejected`] when the provider refuses the code or a check
    /// fails, [`ProviderError::NotAllowed`] when the identity is outside the configured
    /// domains or tenants, [`ProviderError::EmailMissing`] when that check needs an email the
    /// provider did not give, and [`ProviderError::Unavailable`] when it cannot be reached or
    /// times out.
    async fn identify(
        &self,
        code: SecretString,
        verifier: SecretString,
        nonce: Option<SecretString>,
    ) -> Result<ProviderIdentity, ProviderError>;
}

/// An identity linked to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The provider's name.
    pub provider: String,
    /// The provider's id of the account.
    pub provider_user_id: String,
    /// The account it signs in to.
    pub user_id: UserId,
    /// The email the provider gave when it was linked.
    pub email: Option<Email>,
    /// When it was linked.
    pub linked_at: DateTime<Utc>,
}

/// Why an identity could not be linked.
#[derive(Debug, thiserror::Error)]
pub enum LinkIdentityError {
    /// The provider account is linked already (to this or another user), or the user already
    /// has an identity of this provider.
    #[error("the identity is already linked")]
    AlreadyLinked,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Why an identity could not be unlinked.
#[derive(Debug, thiserror::Error)]
pub enum UnlinkIdentityError {
    /// The user has no identity of this provider.
    #[error("no such identity")]
    NotFound,
    /// It is the user's last way to sign in: no password and no other identity.
    #[error("the last way to sign in cannot be removed")]
    LastSignInMethod,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Stores linked identities, the one-time login codes of OAuth sign-ins and the spent
/// authorization states.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait IdentityRepository: Send + Sync {
    /// The identity of `provider` with the provider's id `provider_user_id`.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown identity is `Ok(None)`.
    async fn find(&self, provider: &str, provider_user_id: &str) -> anyhow::Result<Option<Identity>>;

    /// The identities of `user_id`, oldest first.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn list(&self, user_id: UserId) -> anyhow::Result<Vec<Identity>>;

    /// Links `identity` and records `event`, in one transaction.
    ///
    /// # Errors
    ///
    /// MUST return [`LinkIdentityError::AlreadyLinked`], writing nothing, when
    /// (`provider`, `provider_user_id`) or (`user_id`, `provider`) exists already, also when
    /// two links race.
    async fn link(&self, identity: Identity, event: NewActivity) -> Result<(), LinkIdentityError>;

    /// Removes the identity of `provider` from `user_id` and records `event`, in one
    /// transaction.
    ///
    /// # Errors
    ///
    /// [`UnlinkIdentityError::NotFound`] when there is none; MUST return
    /// [`UnlinkIdentityError::LastSignInMethod`], writing nothing, when the user has no
    /// password and no other identity (checked inside the transaction).
    async fn unlink(&self, user_id: UserId, provider: &str, event: NewActivity) -> Result<(), UnlinkIdentityError>;

    /// Marks the authorization state with hash `state` as spent until `expires_at`; `false`
    /// when it was spent before (a replayed callback).
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn spend_state(&self, state: &TokenHash, expires_at: DateTime<Utc>) -> anyhow::Result<bool>;

    /// Stores a one-time login code (only its hash).
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn issue_login_code(&self, code: NewOneTimeToken) -> anyhow::Result<()>;

    /// Spends the login code with hash `code` and returns whose it was.
    ///
    /// # Errors
    ///
    /// MUST return [`UseTokenError::Invalid`] unless it is an unused
    /// [`crate::ports::TokenKind::OAuthLoginCode`] with `expires_at > at`; of two racing calls,
    /// exactly one succeeds.
    async fn spend_login_code(&self, code: &TokenHash, at: DateTime<Utc>) -> Result<UserId, UseTokenError>;
}
