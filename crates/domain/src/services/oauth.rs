//! Sign-in with OAuth providers (any OpenID Connect provider, GitHub…): account creation and
//! linking, one-time login codes, and the caller's linked identities. The rules are the same for
//! every provider: a link into an existing account needs the provider to vouch for the email and
//! the account to have verified it.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::activity::{ActivityAction, NewActivity};
use crate::ids::UserId;
use crate::ports::{
    AccountCompanion, AuthorizationRequest, CreateUserError, Identity, IdentityRepository, LinkIdentityError,
    OAuthProvider, ProviderDescription, ProviderError, ProviderIdentity, TokenKind, UnlinkIdentityError, UseTokenError,
};
use crate::services::auth::{AuthSettings, TokenPair};
use crate::services::{AccountDraft, Ports, create_account, new_token, start_session};
use crate::session::RequestContext;
use crate::user::{NewUser, Role, User, UserStatus};
use crate::values::{DisplayName, Username};

/// Lifetime of the one-time code the callback redirects with.
pub const LOGIN_CODE_TTL_SECS: i64 = 60;

/// What the browser brought back to the callback, with the secrets bound to it at
/// authorization time.
#[derive(Debug)]
pub struct Callback {
    /// The authorization code.
    pub code: SecretString,
    /// The `state` parameter, already checked against the browser's binding.
    pub state: SecretString,
    /// When the state stops being accepted.
    pub state_expires_at: DateTime<Utc>,
    /// The PKCE verifier bound to the browser.
    pub pkce_verifier: SecretString,
    /// The OpenID Connect nonce bound to the browser.
    pub nonce: Option<SecretString>,
}

/// Why an OAuth sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The provider is not configured.
    #[error("unknown or unconfigured provider")]
    UnknownProvider,
    /// The state was spent before (a replayed callback).
    #[error("the state is invalid or was already used")]
    InvalidState,
    /// The provider refused the code, or its answer failed a check.
    #[error("the provider's answer was refused: {0}")]
    Rejected(String),
    /// The provider could not be reached.
    #[error("the provider is unavailable")]
    ProviderUnavailable(#[source] anyhow::Error),
    /// The provider gave no email (neither in the ID token nor at userinfo) for an identity that
    /// is not linked yet, so there is no account to find or create.
    #[error("the provider gave no email")]
    EmailMissing,
    /// The provider does not vouch for its email (`email_verified` is not `true`), so it is
    /// neither linked to an account nor used for a new one.
    #[error("the provider's email is not verified")]
    UnverifiedEmail,
    /// The configuration does not admit this identity (email domain, hosted domain, tenant).
    #[error("the identity is not allowed: {0}")]
    NotAllowed(String),
    /// An account with the provider's email exists but never proved it owns the address.
    /// Linking into it would let whoever registered it keep a way in (pre-account hijacking),
    /// so it is refused until the address is verified or the password reset by email.
    #[error("the account with this email has not verified it")]
    UnverifiedAccount,
    /// An admin locked the account. (A lockout after failed password sign-ins stops only
    /// password sign-ins.)
    #[error("the account is locked")]
    AccountLocked,
    /// The account is disabled.
    #[error("the account is disabled")]
    AccountDisabled,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<ProviderError> for OAuthError {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::Rejected(why) => Self::Rejected(why),
            ProviderError::EmailMissing => Self::EmailMissing,
            ProviderError::NotAllowed(why) => Self::NotAllowed(why),
            ProviderError::Unavailable(e) => Self::ProviderUnavailable(e),
        }
    }
}

/// OAuth sign-in and identity management.
#[derive(Clone)]
pub struct OAuthService {
    ports: Ports,
    settings: AuthSettings,
    identities: Arc<dyn IdentityRepository>,
    providers: Vec<Arc<dyn OAuthProvider>>,
}

impl OAuthService {
    /// Builds the service over the configured `providers`.
    #[must_use]
    pub fn new(
        ports: Ports,
        settings: AuthSettings,
        identities: Arc<dyn IdentityRepository>,
        providers: Vec<Arc<dyn OAuthProvider>>,
    ) -> Self {
        Self { ports, settings, identities, providers }
    }

    /// Whether `provider` is configured.
    #[must_use]
    pub fn has_provider(&self, provider: &str) -> bool {
        self.providers.iter().any(|p| p.name() == provider)
    }

