//! [`UserDirectory`] on Diesel: the admin API's user list and changes.
//!
//! # The list query
//!
//! One statement per page, built by [`list_query`] (which [`Database::explain_user_list`]
//! explains, so benchmarks see exactly the SQL that runs):
//!
//! ```sql
//! SELECT … FROM users
//! WHERE deleted_at IS NULL                          -- unless include_deleted
//!   AND search_text LIKE '%term%' ESCAPE '\'        -- q, lower-cased, % _ \ escaped
//!   AND EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = users.id AND r.role = 'admin')
//!   AND <effective status at now>                   -- see crate::admins::has_status
//!   AND (created_at, id) < ($cursor_time, $cursor_id)   -- keyset; > for ascending orders
//! ORDER BY created_at DESC, id DESC                 -- or email_normalized, id
//! LIMIT page + 1
//! ```
//!
//! The keyset condition is a row-value comparison, which PostgreSQL turns into a range on the
//! `(created_at, id)` / `(email_normalized, id)` btree, so a deep page costs what the first
//! costs. `role=user` adds no condition: every user holds the `user` role (this crate always
//! grants it and never removes it). The roles of a page are loaded with one more query.
//!
//! On PostgreSQL the page is read in one read transaction with `plan_cache_mode =
//! force_custom_plan`: Diesel prepares statements, and a generic plan, made without the bound
//! values, can neither judge how rare a search term is nor match the partial status indexes.
//! The transaction also gives the users and their roles one snapshot.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, bail};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::{SqlTypeOf, sql};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sql_types::{Bool, Text};
use gatehouse_domain::pagination::Page;
use gatehouse_domain::ports::{
    AdminChangeError, AdminChangeOutcome, AdminChanges, EnsureAdmin, SoftDeleted, TokenKind, UserCursor, UserDirectory,
    UserQuery, UserSort, UserSortKey,
};
use gatehouse_domain::{NewActivity, NewUser, Role, SessionId, User, UserId, UserStatus};

use crate::activity::{NewActivityRow, insert_activity};
use crate::admins::{admins_remain, any_active_admin, has_status, holds_role, is_active_admin, lock_admins};
use crate::connection::{AnyConnection, MultiBackend, write_transaction};
use crate::database::Database;
use crate::schema::{user_roles, users};
use crate::sessions::revoke_sessions;
use crate::tokens::delete_user_tokens;
use crate::types::sql::{PortableTimestamp, PortableUuid};
use crate::types::{DbTime, DbUuid};
use crate::users::{
    ChangeFailure, Conflict, NewUserRow, UserRow, avatar_from_columns, conflict_in, email_in_use, insert_user,
    normalize, role_names, soft_delete_in, username_in_use,
};

/// The administrators' view of users in PostgreSQL or SQLite. Obtain one with
/// [`Database::directory`].
#[derive(Debug, Clone)]
pub struct DieselUserDirectory {
    db: Database,
}

