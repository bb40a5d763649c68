//! Reading the audit trail, and recording events that come with no other change.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::activity::{ActivityAction, NewActivity};
use crate::ids::{ActivityId, UserId};
use crate::pagination::{Page, PageLimit};

/// An event as stored; the same shape as the one written.
pub type ActivityEvent = NewActivity;

/// Where an activity list continues: after the event with this time and id (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityCursor {
    /// The time of the last event shown.
    pub created_at: DateTime<Utc>,
    /// Its id, breaking ties.
    pub id: ActivityId,
}

impl ActivityCursor {
    /// The position of `event` in a list.
    #[must_use]
    pub fn of(event: &ActivityEvent) -> Self {
        Self { created_at: event.created_at, id: event.id }
    }
}

/// An activity list request; all filters combine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityQuery {
    /// Events about this user.
    pub user_id: Option<UserId>,
    /// Events of this action.
    pub action: Option<ActivityAction>,
    /// At or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Before this instant.
    pub until: Option<DateTime<Utc>>,
    /// The page size.
    pub limit: PageLimit,
    /// Continue after this position.
    pub after: Option<ActivityCursor>,
}

/// The audit trail.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ActivityLog: Send + Sync {
    /// Records an event that accompanies no other change (a failed sign-in).
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn record(&self, event: NewActivity) -> anyhow::Result<()>;

    /// One page of events matching `query`, newest first (by time, then id), using an
    /// index for every filter combination the API offers.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn list(&self, query: ActivityQuery) -> anyhow::Result<Page<ActivityEvent, ActivityCursor>>;
}
