//! Sign-up, sign-in and access-token authentication.

use chrono::Duration;
use secrecy::{ExposeSecret as _, SecretString};

use crate::activity::{ActivityAction, NewActivity};
use crate::email::{EmailContent, OutgoingEmail};
use crate::ids::{EmailId, SessionId, UserId};
use crate::pagination::PageLimit;
use crate::ports::{
    AccountCompanion, ActivityQuery, CreateUserError, Lockout, PasswordCheck, TokenKind, TokenMail, UseTokenError,
    from_hash_error,
};
use crate::services::{AccountDraft, Ports, create_account, new_token, recipient_name, start_session};
use crate::session::RequestContext;
use crate::user::{Credentials, NewUser, Role, User, UserStatus};
use crate::values::{DisplayName, Email, NewPassword, Username};

/// Policy for sign-in and tokens, from configuration.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Whether unverified accounts are refused at login.
    pub require_verified_email: bool,
    /// Lifetime of access tokens.
    pub access_ttl: Duration,
    /// Lifetime of a session (its refresh tokens).
    pub refresh_ttl: Duration,
    /// How long a spent refresh token may still be exchanged (for tabs refreshing at once)
    /// before presenting it counts as reuse.
    pub refresh_reuse_grace: Duration,
    /// Lifetime of email-verification tokens.
    pub verification_ttl: Duration,
    /// Lifetime of password-reset tokens.
    pub password_reset_ttl: Duration,
    /// Consecutive failed sign-ins that lock an account (and, counted apart, that make a
    /// device cookie stop counting as a known device).
    pub lockout_threshold: u32,
    /// How long such a lock lasts (and how long its unlock link works).
    pub lockout_duration: Duration,
}

/// A device that signed in to an account before, as its signed device cookie says (OWASP
/// "device cookies"). The HTTP layer checks the signature; the service checks the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownDevice {
    /// The account the device signed in to.
    pub user_id: UserId,
    /// The cookie's random nonce, which names the device in the audit trail.
    pub nonce: String,
}

/// Why an unlock link did not work.
#[derive(Debug, thiserror::Error)]
pub enum UnlockError {
    /// Unknown, used or expired token.
    #[error("the unlock token is invalid, expired or already used")]
    InvalidToken,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// The `auth.login_failed` detail naming the known device an attempt came from.
const DEVICE_DETAIL: &str = "device";

/// How many of a user's latest events are read to count consecutive failures.
const FAILURE_WINDOW: i64 = 100;

/// A valid registration.
#[derive(Debug)]
pub struct RegisterRequest {
    /// The account's email.
    pub email: Email,
    /// The chosen username; derived from the email when `None`.
    pub username: Option<Username>,
    /// Optional human name.
    pub display_name: Option<DisplayName>,
    /// A password that meets the policy.
    pub password: NewPassword,
}

/// Why registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The email belongs to another account.
    #[error("the email address is already registered")]
    EmailTaken,
    /// The chosen username belongs to another account.
    #[error("the username is already taken")]
    UsernameTaken,
    /// Password hashing is saturated; try again shortly.
    #[error("the service is overloaded")]
    Overloaded,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

from_hash_error!(RegisterError);

/// How a user names their account at sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginIdentifier {
    /// By email.
    Email(Email),
    /// By username.
    Username(Username),
}

/// A sign-in attempt.
#[derive(Debug)]
pub struct LoginRequest {
    /// Which account.
    pub identifier: LoginIdentifier,
    /// The password as typed; not policy-checked (policies change).
    pub password: SecretString,
    /// The device cookie the browser presented, if any (signature already checked).
    pub device: Option<KnownDevice>,
}

/// The account a sign-in names, looked up once (see [`AuthService::find_account`]).
#[derive(Debug)]
pub struct SignInAccount {
    identifier: LoginIdentifier,
    credentials: Option<Credentials>,
}

impl SignInAccount {
    /// The key of the per-account login limit: the account's id when the identifier names
    /// one, so that its email and its username share one budget; otherwise the identifier,
    /// normalised.
    #[must_use]
    pub fn limit_key(&self) -> String {
        match (&self.credentials, &self.identifier) {
            (Some(credentials), _) => format!("account:{}", credentials.user.id),
            (None, LoginIdentifier::Email(email)) => format!("email:{}", email.as_ref().to_lowercase()),
            (None, LoginIdentifier::Username(username)) => format!("username:{}", username.as_ref().to_lowercase()),
        }
    }
}

/// Why a known account's sign-in was refused, as the audit trail names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The password was wrong.
    WrongPassword,
    /// The account has no password (it signs in through providers).
    NoPassword,
    /// The account is locked.
    AccountLocked,
    /// The account is disabled.
    AccountDisabled,
    /// The email is not verified.
    EmailNotVerified,
}

impl FailureReason {
    /// The `reason` detail of `auth.login_failed`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongPassword => "wrong_password",
            Self::NoPassword => "no_password",
            Self::AccountLocked => "account_locked",
            Self::AccountDisabled => "account_disabled",
            Self::EmailNotVerified => "email_not_verified",
        }
    }
}

/// The bookkeeping a refused sign-in of a known account still owes; run it with
/// [`AuthService::record_failed_login`].
#[derive(Debug)]
#[must_use = "a refused sign-in must be recorded with AuthService::record_failed_login"]
pub struct FailedLogin {
    user: User,
    reason: FailureReason,
    device: Option<String>,
    context: RequestContext,
    at: chrono::DateTime<chrono::Utc>,
}

/// Why sign-in failed. `InvalidCredentials` covers unknown accounts and wrong passwords
/// alike, so the two cannot be told apart.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown account, wrong password, or an account without a password.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The account is locked.
    #[error("the account is locked")]
    AccountLocked,
    /// The account is disabled.
    #[error("the account is disabled")]
    AccountDisabled,
    /// The email must be verified first.
    #[error("the email address is not verified")]
    EmailNotVerified,
    /// Password hashing is saturated; try again shortly.
    #[error("the service is overloaded")]
    Overloaded,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

