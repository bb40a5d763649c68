//! The caller's own account: reading and editing it, changing its password, deleting it.

use secrecy::SecretString;

use crate::activity::{ActivityAction, NewActivity};
use crate::ids::UserId;
use crate::ports::{PasswordCheck, ProfileChanges, UpdateUserError, from_hash_error};
use crate::services::auth::AuthSettings;
use crate::services::sessions::Principal;
use crate::services::{Ports, discard_avatar, publish_revocations};
use crate::session::RequestContext;
use crate::user::{Credentials, User};
use crate::values::{NewPassword, PasswordError};

/// Why the caller's account could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GetMeError {
    /// The account no longer exists (deleted since the token was issued).
    #[error("the account no longer exists")]
    NotFound,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Why the caller's profile could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateMeError {
    /// The account no longer exists.
    #[error("the account no longer exists")]
    NotFound,
    /// Another account has the username.
    #[error("the username is already taken")]
    UsernameTaken,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Why a password change or an account deletion was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountSecurityError {
    /// The account no longer exists.
    #[error("the account no longer exists")]
    NotFound,
    /// The current password is wrong, or the account has none to check.
    #[error("the password is wrong")]
    InvalidCredentials,
    /// The account has a password and it was not given.
    #[error("the password is required")]
    PasswordRequired,
    /// The new password breaks the policy.
    #[error(transparent)]
    WeakPassword(PasswordError),
    /// The caller is the last active admin and may not delete their account.
    #[error("the last active admin cannot delete their account")]
    LastAdmin,
    /// Password hashing is saturated; try again shortly.
    #[error("the service is overloaded")]
    Overloaded,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

from_hash_error!(AccountSecurityError);

impl From<UpdateUserError> for AccountSecurityError {
    fn from(e: UpdateUserError) -> Self {
        match e {
            UpdateUserError::NotFound => Self::NotFound,
            UpdateUserError::LastAdmin => Self::LastAdmin,
            UpdateUserError::UsernameTaken => {
                Self::Unexpected(anyhow::anyhow!("a username conflict on a change that sets no username"))
            }
            UpdateUserError::Unexpected(e) => Self::Unexpected(e),
        }
    }
}

/// Use cases on the caller's own account.
#[derive(Clone)]
pub struct AccountService {
    ports: Ports,
    settings: AuthSettings,
}

impl AccountService {
    /// Builds the service over the given ports.
    #[must_use]
    pub fn new(ports: Ports, settings: AuthSettings) -> Self {
        Self { ports, settings }
    }

    /// The caller's account.
    ///
    /// # Errors
    ///
    /// [`GetMeError::NotFound`] when the user was deleted; `Unexpected` on storage failure.
    #[tracing::instrument(skip(self), fields(user_id = %user_id))]
    pub async fn get_me(&self, user_id: UserId) -> Result<User, GetMeError> {
        if let Some(user) = self.ports.cache.user(user_id) {
            return Ok(user);
        }
        let ticket = self.ports.cache.ticket();
        let user = self.ports.users.find_by_id(user_id).await?.ok_or(GetMeError::NotFound)?;
        self.ports.cache.fill_user(ticket, &user);
        Ok(user)
    }

    /// Changes the caller's display name and/or username, recording `user.updated` with the
    /// names of the changed fields. An empty change returns the account as it is.
    ///
    /// # Errors
    ///
    /// See [`UpdateMeError`].
    pub async fn update_me(
        &self,
        principal: &Principal,
        changes: ProfileChanges,
        context: RequestContext,
    ) -> Result<User, UpdateMeError> {
        if changes.is_empty() {
            return self.get_me(principal.user_id).await.map_err(|e| match e {
                GetMeError::NotFound => UpdateMeError::NotFound,
                GetMeError::Unexpected(e) => UpdateMeError::Unexpected(e),
            });
        }
        let fields: Vec<&str> =
            [changes.display_name.as_ref().map(|_| "display_name"), changes.username.as_ref().map(|_| "username")]
                .into_iter()
                .flatten()
                .collect();
        let now = self.ports.clock.now();
        let event = NewActivity::by_user(principal.user_id, ActivityAction::UserUpdated, &context, now)
            .with_detail("fields", fields.join(","));
        self.ports.users.update_profile(principal.user_id, changes, now, event).await.map_err(|e| match e {
            UpdateUserError::NotFound => UpdateMeError::NotFound,
            UpdateUserError::UsernameTaken => UpdateMeError::UsernameTaken,
            UpdateUserError::LastAdmin => {
                UpdateMeError::Unexpected(anyhow::anyhow!("a last-admin refusal on a profile change"))
            }
            UpdateUserError::Unexpected(e) => UpdateMeError::Unexpected(e),
        })
    }

    /// Changes the caller's password after checking the current one, and revokes every
    /// other session of theirs (the current one stays signed in).
    ///
    /// # Errors
    ///
    /// `WeakPassword` (checked first, before any hashing), `InvalidCredentials`,
    /// `Overloaded`, `NotFound`.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: SecretString,
        new: SecretString,
        context: RequestContext,
    ) -> Result<(), AccountSecurityError> {
        let credentials = self.credentials(principal.user_id).await?;
        let new = NewPassword::parse(new, &credentials.user.email).map_err(AccountSecurityError::WeakPassword)?;
        self.check_password(&credentials, Some(current)).await?;
        let hash = self.ports.hasher.hash(new.secret()).await?;
        let now = self.ports.clock.now();
        let event = NewActivity::by_user(principal.user_id, ActivityAction::PasswordChanged, &context, now);
        let revoked =
            self.ports.users.change_password(principal.user_id, hash, Some(principal.session_id), now, event).await?;
        publish_revocations(&self.ports, &self.settings, revoked, now).await;
        Ok(())
    }

    /// Soft-deletes the caller's account, revokes all their sessions and removes their
    /// avatar image. The password is required when the account has one.
    ///
    /// # Errors
    ///
    /// `PasswordRequired`, `InvalidCredentials`, `Overloaded`, `NotFound`.
    pub async fn delete_me(
        &self,
        principal: &Principal,
        password: Option<SecretString>,
        context: RequestContext,
    ) -> Result<(), AccountSecurityError> {
        let credentials = self.credentials(principal.user_id).await?;
        if credentials.password_hash.is_some() {
            self.check_password(&credentials, password).await?;
        }
        let now = self.ports.clock.now();
        let event = NewActivity::by_user(principal.user_id, ActivityAction::UserDeleted, &context, now);
        let deleted = self.ports.users.soft_delete(principal.user_id, now, event).await?;
        publish_revocations(&self.ports, &self.settings, deleted.revoked_sessions, now).await;
        if let Some(avatar) = deleted.avatar {
            discard_avatar(&self.ports, &avatar).await;
        }
        Ok(())
    }

    async fn credentials(&self, user_id: UserId) -> Result<Credentials, AccountSecurityError> {
        self.ports.users.find_credentials_by_id(user_id).await?.ok_or(AccountSecurityError::NotFound)
    }

    async fn check_password(
        &self,
        credentials: &Credentials,
        password: Option<SecretString>,
    ) -> Result<(), AccountSecurityError> {
        let password = password.ok_or(AccountSecurityError::PasswordRequired)?;
        match self.ports.hasher.verify(&password, credentials.password_hash.as_ref()).await? {
            PasswordCheck::Valid { .. } => Ok(()),
            PasswordCheck::Invalid => Err(AccountSecurityError::InvalidCredentials),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avatar::{Avatar, AvatarFormat, AvatarKey};
    use crate::ids::SessionId;
    use crate::ports::{MockSessionRepository, MockUserRepository, PasswordHash, SoftDeleted};
    use crate::services::testing::{Mocks, now, ports_with, ports_with_mocks, sample_user, settings};
    use crate::values::{DisplayName, Username};
    use chrono::Duration;
    use mockall::predicate::eq;

    fn principal(user: &User) -> Principal {
        Principal { user_id: user.id, session_id: SessionId::generate(), roles: user.roles.clone() }
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn service(users: MockUserRepository, mocks: Mocks) -> AccountService {
        AccountService::new(ports_with_mocks(users, MockSessionRepository::new(), mocks), settings())
    }

    fn users_with_credentials(user: &User, hash: Option<&str>) -> MockUserRepository {
        let mut users = MockUserRepository::new();
        let credentials =
            Credentials { user: user.clone(), password_hash: hash.map(|h| PasswordHash::new(h.to_owned())) };
        users.expect_find_credentials_by_id().with(eq(user.id)).times(1).return_once(move |_| Ok(Some(credentials)));
        users
    }

    fn verifying(check: PasswordCheck) -> Mocks {
        let mut mocks = Mocks::default();
        mocks.hasher.expect_verify().times(1).returning(move |_, _| Ok(check));
        mocks
    }

    #[tokio::test]
    async fn get_me_returns_the_callers_account() {
        let user = sample_user();
        let id = user.id;
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().with(eq(id)).times(1).return_once(move |_| Ok(Some(user)));
        let service = AccountService::new(ports_with(users, MockSessionRepository::new()), settings());

        let found = service.get_me(id).await.expect("found");

        assert_eq!(found.id, id);
    }

    #[tokio::test]
    async fn get_me_of_a_deleted_account_is_not_found() {
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().times(1).return_once(|_| Ok(None));
        let service = AccountService::new(ports_with(users, MockSessionRepository::new()), settings());

        let result = service.get_me(UserId::generate()).await;

        assert!(matches!(result, Err(GetMeError::NotFound)), "{result:?}");
    }

    #[tokio::test]
    async fn get_me_reports_storage_failures_as_unexpected() {
        let mut users = MockUserRepository::new();
        users.expect_find_by_id().times(1).return_once(|_| Err(anyhow::anyhow!("connection reset")));
        let service = AccountService::new(ports_with(users, MockSessionRepository::new()), settings());

        let result = service.get_me(UserId::generate()).await;

        assert!(matches!(result, Err(GetMeError::Unexpected(_))), "{result:?}");
    }

    #[tokio::test]
    async fn update_me_records_which_fields_changed() {
        let user = sample_user();
        let returned = user.clone();
        let mut users = MockUserRepository::new();
        users
            .expect_update_profile()
            .withf(|_, changes, at, event| {
                changes.username.as_ref().map(AsRef::as_ref) == Some("lovelace")
                    && *at == now()
                    && event.action == ActivityAction::UserUpdated
                    && event.details.get("fields").map(String::as_str) == Some("display_name,username")
            })
            .times(1)
            .return_once(move |_, _, _, _| Ok(returned));
        let changes = ProfileChanges {
            display_name: Some(Some(DisplayName::parse("Ada L.").expect("valid"))),
            username: Some(Username::parse("lovelace").expect("valid")),
        };

        let result =
            service(users, Mocks::default()).update_me(&principal(&user), changes, RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn an_empty_update_changes_nothing() {
        let user = sample_user();
        let returned = user.clone();
        let mut users = MockUserRepository::new();
        users.expect_update_profile().never();
        users.expect_find_by_id().times(1).return_once(move |_| Ok(Some(returned)));

        let result = service(users, Mocks::default())
            .update_me(&principal(&user), ProfileChanges::default(), RequestContext::default())
            .await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn update_me_reports_a_taken_username() {
        let user = sample_user();
        let mut users = MockUserRepository::new();
        users.expect_update_profile().times(1).returning(|_, _, _, _| Err(UpdateUserError::UsernameTaken));
        let changes = ProfileChanges { username: Some(Username::parse("grace").expect("valid")), ..Default::default() };

        let result =
            service(users, Mocks::default()).update_me(&principal(&user), changes, RequestContext::default()).await;

        assert!(matches!(result, Err(UpdateMeError::UsernameTaken)), "{result:?}");
    }

    #[tokio::test]
    async fn changing_the_password_revokes_the_other_sessions_and_keeps_the_current_one() {
        let user = sample_user();
        let caller = principal(&user);
        let current = caller.session_id;
        let other = SessionId::generate();
        let mut users = users_with_credentials(&user, Some("$argon2id$old"));
        users
            .expect_change_password()
            .withf(move |_, hash, keep, _, event| {
                hash.as_str() == "$argon2id$new"
                    && *keep == Some(current)
                    && event.action == ActivityAction::PasswordChanged
            })
            .times(1)
            .returning(move |_, _, _, _, _| Ok(vec![other]));
        let mut mocks = verifying(PasswordCheck::Valid { needs_rehash: false });
        mocks.hasher.expect_hash().times(1).returning(|_| Ok(PasswordHash::new("$argon2id$new".to_owned())));
        mocks
            .revocations
            .expect_revoke()
            .with(eq(vec![other]), eq(now() + Duration::minutes(15)))
            .times(1)
            .returning(|_, _| Ok(()));

        let result = service(users, mocks)
            .change_password(
                &caller,
                secret("old password"),
                secret("a brand new passphrase"),
                RequestContext::default(),
            )
            .await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn a_wrong_current_password_changes_nothing() {
        let user = sample_user();
        let mut users = users_with_credentials(&user, Some("$argon2id$old"));
        users.expect_change_password().never();

        let result = service(users, verifying(PasswordCheck::Invalid))
            .change_password(
                &principal(&user),
                secret("wrong"),
                secret("a brand new passphrase"),
                RequestContext::default(),
            )
            .await;

        assert!(matches!(result, Err(AccountSecurityError::InvalidCredentials)), "{result:?}");
    }

    #[tokio::test]
    async fn a_weak_new_password_is_refused_before_any_hashing() {
        let user = sample_user();
        let users = users_with_credentials(&user, Some("$argon2id$old"));

        let result = service(users, Mocks::default())
            .change_password(&principal(&user), secret("old password"), secret("password"), RequestContext::default())
            .await;

        assert!(matches!(result, Err(AccountSecurityError::WeakPassword(PasswordError::TooCommon))), "{result:?}");
    }

    #[tokio::test]
    async fn a_failure_to_publish_revocations_does_not_undo_the_committed_change() {
        let user = sample_user();
        let mut users = users_with_credentials(&user, Some("$argon2id$old"));
        users.expect_change_password().times(1).returning(|_, _, _, _, _| Ok(vec![SessionId::generate()]));
        let mut mocks = verifying(PasswordCheck::Valid { needs_rehash: false });
        mocks.hasher.expect_hash().times(1).returning(|_| Ok(PasswordHash::new("$argon2id$new".to_owned())));
        mocks.revocations.expect_revoke().times(1).returning(|_, _| Err(anyhow::anyhow!("redis down")));

        let result = service(users, mocks)
            .change_password(
                &principal(&user),
                secret("old password"),
                secret("a brand new passphrase"),
                RequestContext::default(),
            )
            .await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn deleting_an_account_with_a_password_needs_it() {
        let user = sample_user();
        let mut users = users_with_credentials(&user, Some("$argon2id$old"));
        users.expect_soft_delete().never();

        let result =
            service(users, Mocks::default()).delete_me(&principal(&user), None, RequestContext::default()).await;

        assert!(matches!(result, Err(AccountSecurityError::PasswordRequired)), "{result:?}");
    }

    #[tokio::test]
    async fn deleting_an_account_with_the_wrong_password_is_refused() {
        let user = sample_user();
        let mut users = users_with_credentials(&user, Some("$argon2id$old"));
        users.expect_soft_delete().never();

        let result = service(users, verifying(PasswordCheck::Invalid))
            .delete_me(&principal(&user), Some(secret("wrong")), RequestContext::default())
            .await;

        assert!(matches!(result, Err(AccountSecurityError::InvalidCredentials)), "{result:?}");
    }

    #[tokio::test]
    async fn deleting_an_account_soft_deletes_it_and_revokes_every_session() {
        let user = sample_user();
        let caller = principal(&user);
        let sessions = vec![caller.session_id, SessionId::generate()];
        let revoked = sessions.clone();
        let mut users = users_with_credentials(&user, Some("$argon2id$old"));
        users
            .expect_soft_delete()
            .withf(|_, at, event| *at == now() && event.action == ActivityAction::UserDeleted)
            .times(1)
            .return_once(move |_, _, _| Ok(SoftDeleted { revoked_sessions: revoked, avatar: None }));
        let mut mocks = verifying(PasswordCheck::Valid { needs_rehash: false });
        mocks
            .revocations
            .expect_revoke()
            .with(eq(sessions), eq(now() + Duration::minutes(15)))
            .times(1)
            .returning(|_, _| Ok(()));

        let result = service(users, mocks).delete_me(&caller, Some(secret("pw")), RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn an_account_without_a_password_is_deleted_without_one() {
        let user = sample_user();
        let mut users = users_with_credentials(&user, None);
        users.expect_soft_delete().times(1).returning(|_, _, _| Ok(SoftDeleted::default()));

        let result =
            service(users, Mocks::default()).delete_me(&principal(&user), None, RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn deleting_an_account_removes_its_avatar_image() {
        let user = sample_user();
        let avatar =
            Avatar { key: AvatarKey::new(user.id, &"ab".repeat(32)).expect("valid key"), format: AvatarFormat::Jpeg };
        let cleared = avatar.clone();
        let mut users = users_with_credentials(&user, None);
        users
            .expect_soft_delete()
            .times(1)
            .return_once(move |_, _, _| Ok(SoftDeleted { revoked_sessions: Vec::new(), avatar: Some(cleared) }));
        let mut mocks = Mocks::default();
        mocks.avatar_store.expect_delete().with(eq(avatar)).times(1).returning(|_| Ok(()));

        let result = service(users, mocks).delete_me(&principal(&user), None, RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn an_avatar_that_cannot_be_removed_does_not_undo_the_deletion() {
        let user = sample_user();
        let avatar =
            Avatar { key: AvatarKey::new(user.id, &"cd".repeat(32)).expect("valid key"), format: AvatarFormat::Png };
        let mut users = users_with_credentials(&user, None);
        users
            .expect_soft_delete()
            .times(1)
            .return_once(move |_, _, _| Ok(SoftDeleted { revoked_sessions: Vec::new(), avatar: Some(avatar) }));
        let mut mocks = Mocks::default();
        mocks.avatar_store.expect_delete().times(1).returning(|_| Err(anyhow::anyhow!("read-only file system")));

        let result = service(users, mocks).delete_me(&principal(&user), None, RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }
}
