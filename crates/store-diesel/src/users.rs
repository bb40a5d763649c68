//! [`UserRepository`] on Diesel: the `users` and `user_roles` tables.
//!
//! Emails and usernames are compared through their `*_normalized` columns, lower-cased here in
//! Rust so both engines fold Unicode case the same way. The partial unique indexes on those
//! columns are the source of truth for uniqueness; a pre-check inside the insert transaction
//! only decides which error wins when both collide.
//!
//! Every change that the domain records in the audit trail writes its event in the change's
//! own transaction: a change that fails leaves no event.

use std::collections::{BTreeSet, HashSet};

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use gatehouse_domain::ports::{
    AccountCompanion, AvatarChange, CreateUserError, Lockout, PasswordHash, ProfileChanges, SecretCipher, SoftDeleted,
    TokenHash, TokenKind, TokenMail, UpdateUserError, UseTokenError, UserRepository,
};
use gatehouse_domain::{
    Avatar, AvatarFormat, AvatarKey, Credentials, DisplayName, Email, NewActivity, NewUser, OutgoingEmail, Role,
    SessionId, User, UserId, UserStatus, Username,
};

use crate::activity::{NewActivityRow, insert_activity};
use crate::admins::{admins_remain, is_active_admin, lock_admins};
use crate::connection::{AnyConnection, write_transaction};
use crate::database::Database;
use crate::identities::{IdentityRow, identity_linked, insert_identity, is_identity_conflict};
use crate::outbox::{NewEmailRow, insert_email};
use crate::schema::{user_roles, users};
use crate::sessions::revoke_sessions;
use crate::tokens::{TokenMailRows, delete_user_tokens, insert_token_mail, spend_token};
use crate::types::{DbTime, DbUuid};

/// The unique index on non-deleted users' normalised emails (see the migrations).
const EMAIL_INDEX: &str = "users_email_normalized_key";
/// The unique index on non-deleted users' normalised usernames.
const USERNAME_INDEX: &str = "users_username_normalized_key";

/// Stores users in PostgreSQL or SQLite. Obtain one with [`Database::users`].
#[derive(Debug, Clone)]
pub struct DieselUserRepository {
    db: Database,
}

impl DieselUserRepository {
    /// A repository on `db`.
    #[must_use]
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// The key emails and usernames are unique by: Rust's Unicode lower-casing, so that `É` and
/// `é` collide on SQLite too (whose `lower()` folds only ASCII).
pub(crate) fn normalize(value: &str) -> String {
    value.to_lowercase()
}

/// A users row, minus the normalised keys.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = users)]
pub(crate) struct UserRow {
    pub(crate) id: DbUuid,
    email: String,
    username: String,
    display_name: Option<String>,
    password_hash: Option<String>,
    status: String,
    locked_until: Option<DbTime>,
    email_verified_at: Option<DbTime>,
    last_login_at: Option<DbTime>,
    created_at: DbTime,
    updated_at: DbTime,
    deleted_at: Option<DbTime>,
    avatar_key: Option<String>,
    avatar_content_type: Option<String>,
}

/// The avatar columns of a users row: both set, or neither.
pub(crate) fn avatar_from_columns(key: Option<&str>, content_type: Option<&str>) -> anyhow::Result<Option<Avatar>> {
    match (key, content_type) {
        (None, None) => Ok(None),
        (Some(key), Some(content_type)) => {
            Ok(Some(Avatar { key: AvatarKey::parse(key)?, format: content_type.parse::<AvatarFormat>()? }))
        }
        _ => anyhow::bail!("only one of avatar_key and avatar_content_type is set"),
    }
}

impl UserRow {
    /// The domain user. A stored value that no longer parses (edited by hand, or written by a
    /// version with other rules) is an error, never a panic.
    pub(crate) fn into_user(self, roles: Vec<String>) -> anyhow::Result<(User, Option<String>)> {
        let id = self.id.0;
        let context = || format!("user {id} holds an invalid stored value");
        let roles: BTreeSet<Role> =
            roles.iter().map(|name| name.parse::<Role>()).collect::<Result<_, _>>().with_context(context)?;
        let user = User {
            id: UserId::from_uuid(id),
            email: Email::parse(&self.email).with_context(context)?,
            username: Username::parse(&self.username).with_context(context)?,
            display_name: self.display_name.as_deref().map(DisplayName::parse).transpose().with_context(context)?,
            roles: roles.into_iter().collect(),
            status: self.status.parse::<UserStatus>().with_context(context)?,
            locked_until: self.locked_until.map(|t| t.0),
            email_verified_at: self.email_verified_at.map(|t| t.0),
            last_login_at: self.last_login_at.map(|t| t.0),
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
            deleted_at: self.deleted_at.map(|t| t.0),
            avatar: avatar_from_columns(self.avatar_key.as_deref(), self.avatar_content_type.as_deref())
                .with_context(context)?,
        };
        Ok((user, self.password_hash))
    }
}

/// A users row to insert (`search_text` is generated by the database).
#[derive(Debug, Insertable)]
#[diesel(table_name = users, treat_none_as_default_value = false)]
pub(crate) struct NewUserRow {
    pub(crate) id: DbUuid,
    pub(crate) email: String,
    pub(crate) email_normalized: String,
    pub(crate) username: String,
    pub(crate) username_normalized: String,
    pub(crate) display_name: Option<String>,
    pub(crate) display_name_normalized: Option<String>,
    pub(crate) password_hash: Option<String>,
    pub(crate) status: &'static str,
    pub(crate) locked_until: Option<DbTime>,
    pub(crate) email_verified_at: Option<DbTime>,
    pub(crate) last_login_at: Option<DbTime>,
    pub(crate) created_at: DbTime,
    pub(crate) updated_at: DbTime,
    pub(crate) deleted_at: Option<DbTime>,
    pub(crate) avatar_key: Option<String>,
    pub(crate) avatar_content_type: Option<&'static str>,
}

impl From<&NewUser> for NewUserRow {
    fn from(user: &NewUser) -> Self {
        Self {
            id: DbUuid(*user.id.as_uuid()),
            email: user.email.as_ref().to_owned(),
            email_normalized: normalize(user.email.as_ref()),
            username: user.username.as_ref().to_owned(),
            username_normalized: normalize(user.username.as_ref()),
            display_name: user.display_name.as_ref().map(|name| name.as_ref().to_owned()),
            display_name_normalized: user.display_name.as_ref().map(|name| normalize(name.as_ref())),
            password_hash: user.password_hash.as_ref().map(|hash| hash.as_str().to_owned()),
            status: UserStatus::Active.as_str(),
            locked_until: None,
            email_verified_at: user.email_verified_at.map(DbTime),
            last_login_at: None,
            created_at: DbTime(user.created_at),
            updated_at: DbTime(user.created_at),
            deleted_at: None,
            avatar_key: None,
            avatar_content_type: None,
        }
    }
}

/// Which unique key an insert collided with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conflict {
    /// The email index.
    Email,
    /// The username index.
    Username,
}

