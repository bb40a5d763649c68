//! [`SessionRepository`] on Diesel: the `sessions` and `refresh_tokens` tables.

use std::net::IpAddr;

use anyhow::Context;
use async_trait::async_trait;
use diesel::prelude::*;
use gatehouse_domain::ports::SessionRepository;
use gatehouse_domain::{NewSession, RequestContext, Session, SessionId, UserId};

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

/// The session, its first refresh token and the user's `last_login_at`, then the session as
/// stored.
fn insert_session(connection: &mut AnyConnection, row: &SessionRow, token_hash: &str) -> QueryResult<SessionRow> {
    diesel::insert_into(sessions::table).values(row).execute(connection)?;
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(token_hash),
            refresh_tokens::session_id.eq(row.id),
            refresh_tokens::created_at.eq(row.created_at),
            refresh_tokens::spent_at.eq(None::<DbTime>),
        ))
        .execute(connection)?;
    diesel::update(users::table.find(row.user_id))
        .set(users::last_login_at.eq(Some(row.created_at)))
        .execute(connection)?;
    sessions::table.find(row.id).select(SessionRow::as_select()).first(connection)
}

#[async_trait]
impl SessionRepository for DieselSessionRepository {
    #[tracing::instrument(level = "debug", skip_all, fields(session_id = %session.id, user_id = %session.user_id), err)]
    async fn start(&self, session: NewSession) -> anyhow::Result<Session> {
        let row = SessionRow::new(&session);
        let token_hash = session.refresh_token_hash.as_str().to_owned();
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| insert_session(connection, &row, &token_hash))
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
}
