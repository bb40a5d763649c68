//! The administration use cases, open only to holders of the `admin` role.
//!
//! Every method takes an [`AdminPrincipal`], which only [`AdminPrincipal::authorize`] can
//! make: a caller cannot reach these use cases without passing the role check, whatever
//! the handler does.

use crate::activity::{ActivityAction, NewActivity};
use crate::ids::UserId;
use crate::pagination::Page;
use crate::ports::{
    AccountCompanion, AdminChangeError, AdminChanges, CreateUserError, EnsureAdmin, PasswordHash, UserCursor,
    UserQuery, from_hash_error,
};
use crate::services::auth::AuthSettings;
use crate::services::sessions::Principal;
use crate::services::{Ports, create_account, discard_avatar, publish_revocations};
use crate::session::RequestContext;
use crate::user::{Role, User, UserStatus};
use crate::values::{DisplayName, Email, NewPassword, Username};

/// A principal proven to hold the `admin` role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPrincipal(Principal);

/// The caller lacks the role an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this operation needs the admin role")]
pub struct Forbidden;

impl AdminPrincipal {
    /// Checks that `principal` holds the `admin` role. Its roles come from an access token
    /// whose session is revoked whenever the user's roles change, so they are current.
    ///
    /// # Errors
    ///
    /// [`Forbidden`] without the role.
    pub fn authorize(principal: Principal) -> Result<Self, Forbidden> {
        if principal.roles.contains(&Role::Admin) { Ok(Self(principal)) } else { Err(Forbidden) }
    }

    /// The admin's own principal.
    #[must_use]
    pub fn principal(&self) -> &Principal {
        &self.0
    }
}

/// Why an administrative operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No such user.
    #[error("no such user")]
    NotFound,
    /// Another account has the email.
    #[error("the email address is already registered")]
    EmailTaken,
    /// Another account has the username.
    #[error("the username is already taken")]
    UsernameTaken,
    /// The change would leave no active admin.
    #[error("the last active admin must stay an active admin")]
    LastAdmin,
    /// Password hashing is saturated.
    #[error("the service is overloaded")]
    Overloaded,
    /// Anything else.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<AdminChangeError> for AdminError {
    fn from(e: AdminChangeError) -> Self {
        match e {
            AdminChangeError::NotFound => Self::NotFound,
            AdminChangeError::EmailTaken => Self::EmailTaken,
            AdminChangeError::UsernameTaken => Self::UsernameTaken,
            AdminChangeError::LastAdmin => Self::LastAdmin,
            AdminChangeError::Unexpected(e) => Self::Unexpected(e),
        }
    }
}

impl From<CreateUserError> for AdminError {
    fn from(e: CreateUserError) -> Self {
        match e {
            CreateUserError::EmailTaken => Self::EmailTaken,
            CreateUserError::UsernameTaken => Self::UsernameTaken,
            CreateUserError::IdentityTaken => Self::Unexpected(anyhow::anyhow!("no identity was given")),
            CreateUserError::Unexpected(e) => Self::Unexpected(e),
        }
    }
}

from_hash_error!(AdminError);

/// An account an administrator creates.
#[derive(Debug)]
pub struct NewAccount {
    /// The email.
    pub email: Email,
    /// A password meeting the policy; `None` for accounts that will sign in otherwise
    /// (a reset link, an OAuth provider).
    pub password: Option<NewPassword>,
    /// Derived from the email when `None`.
    pub username: Option<Username>,
    /// Optional human name.
    pub display_name: Option<DisplayName>,
    /// Roles beyond `user`.
    pub roles: Vec<Role>,
    /// Whether the email counts as verified already.
    pub email_verified: bool,
}

/// User administration.
#[derive(Clone)]
pub struct AdminService {
    ports: Ports,
    settings: AuthSettings,
}

impl AdminService {
    /// Builds the service.
    #[must_use]
    pub fn new(ports: Ports, settings: AuthSettings) -> Self {
        Self { ports, settings }
    }

    /// One page of users.
    ///
    /// # Errors
    ///
    /// Only storage failures.
    pub async fn list_users(
        &self,
        _admin: &AdminPrincipal,
        query: UserQuery,
    ) -> anyhow::Result<Page<User, UserCursor>> {
        self.ports.directory.list(query).await
    }