from_hash_error!(LoginError);

/// The tokens a successful sign-in hands out.
#[derive(Debug)]
pub struct TokenPair {
    /// The signed access token.
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The opaque refresh token; only its hash is stored.
    pub refresh_token: SecretString,
    /// Seconds until the session expires.
    pub refresh_expires_in: i64,
    /// The session the pair belongs to.
    pub session_id: SessionId,
    /// The account signed in.
    pub user_id: UserId,
}

/// Sign-up, sign-in and token verification.
#[derive(Clone)]
pub struct AuthService {
    ports: Ports,
    settings: AuthSettings,
}

impl AuthService {
    /// Builds the service.
    #[must_use]
    pub fn new(ports: Ports, settings: AuthSettings) -> Self {
        Self { ports, settings }
    }

    /// Creates an account with the `user` role and queues its verification email (with a
    /// fresh token) in the same transaction. When no username is given, one is derived from
    /// the email and made unique with a random suffix if needed.
    ///
    /// # Errors
    ///
    /// `EmailTaken`/`UsernameTaken` on conflicts, `Overloaded` when hashing is saturated.
    #[tracing::instrument(skip_all, fields(user_id))]
    pub async fn register(&self, request: RegisterRequest, context: RequestContext) -> Result<User, RegisterError> {
        let password_hash = self.ports.hasher.hash(request.password.secret()).await?;
        let now = self.ports.clock.now();
        let verification = self.ports.opaque_tokens.generate();
        let draft = AccountDraft {
            email: request.email,
            username: request.username,
            display_name: request.display_name,
            password_hash: Some(password_hash),
            roles: vec![Role::User],
            email_verified_at: None,
        };
        let event = |id| NewActivity::by_user(id, ActivityAction::UserRegistered, &context, now);
        let mail = |user: &NewUser| {
            let token =
                new_token(TokenKind::EmailVerification, user.id, &verification, now, self.settings.verification_ttl);
            let content =
                EmailContent::VerifyEmail { token: verification.secret.clone(), expires_at: token.expires_at };
            let email = OutgoingEmail {
                id: EmailId::generate(),
                to: user.email.clone(),
                recipient_name: recipient_name(user.display_name.as_ref(), &user.username),
                content,
                created_at: now,
            };
            AccountCompanion::Verification(TokenMail { token, email })
        };
        let user = create_account(&self.ports, draft, now, event, mail).await.map_err(|e| match e {
            CreateUserError::EmailTaken => RegisterError::EmailTaken,
            CreateUserError::UsernameTaken => RegisterError::UsernameTaken,
            CreateUserError::IdentityTaken => RegisterError::Unexpected(anyhow::anyhow!("no identity was given")),
            CreateUserError::Unexpected(e) => RegisterError::Unexpected(e),
        })?;
        tracing::Span::current().record("user_id", tracing::field::display(user.id));
        Ok(user)
    }

    /// Signs a user in with a password and starts a session: [`AuthService::find_account`],
    /// [`AuthService::sign_in_with_password`], then, for a refusal, the bookkeeping
    /// ([`AuthService::record_failed_login`]) before returning. The HTTP layer runs the steps
    /// itself, to limit attempts per account in between and to answer before the bookkeeping.
    ///
    /// # Errors
    ///
    /// See [`LoginError`].
    pub async fn login(&self, request: LoginRequest, context: RequestContext) -> Result<TokenPair, LoginError> {
        let account = self.find_account(&request.identifier).await?;
        let (answer, failure) = self.sign_in_with_password(account, &request.password, request.device, context).await;
        if let Some(failure) = failure {
            self.record_failed_login(failure).await;
        }
        answer
    }

    /// Looks up the account a sign-in names, once, so that the caller can limit attempts per
    /// account ([`SignInAccount::limit_key`]) before the password is checked.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown account is not an error here.
    pub async fn find_account(&self, identifier: &LoginIdentifier) -> Result<SignInAccount, LoginError> {
        let users = &self.ports.users;
        let credentials = match identifier {
            LoginIdentifier::Email(email) => users.find_credentials_by_email(email).await?,
            LoginIdentifier::Username(username) => users.find_credentials_by_username(username).await?,
        };
        Ok(SignInAccount { identifier: identifier.clone(), credentials })
    }

