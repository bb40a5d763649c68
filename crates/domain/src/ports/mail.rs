//! The email outbox (messages queued by the store with the changes that cause them) and the
//! sender that delivers them.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::email::OutgoingEmail;
use crate::ids::EmailId;

/// A message a relay has leased from the outbox. Nobody else claims it until the lease
/// ends; the relay then marks it sent, schedules a retry or marks it failed, naming `claim`.
#[derive(Debug, Clone)]
pub struct ClaimedEmail {
    /// The message.
    pub email: OutgoingEmail,
    /// Identifies this lease; a relay whose lease ran out (and was taken over) can no longer
    /// change the row.
    pub claim: Uuid,
    /// Delivery attempts so far, this one included.
    pub attempts: u32,
}

/// The outbox, as relays see it. Messages are queued by the repositories, in the transaction
/// of the change that causes them.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait EmailOutbox: Send + Sync {
    /// Leases up to `limit` messages that are pending, due (`next_attempt_at <= now`) and not
    /// leased by someone else (no lease, or one that ended at or before `now`), oldest due
    /// first: each gets a new claim id, its lease ends at `now + lease`, and its attempt
    /// count goes up by one.
    ///
    /// Concurrent claims MUST NOT lease one message twice. A message that cannot be read
    /// back (an unknown template) is marked failed instead of returned.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn claim(&self, now: DateTime<Utc>, lease: Duration, limit: u32) -> anyhow::Result<Vec<ClaimedEmail>>;

    /// Marks the message sent and forgets its content (which may hold a token). Returns
    /// `false`, changing nothing, when `claim` is no longer the message's lease.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn mark_sent(&self, id: EmailId, claim: Uuid, at: DateTime<Utc>) -> anyhow::Result<bool>;

    /// Ends the lease and makes the message due again at `retry_at`, keeping `error`. Returns
    /// `false`, changing nothing, when `claim` is no longer the message's lease.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn schedule_retry(
        &self,
        id: EmailId,
        claim: Uuid,
        retry_at: DateTime<Utc>,
        error: String,
    ) -> anyhow::Result<bool>;

    /// Gives up on the message: marks it failed with `error` and forgets its content. Returns
    /// `false`, changing nothing, when `claim` is no longer the message's lease.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn mark_failed(&self, id: EmailId, claim: Uuid, at: DateTime<Utc>, error: String) -> anyhow::Result<bool>;
}

/// Why a message was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: the server is unreachable, timed out, or answered with a temporary
    /// (4xx) error.
    #[error("temporary delivery failure: {0:#}")]
    Transient(anyhow::Error),
    /// Retrying will not help: the server refused the message for good (5xx), or it cannot
    /// be built.
    #[error("permanent delivery failure: {0:#}")]
    Permanent(anyhow::Error),
}

/// Renders and delivers one message.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait EmailSender: Send + Sync {
    /// Delivers `email`. Retries of one message carry the same `Message-ID` (from its id).
    ///
    /// # Errors
    ///
    /// [`SendError::Transient`] when a later attempt may succeed, [`SendError::Permanent`]
    /// otherwise.
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError>;
}
