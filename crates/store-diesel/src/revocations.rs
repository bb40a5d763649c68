//! [`RevocationList`] answered from the `sessions` table, for deployments without Redis.

use std::fmt;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use gatehouse_domain::SessionId;
use gatehouse_domain::ports::{Clock, RevocationList, SystemClock};

use crate::database::Database;
use crate::schema::sessions;
use crate::types::{DbTime, DbUuid};

/// The revocation list of a deployment without Redis: several instances sharing one
/// PostgreSQL (or a single node on SQLite) ask the sessions table itself.
///
/// [`RevocationList::revoke`] does nothing: every revocation is already written to the
/// session row, in the same transaction as the change that caused it, before any caller can
/// ask, and all instances read the same table. [`RevocationList::is_revoked`] is one
/// primary-key lookup per authenticated request. A session counts as revoked when it is
/// revoked, expired, or unknown, so an access token never outlives its session.
#[derive(Clone)]
pub struct SessionTableRevocations {
    db: Database,
    clock: Arc<dyn Clock>,
}

impl SessionTableRevocations {
    /// The list on `db`, telling expired sessions by the system clock.
    #[must_use]
    pub fn new(db: Database) -> Self {
        Self::with_clock(db, Arc::new(SystemClock))
    }

    /// The list on `db`, telling expired sessions by `clock`.
    #[must_use]
    pub fn with_clock(db: Database, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }
}

impl fmt::Debug for SessionTableRevocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTableRevocations").field("db", &self.db).finish_non_exhaustive()
    }
}

#[async_trait]
impl RevocationList for SessionTableRevocations {
    async fn revoke(&self, _sessions: Vec<SessionId>, _until: DateTime<Utc>) -> anyhow::Result<()> {
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn is_revoked(&self, session: SessionId) -> anyhow::Result<bool> {
        let id = DbUuid(*session.as_uuid());
        let now = DbTime(self.clock.now());
        self.db
            .run(move |connection| {
                let live: bool = diesel::select(diesel::dsl::exists(
                    sessions::table
                        .find(id)
                        .filter(sessions::revoked_at.is_null())
                        .filter(sessions::expires_at.gt(now)),
                ))
                .get_result(connection)
                .context("could not check whether the session is revoked")?;
                Ok(!live)
            })
            .await
    }
}