    /// The configured providers, by name, for sign-in UIs.
    #[must_use]
    pub fn providers(&self) -> Vec<ProviderDescription> {
        let mut all: Vec<_> = self.providers.iter().map(|p| p.describe()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn provider(&self, name: &str) -> Result<&Arc<dyn OAuthProvider>, OAuthError> {
        self.providers.iter().find(|p| p.name() == name).ok_or(OAuthError::UnknownProvider)
    }

    /// Starts a sign-in with `provider`, carrying `state`.
    ///
    /// # Errors
    ///
    /// [`OAuthError::UnknownProvider`] when it is not configured;
    /// [`OAuthError::ProviderUnavailable`] when its endpoints cannot be discovered.
    pub async fn authorize(&self, provider: &str, state: &str) -> Result<AuthorizationRequest, OAuthError> {
        Ok(self.provider(provider)?.authorize(state).await?)
    }

    /// Completes a sign-in: spends the state (once), has the provider identify the user, and
    /// finds, links or creates the account. Returns the account to sign in.
    ///
    /// A known identity signs in to its account. Otherwise an account with the same email is
    /// linked only when the provider vouches for the email; with no such account a new,
    /// verified, password-less account is created.
    ///
    /// # Errors
    ///
    /// See [`OAuthError`]; disabled, locked and deleted accounts cannot sign in.
    #[tracing::instrument(skip(self, callback, context), fields(user_id))]
    pub async fn callback(
        &self,
        provider: &str,
        callback: Callback,
        context: &RequestContext,
    ) -> Result<User, OAuthError> {
        let provider = self.provider(provider)?;
        let state_hash = self.ports.opaque_tokens.hash(callback.state.expose_secret());
        if !self.identities.spend_state(&state_hash, callback.state_expires_at).await? {
            return Err(OAuthError::InvalidState);
        }
        let identity = provider.identify(callback.code, callback.pkce_verifier, callback.nonce).await?;
        let user = self.account_for(identity, context).await?;
        tracing::Span::current().record("user_id", tracing::field::display(user.id));
        may_sign_in(&user, self.ports.clock.now())?;
        Ok(user)
    }

    async fn account_for(&self, identity: ProviderIdentity, context: &RequestContext) -> Result<User, OAuthError> {
        if let Some(linked) = self.identities.find(&identity.provider, &identity.provider_user_id).await? {
            return self
                .ports
                .users
                .find_by_id(linked.user_id)
                .await?
                .ok_or_else(|| OAuthError::Rejected("the linked account no longer exists".to_owned()));
        }
        let Some(email) = identity.email.clone() else {
            return Err(OAuthError::EmailMissing);
        };
        let now = self.ports.clock.now();
        if let Some(existing) = self.ports.users.find_credentials_by_email(&email).await? {
            if !identity.email_verified {
                return Err(OAuthError::UnverifiedEmail);
            }
            if !existing.user.email_verified() {
                return Err(OAuthError::UnverifiedAccount);
            }
            self.link(existing.user.id, &identity, context, now).await?;
            return Ok(existing.user);
        }
        if !identity.email_verified {
            return Err(OAuthError::UnverifiedEmail);
        }
        let chosen = identity.login.as_deref().and_then(|login| Username::parse(login).ok());
        let display_name = identity.name.as_deref().and_then(|name| DisplayName::parse(name).ok());
        let mut draft = AccountDraft {
            email,
            username: chosen,
            display_name,
            password_hash: None,
            roles: vec![Role::User],
            email_verified_at: Some(now),
        };
        let event = |id| {
            NewActivity::by_user(id, ActivityAction::UserRegistered, context, now)
                .with_detail("provider", &identity.provider)
        };
        // The account and the identity it signs in with are written in one transaction.
        let companion = |user: &NewUser| {
            let (linked, event) = linked_identity(user.id, &identity, context, now);
            AccountCompanion::Identity(linked, event)
        };
        match create_account(&self.ports, draft.clone(), now, event, companion).await {
            Err(CreateUserError::UsernameTaken) if draft.username.is_some() => {
                draft.username = None;
                create_account(&self.ports, draft, now, event, companion).await
            }
            outcome => outcome,
        }
        .map_err(|e| match e {
            CreateUserError::EmailTaken => OAuthError::Rejected("the email was registered meanwhile".to_owned()),
            CreateUserError::IdentityTaken => OAuthError::Rejected("the identity was linked meanwhile".to_owned()),
            CreateUserError::UsernameTaken => OAuthError::Unexpected(anyhow::anyhow!("no free username")),
            CreateUserError::Unexpected(e) => OAuthError::Unexpected(e),
        })
    }

    async fn link(
        &self,
        user_id: UserId,
        identity: &ProviderIdentity,
        context: &RequestContext,
        now: DateTime<Utc>,
    ) -> Result<(), OAuthError> {
        let (linked, event) = linked_identity(user_id, identity, context, now);
        self.identities.link(linked, event).await.map_err(|e| match e {
            LinkIdentityError::AlreadyLinked => {
                OAuthError::Rejected("the account already has another identity of this provider".to_owned())
            }
            LinkIdentityError::Unexpected(e) => OAuthError::Unexpected(e),
        })
    }

    /// Starts a session for `user` (signed in through a provider) and returns its tokens.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    pub async fn sign_in(&self, user: &User, context: RequestContext) -> anyhow::Result<TokenPair> {
        start_session(&self.ports, &self.settings, user, context, "oauth").await
    }

    /// A one-time code (valid [`LOGIN_CODE_TTL_SECS`], stored hashed) that
    /// [`OAuthService::exchange`] trades for a session of `user`.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    pub async fn issue_login_code(&self, user: &User) -> anyhow::Result<SecretString> {
        let now = self.ports.clock.now();
        let code = self.ports.opaque_tokens.generate();
        let token = new_token(TokenKind::OAuthLoginCode, user.id, &code, now, Duration::seconds(LOGIN_CODE_TTL_SECS));
        self.identities.issue_login_code(token).await?;
        Ok(code.secret)
    }

