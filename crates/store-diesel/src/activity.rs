//! The `activity_events` table: the audit trail. Events are written only together with the
//! change they record, inside that change's transaction, by the repositories in this crate.

use anyhow::Context;
use diesel::prelude::*;
use gatehouse_domain::NewActivity;

use crate::connection::AnyConnection;
use crate::schema::activity_events;
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

/// Records one event. Call it inside the transaction of the change it records.
pub(crate) fn insert_activity(connection: &mut AnyConnection, event: &NewActivityRow) -> QueryResult<()> {
    diesel::insert_into(activity_events::table).values(event).execute(connection).map(|_| ())
}

/// Reading the trail back, for tests (feature `testing`) until the audit API needs more.
#[cfg(feature = "testing")]
pub(crate) mod read {
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    use anyhow::Context;
    use diesel::prelude::*;
    use gatehouse_domain::{ActivityAction, ActivityId, RequestContext, UserId};

    use crate::connection::AnyConnection;
    use crate::schema::activity_events;
    use crate::testing::StoredActivity;
    use crate::types::{DbJson, DbTime, DbUuid};

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
        fn into_stored(self) -> anyhow::Result<StoredActivity> {
            let id = self.id.0;
            let context = || format!("activity event {id} holds an invalid stored value");
            let details: BTreeMap<String, String> = serde_json::from_str(&self.details.0).with_context(context)?;
            Ok(StoredActivity {
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

    /// Every event about `user_id`, oldest first.
    pub(crate) fn for_user(connection: &mut AnyConnection, user_id: UserId) -> anyhow::Result<Vec<StoredActivity>> {
        activity_events::table
            .filter(activity_events::user_id.eq(DbUuid(*user_id.as_uuid())))
            .order((activity_events::created_at.asc(), activity_events::id.asc()))
            .select(ActivityRow::as_select())
            .load(connection)
            .context("could not read the activity events")?
            .into_iter()
            .map(ActivityRow::into_stored)
            .collect()
    }
}
