//! Session storage: refresh-token families.

use async_trait::async_trait;

use crate::ids::SessionId;
use crate::session::{NewSession, Session};

/// Stores sessions and the hashes of their refresh tokens.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SessionRepository: Send + Sync {
    /// Records a sign-in: inserts the session with its first refresh-token hash and sets the
    /// user's `last_login_at` to `session.created_at`, in one transaction.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures (including a user id that does not exist).
    async fn start(&self, session: NewSession) -> anyhow::Result<Session>;

    /// The session with this id, revoked or not.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; an unknown id is `Ok(None)`.
    async fn find(&self, id: SessionId) -> anyhow::Result<Option<Session>>;
}