impl From<Conflict> for CreateUserError {
    fn from(conflict: Conflict) -> Self {
        match conflict {
            Conflict::Email => CreateUserError::EmailTaken,
            Conflict::Username => CreateUserError::UsernameTaken,
        }
    }
}

/// The unique key behind a unique violation, if it is one of ours. PostgreSQL names the index;
/// SQLite names the columns ("UNIQUE constraint failed: users.email_normalized").
pub(crate) fn conflict_in(error: &DieselError) -> Option<Conflict> {
    let DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = error else {
        return None;
    };
    let constraint = info.constraint_name().unwrap_or_default();
    let message = info.message();
    if constraint == EMAIL_INDEX || message.contains("users.email_normalized") {
        Some(Conflict::Email)
    } else if constraint == USERNAME_INDEX || message.contains("users.username_normalized") {
        Some(Conflict::Username)
    } else {
        None
    }
}

pub(crate) fn email_in_use(connection: &mut AnyConnection, email_key: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        users::table.filter(users::email_normalized.eq(email_key)).filter(users::deleted_at.is_null()),
    ))
    .get_result(connection)
}

pub(crate) fn username_in_use(connection: &mut AnyConnection, username_key: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        users::table.filter(users::username_normalized.eq(username_key)).filter(users::deleted_at.is_null()),
    ))
    .get_result(connection)
}

/// The role names granted to `id`.
pub(crate) fn role_names(connection: &mut AnyConnection, id: DbUuid) -> QueryResult<Vec<String>> {
    user_roles::table.filter(user_roles::user_id.eq(id)).select(user_roles::role).load(connection)
}

/// A found row together with its roles, or nothing.
pub(crate) fn with_roles(
    connection: &mut AnyConnection,
    row: Option<UserRow>,
) -> anyhow::Result<Option<(User, Option<String>)>> {
    let Some(row) = row else { return Ok(None) };
    let roles = role_names(connection, row.id).context("could not load the user's roles")?;
    row.into_user(roles).map(Some)
}

/// [`with_roles`] for the sign-in lookups, which must cost the same whether or not the
/// account exists: for no row, the roles query still runs (for an id nobody has), so both
/// answers take the same round trips.
fn with_roles_in_equal_time(
    connection: &mut AnyConnection,
    row: Option<UserRow>,
) -> anyhow::Result<Option<(User, Option<String>)>> {
    if row.is_none() {
        role_names(connection, DbUuid(uuid::Uuid::nil())).context("could not load the user's roles")?;
    }
    with_roles(connection, row)
}