    /// Any user, soft-deleted or not.
    ///
    /// # Errors
    ///
    /// [`AdminError::NotFound`] for unknown ids.
    pub async fn get_user(&self, _admin: &AdminPrincipal, id: UserId) -> Result<User, AdminError> {
        self.ports.directory.find(id).await?.ok_or(AdminError::NotFound)
    }

    /// Creates an account, recording `user.registered` with the admin as actor.
    ///
    /// # Errors
    ///
    /// `EmailTaken`, `UsernameTaken`, `Overloaded`.
    pub async fn create_user(
        &self,
        admin: &AdminPrincipal,
        account: NewAccount,
        context: RequestContext,
    ) -> Result<User, AdminError> {
        self.create(Some(admin.0.user_id), account, &context).await
    }

    /// Applies `changes`. Changing the roles or disabling or locking the account revokes
    /// the user's sessions; each kind of change is recorded (`user.updated`,
    /// `user.roles_changed`, `user.status_changed`).
    ///
    /// # Errors
    ///
    /// `NotFound`, `EmailTaken`, `UsernameTaken`, and `LastAdmin` when the change would
    /// leave no active admin (an admin removing their own role or disabling themself).
    pub async fn update_user(
        &self,
        admin: &AdminPrincipal,
        id: UserId,
        mut changes: AdminChanges,
        context: RequestContext,
    ) -> Result<User, AdminError> {
        let current =
            self.ports.directory.find(id).await?.filter(|u| u.deleted_at.is_none()).ok_or(AdminError::NotFound)?;
        if let Some(roles) = &mut changes.roles {
            roles.push(Role::User);
            roles.sort_unstable();
            roles.dedup();
        }
        let now = self.ports.clock.now();
        let actor =
            |action| NewActivity { actor_id: Some(admin.0.user_id), ..NewActivity::by_user(id, action, &context, now) };
        let mut events = Vec::new();
        let profile_fields: Vec<&str> = [
            changes.email.as_ref().map(|_| "email"),
            changes.username.as_ref().map(|_| "username"),
            changes.display_name.as_ref().map(|_| "display_name"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !profile_fields.is_empty() {
            events.push(actor(ActivityAction::UserUpdated).with_detail("fields", profile_fields.join(",")));
        }
        let roles_changed = changes.roles.as_ref().is_some_and(|roles| *roles != current.roles);
        if let Some(roles) = changes.roles.as_ref().filter(|_| roles_changed) {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            events.push(actor(ActivityAction::RolesChanged).with_detail("roles", names.join(",")));
        }
        let status_changed = changes.status.is_some_and(|status| status != current.status_at(now));
        if let Some(status) = changes.status.filter(|_| status_changed) {
            events.push(actor(ActivityAction::StatusChanged).with_detail("status", status));
        }
        let shuts_out = status_changed && matches!(changes.status, Some(UserStatus::Disabled | UserStatus::Locked));
        let revoke_sessions = roles_changed || shuts_out;
        let outcome = self.ports.directory.update(id, changes, revoke_sessions, now, events).await?;
        publish_revocations(&self.ports, &self.settings, outcome.revoked, now).await;
        Ok(outcome.user)
    }

    /// Soft-deletes a user and revokes their sessions.
    ///
    /// # Errors
    ///
    /// `NotFound` (also for users already deleted), `LastAdmin`.
    pub async fn delete_user(
        &self,
        admin: &AdminPrincipal,
        id: UserId,
        context: RequestContext,
    ) -> Result<(), AdminError> {
        let now = self.ports.clock.now();
        let event = NewActivity {
            actor_id: Some(admin.0.user_id),
            ..NewActivity::by_user(id, ActivityAction::UserDeleted, &context, now)
        };
        let deleted = self.ports.directory.delete(id, now, event).await?;
        publish_revocations(&self.ports, &self.settings, deleted.revoked_sessions, now).await;
        if let Some(avatar) = deleted.avatar {
            discard_avatar(&self.ports, &avatar).await;
        }
        Ok(())
    }

    /// Restores a soft-deleted user.
    ///
    /// # Errors
    ///
    /// `NotFound` unless the user is deleted; `EmailTaken`/`UsernameTaken` when someone
    /// took them meanwhile.
    pub async fn restore_user(
        &self,
        admin: &AdminPrincipal,
        id: UserId,
        context: RequestContext,
    ) -> Result<User, AdminError> {
        let now = self.ports.clock.now();
        let event = NewActivity {
            actor_id: Some(admin.0.user_id),
            ..NewActivity::by_user(id, ActivityAction::UserRestored, &context, now)
        };
        Ok(self.ports.directory.restore(id, now, event).await?)
    }

    /// Creates the first admin from configuration when no active admin exists; does
    /// nothing otherwise. Safe when several instances start at once. When an account with the
    /// email exists, it is handed to the operator: their password replaces its password, the
    /// email counts as verified, and every session and outstanding link of whoever
    /// registered the address before ends.
    ///
    /// # Errors
    ///
    /// `Overloaded` or storage failures.
    pub async fn bootstrap_first_admin(&self, email: Email, password: NewPassword) -> Result<EnsureAdmin, AdminError> {
        let (admin, event) = self.operator_admin(email, &password, "bootstrap").await?;
        let now = event.created_at;
        let outcome = self.ports.directory.ensure_admin(admin, event).await?;
        if let EnsureAdmin::Promoted { revoked, .. } = &outcome {
            publish_revocations(&self.ports, &self.settings, revoked.clone(), now).await;
        }
        Ok(outcome)
    }

    /// Makes `email` an admin from the command line: creates the account with `password`
    /// or, when it exists, hands it to the operator as [`AdminService::bootstrap_first_admin`]
    /// does (their password, a verified email, every earlier session and link ended).
    ///
    /// # Errors
    ///
    /// `Overloaded` or storage failures.
    pub async fn create_admin(&self, email: Email, password: NewPassword) -> Result<User, AdminError> {
        let account = NewAccount {
            email: email.clone(),
            password: Some(password.clone()),
            username: None,
            display_name: None,
            roles: vec![Role::Admin],
            email_verified: true,
        };
        match self.create(None, account, &RequestContext::default()).await {
            Err(AdminError::EmailTaken) => {}
            other => return other,
        }
        let (admin, event) = self.operator_admin(email, &password, "create-admin").await?;
        let now = event.created_at;
        match self.ports.directory.make_admin(admin, event).await? {
            EnsureAdmin::Promoted { admin, revoked } => {
                publish_revocations(&self.ports, &self.settings, revoked, now).await;
                Ok(admin)
            }
            EnsureAdmin::Created(admin) => Ok(admin),
            EnsureAdmin::AlreadyPresent => Err(anyhow::anyhow!("make_admin changed nothing").into()),
        }
    }

    /// The admin an operator names, with their password hashed, and the event recording it.
    async fn operator_admin(
        &self,
        email: Email,
        password: &NewPassword,
        reason: &str,
    ) -> Result<(crate::user::NewUser, NewActivity), AdminError> {
        let hash = self.ports.hasher.hash(password.secret()).await?;
        let now = self.ports.clock.now();
        let admin = crate::user::NewUser {
            id: UserId::generate(),
            username: Username::derive_from(&email, None),
            email,
            display_name: None,
            password_hash: Some(hash),
            roles: vec![Role::User, Role::Admin],
            email_verified_at: Some(now),
            created_at: now,
        };
        let event = NewActivity {
            actor_id: None,
            ..NewActivity::by_user(admin.id, ActivityAction::RolesChanged, &RequestContext::default(), now)
        }
        .with_detail("roles", "user,admin")
        .with_detail("reason", reason);
        Ok((admin, event))
    }

    async fn create(
        &self,
        actor: Option<UserId>,
        account: NewAccount,
        context: &RequestContext,
    ) -> Result<User, AdminError> {
        let password_hash: Option<PasswordHash> = match &account.password {
            Some(password) => Some(self.ports.hasher.hash(password.secret()).await?),
            None => None,
        };
        let mut roles = account.roles;
        roles.push(Role::User);
        roles.sort_unstable();
        roles.dedup();
        let now = self.ports.clock.now();
        let draft = crate::services::AccountDraft {
            email: account.email,
            username: account.username,
            display_name: account.display_name,
            password_hash,
            roles,
            email_verified_at: account.email_verified.then_some(now),
        };
        let event = |id| NewActivity {
            actor_id: actor.or(Some(id)),
            ..NewActivity::by_user(id, ActivityAction::UserRegistered, context, now)
        };
        Ok(create_account(&self.ports, draft, now, event, |_| AccountCompanion::Nothing).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SessionId;
    use crate::ports::{AdminChangeOutcome, MockSessionRepository, MockUserRepository, SoftDeleted};
    use crate::services::testing::{Mocks, now, ports_with_mocks, sample_user, settings};
    use chrono::Duration;
    use mockall::predicate::eq;
    use secrecy::SecretString;

    fn admin() -> AdminPrincipal {
        let principal = Principal {
            user_id: UserId::generate(),
            session_id: SessionId::generate(),
            roles: vec![Role::User, Role::Admin],
        };
        AdminPrincipal::authorize(principal).expect("an admin")
    }

    fn service(users: MockUserRepository, mocks: Mocks) -> AdminService {
        AdminService::new(ports_with_mocks(users, MockSessionRepository::new(), mocks), settings())
    }

    fn finding(mocks: &mut Mocks, user: &User) {
        let found = user.clone();
        mocks.directory.expect_find().with(eq(user.id)).times(1).return_once(move |_| Ok(Some(found)));
    }

    #[test]
    fn only_holders_of_the_admin_role_are_authorized() {
        let user =
            Principal { user_id: UserId::generate(), session_id: SessionId::generate(), roles: vec![Role::User] };
        assert_eq!(AdminPrincipal::authorize(user), Err(Forbidden));
        assert!(AdminPrincipal::authorize(Principal { roles: vec![Role::Admin], ..admin().0 }).is_ok());
    }

    #[tokio::test]
    async fn changing_roles_revokes_the_users_sessions_and_records_it() {
        let user = sample_user();
        let revoked = vec![SessionId::generate()];
        let mut mocks = Mocks::default();
        finding(&mut mocks, &user);
        let returned = user.clone();
        let sessions = revoked.clone();
        mocks
            .directory
            .expect_update()
            .withf(|_, changes, revoke, _, events| {
                *revoke
                    && changes.roles == Some(vec![Role::User, Role::Admin])
                    && events.len() == 1
                    && events[0].action == ActivityAction::RolesChanged
                    && events[0].details.get("roles").map(String::as_str) == Some("user,admin")
            })
            .times(1)
            .return_once(move |_, _, _, _, _| Ok(AdminChangeOutcome { user: returned, revoked: sessions }));
        mocks
            .revocations
            .expect_revoke()
            .with(eq(revoked), eq(now() + Duration::minutes(15)))
            .times(1)
            .returning(|_, _| Ok(()));
        let changes = AdminChanges { roles: Some(vec![Role::Admin]), ..AdminChanges::default() };

        let result = service(MockUserRepository::new(), mocks)
            .update_user(&admin(), user.id, changes, RequestContext::default())
            .await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn a_profile_edit_that_keeps_roles_and_status_revokes_nothing() {
        let user = sample_user();
        let mut mocks = Mocks::default();
        finding(&mut mocks, &user);
        let returned = user.clone();
        mocks
            .directory
            .expect_update()
            .withf(|_, _, revoke, _, events| {
                !*revoke && events.len() == 1 && events[0].action == ActivityAction::UserUpdated
            })
            .times(1)
            .return_once(move |_, _, _, _, _| Ok(AdminChangeOutcome { user: returned, revoked: Vec::new() }));
        let changes = AdminChanges {
            display_name: Some(None),
            roles: Some(vec![Role::User]),
            status: Some(UserStatus::Active),
            ..AdminChanges::default()
        };

        let result = service(MockUserRepository::new(), mocks)
            .update_user(&admin(), user.id, changes, RequestContext::default())
            .await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn disabling_a_user_revokes_their_sessions() {
        let user = sample_user();
        let mut mocks = Mocks::default();
        finding(&mut mocks, &user);
        let returned = user.clone();
        mocks
            .directory
            .expect_update()
            .withf(|_, _, revoke, _, events| *revoke && events[0].action == ActivityAction::StatusChanged)
            .times(1)
            .return_once(move |_, _, _, _, _| Ok(AdminChangeOutcome { user: returned, revoked: Vec::new() }));
        let changes = AdminChanges { status: Some(UserStatus::Disabled), ..AdminChanges::default() };

        let result = service(MockUserRepository::new(), mocks)
            .update_user(&admin(), user.id, changes, RequestContext::default())
            .await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn the_last_admin_rule_surfaces_as_its_own_error() {
        let user = sample_user();
        let mut mocks = Mocks::default();
        finding(&mut mocks, &user);
        mocks.directory.expect_update().times(1).returning(|_, _, _, _, _| Err(AdminChangeError::LastAdmin));
        let changes = AdminChanges { roles: Some(vec![]), ..AdminChanges::default() };

        let result = service(MockUserRepository::new(), mocks)
            .update_user(&admin(), user.id, changes, RequestContext::default())
            .await;

        assert!(matches!(result, Err(AdminError::LastAdmin)), "{result:?}");
    }

    #[tokio::test]
    async fn a_deleted_user_cannot_be_updated() {
        let mut user = sample_user();
        user.deleted_at = Some(now());
        let mut mocks = Mocks::default();
        finding(&mut mocks, &user);

        let result = service(MockUserRepository::new(), mocks)
            .update_user(&admin(), user.id, AdminChanges::default(), RequestContext::default())
            .await;

        assert!(matches!(result, Err(AdminError::NotFound)), "{result:?}");
    }

    #[tokio::test]
    async fn an_admin_created_account_records_the_admin_as_actor() {
        let caller = admin();
        let admin_id = caller.0.user_id;
        let mut users = MockUserRepository::new();
        users
            .expect_create()
            .withf(move |user, event, companion| {
                matches!(companion, AccountCompanion::Nothing)
                    && user.roles == vec![Role::User, Role::Admin]
                    && user.password_hash.is_none()
                    && user.email_verified_at == Some(now())
                    && event.actor_id == Some(admin_id)
                    && event.user_id == user.id
            })
            .times(1)
            .returning(|user, _, _| {
                let mut stored = sample_user();
                stored.id = user.id;
                Ok(stored)
            });
        let account = NewAccount {
            email: Email::parse("grace@example.com").expect("valid"),
            password: None,
            username: None,
            display_name: None,
            roles: vec![Role::Admin],
            email_verified: true,
        };

        let result = service(users, Mocks::default()).create_user(&caller, account, RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn deleting_a_user_publishes_the_revoked_sessions() {
        let id = UserId::generate();
        let revoked = vec![SessionId::generate()];
        let sessions = revoked.clone();
        let mut mocks = Mocks::default();
        mocks
            .directory
            .expect_delete()
            .withf(move |target, _, event| *target == id && event.action == ActivityAction::UserDeleted)
            .times(1)
            .return_once(move |_, _, _| Ok(SoftDeleted { revoked_sessions: sessions, avatar: None }));
        mocks
            .revocations
            .expect_revoke()
            .with(eq(revoked), eq(now() + Duration::minutes(15)))
            .times(1)
            .returning(|_, _| Ok(()));

        let result =
            service(MockUserRepository::new(), mocks).delete_user(&admin(), id, RequestContext::default()).await;

        assert!(result.is_ok(), "{result:?}");
    }

    #[tokio::test]
    async fn create_admin_hands_an_existing_account_to_the_operator() {
        let existing = sample_user();
        let existing_id = existing.id;
        let mut users = MockUserRepository::new();
        users.expect_create().times(1).returning(|_, _, _| Err(CreateUserError::EmailTaken));
        let mut mocks = Mocks::default();
        mocks.hasher.expect_hash().times(2).returning(|_| Ok(PasswordHash::new("$argon2id$operator".to_owned())));
        mocks
            .directory
            .expect_make_admin()
            .withf(|admin, event| {
                admin.email.as_ref() == "ada@example.com"
                    && admin.password_hash.as_ref().map(PasswordHash::as_str) == Some("$argon2id$operator")
                    && admin.email_verified_at.is_some()
                    && event.details.get("reason").map(String::as_str) == Some("create-admin")
            })
            .times(1)
            .return_once(move |_, _| Ok(EnsureAdmin::Promoted { admin: existing, revoked: Vec::new() }));
        let email = Email::parse("ada@example.com").expect("valid");
        let password =
            NewPassword::parse(SecretString::from("a long admin passphrase".to_owned()), &email).expect("valid");

        let result = service(users, mocks).create_admin(email, password).await;

        assert_eq!(result.expect("an admin").id, existing_id);
    }
}