    /// Trades a one-time login code for a session.
    ///
    /// # Errors
    ///
    /// [`OAuthError::InvalidState`] for an unknown, expired or spent code (or a user gone
    /// since); locked and disabled accounts as in [`OAuthService::callback`].
    pub async fn exchange(&self, code: &SecretString, context: RequestContext) -> Result<TokenPair, OAuthError> {
        let now = self.ports.clock.now();
        let hash = self.ports.opaque_tokens.hash(code.expose_secret());
        let user_id = self.identities.spend_login_code(&hash, now).await.map_err(|e| match e {
            UseTokenError::Invalid => OAuthError::InvalidState,
            UseTokenError::Unexpected(e) => OAuthError::Unexpected(e),
        })?;
        let user = self.ports.users.find_by_id(user_id).await?.ok_or(OAuthError::InvalidState)?;
        may_sign_in(&user, now)?;
        Ok(self.sign_in(&user, context).await?)
    }

    /// The identities linked to `user_id`.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    pub async fn identities(&self, user_id: UserId) -> anyhow::Result<Vec<Identity>> {
        self.identities.list(user_id).await
    }

    /// Unlinks the identity of `provider` from `user_id`, unless it is the last way to sign in.
    ///
    /// # Errors
    ///
    /// See [`UnlinkIdentityError`].
    pub async fn unlink(
        &self,
        user_id: UserId,
        provider: &str,
        context: &RequestContext,
    ) -> Result<(), UnlinkIdentityError> {
        let now = self.ports.clock.now();
        let event = NewActivity::by_user(user_id, ActivityAction::OAuthUnlinked, context, now)
            .with_detail("provider", provider);
        self.identities.unlink(user_id, provider, event).await
    }
}

/// Whether `user` may sign in through a provider at `now`: not disabled, not locked by an
/// admin. A lockout after failed password sign-ins does not stop it: the provider proved who
/// signs in, and the lockout exists to stop password guessing, not to lock the owner out.
fn may_sign_in(user: &User, now: DateTime<Utc>) -> Result<(), OAuthError> {
    match user.status_at(now) {
        UserStatus::Disabled => Err(OAuthError::AccountDisabled),
        UserStatus::Locked if user.locked_until.is_none() => Err(OAuthError::AccountLocked),
        UserStatus::Locked | UserStatus::Active => Ok(()),
    }
}