/// The insert itself: checks the email, then the username (so the email wins when both are
/// taken), inserts the user, each role once, the event and the verification token and email
/// (if any), and reads the row back as stored
/// (so the caller sees times as the database keeps them, truncated to microseconds).
pub(crate) fn insert_user(
    connection: &mut AnyConnection,
    row: &NewUserRow,
    roles: &BTreeSet<Role>,
    event: &NewActivityRow,
    verification: Option<&TokenMailRows>,
) -> QueryResult<Result<(UserRow, Vec<String>), Conflict>> {
    if email_in_use(connection, &row.email_normalized)? {
        return Ok(Err(Conflict::Email));
    }
    if username_in_use(connection, &row.username_normalized)? {
        return Ok(Err(Conflict::Username));
    }
    diesel::insert_into(users::table).values(row).execute(connection)?;
    for role in roles {
        diesel::insert_into(user_roles::table)
            .values((user_roles::user_id.eq(row.id), user_roles::role.eq(role.as_str())))
            .execute(connection)?;
    }
    insert_activity(connection, event)?;
    if let Some(verification) = verification {
        insert_token_mail(connection, verification)?;
    }
    let stored = users::table.find(row.id).select(UserRow::as_select()).first(connection)?;
    let roles = role_names(connection, row.id)?;
    Ok(Ok((stored, roles)))
}

/// The columns [`UserRepository::update_profile`] may set; `None` leaves a column alone.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = users)]
struct ProfileChangeset {
    display_name: Option<Option<String>>,
    display_name_normalized: Option<Option<String>>,
    username: Option<String>,
    username_normalized: Option<String>,
    updated_at: DbTime,
}

impl ProfileChangeset {
    fn new(changes: &ProfileChanges, at: DateTime<Utc>) -> Self {
        Self {
            display_name: changes.display_name.as_ref().map(|name| name.as_ref().map(|name| name.as_ref().to_owned())),
            display_name_normalized: changes
                .display_name
                .as_ref()
                .map(|name| name.as_ref().map(|name| normalize(name.as_ref()))),
            username: changes.username.as_ref().map(|username| username.as_ref().to_owned()),
            username_normalized: changes.username.as_ref().map(|username| normalize(username.as_ref())),
            updated_at: DbTime(at),
        }
    }
}

/// Why a change to an existing user did not happen; returning it rolls the transaction back.
#[derive(Debug)]
pub(crate) enum ChangeFailure {
    /// No non-deleted user has the id.
    NotFound,
    /// The change would leave no active admin ([`crate::admins`]).
    LastAdmin,
    /// The database refused, perhaps at a unique index.
    Database(DieselError),
}

impl From<DieselError> for ChangeFailure {
    fn from(error: DieselError) -> Self {
        ChangeFailure::Database(error)
    }
}

impl ChangeFailure {
    /// The domain's error; `doing` completes "could not …" for anything unexpected.
    fn into_update_error(self, doing: &'static str) -> UpdateUserError {
        match self {
            ChangeFailure::NotFound => UpdateUserError::NotFound,
            ChangeFailure::LastAdmin => UpdateUserError::LastAdmin,
            ChangeFailure::Database(error) => match conflict_in(&error) {
                Some(Conflict::Username) => UpdateUserError::UsernameTaken,
                Some(Conflict::Email) | None => {
                    UpdateUserError::Unexpected(anyhow::Error::new(error).context(format!("could not {doing}")))
                }
            },
        }
    }
}

/// Applies `changes` to the non-deleted user `id`, or fails with
/// [`ChangeFailure::NotFound`]. Must run inside [`write_transaction`].
pub(crate) fn update_live_user<V>(connection: &mut AnyConnection, id: DbUuid, changes: V) -> Result<(), ChangeFailure>
where
    V: AsChangeset<Target = users::table>,
    <V as AsChangeset>::Changeset: diesel::query_builder::QueryFragment<crate::connection::MultiBackend>,
{
    let updated =
        diesel::update(users::table.find(id).filter(users::deleted_at.is_null())).set(changes).execute(connection)?;
    if updated == 0 {
        return Err(ChangeFailure::NotFound);
    }
    Ok(())
}

