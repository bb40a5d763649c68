//! The revocation list: which sessions' access tokens must stop working before they
//! expire. Every revocation is published to it; access-token checks answer from the read
//! cache (see [`crate::read_cache`]), which every revocation invalidates on every instance,
//! and from storage on a miss.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ids::SessionId;

/// Sessions revoked while some of their access tokens may still be unexpired.
///
/// Storage (the session rows) stays the source of truth; this list only makes the check
/// cheap. An entry is needed only until every access token of the session has expired, so
/// callers pass `until` = revocation time + access-token lifetime and implementations may
/// forget entries after it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RevocationList: Send + Sync {
    /// Records that the sessions are revoked until `until`. Once this returns `Ok`, every
    /// server instance sharing this list MUST answer `true` for them.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures (for example, the shared store is unreachable).
    async fn revoke(&self, sessions: Vec<SessionId>, until: DateTime<Utc>) -> anyhow::Result<()>;

    /// Whether the session was revoked.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures; callers then fall back to storage.
    async fn is_revoked(&self, session: SessionId) -> anyhow::Result<bool>;
}