/// The identity `identity` becomes once linked to `user_id`, and the event recording the link.
fn linked_identity(
    user_id: UserId,
    identity: &ProviderIdentity,
    context: &RequestContext,
    now: DateTime<Utc>,
) -> (Identity, NewActivity) {
    let event = NewActivity::by_user(user_id, ActivityAction::OAuthLinked, context, now)
        .with_detail("provider", &identity.provider);
    let linked = Identity {
        provider: identity.provider.clone(),
        provider_user_id: identity.provider_user_id.clone(),
        user_id,
        email: identity.email.clone(),
        linked_at: now,
    };
    (linked, event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{
        MockIdentityRepository, MockOAuthProvider, MockSessionRepository, MockUserRepository, TokenHash,
    };
    use crate::services::testing::{Mocks, now, ports_with_mocks, sample_user, settings};
    use crate::user::Credentials;
    use crate::values::Email;

    fn identity(verified: bool) -> ProviderIdentity {
        ProviderIdentity {
            provider: "github".to_owned(),
            provider_user_id: "42".to_owned(),
            email: Some(Email::parse("ada@example.com").expect("valid")),
            email_verified: verified,
            login: Some("ada-gh".to_owned()),
            name: Some("Ada".to_owned()),
            picture: None,
        }
    }

    fn callback() -> Callback {
        Callback {
            code: SecretString::from("code"),
            state: SecretString::from("state"),
            state_expires_at: now() + Duration::minutes(10),
            pkce_verifier: SecretString::from("verifier"),
            nonce: None,
        }
    }

    fn service(users: MockUserRepository, identities: MockIdentityRepository, verified: bool) -> OAuthService {
        let mut mocks = Mocks::default();
        mocks.opaque_tokens.expect_hash().returning(|s| TokenHash::new(format!("hash-{s}")));
        let mut provider = MockOAuthProvider::new();
        provider.expect_name().returning(|| "github".to_owned());
        provider.expect_identify().returning(move |_, _, _| Ok(identity(verified)));
        OAuthService::new(
            ports_with_mocks(users, MockSessionRepository::new(), mocks),
            settings(),
            Arc::new(identities),
            vec![Arc::new(provider)],
        )
    }

    fn unlinked_identities() -> MockIdentityRepository {
        let mut identities = MockIdentityRepository::new();
        identities.expect_spend_state().times(1).returning(|_, _| Ok(true));
        identities.expect_find().returning(|_, _| Ok(None));
        identities
    }

    #[tokio::test]
    async fn an_unverified_email_matching_an_account_links_nothing() {
        let mut users = MockUserRepository::new();
        users
            .expect_find_credentials_by_email()
            .returning(|_| Ok(Some(Credentials { user: sample_user(), password_hash: None })));
        let identities = unlinked_identities();
        let outcome =
            service(users, identities, false).callback("github", callback(), &RequestContext::default()).await;
        assert!(matches!(outcome, Err(OAuthError::UnverifiedEmail)), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_verified_email_matching_an_account_links_to_it() {
        let mut users = MockUserRepository::new();
        let user = sample_user();
        let id = user.id;
        users
            .expect_find_credentials_by_email()
            .returning(move |_| Ok(Some(Credentials { user: user.clone(), password_hash: None })));
        let mut identities = unlinked_identities();
        identities
            .expect_link()
            .withf(move |identity, event| {
                identity.user_id == id && identity.provider == "github" && event.action == ActivityAction::OAuthLinked
            })
            .times(1)
            .returning(|_, _| Ok(()));
        let user = service(users, identities, true)
            .callback("github", callback(), &RequestContext::default())
            .await
            .expect("signed in");
        assert_eq!(user.id, id);
    }

    #[tokio::test]
    async fn a_sign_up_that_loses_the_race_for_its_identity_is_refused() {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials_by_email().returning(|_| Ok(None));
        users.expect_create().times(1).returning(|_, _, _| Err(CreateUserError::IdentityTaken));
        let outcome = service(users, unlinked_identities(), true)
            .callback("github", callback(), &RequestContext::default())
            .await;
        assert!(matches!(outcome, Err(OAuthError::Rejected(_))), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_replayed_state_is_refused_before_asking_the_provider() {
        let mut identities = MockIdentityRepository::new();
        identities.expect_spend_state().times(1).returning(|_, _| Ok(false));
        let outcome = service(MockUserRepository::new(), identities, true)
            .callback("github", callback(), &RequestContext::default())
            .await;
        assert!(matches!(outcome, Err(OAuthError::InvalidState)), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_new_verified_identity_creates_a_verified_account_without_password() {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials_by_email().returning(|_| Ok(None));
        users
            .expect_create()
            .withf(|u, _, companion| {
                u.password_hash.is_none()
                    && u.email_verified_at == Some(now())
                    && u.username.as_ref() == "ada-gh"
                    && matches!(companion, AccountCompanion::Identity(identity, event)
                        if identity.user_id == u.id
                            && identity.provider == "github"
                            && event.action == ActivityAction::OAuthLinked
                            && event.user_id == u.id)
            })
            .times(1)
            .returning(|u, _, _| {
                Ok(User {
                    id: u.id,
                    email: u.email,
                    username: u.username,
                    email_verified_at: u.email_verified_at,
                    ..sample_user()
                })
            });
        let mut identities = unlinked_identities();
        identities.expect_link().never();
        let user = service(users, identities, true)
            .callback("github", callback(), &RequestContext::default())
            .await
            .expect("signed in");
        assert!(user.email_verified());
    }

    #[tokio::test]
    async fn a_disabled_account_cannot_sign_in_through_a_provider() {
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().returning(|_| Ok(Some(User { status: UserStatus::Disabled, ..sample_user() })));
        let mut identities = MockIdentityRepository::new();
        identities.expect_spend_state().returning(|_, _| Ok(true));
        identities.expect_find().returning(|_, _| {
            Ok(Some(Identity {
                provider: "github".to_owned(),
                provider_user_id: "42".to_owned(),
                user_id: UserId::generate(),
                email: None,
                linked_at: now(),
            }))
        });
        let outcome = service(users, identities, true).callback("github", callback(), &RequestContext::default()).await;
        assert!(matches!(outcome, Err(OAuthError::AccountDisabled)), "{outcome:?}");
    }

    fn linked_to(user: &User) -> MockIdentityRepository {
        let user_id = user.id;
        let mut identities = MockIdentityRepository::new();
        identities.expect_spend_state().returning(|_, _| Ok(true));
        identities.expect_find().returning(move |_, _| {
            Ok(Some(Identity {
                provider: "github".to_owned(),
                provider_user_id: "42".to_owned(),
                user_id,
                email: None,
                linked_at: now(),
            }))
        });
        identities
    }

    #[tokio::test]
    async fn a_verified_identity_is_not_linked_into_an_account_that_never_verified_its_email() {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials_by_email().returning(|_| {
            Ok(Some(Credentials {
                user: User { email_verified_at: None, ..sample_user() },
                password_hash: Some(crate::ports::PasswordHash::new("$argon2id$stranger".to_owned())),
            }))
        });
        let mut identities = unlinked_identities();
        identities.expect_link().never();
        let outcome = service(users, identities, true).callback("github", callback(), &RequestContext::default()).await;
        assert!(matches!(outcome, Err(OAuthError::UnverifiedAccount)), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_lockout_after_failed_passwords_does_not_stop_a_provider_sign_in() {
        let locked =
            User { status: UserStatus::Locked, locked_until: Some(now() + Duration::minutes(15)), ..sample_user() };
        let mut users = MockUserRepository::new();
        let found = locked.clone();
        users.expect_find_by_id().returning(move |_| Ok(Some(found.clone())));
        let user = service(users, linked_to(&locked), true)
            .callback("github", callback(), &RequestContext::default())
            .await
            .expect("the provider proved who signs in");
        assert_eq!(user.id, locked.id);
    }

    #[tokio::test]
    async fn an_admin_lock_stops_a_provider_sign_in() {
        let locked = User { status: UserStatus::Locked, locked_until: None, ..sample_user() };
        let mut users = MockUserRepository::new();
        let found = locked.clone();
        users.expect_find_by_id().returning(move |_| Ok(Some(found.clone())));
        let outcome =
            service(users, linked_to(&locked), true).callback("github", callback(), &RequestContext::default()).await;
        assert!(matches!(outcome, Err(OAuthError::AccountLocked)), "{outcome:?}");
    }

    #[tokio::test]
    async fn an_unconfigured_provider_is_unknown() {
        let outcome =
            service(MockUserRepository::new(), MockIdentityRepository::new(), true).authorize("google", "s").await;
        assert!(matches!(outcome, Err(OAuthError::UnknownProvider)));
    }

    #[tokio::test]
    async fn a_new_identity_without_an_email_is_email_missing_not_a_conflict() {
        let mut provider = MockOAuthProvider::new();
        provider.expect_name().returning(|| "keycloak".to_owned());
        provider
            .expect_identify()
            .returning(|_, _, _| Ok(ProviderIdentity { email: None, email_verified: false, ..identity(false) }));
        let mut users = MockUserRepository::new();
        users.expect_find_credentials_by_email().never();
        users.expect_create().never();
        let mut identities = unlinked_identities();
        identities.expect_link().never();
        let mut mocks = Mocks::default();
        mocks.opaque_tokens.expect_hash().returning(|s| TokenHash::new(format!("hash-{s}")));
        let service = OAuthService::new(
            ports_with_mocks(users, MockSessionRepository::new(), mocks),
            settings(),
            Arc::new(identities),
            vec![Arc::new(provider)],
        );
        let outcome = service.callback("keycloak", callback(), &RequestContext::default()).await;
        assert!(matches!(outcome, Err(OAuthError::EmailMissing)), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_new_unverified_email_creates_no_account() {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials_by_email().returning(|_| Ok(None));
        users.expect_create().never();
        let outcome = service(users, unlinked_identities(), false)
            .callback("github", callback(), &RequestContext::default())
            .await;
        assert!(matches!(outcome, Err(OAuthError::UnverifiedEmail)), "{outcome:?}");
    }
}