impl DieselUserDirectory {
    /// A directory on `db`.
    #[must_use]
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// The list query, as [`list_query`] builds it.
type UserListQuery = users::BoxedQuery<'static, MultiBackend, SqlTypeOf<diesel::dsl::AsSelect<UserRow, MultiBackend>>>;

/// `term` as a `LIKE` pattern matching it anywhere, with `ESCAPE '\'`: `%`, `_` and `\` in the
/// term match themselves.
fn contains_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The keyset condition: after `cursor` in `sort` order.
fn after(
    sort: UserSort,
    cursor: &UserCursor,
) -> anyhow::Result<Box<dyn BoxableExpression<users::table, MultiBackend, SqlType = Bool>>> {
    let id = DbUuid(*cursor.id.as_uuid());
    let (column, comparison) = match sort {
        UserSort::CreatedAt => ("created_at", ">"),
        UserSort::CreatedAtDesc => ("created_at", "<"),
        UserSort::Email => ("email_normalized", ">"),
        UserSort::EmailDesc => ("email_normalized", "<"),
    };
    let head = sql::<Bool>(&format!("(users.{column}, users.id) {comparison} ("));
    Ok(match (&cursor.key, sort) {
        (UserSortKey::CreatedAt(at), UserSort::CreatedAt | UserSort::CreatedAtDesc) => {
            Box::new(head.bind::<PortableTimestamp, _>(DbTime(*at)).sql(", ").bind::<PortableUuid, _>(id).sql(")"))
        }
        (UserSortKey::Email(email), UserSort::Email | UserSort::EmailDesc) => {
            Box::new(head.bind::<Text, _>(email.clone()).sql(", ").bind::<PortableUuid, _>(id).sql(")"))
        }
        _ => bail!("the cursor's key does not match the sort order {sort:?}"),
    })
}

/// The statement that reads one page (plus one row) of `query`. See the module docs.
fn list_query(query: &UserQuery) -> anyhow::Result<UserListQuery> {
    let mut select = users::table.select(UserRow::as_select()).into_boxed::<MultiBackend>();
    if !query.include_deleted {
        select = select.filter(users::deleted_at.is_null());
    }
    if let Some(term) = query.search.as_deref().map(normalize).filter(|term| !term.is_empty()) {
        select = select.filter(users::search_text.like(contains_pattern(&term)).escape('\\'));
    }
    match query.role {
        Some(Role::User) | None => {}
        Some(role) => select = select.filter(holds_role(role)),
    }
    if let Some(status) = query.status {
        select = select.filter(has_status(status, query.now));
    }
    if let Some(cursor) = &query.after {
        select = select.filter(after(query.sort, cursor)?);
    }
    select = match query.sort {
        UserSort::CreatedAt => select.order((users::created_at.asc(), users::id.asc())),
        UserSort::CreatedAtDesc => select.order((users::created_at.desc(), users::id.desc())),
        UserSort::Email => select.order((users::email_normalized.asc(), users::id.asc())),
        UserSort::EmailDesc => select.order((users::email_normalized.desc(), users::id.desc())),
    };
    let fetch = i64::try_from(query.limit.get() + 1).context("the page size does not fit a LIMIT")?;
    Ok(select.limit(fetch))
}

/// Runs `body` in a read transaction that plans every statement with its bound values on
/// PostgreSQL (see the module docs).
fn planned_with_values<T>(
    connection: &mut AnyConnection,
    body: impl FnOnce(&mut AnyConnection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    connection.transaction(|connection| {
        if let AnyConnection::Postgresql(pg) = connection {
            diesel::sql_query("SET LOCAL plan_cache_mode = force_custom_plan")
                .execute(pg)
                .context("could not set the plan cache mode")?;
        }
        body(connection)
    })
}

/// The roles of each of `ids`, in one query.
fn roles_of(connection: &mut AnyConnection, ids: Vec<DbUuid>) -> QueryResult<BTreeMap<uuid::Uuid, Vec<String>>> {
    let mut roles: BTreeMap<uuid::Uuid, Vec<String>> = BTreeMap::new();
    if ids.is_empty() {
        return Ok(roles);
    }
    let rows: Vec<(DbUuid, String)> = user_roles::table
        .filter(user_roles::user_id.eq_any(ids))
        .select((user_roles::user_id, user_roles::role))
        .load(connection)?;
    for (id, role) in rows {
        roles.entry(id.0).or_default().push(role);
    }
    Ok(roles)
}

/// One page of users (plus one row when there is more), with their roles.
fn list_users(connection: &mut AnyConnection, query: &UserQuery) -> anyhow::Result<Vec<User>> {
    let select = list_query(query)?;
    planned_with_values(connection, |connection| {
        let rows: Vec<UserRow> = select.load(connection).context("could not list the users")?;
        let mut roles = roles_of(connection, rows.iter().map(|row| row.id).collect())
            .context("could not load the roles of the listed users")?;
        rows.into_iter()
            .map(|row| {
                let granted = roles.remove(&row.id.0).unwrap_or_default();
                row.into_user(granted).map(|(user, _hash)| user)
            })
            .collect()
    })
}

/// `EXPLAIN` of the user list, for the benchmark and tests (features `testing`, `bench`).
#[cfg(any(feature = "testing", feature = "bench"))]
mod explain {
    use anyhow::{Context, bail};
    use diesel::prelude::*;
    use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
    use diesel::sql_types::Text;
    use gatehouse_domain::ports::UserQuery;

    use super::{list_query, planned_with_values};
    use crate::connection::{AnyConnection, MultiBackend};
    use crate::database::{Backend, Database};

    /// `EXPLAIN` of a query, as text lines.
    #[derive(Debug)]
    struct Explain<Q>(Q);

    impl<Q> QueryId for Explain<Q> {
        type QueryId = ();
        const HAS_STATIC_QUERY_ID: bool = false;
    }

    impl<Q: QueryFragment<MultiBackend>> QueryFragment<MultiBackend> for Explain<Q> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, MultiBackend>) -> QueryResult<()> {
            out.push_sql("EXPLAIN ");
            self.0.walk_ast(out.reborrow())
        }
    }

