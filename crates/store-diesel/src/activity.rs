//! The `activity_events` table: the audit trail. Events are written together with the change
//! they record, inside that change's transaction, by the repositories in this crate; the
//! [`ActivityLog`] here records the few that accompany no change and reads the trail back.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Context;
use async_trait::async_trait;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use gatehouse_domain::pagination::Page;
use gatehouse_domain::ports::{ActivityCursor, ActivityEvent, ActivityLog, ActivityQuery};
use gatehouse_domain::{ActivityAction, ActivityId, NewActivity, RequestContext, UserId};

use crate::connection::{AnyConnection, MultiBackend, write_transaction};
use crate::database::Database;
use crate::schema::activity_events;
use crate::types::sql::{PortableTimestamp, PortableUuid};
use crate::types::{DbJson, DbTime, DbUuid};

/// An activity_events row to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = activity_events, treat_none_as_default_value = false)]
pub(crate) struct NewActivityRow {
    id: DbUuid,
    user_id: DbUuid,
    actor_id: Option<DbUuid>,
    action: &'static str,
    ip: Option<String>,
    user_agent: Option<String>,
    created_at: DbTime,
    details: DbJson,
}

impl NewActivityRow {
    /// The row for `event`. Built before the transaction starts, so that the only failure
    /// left inside it is the database's.
    ///
    /// # Errors
    ///
    /// When the details cannot be serialised (they are strings, so in practice never).
    pub(crate) fn new(event: &NewActivity) -> anyhow::Result<Self> {
        let details = serde_json::to_string(&event.details).context("could not serialise the activity details")?;
        Ok(Self {
            id: DbUuid(*event.id.as_uuid()),
            user_id: DbUuid(*event.user_id.as_uuid()),
            actor_id: event.actor_id.map(|actor| DbUuid(*actor.as_uuid())),
            action: event.action.as_str(),
            ip: event.context.ip.map(|ip| ip.to_string()),
            user_agent: event.context.user_agent.clone(),
            created_at: DbTime(event.created_at),
            details: DbJson(details),
        })
    }
}

impl NewActivityRow {
    /// Points the event at another user (an event prepared before the store knew whom the
    /// change would affect).
    pub(crate) fn retarget(&mut self, user_id: DbUuid) {
        self.user_id = user_id;
    }
}

/// Records one event. Call it inside the transaction of the change it records.
///
/// Also writes the webhook event the action publishes, if any endpoint subscribes to it
/// ([`crate::webhooks::publish`]), so the audit trail and the webhooks never disagree.
pub(crate) fn insert_activity(connection: &mut AnyConnection, event: &NewActivityRow) -> QueryResult<()> {
    diesel::insert_into(activity_events::table).values(event).execute(connection)?;
    crate::webhooks::publish(connection, event.action, event.user_id, event.created_at.0, &event.details.0)
}

/// An activity_events row as read.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = activity_events)]
struct ActivityRow {
    id: DbUuid,
    user_id: DbUuid,
    actor_id: Option<DbUuid>,
    action: String,
    ip: Option<String>,
    user_agent: Option<String>,
    created_at: DbTime,
    details: DbJson,
}

impl ActivityRow {
    /// The event as written. A stored value that no longer parses is an error, never a panic.
    fn into_event(self) -> anyhow::Result<ActivityEvent> {
        let id = self.id.0;
        let context = || format!("activity event {id} holds an invalid stored value");
        let details: BTreeMap<String, String> = serde_json::from_str(&self.details.0).with_context(context)?;
        Ok(ActivityEvent {
            id: ActivityId::from_uuid(id),
            user_id: UserId::from_uuid(self.user_id.0),
            actor_id: self.actor_id.map(|actor| UserId::from_uuid(actor.0)),
            action: self.action.parse::<ActivityAction>().with_context(context)?,
            context: RequestContext {
                ip: self.ip.as_deref().map(str::parse::<IpAddr>).transpose().with_context(context)?,
                user_agent: self.user_agent,
            },
            created_at: self.created_at.0,
            details,
        })
    }
}

