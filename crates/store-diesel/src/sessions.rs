//! [`SessionRepository`] on Diesel: the `sessions` and `refresh_tokens` tables.
//!
//! Rotation is the one place where concurrency matters: two presentations of one refresh
//! token must not both find it unspent. On PostgreSQL [`rotate_in`] locks the token's row and
//! its session's (`SELECT … FOR UPDATE`), so a second presenter waits and then reads the token
//! as spent; on SQLite the whole transaction holds the database's write lock from its first
//! statement ([`write_transaction`]'s `BEGIN IMMEDIATE`).

use std::net::IpAddr;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use diesel::prelude::*;
use gatehouse_domain::ports::{Rotation, SessionRepository, TokenHash};
use gatehouse_domain::{NewActivity, NewSession, RequestContext, Session, SessionId, UserId};

use crate::activity::{NewActivityRow, insert_activity};
use crate::connection::{AnyConnection, write_transaction};
use crate::database::Database;
use crate::schema::{refresh_tokens, sessions, users};
use crate::types::{DbTime, DbUuid};

/// Stores sessions in PostgreSQL or SQLite. Obtain one with [`Database::sessions`].
#[derive(Debug, Clone)]
pub struct DieselSessionRepository {
    db: Database,
}

impl DieselSessionRepository {
    /// A repository on `db`.
    #[must_use]
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// A sessions row, read or written.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions, treat_none_as_default_value = false)]
struct SessionRow {
    id: DbUuid,
    user_id: DbUuid,
    user_agent: Option<String>,
    ip: Option<String>,
    created_at: DbTime,
    last_used_at: DbTime,
    expires_at: DbTime,
    revoked_at: Option<DbTime>,
}

impl SessionRow {
    fn new(session: &NewSession) -> Self {
        Self {
            id: DbUuid(*session.id.as_uuid()),
            user_id: DbUuid(*session.user_id.as_uuid()),
            user_agent: session.context.user_agent.clone(),
            ip: session.context.ip.map(|ip| ip.to_string()),
            created_at: DbTime(session.created_at),
            last_used_at: DbTime(session.created_at),
            expires_at: DbTime(session.expires_at),
            revoked_at: None,
        }
    }

    fn into_session(self) -> anyhow::Result<Session> {
        let ip = self
            .ip
            .as_deref()
            .map(str::parse::<IpAddr>)
            .transpose()
            .with_context(|| format!("session {} holds an invalid IP address", self.id.0))?;
        Ok(Session {
            id: SessionId::from_uuid(self.id.0),
            user_id: UserId::from_uuid(self.user_id.0),
            context: RequestContext { ip, user_agent: self.user_agent },
            created_at: self.created_at.0,
            last_used_at: self.last_used_at.0,
            expires_at: self.expires_at.0,
            revoked_at: self.revoked_at.map(|t| t.0),
        })
    }
}

/// The session, its first refresh token, the user's `last_login_at` and the login event, then
/// the session as stored.
fn insert_session(
    connection: &mut AnyConnection,
    row: &SessionRow,
    token_hash: &str,
    event: &NewActivityRow,
) -> QueryResult<SessionRow> {
    diesel::insert_into(sessions::table).values(row).execute(connection)?;
    insert_refresh_token(connection, token_hash, row.id, row.created_at)?;
    diesel::update(users::table.find(row.user_id))
        .set((users::last_login_at.eq(Some(row.created_at)), users::failed_logins.eq(0)))
        .execute(connection)?;
    insert_activity(connection, event)?;
    sessions::table.find(row.id).select(SessionRow::as_select()).first(connection)
}

fn insert_refresh_token(
    connection: &mut AnyConnection,
    token_hash: &str,
    session_id: DbUuid,
    created_at: DbTime,
) -> QueryResult<()> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(token_hash),
            refresh_tokens::session_id.eq(session_id),
            refresh_tokens::created_at.eq(created_at),
            refresh_tokens::spent_at.eq(None::<DbTime>),
            refresh_tokens::successor_hash.eq(None::<String>),
        ))
        .execute(connection)
        .map(|_| ())
}

/// [`Rotation`] with the session still a row.
enum RotationRow {
    Rotated(SessionRow),
    Reused(SessionRow),
    SessionEnded,
    Unknown,
}

