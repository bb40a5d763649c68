//! The revocation list on Redis, shared by every server instance.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gatehouse_domain::ids::SessionId;
use gatehouse_domain::ports::RevocationList;

use crate::connection::Redis;

/// A [`RevocationList`] on Redis: a revocation written by one instance is seen by all.
///
/// Each revoked session is one key, `{key_prefix}revoked:{session id}`, that Redis expires
/// at `until`. A revocation is one atomic `MULTI`/`EXEC` round trip; a lookup is one
/// `EXISTS`. Every call fails within a short timeout when Redis is slow or unreachable, so
/// callers fall back to the database instead of hanging. The connection reconnects by itself.
///
/// Revoking an already revoked session resets its expiry to the new `until`. That is safe
/// for the domain's use: any `until` is at least the revocation time plus the access-token
/// lifetime, and no token is issued for a session after it is revoked.
#[derive(Clone)]
pub struct RedisRevocationList {
    redis: Redis,
    key_prefix: String,
}

impl RedisRevocationList {
    /// Connects to the Redis at `url` (`redis://[[user]:password@]host[:port][/db]`).
    /// Keys start with `key_prefix`, so several deployments can share one Redis.
    ///
    /// # Errors
    ///
    /// When the URL is invalid, or Redis does not answer within half a second. Errors name
    /// the server's `host:port`, never the URL, which may hold a password.
    pub async fn connect(url: &str, key_prefix: &str) -> anyhow::Result<Self> {
        let redis = Redis::connect(url).await?;
        tracing::debug!(addr = redis.addr(), key_prefix, "revocation list connected to Redis");
        Ok(Self { redis, key_prefix: key_prefix.to_owned() })
    }

    /// Checks that Redis answers, for readiness probes.
    ///
    /// # Errors
    ///
    /// When Redis does not answer `PING` within the command timeout.
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.redis.ping().await
    }

    fn key(&self, session: SessionId) -> String {
        format!("{}revoked:{session}", self.key_prefix)
    }
}

impl fmt::Debug for RedisRevocationList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocationList")
            .field("addr", &self.redis.addr())
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

/// Milliseconds from `now` to `until`, or `None` when nothing is left to record.
fn ttl_millis(until: DateTime<Utc>, now: DateTime<Utc>) -> Option<i64> {
    Some((until - now).num_milliseconds()).filter(|ms| *ms > 0)
}

#[async_trait]
impl RevocationList for RedisRevocationList {
    #[tracing::instrument(level = "debug", skip_all, fields(sessions = sessions.len(), %until), err)]
    async fn revoke(&self, sessions: Vec<SessionId>, until: DateTime<Utc>) -> anyhow::Result<()> {
        let Some(ttl) = ttl_millis(until, Utc::now()) else {
            return Ok(());
        };
        if sessions.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for session in sessions {
            pipe.cmd("SET").arg(self.key(session)).arg(1).arg("PX").arg(ttl).ignore();
        }
        self.redis.run("revoke", |mut conn| async move { pipe.query_async::<()>(&mut conn).await }).await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn is_revoked(&self, session: SessionId) -> anyhow::Result<bool> {
        let key = self.key(session);
        self.redis
            .run(
                "is_revoked",
                |mut conn| async move { redis::cmd("EXISTS").arg(key).query_async::<bool>(&mut conn).await },
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn the_ttl_runs_from_now_to_until() {
        let now = Utc::now();
        assert_eq!(ttl_millis(now + TimeDelta::minutes(15), now), Some(900_000));
        assert_eq!(ttl_millis(now + TimeDelta::milliseconds(1), now), Some(1));
    }

    #[test]
    fn there_is_no_ttl_once_until_is_reached() {
        let now = Utc::now();
        assert_eq!(ttl_millis(now, now), None);
        assert_eq!(ttl_millis(now - TimeDelta::seconds(1), now), None);
    }
}