/// The trail in PostgreSQL or SQLite. Obtain one with [`Database::activity`].
///
/// Lists are newest first by `(created_at, id)` and continue with the keyset condition
/// `(created_at, id) < (cursor)`, so every page is an index range: `(user_id, created_at,
/// id)` for a user's history, `(action, created_at, id)` for one action, `(created_at, id)`
/// for the whole trail (see the migrations). `since`/`until` narrow the same ranges.
#[derive(Debug, Clone)]
pub struct DieselActivityLog {
    db: Database,
}

impl DieselActivityLog {
    /// A log on `db`.
    #[must_use]
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// The page of events `query` asks for, plus one more row when there is one.
fn list_events(connection: &mut AnyConnection, query: &ActivityQuery) -> anyhow::Result<Vec<ActivityEvent>> {
    let mut select = activity_events::table.select(ActivityRow::as_select()).into_boxed::<MultiBackend>();
    if let Some(user_id) = query.user_id {
        select = select.filter(activity_events::user_id.eq(DbUuid(*user_id.as_uuid())));
    }
    if let Some(action) = query.action {
        select = select.filter(activity_events::action.eq(action.as_str()));
    }
    if let Some(since) = query.since {
        select = select.filter(activity_events::created_at.ge(DbTime(since)));
    }
    if let Some(until) = query.until {
        select = select.filter(activity_events::created_at.lt(DbTime(until)));
    }
    if let Some(after) = &query.after {
        select = select.filter(
            sql::<Bool>("(activity_events.created_at, activity_events.id) < (")
                .bind::<PortableTimestamp, _>(DbTime(after.created_at))
                .sql(", ")
                .bind::<PortableUuid, _>(DbUuid(*after.id.as_uuid()))
                .sql(")"),
        );
    }
    let fetch = i64::try_from(query.limit.get() + 1).context("the page size does not fit a LIMIT")?;
    select
        .order((activity_events::created_at.desc(), activity_events::id.desc()))
        .limit(fetch)
        .load(connection)
        .context("could not list the activity events")?
        .into_iter()
        .map(ActivityRow::into_event)
        .collect()
}

#[async_trait]
impl ActivityLog for DieselActivityLog {
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %event.user_id, action = %event.action), err)]
    async fn record(&self, event: NewActivity) -> anyhow::Result<()> {
        let row = NewActivityRow::new(&event)?;
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| insert_activity(connection, &row))
                    .context("could not record the activity event")
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn list(&self, query: ActivityQuery) -> anyhow::Result<Page<ActivityEvent, ActivityCursor>> {
        let limit = query.limit;
        let rows = self.db.run(move |connection| list_events(connection, &query)).await?;
        Ok(Page::from_rows(rows, limit, ActivityCursor::of))
    }
}

/// Reading a user's whole trail back, for tests (feature `testing`).
#[cfg(feature = "testing")]
pub(crate) mod read {
    use anyhow::Context;
    use diesel::prelude::*;
    use gatehouse_domain::UserId;

    use super::ActivityRow;
    use crate::connection::AnyConnection;
    use crate::schema::activity_events;
    use crate::testing::StoredActivity;
    use crate::types::DbUuid;

    /// Every event about `user_id`, oldest first.
    pub(crate) fn for_user(connection: &mut AnyConnection, user_id: UserId) -> anyhow::Result<Vec<StoredActivity>> {
        activity_events::table
            .filter(activity_events::user_id.eq(DbUuid(*user_id.as_uuid())))
            .order((activity_events::created_at.asc(), activity_events::id.asc()))
            .select(ActivityRow::as_select())
            .load(connection)
            .context("could not read the activity events")?
            .into_iter()
            .map(|row| {
                row.into_event().map(|event| StoredActivity {
                    id: event.id,
                    user_id: event.user_id,
                    actor_id: event.actor_id,
                    action: event.action,
                    context: event.context,
                    created_at: event.created_at,
                    details: event.details,
                })
            })
            .collect()
    }
}