/// `spent_at` and `successor_hash` of a refresh token, and its session.
type LockedToken = (Option<DbTime>, Option<String>, SessionRow);

/// When the presented token was spent (if it was), the successor it was spent for, and its
/// session, with both rows locked
/// against concurrent rotations until the transaction ends. On PostgreSQL that is a row lock
/// (`FOR UPDATE`, which Diesel's `MultiConnection` cannot express, hence the match); a caller
/// that waited for it reads the rows as the lock holder left them. On SQLite the caller's
/// `BEGIN IMMEDIATE` already holds the database's only write lock.
fn lock_token(connection: &mut AnyConnection, token_hash: &str) -> QueryResult<Option<LockedToken>> {
    // A macro, not a value: `as_select()` fixes the backend, and each arm has its own.
    macro_rules! query {
        () => {
            refresh_tokens::table
                .inner_join(sessions::table)
                .filter(refresh_tokens::token_hash.eq(token_hash))
                .select((refresh_tokens::spent_at, refresh_tokens::successor_hash, SessionRow::as_select()))
        };
    }
    match connection {
        AnyConnection::Postgresql(pg) => query!().for_update().first(pg).optional(),
        AnyConnection::Sqlite(sqlite) => query!().first(sqlite).optional(),
    }
}

/// The body of [`SessionRepository::rotate`]; must run inside [`write_transaction`].
///
/// A zero (or negative) `grace` means no grace at all: every second presentation is a reuse,
/// even one made in the same microsecond as the first. Times are compared at the microsecond
/// precision they are stored with, so a retry exactly `grace` after the first spend is in.
/// Within the window only the successor the token was spent for is accepted, and it is
/// already stored: nothing new is inserted, so the session stays one chain.
fn rotate_in(
    connection: &mut AnyConnection,
    presented: &str,
    successor: &str,
    now: DateTime<Utc>,
    grace: Duration,
) -> QueryResult<RotationRow> {
    let now = now.trunc_subsecs(6);
    let Some((spent_at, spent_for, session)) = lock_token(connection, presented)? else {
        return Ok(RotationRow::Unknown);
    };
    if session.revoked_at.is_some() || session.expires_at.0 <= now {
        return Ok(RotationRow::SessionEnded);
    }
    match spent_at {
        None => {
            diesel::update(refresh_tokens::table.find(presented))
                .set((
                    refresh_tokens::spent_at.eq(Some(DbTime(now))),
                    refresh_tokens::successor_hash.eq(Some(successor)),
                ))
                .execute(connection)?;
            insert_refresh_token(connection, successor, session.id, DbTime(now))?;
        }
        Some(spent_at)
            if grace > Duration::zero() && now - spent_at.0 <= grace && spent_for.as_deref() == Some(successor) => {}
        Some(_) => return Ok(RotationRow::Reused(session)),
    }
    diesel::update(sessions::table.find(session.id)).set(sessions::last_used_at.eq(DbTime(now))).execute(connection)?;
    let stored = sessions::table.find(session.id).select(SessionRow::as_select()).first(connection)?;
    Ok(RotationRow::Rotated(stored))
}

/// Revokes every session of `user_id` that is not revoked yet, except `keep`, and returns
/// their ids. Expired sessions are included: an access token issued just before its session
/// expired outlives it by up to its own lifetime, and the caller puts these ids on the
/// revocation list. Must run inside [`write_transaction`]; shared by `revoke_all`,
/// `change_password` and `soft_delete`.
pub(crate) fn revoke_sessions(
    connection: &mut AnyConnection,
    user_id: DbUuid,
    keep: Option<DbUuid>,
    now: DateTime<Utc>,
) -> QueryResult<Vec<SessionId>> {
    let ids: Vec<DbUuid> = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::id.ne_all(keep))
        .order((sessions::created_at.asc(), sessions::id.asc()))
        .select(sessions::id)
        .load(connection)?;
    if !ids.is_empty() {
        diesel::update(sessions::table.filter(sessions::id.eq_any(ids.clone())).filter(sessions::revoked_at.is_null()))
            .set(sessions::revoked_at.eq(Some(DbTime(now))))
            .execute(connection)?;
    }
    Ok(ids.into_iter().map(|id| SessionId::from_uuid(id.0)).collect())
}