#[async_trait]
impl UserRepository for DieselUserRepository {
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %user.id))]
    async fn create(
        &self,
        user: NewUser,
        event: NewActivity,
        companion: AccountCompanion,
    ) -> Result<User, CreateUserError> {
        let row = NewUserRow::from(&user);
        let roles: BTreeSet<Role> = user.roles.iter().copied().chain([Role::User]).collect();
        let event = NewActivityRow::new(&event)?;
        let (verification, identity) = match companion {
            AccountCompanion::Nothing => (None, None),
            AccountCompanion::Verification(mail) => (Some(TokenMailRows::new(&mail, self.db.secrets())?), None),
            AccountCompanion::Identity(identity, linked) => {
                (None, Some((IdentityRow::from(identity), NewActivityRow::new(&linked)?)))
            }
        };
        self.db
            .run(move |connection| {
                let outcome = write_transaction(connection, |connection| {
                    if let Some((identity, _)) = &identity
                        && identity_linked(connection, identity)?
                    {
                        return Ok(Err(CreateUserError::IdentityTaken));
                    }
                    let inserted = insert_user(connection, &row, &roles, &event, verification.as_ref())?;
                    if inserted.is_ok()
                        && let Some((identity, linked)) = &identity
                    {
                        insert_identity(connection, identity, linked)?;
                    }
                    Ok(inserted.map_err(CreateUserError::from))
                });
                match outcome {
                    Ok(Ok((stored, roles))) => Ok(stored.into_user(roles)?.0),
                    Ok(Err(refusal)) => Err(refusal),
                    // Racing inserts pass the pre-check and meet at the unique index instead. If
                    // the winner also took the email, that is the error to report.
                    Err(error) => match conflict_in(&error) {
                        Some(Conflict::Username)
                            if email_in_use(connection, &row.email_normalized)
                                .context("could not check whether the email is taken")? =>
                        {
                            Err(CreateUserError::EmailTaken)
                        }
                        Some(conflict) => Err(conflict.into()),
                        None if is_identity_conflict(&error) => Err(CreateUserError::IdentityTaken),
                        None => Err(anyhow::Error::new(error).context("could not insert the user").into()),
                    },
                }
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn find_by_id(&self, id: UserId) -> anyhow::Result<Option<User>> {
        let id = DbUuid(*id.as_uuid());
        self.db
            .run(move |connection| {
                let row = users::table
                    .find(id)
                    .filter(users::deleted_at.is_null())
                    .select(UserRow::as_select())
                    .first(connection)
                    .optional()
                    .context("could not look up the user by id")?;
                Ok(with_roles(connection, row)?.map(|(user, _hash)| user))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn find_credentials_by_id(&self, id: UserId) -> anyhow::Result<Option<Credentials>> {
        let id = DbUuid(*id.as_uuid());
        self.db
            .run(move |connection| {
                let row = users::table
                    .find(id)
                    .filter(users::deleted_at.is_null())
                    .select(UserRow::as_select())
                    .first(connection)
                    .optional()
                    .context("could not look up the user by id")?;
                Ok(with_roles(connection, row)?.map(credentials))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn find_credentials_by_email(&self, email: &Email) -> anyhow::Result<Option<Credentials>> {
        let key = normalize(email.as_ref());
        self.db
            .run(move |connection| {
                let row = users::table
                    .filter(users::email_normalized.eq(key))
                    .filter(users::deleted_at.is_null())
                    .select(UserRow::as_select())
                    .first(connection)
                    .optional()
                    .context("could not look up the user by email")?;
                Ok(with_roles_in_equal_time(connection, row)?.map(credentials))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn find_credentials_by_username(&self, username: &Username) -> anyhow::Result<Option<Credentials>> {
        let key = normalize(username.as_ref());
        self.db
            .run(move |connection| {
                let row = users::table
                    .filter(users::username_normalized.eq(key))
                    .filter(users::deleted_at.is_null())
                    .select(UserRow::as_select())
                    .first(connection)
                    .optional()
                    .context("could not look up the user by username")?;
                Ok(with_roles_in_equal_time(connection, row)?.map(credentials))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, hash), err)]
    async fn update_password_hash(&self, id: UserId, hash: PasswordHash, at: DateTime<Utc>) -> anyhow::Result<()> {
        let id = DbUuid(*id.as_uuid());
        self.db
            .run(move |connection| {
                diesel::update(users::table.find(id).filter(users::deleted_at.is_null()))
                    .set((users::password_hash.eq(Some(hash.as_str())), users::updated_at.eq(DbTime(at))))
                    .execute(connection)
                    .context("could not update the password hash")?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, changes, event), err)]
    async fn update_profile(
        &self,
        id: UserId,
        changes: ProfileChanges,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<User, UpdateUserError> {
        let id = DbUuid(*id.as_uuid());
        let changeset = ProfileChangeset::new(&changes, at);
        let event = NewActivityRow::new(&event)?;
        self.db
            .run(move |connection| {
                let (row, roles) = write_transaction(connection, |connection| {
                    update_live_user(connection, id, &changeset)?;
                    insert_activity(connection, &event)?;
                    let row = users::table.find(id).select(UserRow::as_select()).first(connection)?;
                    let roles = role_names(connection, id)?;
                    Ok((row, roles))
                })
                .map_err(|failure: ChangeFailure| failure.into_update_error("update the profile"))?;
                Ok(row.into_user(roles)?.0)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, hash, event), err)]
    async fn change_password(
        &self,
        id: UserId,
        hash: PasswordHash,
        keep: Option<SessionId>,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<Vec<SessionId>, UpdateUserError> {
        let id = DbUuid(*id.as_uuid());
        let keep = keep.map(|keep| DbUuid(*keep.as_uuid()));
        let event = NewActivityRow::new(&event)?;
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| {
                    update_live_user(
                        connection,
                        id,
                        (users::password_hash.eq(Some(hash.as_str())), users::updated_at.eq(DbTime(at))),
                    )?;
                    let revoked = revoke_sessions(connection, id, keep, at)?;
                    // Links mailed before the change must not outlive it.
                    delete_user_tokens(connection, id, &[TokenKind::PasswordReset, TokenKind::AccountUnlock])?;
                    insert_activity(connection, &event)?;
                    Ok(revoked)
                })
                .map_err(|failure: ChangeFailure| failure.into_update_error("change the password"))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, event), err)]
    async fn soft_delete(
        &self,
        id: UserId,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<SoftDeleted, UpdateUserError> {
        let id = DbUuid(*id.as_uuid());
        let event = NewActivityRow::new(&event)?;
        self.db
            .run(move |connection| {
                let (revoked_sessions, avatar) =
                    write_transaction(connection, |connection| soft_delete_in(connection, id, at, &event))
                        .map_err(|failure: ChangeFailure| failure.into_update_error("delete the user"))?;
                let avatar = avatar_from_columns(avatar.0.as_deref(), avatar.1.as_deref())
                    .context("the deleted user's avatar columns are invalid")?;
                Ok(SoftDeleted { revoked_sessions, avatar })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, token, event), err)]
    async fn verify_email(
        &self,
        token: TokenHash,
        user_id: UserId,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<(), UseTokenError> {
        let id = DbUuid(*user_id.as_uuid());
        let event = NewActivityRow::new(&event)?;
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| {
                    spend_and_touch(connection, TokenKind::EmailVerification, &token, id, at)?;
                    mark_verified(connection, id, at)?;
                    insert_activity(connection, &event)?;
                    Ok(())
                })
                .map_err(|failure: TokenFailure| failure.into_error("verify the email"))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, token, hash, event, notice), err)]
    async fn reset_password(
        &self,
        token: TokenHash,
        user_id: UserId,
        hash: PasswordHash,
        at: DateTime<Utc>,
        event: NewActivity,
        notice: OutgoingEmail,
    ) -> Result<Vec<SessionId>, UseTokenError> {
        let id = DbUuid(*user_id.as_uuid());
        let event = NewActivityRow::new(&event)?;
        let notice = NewEmailRow::new(&notice, self.db.secrets())?;
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| {
                    spend_and_touch(connection, TokenKind::PasswordReset, &token, id, at)?;
                    diesel::update(users::table.find(id))
                        .set(users::password_hash.eq(Some(hash.as_str())))
                        .execute(connection)?;
                    mark_verified(connection, id, at)?;
                    let revoked = revoke_sessions(connection, id, None, at)?;
                    insert_activity(connection, &event)?;
                    insert_email(connection, &notice)?;
                    Ok(revoked)
                })
                .map_err(|failure: TokenFailure| failure.into_error("reset the password"))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, mail, event), err)]
    async fn lock(
        &self,
        id: UserId,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
        mail: TokenMail,
        event: NewActivity,
    ) -> anyhow::Result<bool> {
        let id = DbUuid(*id.as_uuid());
        let lock = LockRows::new(until, at, &mail, &event, self.db.secrets())?;
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| lock_in(connection, id, &lock))
                    .map_err(|error: DieselError| anyhow::Error::new(error).context("could not lock the account"))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, event, lockout), err)]
    async fn record_failed_login(
        &self,
        id: UserId,
        attempted_at: DateTime<Utc>,
        event: NewActivity,
        lockout: Lockout,
    ) -> anyhow::Result<bool> {
        let id = DbUuid(*id.as_uuid());
        let event = NewActivityRow::new(&event)?;
        let threshold = i32::try_from(lockout.threshold).unwrap_or(i32::MAX);
        let lock = LockRows::new(lockout.until, attempted_at, &lockout.mail, &lockout.event, self.db.secrets())?;
        let attempted = DbTime(attempted_at);
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| {
                    insert_activity(connection, &event)?;
                    // One UPDATE counts: on PostgreSQL it takes the row lock, so a racing failure
                    // waits and then counts on top of this one; on SQLite the transaction holds
                    // the write lock already. A failure from before the last success is late.
                    let counted = diesel::update(
                        users::table
                            .find(id)
                            .filter(users::deleted_at.is_null())
                            .filter(users::last_login_at.is_null().or(users::last_login_at.lt(attempted))),
                    )
                    .set(users::failed_logins.eq(users::failed_logins + 1))
                    .execute(connection)?;
                    if counted == 0 {
                        return Ok(false);
                    }
                    let failures: i32 = users::table.find(id).select(users::failed_logins).first(connection)?;
                    if failures < threshold {
                        return Ok(false);
                    }
                    lock_in(connection, id, &lock)
                })
                .map_err(|error: DieselError| anyhow::Error::new(error).context("could not record the failed sign-in"))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, token, event), err)]
    async fn unlock(
        &self,
        token: TokenHash,
        user_id: UserId,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<(), UseTokenError> {
        let id = DbUuid(*user_id.as_uuid());
        let event = NewActivityRow::new(&event)?;
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| {
                    spend_and_touch(connection, TokenKind::AccountUnlock, &token, id, at)?;
                    // Only the lockout that mailed the token: a lock without an end is an
                    // admin's, and only an admin lifts it.
                    diesel::update(
                        users::table
                            .find(id)
                            .filter(users::status.eq(UserStatus::Locked.as_str()))
                            .filter(users::locked_until.is_not_null()),
                    )
                    .set((
                        users::status.eq(UserStatus::Active.as_str()),
                        users::locked_until.eq(None::<DbTime>),
                        users::failed_logins.eq(0),
                    ))
                    .execute(connection)?;
                    insert_activity(connection, &event)?;
                    Ok(())
                })
                .map_err(|failure: TokenFailure| failure.into_error("unlock the account"))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, avatar, event), err)]
    async fn set_avatar(
        &self,
        id: UserId,
        avatar: Option<Avatar>,
        at: DateTime<Utc>,
        event: NewActivity,
    ) -> Result<AvatarChange, UpdateUserError> {
        let id = DbUuid(*id.as_uuid());
        let event = NewActivityRow::new(&event)?;
        self.db
            .run(move |connection| {
                let (previous, row, roles) = write_transaction(connection, |connection| {
                    // Updating first takes the row's write lock, so the avatar read next is
                    // the latest committed one, even when another change raced this one.
                    update_live_user(connection, id, users::updated_at.eq(DbTime(at)))?;
                    let previous = take_avatar(connection, id, avatar.as_ref())?;
                    insert_activity(connection, &event)?;
                    let row = users::table.find(id).select(UserRow::as_select()).first(connection)?;
                    let roles = role_names(connection, id)?;
                    Ok((previous, row, roles))
                })
                .map_err(|failure: ChangeFailure| failure.into_update_error("change the avatar"))?;
                let previous = avatar_from_columns(previous.0.as_deref(), previous.1.as_deref())
                    .context("the user's previous avatar columns are invalid")?;
                Ok(AvatarChange { user: row.into_user(roles)?.0, previous })
            })
            .await
    }

    /// Looks the owners up by primary key (a key starts with its user's id), so no index on
    /// `avatar_key` is needed, and compares the keys here.
    #[tracing::instrument(level = "debug", skip_all, fields(keys = keys.len()), err)]
    async fn referenced_avatar_keys(&self, keys: Vec<AvatarKey>) -> anyhow::Result<HashSet<AvatarKey>> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let owners: Vec<DbUuid> =
            keys.iter().map(|key| *key.user_id().as_uuid()).collect::<BTreeSet<_>>().into_iter().map(DbUuid).collect();
        let current: HashSet<String> = self
            .db
            .run(move |connection| {
                users::table
                    .filter(users::id.eq_any(owners))
                    .filter(users::avatar_key.is_not_null())
                    .select(users::avatar_key.assume_not_null())
                    .load::<String>(connection)
                    .context("could not read which avatars are referenced")
            })
            .await?
            .into_iter()
            .collect();
        Ok(keys.into_iter().filter(|key| current.contains(key.as_ref())).collect())
    }
}