    impl<Q> Query for Explain<Q> {
        type SqlType = Text;
    }

    impl<Q> RunQueryDsl<AnyConnection> for Explain<Q> {}

    /// `EXPLAIN` of the statement [`list_users`] runs for `query`, line by line.
    pub(crate) fn explain_list(connection: &mut AnyConnection, query: &UserQuery) -> anyhow::Result<String> {
        let select = list_query(query)?;
        planned_with_values(connection, |connection| {
            let lines: Vec<String> = Explain(select).load(connection).context("could not explain the user list")?;
            Ok(lines.join("\n"))
        })
    }

    impl Database {
        /// The PostgreSQL plan (`EXPLAIN`, not executed) of exactly the statement
        /// [`UserDirectory::list`] runs for `query`, so that a benchmark can check it reads users
        /// through an index. Feature `testing` or `bench`.
        ///
        /// # Errors
        ///
        /// On SQLite, and when the query cannot be built or explained.
        #[cfg(any(feature = "testing", feature = "bench"))]
        pub async fn explain_user_list(&self, query: &UserQuery) -> anyhow::Result<String> {
            if self.backend() != Backend::Postgres {
                bail!("explain_user_list explains PostgreSQL plans only");
            }
            let query = query.clone();
            self.run(move |connection| explain_list(connection, &query)).await
        }
    }
}

/// Why an administrative change did not happen; returning it rolls the transaction back.
#[derive(Debug)]
enum Refusal {
    NotFound,
    LastAdmin,
    Conflict(Conflict),
    Database(DieselError),
}

impl From<DieselError> for Refusal {
    fn from(error: DieselError) -> Self {
        Refusal::Database(error)
    }
}

impl From<ChangeFailure> for Refusal {
    fn from(failure: ChangeFailure) -> Self {
        match failure {
            ChangeFailure::NotFound => Refusal::NotFound,
            ChangeFailure::LastAdmin => Refusal::LastAdmin,
            ChangeFailure::Database(error) => Refusal::Database(error),
        }
    }
}

impl Refusal {
    /// The domain's error. A unique violation met at the index (a race the pre-checks could not
    /// see) is a conflict too; when it is the username's, `email_taken` says whether the email
    /// collides as well, so the email wins as it does for registrations.
    fn into_error(self, doing: &'static str, email_taken: impl FnOnce() -> anyhow::Result<bool>) -> AdminChangeError {
        match self {
            Refusal::NotFound => AdminChangeError::NotFound,
            Refusal::LastAdmin => AdminChangeError::LastAdmin,
            Refusal::Conflict(Conflict::Email) => AdminChangeError::EmailTaken,
            Refusal::Conflict(Conflict::Username) => AdminChangeError::UsernameTaken,
            Refusal::Database(error) => match conflict_in(&error) {
                Some(Conflict::Email) => AdminChangeError::EmailTaken,
                Some(Conflict::Username) => match email_taken() {
                    Ok(true) => AdminChangeError::EmailTaken,
                    Ok(false) => AdminChangeError::UsernameTaken,
                    Err(check) => AdminChangeError::Unexpected(check),
                },
                None => AdminChangeError::Unexpected(anyhow::Error::new(error).context(format!("could not {doing}"))),
            },
        }
    }
}