    /// Checks `password` for `account` and starts a session, or says why not. A refusal of
    /// a known account comes with its bookkeeping (the audit event, the failure count, maybe
    /// a lockout), which the caller runs after answering with
    /// [`AuthService::record_failed_login`].
    ///
    /// Up to the answer, a wrong password for an existing account and any password for an
    /// unknown one do the same work (one lookup, one password verification), so the timing
    /// does not tell whether an account exists. A locked account answers `AccountLocked`
    /// whatever the password; a disabled or unverified one only tells so to someone who
    /// knows the password.
    #[tracing::instrument(skip_all, fields(user_id))]
    pub async fn sign_in_with_password(
        &self,
        account: SignInAccount,
        password: &SecretString,
        device: Option<KnownDevice>,
        context: RequestContext,
    ) -> (Result<TokenPair, LoginError>, Option<FailedLogin>) {
        let credentials = account.credentials;
        let stored_hash = credentials.as_ref().and_then(|c| c.password_hash.as_ref());
        let check = match self.ports.hasher.verify(password, stored_hash).await {
            Ok(check) => check,
            Err(e) => return (Err(e.into()), None),
        };
        let Some(credentials) = credentials else {
            return (Err(LoginError::InvalidCredentials), None);
        };
        let has_password = credentials.password_hash.is_some();
        let user = credentials.user;
        tracing::Span::current().record("user_id", tracing::field::display(user.id));
        let now = self.ports.clock.now();
        // A known device's own failures decide whether it still counts as known; reading them
        // tells nothing an attacker without the owner's signed cookie could learn.
        let device = match device.filter(|device| device.user_id == user.id) {
            Some(device) => {
                let events = self.recent_activity(user.id).await;
                (consecutive_failures(&events, Some(&device.nonce)) < self.settings.lockout_threshold)
                    .then_some(device.nonce)
            }
            None => None,
        };
        match self.judge(&user, check, now, device.is_some()) {
            Ok(needs_rehash) => {
                if needs_rehash {
                    self.upgrade_hash(user.id, password).await;
                }
                (self.start_session(&user, context).await, None)
            }
            Err(refusal) => {
                let reason = match &refusal {
                    LoginError::InvalidCredentials if !has_password => FailureReason::NoPassword,
                    LoginError::InvalidCredentials => FailureReason::WrongPassword,
                    LoginError::AccountLocked => FailureReason::AccountLocked,
                    LoginError::AccountDisabled => FailureReason::AccountDisabled,
                    LoginError::EmailNotVerified => FailureReason::EmailNotVerified,
                    LoginError::Overloaded | LoginError::Unexpected(_) => return (Err(refusal), None),
                };
                (Err(refusal), Some(FailedLogin { user, reason, device, context, at: now }))
            }
        }
    }

    /// The bookkeeping of a refused sign-in: records `auth.login_failed` (with the reason,
    /// never the password) and, for a wrong password from no known device, counts it
    /// atomically, locking the account when the count reaches the threshold. Failures are
    /// logged, not returned: the answer was given already.
    #[tracing::instrument(skip_all, fields(user_id = %failure.user.id))]
    pub async fn record_failed_login(&self, failure: FailedLogin) {
        let FailedLogin { user, reason, device, context, at } = failure;
        let mut event =
            NewActivity { actor_id: None, ..NewActivity::by_user(user.id, ActivityAction::LoginFailed, &context, at) }
                .with_detail("reason", reason.as_str());
        if let Some(device) = &device {
            event = event.with_detail(DEVICE_DETAIL, device);
        }
        // Only guesses at a password count towards the lockout: a known device has its own
        // count, an account without a password has nothing to guess, and a refusal for the
        // account's state says nothing about the password.
        if reason != FailureReason::WrongPassword || device.is_some() {
            if let Err(e) = self.ports.activity.record(event).await {
                tracing::warn!(error = %e, "a failed sign-in could not be recorded");
            }
            return;
        }
        let lockout = self.lockout(&user, &context, at);
        match self.ports.users.record_failed_login(user.id, at, event, lockout).await {
            Ok(true) => tracing::info!(user_id = %user.id, "account locked after repeated failed sign-ins"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "a failed sign-in could not be recorded"),
        }
    }

    /// Whether a user whose password checked as `check` may sign in at `now`; `Ok` says
    /// whether the stored hash needs an upgrade.
    /// A lock from failed sign-ins (one with an end) does not stop a known device.
    fn judge(
        &self,
        user: &User,
        check: PasswordCheck,
        now: chrono::DateTime<chrono::Utc>,
        known_device: bool,
    ) -> Result<bool, LoginError> {
        let lockout = user.locked_until.is_some();
        if user.status_at(now) == UserStatus::Locked && !(known_device && lockout) {
            return Err(LoginError::AccountLocked);
        }
        let PasswordCheck::Valid { needs_rehash } = check else {
            return Err(LoginError::InvalidCredentials);
        };
        if user.status_at(now) == UserStatus::Disabled {
            return Err(LoginError::AccountDisabled);
        }
        if self.settings.require_verified_email && !user.email_verified() {
            return Err(LoginError::EmailNotVerified);
        }
        Ok(needs_rehash)
    }

    /// The user's latest events, newest first, from which consecutive failures are counted. A
    /// failure to read them is logged and counts as no failures: the answer stays the same.
    async fn recent_activity(&self, user_id: UserId) -> Vec<NewActivity> {
        let query = ActivityQuery {
            user_id: Some(user_id),
            action: None,
            since: None,
            until: None,
            limit: PageLimit::new(FAILURE_WINDOW).unwrap_or_default(),
            after: None,
        };
        match self.ports.activity.list(query).await {
            Ok(page) => page.items,
            Err(e) => {
                tracing::warn!(error = %e, "could not read recent sign-in failures");
                Vec::new()
            }
        }
    }

    /// The lock a failure applies if it reaches the threshold: until the configured time, with
    /// `auth.account_locked` and an email carrying a one-time unlock link. Built for every
    /// counted failure (a token is cheap), used by the one that locks.
    fn lockout(&self, user: &User, context: &RequestContext, now: chrono::DateTime<chrono::Utc>) -> Lockout {
        let until = now + self.settings.lockout_duration;
        let unlock = self.ports.opaque_tokens.generate();
        let token = new_token(TokenKind::AccountUnlock, user.id, &unlock, now, self.settings.lockout_duration);
        let email = OutgoingEmail {
            id: EmailId::generate(),
            to: user.email.clone(),
            recipient_name: recipient_name(user.display_name.as_ref(), &user.username),
            content: EmailContent::AccountLocked { token: unlock.secret.clone(), locked_until: until },
            created_at: now,
        };
        let event = NewActivity {
            actor_id: None,
            ..NewActivity::by_user(user.id, ActivityAction::AccountLocked, context, now)
        }
        .with_detail("locked_until", until.to_rfc3339());
        Lockout { threshold: self.settings.lockout_threshold, until, mail: TokenMail { token, email }, event }
    }