/// Why a change made with a one-time token did not happen; returning it rolls back.
#[derive(Debug)]
enum TokenFailure {
    /// No live token of that kind for that non-deleted user.
    Invalid,
    /// The database refused.
    Database(DieselError),
}

impl From<DieselError> for TokenFailure {
    fn from(error: DieselError) -> Self {
        TokenFailure::Database(error)
    }
}

impl TokenFailure {
    fn into_error(self, doing: &'static str) -> UseTokenError {
        match self {
            TokenFailure::Invalid => UseTokenError::Invalid,
            TokenFailure::Database(error) => {
                UseTokenError::Unexpected(anyhow::Error::new(error).context(format!("could not {doing}")))
            }
        }
    }
}

/// The rows of a lockout, built before its transaction.
struct LockRows {
    until: DbTime,
    at: DbTime,
    mail: TokenMailRows,
    event: NewActivityRow,
}

impl LockRows {
    fn new(
        until: DateTime<Utc>,
        at: DateTime<Utc>,
        mail: &TokenMail,
        event: &NewActivity,
        secrets: Option<&dyn SecretCipher>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            until: DbTime(until),
            at: DbTime(at),
            mail: TokenMailRows::new(mail, secrets)?,
            event: NewActivityRow::new(event)?,
        })
    }
}

