//! Proving an email address and recovering a forgotten password, with one-time tokens sent
//! by email.
//!
//! Requests that name an email (`resend_verification`, `forgot_password`) never reveal
//! whether an account exists: they return nothing, and they do the same work either way up
//! to the final write (a token is generated and hashed also for unknown addresses). The HTTP
//! layer answers before they finish, so not even that write shows in the timing.

use secrecy::{ExposeSecret, SecretString};

use crate::activity::{ActivityAction, NewActivity};
use crate::email::EmailContent;
use crate::ports::{TokenKind, TokenMail, UseTokenError, from_hash_error};
use crate::services::auth::AuthSettings;
use crate::services::{Ports, email_to, new_token, publish_revocations};
use crate::session::RequestContext;
use crate::values::{Email, NewPassword, PasswordError};

/// Why an email could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyEmailError {
    /// Unknown, expired or used token.
    #[error("the token is invalid, expired or already used")]
    InvalidToken,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Why a password could not be reset.
#[derive(Debug, thiserror::Error)]
pub enum ResetPasswordError {
    /// Unknown, expired or used token.
    #[error("the token is invalid, expired or already used")]
    InvalidToken,
    /// The new password breaks the policy; the token stays unused.
    #[error(transparent)]
    WeakPassword(PasswordError),
    /// Password hashing is saturated; try again shortly.
    #[error("the service is overloaded")]
    Overloaded,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

from_hash_error!(ResetPasswordError);

/// Email verification and password reset.
#[derive(Clone)]
pub struct RecoveryService {
    ports: Ports,
    settings: AuthSettings,
}

impl RecoveryService {
    /// Builds the service.
    #[must_use]
    pub fn new(ports: Ports, settings: AuthSettings) -> Self {
        Self { ports, settings }
    }

    /// Marks the email of the token's owner verified and spends the token, recording
    /// `user.email_verified`.
    ///
    /// # Errors
    ///
    /// [`VerifyEmailError::InvalidToken`] for an unknown, expired or used token (also when a
    /// racing request spent it first).
    #[tracing::instrument(skip_all, fields(user_id))]
    pub async fn verify_email(&self, token: &SecretString, context: RequestContext) -> Result<(), VerifyEmailError> {
        let hash = self.ports.opaque_tokens.hash(token.expose_secret());
        let now = self.ports.clock.now();
        let Some(live) = self.ports.tokens.find_live(TokenKind::EmailVerification, &hash, now).await? else {
            return Err(VerifyEmailError::InvalidToken);
        };
        tracing::Span::current().record("user_id", tracing::field::display(live.user_id));
        let event = NewActivity::by_user(live.user_id, ActivityAction::EmailVerified, &context, now);
        self.ports.users.verify_email(hash, live.user_id, now, event).await.map_err(|e| match e {
            UseTokenError::Invalid => VerifyEmailError::InvalidToken,
            UseTokenError::Unexpected(e) => VerifyEmailError::Unexpected(e),
        })
    }

    /// Sends a new verification link to `email` if it belongs to an account that is not
    /// verified yet; older links stop working. Unknown and verified addresses get nothing.
    ///
    /// # Errors
    ///
    /// Only storage failures; the caller answers the same either way.
    #[tracing::instrument(skip_all)]
    pub async fn resend_verification(&self, email: &Email) -> anyhow::Result<()> {
        let credentials = self.ports.users.find_credentials_by_email(email).await?;
        let now = self.ports.clock.now();
        let token = self.ports.opaque_tokens.generate();
        let Some(user) = credentials.map(|c| c.user).filter(|user| !user.email_verified()) else {
            return Ok(());
        };
        let ttl = self.settings.verification_ttl;
        let mail = TokenMail {
            token: new_token(TokenKind::EmailVerification, user.id, &token, now, ttl),
            email: email_to(&user, EmailContent::VerifyEmail { token: token.secret, expires_at: now + ttl }, now),
        };
        self.ports.tokens.issue(mail, None).await
    }