    /// Ends a lock with the token from the lockout email and records `auth.account_unlocked`.
    ///
    /// # Errors
    ///
    /// `InvalidToken` for an unknown, used or expired token.
    #[tracing::instrument(skip_all, fields(user_id))]
    pub async fn unlock(&self, token: &SecretString, context: RequestContext) -> Result<(), UnlockError> {
        let hash = self.ports.opaque_tokens.hash(token.expose_secret());
        let now = self.ports.clock.now();
        let Some(live) = self.ports.tokens.find_live(TokenKind::AccountUnlock, &hash, now).await? else {
            return Err(UnlockError::InvalidToken);
        };
        tracing::Span::current().record("user_id", tracing::field::display(live.user_id));
        let event = NewActivity {
            actor_id: None,
            ..NewActivity::by_user(live.user_id, ActivityAction::AccountUnlocked, &context, now)
        }
        .with_detail("via", "unlock_link");
        self.ports.users.unlock(hash, live.user_id, now, event).await.map_err(|e| match e {
            UseTokenError::Invalid => UnlockError::InvalidToken,
            UseTokenError::Unexpected(e) => UnlockError::Unexpected(e),
        })
    }

    /// Replaces a hash made with outdated parameters. A failure only delays the upgrade to
    /// the next sign-in, so it is logged, not returned.
    async fn upgrade_hash(&self, user_id: UserId, password: &SecretString) {
        let result = match self.ports.hasher.hash(password).await {
            Ok(hash) => self.ports.users.update_password_hash(user_id, hash, self.ports.clock.now()).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not upgrade the password hash; will retry at the next sign-in");
        }
    }

    async fn start_session(&self, user: &User, context: RequestContext) -> Result<TokenPair, LoginError> {
        Ok(start_session(&self.ports, &self.settings, user, context, "password").await?)
    }
}