/// Locks `id` until `lock.until` when it is active (or its earlier lock has run out), starts
/// its failure count again, stores the unlock token, queues its email and records the event;
/// `false`, writing nothing, otherwise. Must run inside [`write_transaction`].
fn lock_in(connection: &mut AnyConnection, id: DbUuid, lock: &LockRows) -> QueryResult<bool> {
    let lockable = users::status
        .eq(UserStatus::Active.as_str())
        .or(users::status.eq(UserStatus::Locked.as_str()).and(users::locked_until.lt(lock.at)));
    let locked = diesel::update(users::table.find(id).filter(users::deleted_at.is_null()).filter(lockable))
        .set((
            users::status.eq(UserStatus::Locked.as_str()),
            users::locked_until.eq(Some(lock.until)),
            users::updated_at.eq(lock.at),
            users::failed_logins.eq(0),
        ))
        .execute(connection)?;
    if locked == 0 {
        return Ok(false);
    }
    insert_token_mail(connection, &lock.mail)?;
    insert_activity(connection, &lock.event)?;
    Ok(true)
}

/// Spends the token and sets the non-deleted user's `updated_at`, or fails with
/// [`TokenFailure::Invalid`]. Must run inside [`write_transaction`].
fn spend_and_touch(
    connection: &mut AnyConnection,
    kind: TokenKind,
    token: &TokenHash,
    id: DbUuid,
    at: DateTime<Utc>,
) -> Result<(), TokenFailure> {
    if !spend_token(connection, kind, token, id, at)? {
        return Err(TokenFailure::Invalid);
    }
    let touched = diesel::update(users::table.find(id).filter(users::deleted_at.is_null()))
        .set(users::updated_at.eq(DbTime(at)))
        .execute(connection)?;
    if touched == 0 {
        return Err(TokenFailure::Invalid);
    }
    Ok(())
}

