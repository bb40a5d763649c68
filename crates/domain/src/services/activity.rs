//! Reading the audit trail: one's own activity, and everyone's for admins.

use crate::pagination::{Page, PageLimit};
use crate::ports::{ActivityCursor, ActivityEvent, ActivityQuery};
use crate::services::Ports;
use crate::services::admin::AdminPrincipal;
use crate::services::sessions::Principal;

/// The audit trail, newest first.
#[derive(Clone)]
pub struct ActivityService {
    ports: Ports,
}

impl ActivityService {
    /// Builds the service.
    #[must_use]
    pub fn new(ports: Ports) -> Self {
        Self { ports }
    }

    /// Events about the caller's own account.
    ///
    /// # Errors
    ///
    /// Only storage failures.
    pub async fn mine(
        &self,
        principal: &Principal,
        limit: PageLimit,
        after: Option<ActivityCursor>,
    ) -> anyhow::Result<Page<ActivityEvent, ActivityCursor>> {
        let query = ActivityQuery { user_id: Some(principal.user_id), limit, after, ..ActivityQuery::default() };
        self.ports.activity.list(query).await
    }

    /// Events matching `query`, about anyone.
    ///
    /// # Errors
    ///
    /// Only storage failures.
    pub async fn search(
        &self,
        _admin: &AdminPrincipal,
        query: ActivityQuery,
    ) -> anyhow::Result<Page<ActivityEvent, ActivityCursor>> {
        self.ports.activity.list(query).await
    }
}