/// Failed sign-ins with a wrong password since the last success, lock or unlock, newest first
/// in `history`: those from the known device `device`, or (with `None`) those from no known
/// device. Each device has its own count, so an attacker cannot spend the owner's.
fn consecutive_failures(history: &[NewActivity], device: Option<&str>) -> u32 {
    let mut count = 0;
    for event in history {
        match event.action {
            ActivityAction::LoginSucceeded | ActivityAction::AccountLocked | ActivityAction::AccountUnlocked => break,
            ActivityAction::LoginFailed
                if event.details.get("reason").map(String::as_str) == Some("wrong_password")
                    && event.details.get(DEVICE_DETAIL).map(String::as_str) == device =>
            {
                count += 1;
            }
            _ => {}
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{MockSessionRepository, MockUserRepository, OpaqueToken, PasswordHash, TokenHash};
    use crate::services::testing::{Mocks, now, ports_with_mocks, sample_user, settings};
    use crate::session::Session;
    use crate::user::{Credentials, NewUser};
    use mockall::predicate::{always, eq};
    use secrecy::ExposeSecret;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn email() -> Email {
        Email::parse("ada@example.com").expect("valid")
    }

    fn hash() -> PasswordHash {
        PasswordHash::new("$argon2id$stored".to_owned())
    }

    fn register_request(username: Option<&str>) -> RegisterRequest {
        RegisterRequest {
            email: email(),
            username: username.map(|u| Username::parse(u).expect("valid")),
            display_name: None,
            password: NewPassword::parse(secret("correct horse battery staple"), &email()).expect("valid"),
        }
    }

    fn hashing_mocks() -> Mocks {
        let mut mocks = Mocks::default();
        mocks.hasher.expect_hash().times(1).returning(|_| Ok(hash()));
        mocks.opaque_tokens.expect_generate().times(1).returning(|| OpaqueToken {
            secret: secret("verification-secret"),
            hash: TokenHash::new("verification-hash".to_owned()),
        });
        mocks
    }

    fn stored(new_user: &NewUser) -> User {
        User {
            id: new_user.id,
            email: new_user.email.clone(),
            username: new_user.username.clone(),
            display_name: new_user.display_name.clone(),
            roles: new_user.roles.clone(),
            status: UserStatus::Active,
            locked_until: None,
            email_verified_at: new_user.email_verified_at,
            last_login_at: None,
            created_at: new_user.created_at,
            updated_at: new_user.created_at,
            deleted_at: None,
            avatar: None,
        }
    }

    fn service(users: MockUserRepository, sessions: MockSessionRepository, mocks: Mocks) -> AuthService {
        service_with_history(users, sessions, mocks, Vec::new())
    }

    /// A service whose activity log holds `history` (newest first) for every user.
    fn service_with_history(
        users: MockUserRepository,
        sessions: MockSessionRepository,
        mut mocks: Mocks,
        history: Vec<NewActivity>,
    ) -> AuthService {
        mocks
            .activity
            .expect_list()
            .returning(move |_| Ok(crate::pagination::Page { items: history.clone(), next: None }));
        AuthService::new(ports_with_mocks(users, sessions, mocks), settings())
    }

    fn failure(user: &User, device: Option<&str>) -> NewActivity {
        let event = NewActivity::by_user(user.id, ActivityAction::LoginFailed, &RequestContext::default(), now())
            .with_detail("reason", "wrong_password");
        match device {
            Some(device) => event.with_detail(DEVICE_DETAIL, device),
            None => event,
        }
    }

    fn finding(user: &User) -> MockUserRepository {
        let mut users = MockUserRepository::new();
        let found = user.clone();
        users.expect_find_credentials_by_email().returning(move |_| {
            Ok(Some(Credentials {
                user: found.clone(),
                password_hash: Some(PasswordHash::new("$argon2id$stored".to_owned())),
            }))
        });
        users
    }

    #[tokio::test]
    async fn a_wrong_password_is_counted_by_the_store_which_locks_at_the_threshold() {
        let user = sample_user();
        let mut users = finding(&user);
        let until = now() + Duration::minutes(15);
        let id = user.id;
        users
            .expect_record_failed_login()
            .withf(move |user_id, at, event, lockout| {
                *user_id == id
                    && *at == now()
                    && event.action == ActivityAction::LoginFailed
                    && lockout.threshold == 5
                    && lockout.until == until
                    && lockout.mail.token.kind == TokenKind::AccountUnlock
                    && matches!(lockout.mail.email.content, EmailContent::AccountLocked { .. })
                    && lockout.event.action == ActivityAction::AccountLocked
            })
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let mut mocks = Mocks::default();
        mocks.hasher.expect_verify().returning(|_, _| Ok(PasswordCheck::Invalid));
        mocks.activity.expect_record().never();
        mocks.opaque_tokens.expect_generate().times(1).returning(|| OpaqueToken {
            secret: secret("unlock-secret"),
            hash: TokenHash::new("unlock-hash".to_owned()),
        });
        let service = service(users, MockSessionRepository::new(), mocks);

        let result = service.login(login_request("wrong"), RequestContext::default()).await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
    }

    #[tokio::test]
    async fn failures_from_a_known_device_neither_count_towards_the_lock_nor_lock() {
        let user = sample_user();
        let users = finding(&user);
        let mut mocks = Mocks::default();
        mocks.hasher.expect_verify().returning(|_, _| Ok(PasswordCheck::Invalid));
        mocks
            .activity
            .expect_record()
            .withf(|event| event.details.get(DEVICE_DETAIL).map(String::as_str) == Some("nonce-1"))
            .times(1)
            .returning(|_| Ok(()));
        let history: Vec<NewActivity> = (0..4).map(|_| failure(&user, None)).collect();
        let service = service_with_history(users, MockSessionRepository::new(), mocks, history);
        let request = LoginRequest {
            device: Some(KnownDevice { user_id: user.id, nonce: "nonce-1".to_owned() }),
            ..login_request("wrong")
        };

        let result = service.login(request, RequestContext::default()).await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
    }

    #[tokio::test]
    async fn a_known_device_signs_in_during_a_lockout_but_not_after_its_own_failures() {
        let mut user = sample_user();
        user.status = UserStatus::Locked;
        user.locked_until = Some(now() + Duration::minutes(10));
        let ok = AuthService::new(
            ports_with_mocks(MockUserRepository::new(), MockSessionRepository::new(), Mocks::default()),
            settings(),
        );
        let check = PasswordCheck::Valid { needs_rehash: false };
        assert!(ok.judge(&user, check, now(), true).is_ok(), "a known device passes a lockout");
        assert!(matches!(ok.judge(&user, check, now(), false), Err(LoginError::AccountLocked)));
        let exhausted: Vec<NewActivity> = (0..5).map(|_| failure(&user, Some("nonce-1"))).collect();
        assert_eq!(consecutive_failures(&exhausted, Some("nonce-1")), 5, "its own failures count");
        assert_eq!(consecutive_failures(&exhausted, None), 0, "they are not the account's");
        user.locked_until = None;
        assert!(
            matches!(ok.judge(&user, check, now(), true), Err(LoginError::AccountLocked)),
            "an admin lock (no end) stops known devices too"
        );
    }

    #[tokio::test]
    async fn register_stores_the_hashed_password_and_the_user_role() {
        let mut users = MockUserRepository::new();
        users
            .expect_create()
            .withf(|u, event, companion| {
                event.action == ActivityAction::UserRegistered
                    && u.password_hash == Some(hash())
                    && u.roles == vec![Role::User]
                    && u.username.as_ref() == "ada"
                    && u.email_verified_at.is_none()
                    && u.created_at == now()
                    && matches!(companion, AccountCompanion::Verification(mail) if {
                        mail.token.kind == TokenKind::EmailVerification
                            && mail.token.user_id == u.id
                            && mail.token.hash.as_str() == "verification-hash"
                            && mail.token.expires_at == now() + Duration::hours(24)
                            && mail.email.to == u.email
                            && mail.email.recipient_name == "ada"
                            && matches!(&mail.email.content, EmailContent::VerifyEmail { token, expires_at }
                                if token.expose_secret() == "verification-secret" && *expires_at == now() + Duration::hours(24))
                    })
            })
            .times(1)
            .returning(|u, _, _| Ok(stored(&u)));

        let user = service(users, MockSessionRepository::new(), hashing_mocks())
            .register(register_request(Some("ada")), RequestContext::default())
            .await
            .expect("registered");

        assert_eq!(user.email, email());
    }

    #[tokio::test]
    async fn register_derives_the_username_from_the_email() {
        let mut users = MockUserRepository::new();
        users
            .expect_create()
            .withf(|u, _, _| u.username.as_ref() == "ada")
            .times(1)
            .returning(|u, _, _| Ok(stored(&u)));

        let user = service(users, MockSessionRepository::new(), hashing_mocks())
            .register(register_request(None), RequestContext::default())
            .await
            .expect("registered");

        assert_eq!(user.username.as_ref(), "ada");
    }

    #[tokio::test]
    async fn a_taken_derived_username_is_retried_with_a_suffix() {
        let mut users = MockUserRepository::new();
        let mut seq = mockall::Sequence::new();
        users
            .expect_create()
            .withf(|u, _, _| u.username.as_ref() == "ada")
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _| Err(CreateUserError::UsernameTaken));
        users
            .expect_create()
            .withf(|u, _, companion| {
                u.username.as_ref().starts_with("ada-")
                    && u.username.as_ref().len() == 8
                    && matches!(companion, AccountCompanion::Verification(m) if m.email.recipient_name == u.username.as_ref())
            })
            .times(1)
            .in_sequence(&mut seq)
            .returning(|u, _, _| Ok(stored(&u)));

        let user = service(users, MockSessionRepository::new(), hashing_mocks())
            .register(register_request(None), RequestContext::default())
            .await
            .expect("registered");

        assert!(user.username.as_ref().starts_with("ada-"), "{}", user.username);
    }

    #[tokio::test]
    async fn register_gives_up_when_every_derived_username_is_taken() {
        let mut users = MockUserRepository::new();
        users.expect_create().times(5).returning(|_, _, _| Err(CreateUserError::UsernameTaken));

        let result = service(users, MockSessionRepository::new(), hashing_mocks())
            .register(register_request(None), RequestContext::default())
            .await;

        assert!(matches!(result, Err(RegisterError::Unexpected(_))), "{result:?}");
    }

    #[tokio::test]
    async fn a_chosen_username_that_is_taken_is_refused() {
        let mut users = MockUserRepository::new();
        users.expect_create().times(1).returning(|_, _, _| Err(CreateUserError::UsernameTaken));

        let result = service(users, MockSessionRepository::new(), hashing_mocks())
            .register(register_request(Some("ada")), RequestContext::default())
            .await;

        assert!(matches!(result, Err(RegisterError::UsernameTaken)), "{result:?}");
    }

    #[tokio::test]
    async fn a_taken_email_is_refused() {
        let mut users = MockUserRepository::new();
        users.expect_create().times(1).returning(|_, _, _| Err(CreateUserError::EmailTaken));

        let result = service(users, MockSessionRepository::new(), hashing_mocks())
            .register(register_request(None), RequestContext::default())
            .await;

        assert!(matches!(result, Err(RegisterError::EmailTaken)), "{result:?}");
    }

    #[tokio::test]
    async fn register_answers_overloaded_without_touching_storage_when_hashing_is_saturated() {
        let mut mocks = Mocks::default();
        mocks.hasher.expect_hash().times(1).returning(|_| Err(crate::ports::HashError::Overloaded));
        let mut users = MockUserRepository::new();
        users.expect_create().never();

        let result = service(users, MockSessionRepository::new(), mocks)
            .register(register_request(None), RequestContext::default())
            .await;

        assert!(matches!(result, Err(RegisterError::Overloaded)), "{result:?}");
    }

    #[tokio::test]
    async fn register_reports_storage_failures_as_unexpected() {
        let mut users = MockUserRepository::new();
        users
            .expect_create()
            .times(1)
            .returning(|_, _, _| Err(CreateUserError::Unexpected(anyhow::anyhow!("disk full"))));

        let result = service(users, MockSessionRepository::new(), hashing_mocks())
            .register(register_request(None), RequestContext::default())
            .await;

        assert!(matches!(result, Err(RegisterError::Unexpected(_))), "{result:?}");
    }

    fn login_request(password: &str) -> LoginRequest {
        LoginRequest { identifier: LoginIdentifier::Email(email()), password: secret(password), device: None }
    }

    fn users_finding(user: Option<User>) -> MockUserRepository {
        let mut users = MockUserRepository::new();
        users
            .expect_find_credentials_by_email()
            .with(eq(email()))
            .times(1)
            .return_once(move |_| Ok(user.map(|user| Credentials { user, password_hash: Some(hash()) })));
        users.expect_record_failed_login().times(0..=1).returning(|_, _, _, _| Ok(false));
        users
    }

    fn verifying(check: PasswordCheck) -> Mocks {
        let mut mocks = Mocks::default();
        mocks.hasher.expect_verify().times(1).returning(move |_, _| Ok(check));
        mocks.activity.expect_record().times(0..=1).returning(|_| Ok(()));
        if check == PasswordCheck::Invalid {
            mocks.opaque_tokens.expect_generate().times(0..=1).returning(|| OpaqueToken {
                secret: secret("unlock-secret"),
                hash: TokenHash::new("unlock-hash".to_owned()),
            });
        }
        mocks
    }

    /// Mocks for a sign-in that goes all the way: a session is started and tokens issued.
    fn signing_in(mut mocks: Mocks) -> (MockSessionRepository, Mocks) {
        mocks.opaque_tokens.expect_generate().times(1).returning(|| OpaqueToken {
            secret: secret("refresh-secret"),
            hash: TokenHash::new("refresh-hash".to_owned()),
        });
        mocks
            .access_tokens
            .expect_issue()
            .withf(|claims| claims.expires_at == now() + Duration::minutes(15) && claims.roles == vec![Role::User])
            .times(1)
            .returning(|claims| Ok(format!("jwt-for-{}", claims.session_id)));
        let mut sessions = MockSessionRepository::new();
        sessions
            .expect_start()
            .withf(|s, event| {
                s.refresh_token_hash.as_str() == "refresh-hash"
                    && s.expires_at == now() + Duration::days(30)
                    && event.action == ActivityAction::LoginSucceeded
                    && event.user_id == s.user_id
            })
            .times(1)
            .returning(|s, _| {
                Ok(Session {
                    id: s.id,
                    user_id: s.user_id,
                    context: s.context,
                    created_at: s.created_at,
                    last_used_at: s.created_at,
                    expires_at: s.expires_at,
                    revoked_at: None,
                })
            });
        (sessions, mocks)
    }

    #[tokio::test]
    async fn login_starts_a_session_and_issues_a_token_pair() {
        let (sessions, mocks) = signing_in(verifying(PasswordCheck::Valid { needs_rehash: false }));
        let context =
            RequestContext { ip: Some("192.0.2.1".parse().expect("ip")), user_agent: Some("curl".to_owned()) };

        let pair = service(users_finding(Some(sample_user())), sessions, mocks)
            .login(login_request("correct horse"), context)
            .await
            .expect("signed in");

        assert_eq!(pair.access_token, format!("jwt-for-{}", pair.session_id));
        assert_eq!(pair.expires_in, 900);
        assert_eq!(pair.refresh_expires_in, 2_592_000);
        assert_eq!(secrecy::ExposeSecret::expose_secret(&pair.refresh_token), "refresh-secret");
    }

    #[tokio::test]
    async fn login_by_username_looks_the_username_up() {
        let (sessions, mocks) = signing_in(verifying(PasswordCheck::Valid { needs_rehash: false }));
        let mut users = MockUserRepository::new();
        let username = Username::parse("ADA").expect("valid");
        users
            .expect_find_credentials_by_username()
            .with(eq(username.clone()))
            .times(1)
            .returning(|_| Ok(Some(Credentials { user: sample_user(), password_hash: Some(hash()) })));
        let request =
            LoginRequest { identifier: LoginIdentifier::Username(username), password: secret("pw"), device: None };

        let result = service(users, sessions, mocks).login(request, RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn an_unknown_email_still_costs_one_verification_and_answers_invalid_credentials() {
        let mut mocks = Mocks::default();
        mocks
            .hasher
            .expect_verify()
            .withf(|_, stored| stored.is_none())
            .times(1)
            .returning(|_, _| Ok(PasswordCheck::Invalid));

        let result = service(users_finding(None), MockSessionRepository::new(), mocks)
            .login(login_request("whatever"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
    }

    #[tokio::test]
    async fn a_failed_sign_in_of_a_known_account_is_recorded_with_its_reason_and_no_password() {
        let user = sample_user();
        let user_id = user.id;
        let mut mocks = verifying(PasswordCheck::Invalid);
        mocks.activity.checkpoint();
        mocks.activity.expect_record().never();
        let mut users = MockUserRepository::new();
        users
            .expect_find_credentials_by_email()
            .return_once(move |_| Ok(Some(Credentials { user, password_hash: Some(hash()) })));
        users
            .expect_record_failed_login()
            .withf(move |id, _, event, _| {
                *id == user_id
                    && event.user_id == user_id
                    && event.action == ActivityAction::LoginFailed
                    && event.actor_id.is_none()
                    && event.details.get("reason").map(String::as_str) == Some("wrong_password")
                    && !event.details.values().any(|v| v.contains("hunter2"))
            })
            .times(1)
            .returning(|_, _, _, _| Ok(false));

        let result = service(users, MockSessionRepository::new(), mocks)
            .login(login_request("hunter2"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
    }

    #[tokio::test]
    async fn a_failure_to_record_a_failed_sign_in_does_not_change_the_answer() {
        let mocks = verifying(PasswordCheck::Invalid);
        let mut users = MockUserRepository::new();
        users
            .expect_find_credentials_by_email()
            .return_once(|_| Ok(Some(Credentials { user: sample_user(), password_hash: Some(hash()) })));
        users.expect_record_failed_login().times(1).returning(|_, _, _, _| Err(anyhow::anyhow!("disk full")));

        let result = service(users, MockSessionRepository::new(), mocks)
            .login(login_request("wrong"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
    }

    #[tokio::test]
    async fn a_wrong_password_answers_invalid_credentials() {
        let result = service(
            users_finding(Some(sample_user())),
            MockSessionRepository::new(),
            verifying(PasswordCheck::Invalid),
        )
        .login(login_request("wrong"), RequestContext::default())
        .await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
    }

    #[tokio::test]
    async fn an_account_without_a_password_cannot_sign_in_with_one() {
        let mut users = MockUserRepository::new();
        users
            .expect_find_credentials_by_email()
            .times(1)
            .returning(|_| Ok(Some(Credentials { user: sample_user(), password_hash: None })));
        let mut mocks = Mocks::default();
        mocks
            .hasher
            .expect_verify()
            .withf(|_, stored| stored.is_none())
            .times(1)
            .returning(|_, _| Ok(PasswordCheck::Invalid));

        mocks
            .activity
            .expect_record()
            .withf(|event| event.details.get("reason").map(String::as_str) == Some("no_password"))
            .times(1)
            .returning(|_| Ok(()));
        users.expect_record_failed_login().never();

        let result = service(users, MockSessionRepository::new(), mocks)
            .login(login_request("pw"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
    }

    #[tokio::test]
    async fn a_wrong_password_is_answered_before_its_bookkeeping_and_like_an_unknown_account() {
        let mut mocks = verifying(PasswordCheck::Invalid);
        mocks.activity.checkpoint();
        mocks.activity.expect_record().never();
        mocks.opaque_tokens.checkpoint();
        mocks.opaque_tokens.expect_generate().never();
        let mut users = MockUserRepository::new();
        users
            .expect_find_credentials_by_email()
            .return_once(|_| Ok(Some(Credentials { user: sample_user(), password_hash: Some(hash()) })));
        users.expect_record_failed_login().never();
        let service = service(users, MockSessionRepository::new(), mocks);

        let account = service.find_account(&LoginIdentifier::Email(email())).await.expect("looked up");
        let (answer, failure) =
            service.sign_in_with_password(account, &secret("wrong"), None, RequestContext::default()).await;

        assert!(matches!(answer, Err(LoginError::InvalidCredentials)), "{answer:?}");
        assert_eq!(failure.map(|f| f.reason), Some(FailureReason::WrongPassword), "owed, not yet done");
    }

    #[test]
    fn an_account_s_email_and_username_share_one_login_limit() {
        let user = sample_user();
        let account = |identifier| SignInAccount {
            identifier,
            credentials: Some(Credentials { user: user.clone(), password_hash: Some(hash()) }),
        };
        let by_email = account(LoginIdentifier::Email(email()));
        let by_username = account(LoginIdentifier::Username(Username::parse("ada").expect("valid")));
        assert_eq!(by_email.limit_key(), by_username.limit_key());
        let unknown = SignInAccount { identifier: LoginIdentifier::Email(email()), credentials: None };
        assert_eq!(unknown.limit_key(), "email:ada@example.com");
    }

    #[tokio::test]
    async fn a_locked_account_answers_account_locked_whatever_the_password() {
        for check in [PasswordCheck::Valid { needs_rehash: false }, PasswordCheck::Invalid] {
            let mut user = sample_user();
            user.status = UserStatus::Locked;
            user.locked_until = Some(now() + Duration::minutes(10));

            let result = service(users_finding(Some(user)), MockSessionRepository::new(), verifying(check))
                .login(login_request("pw"), RequestContext::default())
                .await;

            assert!(matches!(result, Err(LoginError::AccountLocked)), "{check:?}: {result:?}");
        }
    }

    #[tokio::test]
    async fn a_lock_that_has_run_out_no_longer_stops_sign_in() {
        let mut user = sample_user();
        user.status = UserStatus::Locked;
        user.locked_until = Some(now() - Duration::seconds(1));
        let (sessions, mocks) = signing_in(verifying(PasswordCheck::Valid { needs_rehash: false }));

        let result = service(users_finding(Some(user)), sessions, mocks)
            .login(login_request("pw"), RequestContext::default())
            .await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn a_disabled_account_answers_account_disabled_only_with_the_right_password() {
        let mut user = sample_user();
        user.status = UserStatus::Disabled;
        let result = service(
            users_finding(Some(user.clone())),
            MockSessionRepository::new(),
            verifying(PasswordCheck::Valid { needs_rehash: false }),
        )
        .login(login_request("pw"), RequestContext::default())
        .await;
        assert!(matches!(result, Err(LoginError::AccountDisabled)), "{result:?}");

        let result =
            service(users_finding(Some(user)), MockSessionRepository::new(), verifying(PasswordCheck::Invalid))
                .login(login_request("wrong"), RequestContext::default())
                .await;
        assert!(matches!(result, Err(LoginError::InvalidCredentials)), "{result:?}");
    }

    #[tokio::test]
    async fn an_unverified_email_is_refused_when_verification_is_required() {
        let mut user = sample_user();
        user.email_verified_at = None;

        let result = service(
            users_finding(Some(user)),
            MockSessionRepository::new(),
            verifying(PasswordCheck::Valid { needs_rehash: false }),
        )
        .login(login_request("pw"), RequestContext::default())
        .await;

        assert!(matches!(result, Err(LoginError::EmailNotVerified)), "{result:?}");
    }

    #[tokio::test]
    async fn an_unverified_email_may_sign_in_when_verification_is_not_required() {
        let mut user = sample_user();
        user.email_verified_at = None;
        let (sessions, mocks) = signing_in(verifying(PasswordCheck::Valid { needs_rehash: false }));
        let service = AuthService::new(
            ports_with_mocks(users_finding(Some(user)), sessions, mocks),
            AuthSettings { require_verified_email: false, ..settings() },
        );

        let result = service.login(login_request("pw"), RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn a_hash_with_outdated_parameters_is_upgraded_at_sign_in() {
        let user = sample_user();
        let user_id = user.id;
        let mut users = users_finding(Some(user));
        users
            .expect_update_password_hash()
            .with(eq(user_id), eq(PasswordHash::new("$argon2id$new".to_owned())), eq(now()))
            .times(1)
            .returning(|_, _, _| Ok(()));
        let mut mocks = verifying(PasswordCheck::Valid { needs_rehash: true });
        mocks.hasher.expect_hash().times(1).returning(|_| Ok(PasswordHash::new("$argon2id$new".to_owned())));
        let (sessions, mocks) = signing_in(mocks);

        let result = service(users, sessions, mocks).login(login_request("pw"), RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn a_failed_hash_upgrade_does_not_fail_the_sign_in() {
        let mut mocks = verifying(PasswordCheck::Valid { needs_rehash: true });
        mocks.hasher.expect_hash().times(1).returning(|_| Err(crate::ports::HashError::Overloaded));
        let (sessions, mocks) = signing_in(mocks);

        let result = service(users_finding(Some(sample_user())), sessions, mocks)
            .login(login_request("pw"), RequestContext::default())
            .await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn login_answers_overloaded_when_hashing_is_saturated() {
        let mut mocks = Mocks::default();
        mocks.hasher.expect_verify().times(1).returning(|_, _| Err(crate::ports::HashError::Overloaded));

        let result = service(users_finding(Some(sample_user())), MockSessionRepository::new(), mocks)
            .login(login_request("pw"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(LoginError::Overloaded)), "{result:?}");
    }

    #[tokio::test]
    async fn login_reports_storage_failures_as_unexpected() {
        let mut users = MockUserRepository::new();
        users.expect_find_credentials_by_email().times(1).returning(|_| Err(anyhow::anyhow!("timeout")));

        let result = service(users, MockSessionRepository::new(), Mocks::default())
            .login(login_request("pw"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(LoginError::Unexpected(_))), "{result:?}");
    }

    #[tokio::test]
    async fn a_failure_to_start_the_session_fails_the_sign_in() {
        let mut mocks = verifying(PasswordCheck::Valid { needs_rehash: false });
        mocks
            .opaque_tokens
            .expect_generate()
            .times(1)
            .returning(|| OpaqueToken { secret: secret("s"), hash: TokenHash::new("h".to_owned()) });
        let mut sessions = MockSessionRepository::new();
        sessions
            .expect_start()
            .with(always(), always())
            .times(1)
            .returning(|_, _| Err(anyhow::anyhow!("pool exhausted")));

        let result = service(users_finding(Some(sample_user())), sessions, mocks)
            .login(login_request("pw"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(LoginError::Unexpected(_))), "{result:?}");
    }
}