/// Sets `email_verified_at` unless it is set already.
fn mark_verified(connection: &mut AnyConnection, id: DbUuid, at: DateTime<Utc>) -> QueryResult<()> {
    diesel::update(users::table.find(id).filter(users::email_verified_at.is_null()))
        .set(users::email_verified_at.eq(Some(DbTime(at))))
        .execute(connection)
        .map(|_| ())
}

/// Soft-deletes the non-deleted user `id`, revokes all their sessions and records `event`,
/// refusing with [`ChangeFailure::LastAdmin`] when they are the last active admin. Shared by
/// [`UserRepository::soft_delete`] and the admin directory; must run inside
/// [`write_transaction`].
pub(crate) fn soft_delete_in(
    connection: &mut AnyConnection,
    id: DbUuid,
    at: DateTime<Utc>,
    event: &NewActivityRow,
) -> Result<(Vec<SessionId>, AvatarColumns), ChangeFailure> {
    lock_admins(connection)?;
    let was_admin = is_active_admin(connection, id, at)?;
    update_live_user(connection, id, (users::deleted_at.eq(Some(DbTime(at))), users::updated_at.eq(DbTime(at))))?;
    if !admins_remain(connection, was_admin, at)? {
        return Err(ChangeFailure::LastAdmin);
    }
    let avatar = take_avatar(connection, id, None)?;
    let revoked = revoke_sessions(connection, id, None, at)?;
    insert_activity(connection, event)?;
    Ok((revoked, avatar))
}

/// A user's `avatar_key` and `avatar_content_type`, as stored.
pub(crate) type AvatarColumns = (Option<String>, Option<String>);

/// The avatar columns as they were, after setting them to `avatar` (or clearing them). Must
/// run inside [`write_transaction`], after the row was locked by an update.
fn take_avatar(connection: &mut AnyConnection, id: DbUuid, avatar: Option<&Avatar>) -> QueryResult<AvatarColumns> {
    let previous = users::table.find(id).select((users::avatar_key, users::avatar_content_type)).first(connection)?;
    diesel::update(users::table.find(id))
        .set((
            users::avatar_key.eq(avatar.map(|a| a.key.as_ref().to_owned())),
            users::avatar_content_type.eq(avatar.map(|a| a.format.content_type())),
        ))
        .execute(connection)?;
    Ok(previous)
}