/// The `users` columns an administrative change sets; `None` leaves a column alone.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = users)]
struct AdminChangeset {
    email: Option<String>,
    email_normalized: Option<String>,
    username: Option<String>,
    username_normalized: Option<String>,
    display_name: Option<Option<String>>,
    display_name_normalized: Option<Option<String>>,
    status: Option<&'static str>,
    locked_until: Option<Option<DbTime>>,
    updated_at: Option<DbTime>,
}

impl AdminChangeset {
    /// Every status an admin sets ends any timed lock: `Locked` lasts until an admin unlocks.
    fn new(changes: &AdminChanges, at: DateTime<Utc>) -> Self {
        Self {
            email: changes.email.as_ref().map(|email| email.as_ref().to_owned()),
            email_normalized: changes.email.as_ref().map(|email| normalize(email.as_ref())),
            username: changes.username.as_ref().map(|username| username.as_ref().to_owned()),
            username_normalized: changes.username.as_ref().map(|username| normalize(username.as_ref())),
            display_name: changes.display_name.as_ref().map(|name| name.as_ref().map(|name| name.as_ref().to_owned())),
            display_name_normalized: changes
                .display_name
                .as_ref()
                .map(|name| name.as_ref().map(|name| normalize(name.as_ref()))),
            status: changes.status.map(UserStatus::as_str),
            locked_until: changes.status.map(|_| None),
            updated_at: (!changes.is_empty()).then_some(DbTime(at)),
        }
    }
}

/// Whether a non-deleted user other than `id` has the email key.
fn email_taken_by_other(connection: &mut AnyConnection, key: &str, id: DbUuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        users::table
            .filter(users::email_normalized.eq(key))
            .filter(users::deleted_at.is_null())
            .filter(users::id.ne(id)),
    ))
    .get_result(connection)
}

/// Whether a non-deleted user other than `id` has the username key.
fn username_taken_by_other(connection: &mut AnyConnection, key: &str, id: DbUuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        users::table
            .filter(users::username_normalized.eq(key))
            .filter(users::deleted_at.is_null())
            .filter(users::id.ne(id)),
    ))
    .get_result(connection)
}

/// The user `id` with their roles, as stored now.
fn read_user(connection: &mut AnyConnection, id: DbUuid) -> QueryResult<(UserRow, Vec<String>)> {
    let row = users::table.find(id).select(UserRow::as_select()).first(connection)?;
    let roles = role_names(connection, id)?;
    Ok((row, roles))
}

/// Replaces the roles of `id` with `roles`.
fn replace_roles(connection: &mut AnyConnection, id: DbUuid, roles: &BTreeSet<Role>) -> QueryResult<()> {
    diesel::delete(user_roles::table.filter(user_roles::user_id.eq(id))).execute(connection)?;
    for role in roles {
        diesel::insert_into(user_roles::table)
            .values((user_roles::user_id.eq(id), user_roles::role.eq(role.as_str())))
            .execute(connection)?;
    }
    Ok(())
}

/// What [`UserDirectory::update`] writes, prepared before its transaction.
struct Update {
    id: DbUuid,
    changeset: AdminChangeset,
    roles: Option<BTreeSet<Role>>,
    revoke_sessions: bool,
    at: DateTime<Utc>,
    events: Vec<NewActivityRow>,
}

impl Update {
    /// Whether the change may take an active admin away (their role or their status).
    fn may_remove_an_admin(&self) -> bool {
        self.roles.is_some() || self.changeset.status.is_some()
    }

