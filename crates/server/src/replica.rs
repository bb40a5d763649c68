//! Read-replica routing: list, search and audit reads go to the replica, everything else
//! (writes, and reads that must see the caller's own change, such as fetching a user after
//! updating it) to the primary. Decorators over the ports, so neither the domain nor the
//! store knows a replica exists.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gatehouse_domain::pagination::Page;
use gatehouse_domain::ports::{
    ActivityCursor, ActivityEvent, ActivityLog, ActivityQuery, AdminChangeError, AdminChangeOutcome, AdminChanges,
    EnsureAdmin, SoftDeleted, UserCursor, UserDirectory, UserQuery,
};
use gatehouse_domain::{NewActivity, NewUser, User, UserId};

/// A [`UserDirectory`] whose `list` (listing and search) reads from a replica.
pub struct ReplicaUserDirectory {
    primary: Arc<dyn UserDirectory>,
    replica: Arc<dyn UserDirectory>,
}

impl ReplicaUserDirectory {
    /// Lists from `replica`, does everything else on `primary`.
    #[must_use]
    pub fn new(primary: Arc<dyn UserDirectory>, replica: Arc<dyn UserDirectory>) -> Self {
        Self { primary, replica }
    }
}

#[async_trait]
impl UserDirectory for ReplicaUserDirectory {
    async fn list(&self, query: UserQuery) -> anyhow::Result<Page<User, UserCursor>> {
        self.replica.list(query).await
    }

    async fn find(&self, id: UserId) -> anyhow::Result<Option<User>> {
        self.primary.find(id).await
    }

    async fn update(
        &self,
        id: UserId,
        changes: AdminChanges,
        revoke_sessions: bool,
        at: DateTime<Utc>,
        events: Vec<NewActivity>,
    ) -> Result<AdminChangeOutcome, AdminChangeError> {
        self.primary.update(id, changes, revoke_sessions, at, events).await
    }

    async fn delete(&self, id: UserId, at: DateTime<Utc>, event: NewActivity) -> Result<SoftDeleted, AdminChangeError> {
        self.primary.delete(id, at, event).await
    }

    async fn restore(&self, id: UserId, at: DateTime<Utc>, event: NewActivity) -> Result<User, AdminChangeError> {
        self.primary.restore(id, at, event).await
    }

    async fn ensure_admin(&self, admin: NewUser, event: NewActivity) -> anyhow::Result<EnsureAdmin> {
        self.primary.ensure_admin(admin, event).await
    }

    async fn make_admin(&self, admin: NewUser, event: NewActivity) -> anyhow::Result<EnsureAdmin> {
        self.primary.make_admin(admin, event).await
    }
}

/// An [`ActivityLog`] whose `list` (activity and audit pages) reads from a replica.
pub struct ReplicaActivityLog {
    primary: Arc<dyn ActivityLog>,
    replica: Arc<dyn ActivityLog>,
}

impl ReplicaActivityLog {
    /// Lists from `replica`, records on `primary`.
    #[must_use]
    pub fn new(primary: Arc<dyn ActivityLog>, replica: Arc<dyn ActivityLog>) -> Self {
        Self { primary, replica }
    }
}

#[async_trait]
impl ActivityLog for ReplicaActivityLog {
    async fn record(&self, event: NewActivity) -> anyhow::Result<()> {
        self.primary.record(event).await
    }

    async fn list(&self, query: ActivityQuery) -> anyhow::Result<Page<ActivityEvent, ActivityCursor>> {
        self.replica.list(query).await
    }
}
