//! The last-admin rule, enforced inside the transaction of every change that could break it,
//! and the predicates on effective status and roles that the user list shares with it.
//!
//! A change that may remove an active admin (a role change, a status change, a deletion) runs
//! [`lock_admins`] first, notes whether its user [`is_active_admin`], applies itself, and then
//! asks [`admins_remain`]; when that answers `false` the caller rolls back. Two such changes
//! must not both see the other's admin still standing, so they are serialised: on PostgreSQL
//! by a transaction-scoped advisory lock (read committed gives every later statement a fresh
//! snapshot, so the second transaction sees the first one's committed change); on SQLite by
//! [`crate::connection::write_transaction`]'s `BEGIN IMMEDIATE`, which already holds the
//! database's write lock from the first statement.

use chrono::{DateTime, Utc};
use diesel::dsl::exists;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable};
use gatehouse_domain::{Role, UserStatus};

use crate::connection::{AnyConnection, MultiBackend};
use crate::schema::{user_roles, users};
use crate::types::{DbTime, DbUuid};

/// The `pg_advisory_xact_lock` key of admin-affecting transactions (any constant unique to
/// Gatehouse, distinct from the migration lock).
const ADMIN_LOCK_KEY: i64 = 0x6761_7465_6164_6d6e; // "gateadmn"

/// A condition on a `users` row, usable in any query on `users`.
pub(crate) type UserPredicate = Box<dyn BoxableExpression<users::table, MultiBackend, SqlType = Nullable<Bool>>>;

/// Serialises transactions that may change who is an active admin. Call it first in the
/// transaction; the lock is released at commit or rollback.
pub(crate) fn lock_admins(connection: &mut AnyConnection) -> QueryResult<()> {
    match connection {
        AnyConnection::Postgresql(pg) => {
            diesel::sql_query(format!("SELECT pg_advisory_xact_lock({ADMIN_LOCK_KEY})")).execute(pg)?;
            Ok(())
        }
        // The transaction took the write lock with BEGIN IMMEDIATE.
        AnyConnection::Sqlite(_) => Ok(()),
    }
}

/// Users whose status in effect at `now` is `status`: a lock whose `locked_until` has passed
/// counts as active; a lock without an end lasts until an admin lifts it.
pub(crate) fn has_status(status: UserStatus, now: DateTime<Utc>) -> UserPredicate {
    let now = DbTime(now);
    match status {
        UserStatus::Active => Box::new(
            users::status
                .eq(UserStatus::Active.as_str())
                .or(users::status.eq(UserStatus::Locked.as_str()).and(users::locked_until.le(now)))
                .nullable(),
        ),
        UserStatus::Locked => Box::new(
            users::status
                .eq(UserStatus::Locked.as_str())
                .and(users::locked_until.is_null().or(users::locked_until.gt(now)))
                .nullable(),
        ),
        UserStatus::Disabled => Box::new(users::status.eq(UserStatus::Disabled.as_str()).nullable()),
    }
}

/// Users holding `role`.
pub(crate) fn holds_role(role: Role) -> UserPredicate {
    Box::new(
        exists(user_roles::table.filter(user_roles::user_id.eq(users::id)).filter(user_roles::role.eq(role.as_str())))
            .nullable(),
    )
}

/// Whether `id` is a non-deleted admin whose status at `now` is active.
pub(crate) fn is_active_admin(connection: &mut AnyConnection, id: DbUuid, now: DateTime<Utc>) -> QueryResult<bool> {
    let found: Option<DbUuid> = users::table
        .into_boxed::<MultiBackend>()
        .filter(users::id.eq(id))
        .filter(users::deleted_at.is_null())
        .filter(has_status(UserStatus::Active, now))
        .filter(holds_role(Role::Admin))
        .select(users::id)
        .first(connection)
        .optional()?;
    Ok(found.is_some())
}

/// Whether some non-deleted admin's status at `now` is active.
pub(crate) fn any_active_admin(connection: &mut AnyConnection, now: DateTime<Utc>) -> QueryResult<bool> {
    let found: Option<DbUuid> = users::table
        .into_boxed::<MultiBackend>()
        .filter(users::deleted_at.is_null())
        .filter(has_status(UserStatus::Active, now))
        .filter(holds_role(Role::Admin))
        .select(users::id)
        .first(connection)
        .optional()?;
    Ok(found.is_some())
}

/// After a change: whether the rule still holds. Only a change to a user who was an active
/// admin can break it (`was_admin`, read after [`lock_admins`] and before the change), so an
/// installation without any admin yet does not refuse other users' changes.
pub(crate) fn admins_remain(connection: &mut AnyConnection, was_admin: bool, now: DateTime<Utc>) -> QueryResult<bool> {
    Ok(!was_admin || any_active_admin(connection, now)?)
}