    /// The body of the transaction.
    fn apply(&self, connection: &mut AnyConnection) -> Result<(UserRow, Vec<String>, Vec<SessionId>), Refusal> {
        let was_admin = if self.may_remove_an_admin() {
            lock_admins(connection)?;
            is_active_admin(connection, self.id, self.at)?
        } else {
            false
        };
        let live: bool = diesel::select(diesel::dsl::exists(
            users::table.filter(users::id.eq(self.id)).filter(users::deleted_at.is_null()),
        ))
        .get_result(connection)?;
        if !live {
            return Err(Refusal::NotFound);
        }
        if let Some(key) = &self.changeset.email_normalized
            && email_taken_by_other(connection, key, self.id)?
        {
            return Err(Refusal::Conflict(Conflict::Email));
        }
        if let Some(key) = &self.changeset.username_normalized
            && username_taken_by_other(connection, key, self.id)?
        {
            return Err(Refusal::Conflict(Conflict::Username));
        }
        if self.changeset.updated_at.is_some() {
            diesel::update(users::table.find(self.id)).set(&self.changeset).execute(connection)?;
        }
        if let Some(roles) = &self.roles {
            replace_roles(connection, self.id, roles)?;
        }
        if self.changeset.status.is_some() {
            // An unlock link from an earlier lockout must not undo an admin's decision.
            delete_user_tokens(connection, self.id, &[TokenKind::AccountUnlock])?;
            diesel::update(users::table.find(self.id)).set(users::failed_logins.eq(0)).execute(connection)?;
        }
        if !admins_remain(connection, was_admin, self.at)? {
            return Err(Refusal::LastAdmin);
        }
        let revoked =
            if self.revoke_sessions { revoke_sessions(connection, self.id, None, self.at)? } else { Vec::new() };
        for event in &self.events {
            insert_activity(connection, event)?;
        }
        let (row, roles) = read_user(connection, self.id)?;
        Ok((row, roles, revoked))
    }
}

/// The body of [`UserDirectory::restore`]'s transaction.
fn restore_in(
    connection: &mut AnyConnection,
    id: DbUuid,
    at: DateTime<Utc>,
    event: &NewActivityRow,
) -> Result<(UserRow, Vec<String>), Refusal> {
    let keys: Option<(String, String)> = users::table
        .find(id)
        .filter(users::deleted_at.is_not_null())
        .select((users::email_normalized, users::username_normalized))
        .first(connection)
        .optional()?;
    let Some((email_key, username_key)) = keys else {
        return Err(Refusal::NotFound);
    };
    if email_in_use(connection, &email_key)? {
        return Err(Refusal::Conflict(Conflict::Email));
    }
    if username_in_use(connection, &username_key)? {
        return Err(Refusal::Conflict(Conflict::Username));
    }
    // The partial unique indexes decide a race with a registration the checks could not see.
    diesel::update(users::table.find(id).filter(users::deleted_at.is_not_null()))
        .set((users::deleted_at.eq(None::<DbTime>), users::updated_at.eq(DbTime(at))))
        .execute(connection)?;
    insert_activity(connection, event)?;
    Ok(read_user(connection, id)?)
}

/// What [`ensure_admin_in`] did, before the rows become domain values.
enum Ensured {
    AlreadyPresent,
    Created(UserRow, Vec<String>),
    Promoted(UserRow, Vec<String>, Vec<SessionId>),
}

impl Ensured {
    fn into_outcome(self) -> anyhow::Result<EnsureAdmin> {
        Ok(match self {
            Self::AlreadyPresent => EnsureAdmin::AlreadyPresent,
            Self::Created(row, roles) => EnsureAdmin::Created(row.into_user(roles)?.0),
            Self::Promoted(row, roles, revoked) => EnsureAdmin::Promoted { admin: row.into_user(roles)?.0, revoked },
        })
    }
}

/// Whether [`ensure_admin_in`] acts only when no active admin exists (bootstrap) or always
/// (`create-admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WhenAdminsExist {
    LeaveThem,
    ActAnyway,
}

