//! Session storage: refresh-token families.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::activity::NewActivity;
use crate::ids::{SessionId, UserId};
use crate::ports::TokenHash;
use crate::session::{NewSession, Session};

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live: it is now spent and the successor is stored. Or it was spent
    /// within the grace window for this same successor, which is stored already.
    Rotated(Session),
    /// The token was spent before, outside the grace window or for another successor: a
    /// replay. Nothing was written; the caller revokes the session.
    Reused(Session),
    /// The token belongs to a revoked or expired session. Nothing was written.
    SessionEnded,
    /// No such token.
    Unknown,
}

/// Stores sessions and the hashes of their refresh tokens.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SessionRepository: Send + Sync {
    /// Records a sign-in: inserts the session with its first refresh-token hash, sets the
    /// user's `last_login_at` to `session.created_at`, and records `event`, in one
    /// transaction.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures (including a user id that does not exist).
    async fn start(&self, session: NewSession, event: NewActivity) -> anyhow::Result<Session>;

    /// The session with this id, revoked or not.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown id is `Ok(None)`.
    async fn find(&self, id: SessionId) -> anyhow::Result<Option<Session>>;

    /// The session a refresh token (spent or not) belongs to, revoked or not.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown token is `Ok(None)`.
    async fn find_by_refresh_token(&self, token: &TokenHash) -> anyhow::Result<Option<Session>>;

    /// Spends the refresh token `presented` and stores `successor` in its session, in one
    /// transaction that serialises concurrent presentations of the same token: of two
    /// racing calls, exactly one finds it unspent.
    ///
    /// - live session, unspent token: spend it, recording `successor` as the token it was
    ///   spent for, store the successor, set `last_used_at`; [`Rotation::Rotated`].
    /// - live session, `grace` positive, the token spent at most `grace` ago and for this
    ///   same `successor`: set `last_used_at` only (the successor is stored already, so the
    ///   session stays one chain); [`Rotation::Rotated`].
    /// - live session, token spent longer ago, or spent for another successor (or before
    ///   successors were recorded): write nothing; [`Rotation::Reused`].
    /// - revoked session, or `expires_at <= now`: write nothing; [`Rotation::SessionEnded`].
    /// - no such token: [`Rotation::Unknown`].
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn rotate(
        &self,
        presented: TokenHash,
        successor: TokenHash,
        now: DateTime<Utc>,
        grace: Duration,
    ) -> anyhow::Result<Rotation>;

    /// Revokes one live session of `user_id` and records `event`, in one transaction.
    /// Returns `false`, writing nothing, when the session does not exist, belongs to
    /// someone else, or is already revoked.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn revoke(
        &self,
        user_id: UserId,
        session: SessionId,
        now: DateTime<Utc>,
        event: NewActivity,
    ) -> anyhow::Result<bool>;

    /// Revokes every live session of `user_id` except `keep`, and returns the revoked ids.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn revoke_all(
        &self,
        user_id: UserId,
        keep: Option<SessionId>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<SessionId>>;

    /// The sessions of `user_id` that are neither revoked nor expired at `now`, newest
    /// first.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn list_live(&self, user_id: UserId, now: DateTime<Utc>) -> anyhow::Result<Vec<Session>>;
}