    /// Emails a password-reset link to `email` if it belongs to an account, recording
    /// `user.password_reset_requested`; older reset links stop working. Unknown addresses
    /// get nothing.
    ///
    /// # Errors
    ///
    /// Only storage failures; the caller answers the same either way.
    #[tracing::instrument(skip_all)]
    pub async fn forgot_password(&self, email: &Email, context: RequestContext) -> anyhow::Result<()> {
        let credentials = self.ports.users.find_credentials_by_email(email).await?;
        let now = self.ports.clock.now();
        let token = self.ports.opaque_tokens.generate();
        let Some(user) = credentials.map(|c| c.user) else {
            return Ok(());
        };
        let ttl = self.settings.password_reset_ttl;
        let mail = TokenMail {
            token: new_token(TokenKind::PasswordReset, user.id, &token, now, ttl),
            email: email_to(&user, EmailContent::PasswordReset { token: token.secret, expires_at: now + ttl }, now),
        };
        // Whoever asked, it was not necessarily the owner: no actor.
        let event = NewActivity {
            actor_id: None,
            ..NewActivity::by_user(user.id, ActivityAction::PasswordResetRequested, &context, now)
        };
        self.ports.tokens.issue(mail, Some(event)).await
    }

    /// Sets a new password with a reset token: spends the token, revokes every session of
    /// the user (their access tokens stop working at once), records `user.password_reset`
    /// and emails a "your password was changed" notice.
    ///
    /// # Errors
    ///
    /// `InvalidToken` first (whatever the password), then `WeakPassword` (the token stays
    /// usable), `Overloaded`.
    #[tracing::instrument(skip_all, fields(user_id))]
    pub async fn reset_password(
        &self,
        token: &SecretString,
        new_password: SecretString,
        context: RequestContext,
    ) -> Result<(), ResetPasswordError> {
        let hash = self.ports.opaque_tokens.hash(token.expose_secret());
        let now = self.ports.clock.now();
        let Some(live) = self.ports.tokens.find_live(TokenKind::PasswordReset, &hash, now).await? else {
            return Err(ResetPasswordError::InvalidToken);
        };
        tracing::Span::current().record("user_id", tracing::field::display(live.user_id));
        let Some(user) = self.ports.users.find_by_id(live.user_id).await? else {
            return Err(ResetPasswordError::InvalidToken);
        };
        let new_password = NewPassword::parse(new_password, &user.email).map_err(ResetPasswordError::WeakPassword)?;
        let password_hash = self.ports.hasher.hash(new_password.secret()).await?;
        let now = self.ports.clock.now();
        let event = NewActivity::by_user(user.id, ActivityAction::PasswordReset, &context, now);
        let notice = email_to(&user, EmailContent::PasswordChanged { changed_at: now }, now);
        let revoked = self.ports.users.reset_password(hash, user.id, password_hash, now, event, notice).await.map_err(
            |e| match e {
                UseTokenError::Invalid => ResetPasswordError::InvalidToken,
                UseTokenError::Unexpected(e) => ResetPasswordError::Unexpected(e),
            },
        )?;
        publish_revocations(&self.ports, &self.settings, revoked, now).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use mockall::predicate::eq;

    use super::*;
    use crate::ids::{SessionId, UserId};
    use crate::ports::{MockSessionRepository, MockUserRepository, OneTimeToken, OpaqueToken, PasswordHash, TokenHash};
    use crate::services::testing::{Mocks, now, ports_with_mocks, sample_user, settings};
    use crate::user::{Credentials, User};

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn presented_hash() -> TokenHash {
        TokenHash::new("presented-hash".to_owned())
    }

    fn service(users: MockUserRepository, mocks: Mocks) -> RecoveryService {
        RecoveryService::new(ports_with_mocks(users, MockSessionRepository::new(), mocks), settings())
    }

    /// Mocks that hash the presented token and find it live (or not) for `kind`.
    fn finding(kind: TokenKind, owner: Option<UserId>) -> Mocks {
        let mut mocks = Mocks::default();
        mocks.opaque_tokens.expect_hash().with(eq("presented")).times(1).returning(|_| presented_hash());
        mocks.tokens.expect_find_live().with(eq(kind), eq(presented_hash()), eq(now())).times(1).returning(
            move |kind, _, _| {
                Ok(owner.map(|user_id| OneTimeToken {
                    kind,
                    user_id,
                    created_at: now(),
                    expires_at: now() + Duration::hours(1),
                }))
            },
        );
        mocks
    }

    fn generating(mut mocks: Mocks) -> Mocks {
        mocks.opaque_tokens.expect_generate().times(1).returning(|| OpaqueToken {
            secret: secret("fresh-secret"),
            hash: TokenHash::new("fresh-hash".to_owned()),
        });
        mocks
    }

    fn users_finding_email(user: Option<User>) -> MockUserRepository {
        let mut users = MockUserRepository::new();
        users
            .expect_find_credentials_by_email()
            .times(1)
            .return_once(move |_| Ok(user.map(|user| Credentials { user, password_hash: None })));
        users
    }

    fn unverified() -> User {
        User { email_verified_at: None, ..sample_user() }
    }

    #[tokio::test]
    async fn a_live_verification_token_verifies_its_owner() {
        let user = unverified();
        let id = user.id;
        let mut users = MockUserRepository::new();
        users
            .expect_verify_email()
            .withf(move |token, user_id, at, event| {
                *token == presented_hash()
                    && *user_id == id
                    && *at == now()
                    && event.action == ActivityAction::EmailVerified
                    && event.user_id == id
            })
            .times(1)
            .returning(|_, _, _, _| Ok(()));

        let result = service(users, finding(TokenKind::EmailVerification, Some(id)))
            .verify_email(&secret("presented"), RequestContext::default())
            .await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn an_unknown_expired_or_used_verification_token_is_invalid() {
        let mut users = MockUserRepository::new();
        users.expect_verify_email().never();

        let result = service(users, finding(TokenKind::EmailVerification, None))
            .verify_email(&secret("presented"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(VerifyEmailError::InvalidToken)), "{result:?}");
    }

    #[tokio::test]
    async fn a_verification_token_spent_by_a_racing_request_is_invalid() {
        let mut users = MockUserRepository::new();
        users.expect_verify_email().times(1).returning(|_, _, _, _| Err(UseTokenError::Invalid));

        let result = service(users, finding(TokenKind::EmailVerification, Some(UserId::generate())))
            .verify_email(&secret("presented"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(VerifyEmailError::InvalidToken)), "{result:?}");
    }

    #[tokio::test]
    async fn verification_reports_storage_failures_as_unexpected() {
        let mut mocks = Mocks::default();
        mocks.opaque_tokens.expect_hash().returning(|_| presented_hash());
        mocks.tokens.expect_find_live().times(1).returning(|_, _, _| Err(anyhow::anyhow!("down")));

        let result = service(MockUserRepository::new(), mocks)
            .verify_email(&secret("presented"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(VerifyEmailError::Unexpected(_))), "{result:?}");
        let mut users = MockUserRepository::new();
        users
            .expect_verify_email()
            .times(1)
            .returning(|_, _, _, _| Err(UseTokenError::Unexpected(anyhow::anyhow!("x"))));
        let result = service(users, finding(TokenKind::EmailVerification, Some(UserId::generate())))
            .verify_email(&secret("presented"), RequestContext::default())
            .await;
        assert!(matches!(result, Err(VerifyEmailError::Unexpected(_))), "{result:?}");
    }

    #[tokio::test]
    async fn resending_to_an_unverified_account_issues_a_fresh_token_and_mail() {
        let user = unverified();
        let id = user.id;
        let mut mocks = generating(Mocks::default());
        mocks
            .tokens
            .expect_issue()
            .withf(move |mail, event| {
                mail.token.kind == TokenKind::EmailVerification
                    && mail.token.user_id == id
                    && mail.token.hash.as_str() == "fresh-hash"
                    && mail.token.expires_at == now() + Duration::hours(24)
                    && matches!(&mail.email.content, EmailContent::VerifyEmail { token, .. } if token.expose_secret() == "fresh-secret")
                    && event.is_none()
            })
            .times(1)
            .returning(|_, _| Ok(()));

        let result = service(users_finding_email(Some(user)), mocks).resend_verification(&sample_user().email).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn resending_to_an_unknown_or_verified_address_does_the_same_work_and_sends_nothing() {
        for user in [None, Some(sample_user())] {
            let mut mocks = generating(Mocks::default());
            mocks.tokens.expect_issue().never();

            let result = service(users_finding_email(user), mocks).resend_verification(&sample_user().email).await;

            assert!(result.is_ok(), "{result:?}");
        }
    }

    #[tokio::test]
    async fn resending_reports_storage_failures() {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials_by_email().times(1).returning(|_| Err(anyhow::anyhow!("down")));
        let result = service(users, Mocks::default()).resend_verification(&sample_user().email).await;
        assert!(result.is_err());

        let mut mocks = generating(Mocks::default());
        mocks.tokens.expect_issue().times(1).returning(|_, _| Err(anyhow::anyhow!("down")));
        let result =
            service(users_finding_email(Some(unverified())), mocks).resend_verification(&sample_user().email).await;
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn forgot_password_issues_a_reset_token_mail_and_records_the_request_without_an_actor() {
        let user = sample_user();
        let id = user.id;
        let mut mocks = generating(Mocks::default());
        mocks
            .tokens
            .expect_issue()
            .withf(move |mail, event| {
                mail.token.kind == TokenKind::PasswordReset
                    && mail.token.expires_at == now() + Duration::hours(1)
                    && matches!(&mail.email.content, EmailContent::PasswordReset { expires_at, .. } if *expires_at == now() + Duration::hours(1))
                    && mail.email.to == sample_user().email
                    && event.as_ref().is_some_and(|e| {
                        e.action == ActivityAction::PasswordResetRequested && e.user_id == id && e.actor_id.is_none()
                    })
            })
            .times(1)
            .returning(|_, _| Ok(()));

        let result = service(users_finding_email(Some(user)), mocks)
            .forgot_password(&sample_user().email, RequestContext::default())
            .await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn forgot_password_for_an_unknown_address_generates_a_token_and_sends_nothing() {
        let mut mocks = generating(Mocks::default());
        mocks.tokens.expect_issue().never();

        let result = service(users_finding_email(None), mocks)
            .forgot_password(&sample_user().email, RequestContext::default())
            .await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn forgot_password_reports_storage_failures() {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials_by_email().times(1).returning(|_| Err(anyhow::anyhow!("down")));

        let result =
            service(users, Mocks::default()).forgot_password(&sample_user().email, RequestContext::default()).await;

        assert!(result.is_err());
        let mut mocks = generating(Mocks::default());
        mocks.tokens.expect_issue().times(1).returning(|_, _| Err(anyhow::anyhow!("down")));
        let result = service(users_finding_email(Some(sample_user())), mocks)
            .forgot_password(&sample_user().email, RequestContext::default())
            .await;
        assert!(result.is_err());
    }

    fn users_for_reset(user: &User) -> MockUserRepository {
        let mut users = MockUserRepository::new();
        let found = user.clone();
        users.expect_find_by_id().with(eq(user.id)).times(1).return_once(move |_| Ok(Some(found)));
        users
    }

    fn hashing(mut mocks: Mocks) -> Mocks {
        mocks.hasher.expect_hash().times(1).returning(|_| Ok(PasswordHash::new("$argon2id$new".to_owned())));
        mocks
    }

    #[tokio::test]
    async fn a_reset_sets_the_password_revokes_every_session_and_queues_a_notice() {
        let user = sample_user();
        let id = user.id;
        let revoked = vec![SessionId::generate(), SessionId::generate()];
        let returned = revoked.clone();
        let mut users = users_for_reset(&user);
        users
            .expect_reset_password()
            .withf(move |token, user_id, hash, at, event, notice| {
                *token == presented_hash()
                    && *user_id == id
                    && hash.as_str() == "$argon2id$new"
                    && *at == now()
                    && event.action == ActivityAction::PasswordReset
                    && matches!(notice.content, EmailContent::PasswordChanged { changed_at } if changed_at == now())
                    && notice.to == sample_user().email
            })
            .times(1)
            .return_once(move |_, _, _, _, _, _| Ok(returned));
        let mut mocks = hashing(finding(TokenKind::PasswordReset, Some(id)));
        mocks
            .revocations
            .expect_revoke()
            .with(eq(revoked), eq(now() + Duration::minutes(15)))
            .times(1)
            .returning(|_, _| Ok(()));

        let result = service(users, mocks)
            .reset_password(&secret("presented"), secret("a brand new passphrase"), RequestContext::default())
            .await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn a_reset_with_an_invalid_token_is_refused_before_the_password_is_looked_at() {
        let result = service(MockUserRepository::new(), finding(TokenKind::PasswordReset, None))
            .reset_password(&secret("presented"), secret("short"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(ResetPasswordError::InvalidToken)), "{result:?}");
    }

    #[tokio::test]
    async fn a_reset_for_a_deleted_user_is_invalid() {
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().times(1).returning(|_| Ok(None));

        let result = service(users, finding(TokenKind::PasswordReset, Some(UserId::generate())))
            .reset_password(&secret("presented"), secret("a brand new passphrase"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(ResetPasswordError::InvalidToken)), "{result:?}");
    }

    #[tokio::test]
    async fn a_weak_new_password_is_refused_and_the_token_is_not_spent() {
        let user = sample_user();
        let mut users = users_for_reset(&user);
        users.expect_reset_password().never();

        let result = service(users, finding(TokenKind::PasswordReset, Some(user.id)))
            .reset_password(&secret("presented"), secret("password"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(ResetPasswordError::WeakPassword(PasswordError::TooCommon))), "{result:?}");
    }

    #[tokio::test]
    async fn a_reset_answers_overloaded_when_hashing_is_saturated() {
        let user = sample_user();
        let mut mocks = finding(TokenKind::PasswordReset, Some(user.id));
        mocks.hasher.expect_hash().times(1).returning(|_| Err(crate::ports::HashError::Overloaded));

        let result = service(users_for_reset(&user), mocks)
            .reset_password(&secret("presented"), secret("a brand new passphrase"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(ResetPasswordError::Overloaded)), "{result:?}");
    }

    #[tokio::test]
    async fn a_reset_token_spent_by_a_racing_request_is_invalid_and_nothing_is_published() {
        let user = sample_user();
        let mut users = users_for_reset(&user);
        users.expect_reset_password().times(1).returning(|_, _, _, _, _, _| Err(UseTokenError::Invalid));
        let mut mocks = hashing(finding(TokenKind::PasswordReset, Some(user.id)));
        mocks.revocations.expect_revoke().never();

        let result = service(users, mocks)
            .reset_password(&secret("presented"), secret("a brand new passphrase"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(ResetPasswordError::InvalidToken)), "{result:?}");
    }

    #[tokio::test]
    async fn a_reset_reports_storage_failures_as_unexpected() {
        let user = sample_user();
        let mut users = users_for_reset(&user);
        users
            .expect_reset_password()
            .times(1)
            .returning(|_, _, _, _, _, _| Err(UseTokenError::Unexpected(anyhow::anyhow!("disk full"))));

        let result = service(users, hashing(finding(TokenKind::PasswordReset, Some(user.id))))
            .reset_password(&secret("presented"), secret("a brand new passphrase"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(ResetPasswordError::Unexpected(_))), "{result:?}");
    }
}