/// Hands the existing account `id` to the operator who named its email as admin: the
/// operator's password (from `admin`) replaces whatever someone who registered the address
/// before chose, the email counts as verified, the account is active (a promoted admin who
/// could not sign in would leave the installation without one), every session is revoked and
/// every outstanding one-time token deleted. Returns the revoked sessions. Must run inside
/// [`write_transaction`].
fn hand_over(
    connection: &mut AnyConnection,
    id: DbUuid,
    admin: &NewUserRow,
    now: DateTime<Utc>,
) -> QueryResult<Vec<SessionId>> {
    diesel::update(users::table.find(id))
        .set((
            users::password_hash.eq(admin.password_hash.as_deref()),
            users::status.eq(UserStatus::Active.as_str()),
            users::locked_until.eq(None::<DbTime>),
            users::failed_logins.eq(0),
            users::updated_at.eq(DbTime(now)),
        ))
        .execute(connection)?;
    diesel::update(users::table.find(id).filter(users::email_verified_at.is_null()))
        .set(users::email_verified_at.eq(Some(DbTime(now))))
        .execute(connection)?;
    delete_user_tokens(connection, id, TokenKind::ALL)?;
    revoke_sessions(connection, id, None, now)
}

/// The body of [`UserDirectory::ensure_admin`]'s transaction.
fn ensure_admin_in(
    connection: &mut AnyConnection,
    admin: &NewUserRow,
    event: &mut NewActivityRow,
    now: DateTime<Utc>,
    when_admins_exist: WhenAdminsExist,
) -> anyhow::Result<Ensured> {
    lock_admins(connection).context("could not take the admin lock")?;
    if when_admins_exist == WhenAdminsExist::LeaveThem
        && any_active_admin(connection, now).context("could not look for an active admin")?
    {
        return Ok(Ensured::AlreadyPresent);
    }
    let existing: Option<DbUuid> = users::table
        .filter(users::email_normalized.eq(&admin.email_normalized))
        .filter(users::deleted_at.is_null())
        .select(users::id)
        .first(connection)
        .optional()
        .context("could not look up the admin's email")?;
    match existing {
        Some(id) => {
            let roles: BTreeSet<Role> = role_names(connection, id)
                .context("could not read the user's roles")?
                .iter()
                .filter_map(|name| name.parse().ok())
                .chain([Role::User, Role::Admin])
                .collect();
            replace_roles(connection, id, &roles).context("could not grant the admin role")?;
            let revoked = hand_over(connection, id, admin, now).context("could not hand the account over")?;
            event.retarget(id);
            insert_activity(connection, event).context("could not record the promotion")?;
            let (row, roles) = read_user(connection, id).context("could not read the promoted admin back")?;
            Ok(Ensured::Promoted(row, roles, revoked))
        }
        None => {
            event.retarget(admin.id);
            let roles = BTreeSet::from([Role::User, Role::Admin]);
            match insert_user(connection, admin, &roles, event, None).context("could not create the admin")? {
                Ok((row, roles)) => Ok(Ensured::Created(row, roles)),
                Err(Conflict::Email) => bail!("the admin's email is taken"),
                Err(Conflict::Username) => bail!("the admin's username is taken by another account"),
            }
        }
    }
}