#[async_trait]
impl SessionRepository for DieselSessionRepository {
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %session.id, user_id = %session.user_id), err)]
    async fn start(&self, session: NewSession, event: NewActivity) -> anyhow::Result<Session> {
        let row = SessionRow::new(&session);
        let event = NewActivityRow::new(&event)?;
        let token_hash = session.refresh_token_hash.as_str().to_owned();
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| insert_session(connection, &row, &token_hash, &event))
                    .context("could not start the session")?
                    .into_session()
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn find(&self, id: SessionId) -> anyhow::Result<Option<Session>> {
        let id = DbUuid(*id.as_uuid());
        self.db
            .run(move |connection| {
                sessions::table
                    .find(id)
                    .select(SessionRow::as_select())
                    .first(connection)
                    .optional()
                    .context("could not look up the session")?
                    .map(SessionRow::into_session)
                    .transpose()
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn find_by_refresh_token(&self, token: &TokenHash) -> anyhow::Result<Option<Session>> {
        let token_hash = token.as_str().to_owned();
        self.db
            .run(move |connection| {
                refresh_tokens::table
                    .inner_join(sessions::table)
                    .filter(refresh_tokens::token_hash.eq(token_hash))
                    .select(SessionRow::as_select())
                    .first(connection)
                    .optional()
                    .context("could not look up the session by refresh token")?
                    .map(SessionRow::into_session)
                    .transpose()
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, presented, successor), err)]
    async fn rotate(
        &self,
        presented: TokenHash,
        successor: TokenHash,
        now: DateTime<Utc>,
        grace: Duration,
    ) -> anyhow::Result<Rotation> {
        self.db
            .run(move |connection| {
                let outcome = write_transaction(connection, |connection| {
                    rotate_in(connection, presented.as_str(), successor.as_str(), now, grace)
                })
                .context("could not rotate the refresh token")?;
                Ok(match outcome {
                    RotationRow::Rotated(row) => Rotation::Rotated(row.into_session()?),
                    RotationRow::Reused(row) => Rotation::Reused(row.into_session()?),
                    RotationRow::SessionEnded => Rotation::SessionEnded,
                    RotationRow::Unknown => Rotation::Unknown,
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, event), err)]
    async fn revoke(
        &self,
        user_id: UserId,
        session: SessionId,
        now: DateTime<Utc>,
        event: NewActivity,
    ) -> anyhow::Result<bool> {
        let (user_id, session) = (DbUuid(*user_id.as_uuid()), DbUuid(*session.as_uuid()));
        let event = NewActivityRow::new(&event)?;
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| {
                    let revoked = diesel::update(
                        sessions::table
                            .find(session)
                            .filter(sessions::user_id.eq(user_id))
                            .filter(sessions::revoked_at.is_null()),
                    )
                    .set(sessions::revoked_at.eq(Some(DbTime(now))))
                    .execute(connection)?;
                    if revoked == 0 {
                        return Ok(false);
                    }
                    insert_activity(connection, &event)?;
                    QueryResult::Ok(true)
                })
                .context("could not revoke the session")
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn revoke_all(
        &self,
        user_id: UserId,
        keep: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<SessionId>> {
        let user_id = DbUuid(*user_id.as_uuid());
        let keep = keep.map(|keep| DbUuid(*keep.as_uuid()));
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| revoke_sessions(connection, user_id, keep, now))
                    .context("could not revoke the user's sessions")
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn list_live(&self, user_id: UserId, now: DateTime<Utc>) -> anyhow::Result<Vec<Session>> {
        let user_id = DbUuid(*user_id.as_uuid());
        self.db
            .run(move |connection| {
                sessions::table
                    .filter(sessions::user_id.eq(user_id))
                    .filter(sessions::revoked_at.is_null())
                    .filter(sessions::expires_at.gt(DbTime(now)))
                    .order((sessions::created_at.desc(), sessions::id.desc()))
                    .select(SessionRow::as_select())
                    .load(connection)
                    .context("could not list the user's sessions")?
                    .into_iter()
                    .map(SessionRow::into_session)
                    .collect()
            })
            .await
    }
}