fn credentials((user, password_hash): (User, Option<String>)) -> Credentials {
    Credentials { user, password_hash: password_hash.map(PasswordHash::new) }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use diesel::{Connection, PgConnection};

    use super::*;
    use crate::testing::TestDatabase;

    fn new_user(email: &str, username: &str) -> NewUser {
        NewUser {
            id: UserId::generate(),
            email: Email::parse(email).expect("valid email"),
            username: Username::parse(username).expect("valid username"),
            display_name: None,
            password_hash: None,
            roles: Vec::new(),
            email_verified_at: None,
            created_at: Utc::now(),
        }
    }

    /// The pre-check normally answers first; this drives each engine into the unique indexes
    /// themselves, the way a race does, to check their errors are recognised.
    async fn unique_index_violations_are_recognised(test_db: TestDatabase) {
        let db = test_db.connect_and_migrate(1).await.expect("the test database migrates");
        let rows = [
            new_user("ada@example.com", "ada"),
            new_user("ADA@example.com", "other"),
            new_user("x@example.com", "ADA"),
        ]
        .map(|user| NewUserRow::from(&user));

        let conflicts = db
            .run(move |connection| {
                let outcomes: Vec<Option<Conflict>> = rows
                    .iter()
                    .map(|row| diesel::insert_into(users::table).values(row).execute(connection))
                    .map(|outcome| outcome.err().as_ref().and_then(conflict_in))
                    .collect();
                anyhow::Ok(outcomes)
            })
            .await
            .expect("the inserts run");

        assert_eq!(conflicts, vec![None, Some(Conflict::Email), Some(Conflict::Username)]);

        let ada = db
            .run(|connection| anyhow::Ok(users::table.select(users::id).first::<DbUuid>(connection)?))
            .await
            .expect("ada is stored");
        let identity = |user_id: DbUuid| gatehouse_domain::ports::Identity {
            provider: "github".to_owned(),
            provider_user_id: "42".to_owned(),
            user_id: UserId::from_uuid(user_id.0),
            email: None,
            linked_at: Utc::now(),
        };
        let (first, again) = (IdentityRow::from(identity(ada)), IdentityRow::from(identity(ada)));
        let identity_conflicts = db
            .run(move |connection| {
                let outcomes: Vec<bool> = [first, again]
                    .iter()
                    .map(|row| {
                        diesel::insert_into(crate::schema::oauth_identities::table).values(row).execute(connection)
                    })
                    .map(|outcome| outcome.err().as_ref().is_some_and(is_identity_conflict))
                    .collect();
                anyhow::Ok(outcomes)
            })
            .await
            .expect("the inserts run");

        assert_eq!(identity_conflicts, vec![false, true], "a second link of one provider account");
    }

    #[tokio::test]
    async fn postgres_unique_index_violations_are_recognised() {
        unique_index_violations_are_recognised(TestDatabase::postgres()).await;
    }

    #[tokio::test]
    async fn sqlite_unique_index_violations_are_recognised() {
        unique_index_violations_are_recognised(TestDatabase::sqlite()).await;
    }

    /// Creates a user while another PostgreSQL transaction holds an uncommitted row with
    /// `email`/`username`: the pre-check cannot see it, so the insert waits on the unique index
    /// and fails once the other transaction commits. This is the race the index decides.
    async fn create_racing_an_uncommitted_insert(
        blocker_email: &'static str,
        blocker_username: &'static str,
        contender: NewUser,
    ) -> Result<User, CreateUserError> {
        let test_db = TestDatabase::postgres();
        let db = test_db.connect_and_migrate(2).await.expect("the test database migrates");
        let url = test_db.url().to_owned();
        let (inserted, wait_for_insert) = mpsc::channel();
        let blocker = std::thread::spawn(move || {
            let mut connection = PgConnection::establish(&url).expect("PostgreSQL is reachable");
            connection.transaction(|connection| {
                diesel::sql_query(format!(
                    "INSERT INTO users (id, email, email_normalized, username, username_normalized, status, \
                     created_at, updated_at) VALUES (gen_random_uuid(), '{blocker_email}', '{blocker_email}', \
                     '{blocker_username}', '{blocker_username}', 'active', now(), now())"
                ))
                .execute(connection)?;
                inserted.send(()).expect("the test is waiting");
                std::thread::sleep(Duration::from_millis(300));
                QueryResult::Ok(())
            })
        });
        wait_for_insert.recv().expect("the blocking insert ran");

        let event = NewActivity::by_user(
            contender.id,
            gatehouse_domain::ActivityAction::UserRegistered,
            &gatehouse_domain::RequestContext::default(),
            contender.created_at,
        );
        let outcome = db.users().create(contender, event, AccountCompanion::Nothing).await;

        blocker.join().expect("the blocker does not panic").expect("the blocker commits");
        outcome
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_postgres_race_on_the_email_index_is_email_taken() {
        let outcome =
            create_racing_an_uncommitted_insert("ada@example.com", "blocker", new_user("Ada@Example.com", "ada")).await;
        assert!(matches!(outcome, Err(CreateUserError::EmailTaken)), "got {outcome:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_postgres_race_on_the_username_index_is_username_taken() {
        let outcome =
            create_racing_an_uncommitted_insert("blocker@example.com", "ada", new_user("ada@example.com", "ADA")).await;
        assert!(matches!(outcome, Err(CreateUserError::UsernameTaken)), "got {outcome:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_postgres_race_on_both_indexes_is_email_taken() {
        let outcome =
            create_racing_an_uncommitted_insert("ada@example.com", "ada", new_user("ada@example.com", "Ada")).await;
        assert!(matches!(outcome, Err(CreateUserError::EmailTaken)), "got {outcome:?}");
    }
}