#[async_trait]
impl UserDirectory for DieselUserDirectory {
    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn list(&self, query: UserQuery) -> anyhow::Result<Page<User, UserCursor>> {
        let (limit, sort) = (query.limit, query.sort);
        let users = self.db.run(move |connection| list_users(connection, &query)).await?;
        Ok(Page::from_rows(users, limit, |user| UserCursor::of(user, sort)))
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn find(&self, id: UserId) -> anyhow::Result<Option<User>> {
        let id = DbUuid(*id.as_uuid());
        self.db
            .run(move |connection| {
                let row = users::table
                    .find(id)
                    .select(UserRow::as_select())
                    .first(connection)
                    .optional()
                    .context("could not look up the user by id")?;
                let Some(row) = row else { return Ok(None) };
                let roles = role_names(connection, id).context("could not load the user's roles")?;
                Ok(Some(row.into_user(roles)?.0))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, changes, events), err)]
    async fn update(
        &self,
        id: UserId,
        changes: AdminChanges,
        revoke_sessions: bool,
        at: DateTime<Utc>,
        events: Vec<NewActivity>,
    ) -> Result<AdminChangeOutcome, AdminChangeError> {
        let update = Update {
            id: DbUuid(*id.as_uuid()),
            changeset: AdminChangeset::new(&changes, at),
            roles: changes.roles.as_ref().map(|roles| roles.iter().copied().chain([Role::User]).collect()),
            revoke_sessions,
            at,
            events: events.iter().map(NewActivityRow::new).collect::<anyhow::Result<_>>()?,
        };
        self.db
            .run(move |connection| match write_transaction(connection, |connection| update.apply(connection)) {
                Ok((row, roles, revoked)) => Ok(AdminChangeOutcome { user: row.into_user(roles)?.0, revoked }),
                Err(refusal) => {
                    Err(refusal.into_error("update the user", || match &update.changeset.email_normalized {
                        Some(key) => email_taken_by_other(connection, key, update.id)
                            .context("could not check whether the email is taken"),
                        None => Ok(false),
                    }))
                }
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, event), err)]
    async fn delete(&self, id: UserId, at: DateTime<Utc>, event: NewActivity) -> Result<SoftDeleted, AdminChangeError> {
        let id = DbUuid(*id.as_uuid());
        let event = NewActivityRow::new(&event)?;
        self.db
            .run(move |connection| {
                let (revoked_sessions, avatar) = write_transaction(connection, |connection| {
                    soft_delete_in(connection, id, at, &event).map_err(Refusal::from)
                })
                .map_err(|refusal| refusal.into_error("delete the user", || Ok(false)))?;
                let avatar = avatar_from_columns(avatar.0.as_deref(), avatar.1.as_deref())
                    .context("the deleted user's avatar columns are invalid")?;
                Ok(SoftDeleted { revoked_sessions, avatar })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, event), err)]
    async fn restore(&self, id: UserId, at: DateTime<Utc>, event: NewActivity) -> Result<User, AdminChangeError> {
        let id = DbUuid(*id.as_uuid());
        let event = NewActivityRow::new(&event)?;
        self.db
            .run(move |connection| {
                match write_transaction(connection, |connection| restore_in(connection, id, at, &event)) {
                    Ok((row, roles)) => Ok(row.into_user(roles)?.0),
                    Err(refusal) => Err(refusal.into_error("restore the user", || {
                        let key: String = users::table
                            .find(id)
                            .select(users::email_normalized)
                            .first(connection)
                            .context("could not read the restored user's email")?;
                        email_taken_by_other(connection, &key, id).context("could not check whether the email is taken")
                    })),
                }
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %admin.id), err)]
    async fn ensure_admin(&self, admin: NewUser, event: NewActivity) -> anyhow::Result<EnsureAdmin> {
        self.admin_named(admin, event, WhenAdminsExist::LeaveThem).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %admin.id), err)]
    async fn make_admin(&self, admin: NewUser, event: NewActivity) -> anyhow::Result<EnsureAdmin> {
        self.admin_named(admin, event, WhenAdminsExist::ActAnyway).await
    }
}

impl DieselUserDirectory {
    /// [`UserDirectory::ensure_admin`] and [`UserDirectory::make_admin`]: one transaction of
    /// [`ensure_admin_in`].
    async fn admin_named(
        &self,
        admin: NewUser,
        event: NewActivity,
        when_admins_exist: WhenAdminsExist,
    ) -> anyhow::Result<EnsureAdmin> {
        let now = event.created_at;
        let row = NewUserRow::from(&admin);
        let mut event = NewActivityRow::new(&event)?;
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| {
                    ensure_admin_in(connection, &row, &mut event, now, when_admins_exist)
                })?
                .into_outcome()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_and_the_escape_character_in_a_term_match_themselves() {
        assert_eq!(contains_pattern("ada"), "%ada%");
        assert_eq!(contains_pattern("100%_a\\b"), "%100\\%\\_a\\\\b%");
    }
}
