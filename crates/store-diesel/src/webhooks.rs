//! [`WebhookRepository`] on Diesel: `webhook_endpoints`, `webhook_events`,
//! `webhook_deliveries`.
//!
//! Events are written by [`publish`], which [`insert_activity`](crate::activity) calls inside
//! the transaction of every change it records: the audit action is mapped to a webhook event
//! type, the body (`{"id", "type", "timestamp", "data"}`, never a secret, hash or token) is
//! built from the row as the change left it, and one delivery is inserted per enabled endpoint
//! whose filters match. No subscriber, no row. Relays lease deliveries like the email outbox:
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite, a claim id and a lease
//! end, so a relay that dies between claim and acknowledgement only delays a delivery.
//!
//! Endpoint secrets are sealed with the database's
//! [`SecretCipher`](gatehouse_domain::ports::SecretCipher), bound to the endpoint id.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use async_trait::async_trait;
use base64::Engine as _;
use chrono::{DateTime, Duration, SecondsFormat, SubsecRound, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use gatehouse_domain::pagination::{Page, PageLimit};
use gatehouse_domain::ports::{
    AttemptEffect, AttemptRecord, ClaimedDelivery, EndpointChanges, NewEndpoint, QueueStats, SecretCipher,
    WebhookCursor, WebhookRepository,
};
use gatehouse_domain::webhooks::{
    Delivery, DeliveryStatus, DisabledReason, EventFilter, WebhookEndpoint, WebhookEventType, event_api_id,
};
use gatehouse_domain::{ActivityAction, Email, EmailContent, EmailId, OutgoingEmail, Role, UserStatus};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::admins::{has_status, holds_role};
use crate::connection::{AnyConnection, MultiBackend, write_transaction};
use crate::database::Database;
use crate::outbox::{NewEmailRow, insert_email};
use crate::schema::{users, webhook_deliveries, webhook_endpoints, webhook_events};
use crate::types::sql::{PortableTimestamp, PortableUuid};
use crate::types::{DbTime, DbUuid};
use crate::users::{UserRow, with_roles};

const PENDING: &str = "pending";
const RETRYING: &str = "retrying";
const SUCCEEDED: &str = "succeeded";
const FAILED: &str = "failed";
const OPEN: [&str; 2] = [PENDING, RETRYING];

/// The longest error text kept per delivery, in characters.
const ERROR_MAX_CHARS: usize = 500;

fn sealing_context(id: Uuid) -> Vec<u8> {
    format!("webhook_endpoints\0{id}").into_bytes()
}

fn serialisation(e: serde_json::Error) -> diesel::result::Error {
    diesel::result::Error::SerializationError(Box::new(e))
}

/// The `User` resource as the API renders it, read inside the transaction.
fn user_json(connection: &mut AnyConnection, id: DbUuid, now: DateTime<Utc>) -> QueryResult<Value> {
    let row = users::table.find(id).select(UserRow::as_select()).first(connection).optional()?;
    let Some((user, _)) = with_roles(connection, row).map_err(|e| {
        diesel::result::Error::DeserializationError(format!("webhook: the user row does not read: {e:#}").into())
    })?
    else {
        return Ok(Value::Null);
    };
    Ok(json!({
        "id": user.id.as_uuid(),
        "username": user.username.to_string(),
        "email": user.email.to_string(),
        "display_name": user.display_name.as_ref().map(ToString::to_string),
        "roles": user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "status": user.status_at(now).as_str(),
        "email_verified": user.email_verified(),
        "avatar_url": user.avatar.as_ref().map(|a| format!("/api/v1/users/{}/avatar?v={}", user.id, a.key.version())),
        "created_at": user.created_at,
        "updated_at": user.updated_at,
        "last_login_at": user.last_login_at,
    }))
}

/// The body of an event, exactly as it is signed and POSTed.
fn body(id: Uuid, event_type: WebhookEventType, at: DateTime<Utc>, data: &Value) -> Result<String, serde_json::Error> {
    serde_json::to_string(&json!({
        "id": event_api_id(id),
        "type": event_type.as_str(),
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "data": data,
    }))
}

fn filters_of(raw: &str) -> Vec<EventFilter> {
    serde_json::from_str::<Vec<String>>(raw)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.parse::<EventFilter>().ok())
        .collect()
}

/// A deliveries row to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = webhook_deliveries, treat_none_as_default_value = false)]
struct NewDeliveryRow {
    id: DbUuid,
    endpoint_id: DbUuid,
    event_id: DbUuid,
    event_type: String,
    status: &'static str,
    attempts: i32,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    next_attempt_at: DbTime,
    claim_id: Option<DbUuid>,
    claimed_until: Option<DbTime>,
    created_at: DbTime,
    finished_at: Option<DbTime>,
}

impl NewDeliveryRow {
    fn new(endpoint: DbUuid, event: DbUuid, event_type: &str, at: DateTime<Utc>) -> Self {
        Self {
            id: DbUuid(Uuid::now_v7()),
            endpoint_id: endpoint,
            event_id: event,
            event_type: event_type.to_owned(),
            status: PENDING,
            attempts: 0,
            last_status_code: None,
            last_error: None,
            next_attempt_at: DbTime(at),
            claim_id: None,
            claimed_until: None,
            created_at: DbTime(at),
            finished_at: None,
        }
    }
}

fn insert_event(
    connection: &mut AnyConnection,
    id: Uuid,
    event_type: &str,
    body: &str,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::insert_into(webhook_events::table)
        .values((
            webhook_events::id.eq(DbUuid(id)),
            webhook_events::event_type.eq(event_type),
            webhook_events::body.eq(body),
            webhook_events::created_at.eq(DbTime(at)),
        ))
        .execute(connection)
        .map(|_| ())
}

/// Writes the webhook event an audit action publishes, with one delivery per enabled
/// endpoint subscribed to it. Call it inside the transaction of the change.
pub(crate) fn publish(
    connection: &mut AnyConnection,
    action: &str,
    user_id: DbUuid,
    at: DateTime<Utc>,
    details: &str,
) -> QueryResult<()> {
    let Some(event_type) = action.parse::<ActivityAction>().ok().and_then(WebhookEventType::for_action) else {
        return Ok(());
    };
    let endpoints: Vec<(DbUuid, String)> = webhook_endpoints::table
        .filter(webhook_endpoints::enabled.eq(true))
        .select((webhook_endpoints::id, webhook_endpoints::event_types))
        .load(connection)?;
    let subscribed: Vec<DbUuid> = endpoints
        .into_iter()
        .filter(|(_, filters)| EventFilter::any_matches(&filters_of(filters), event_type))
        .map(|(id, _)| id)
        .collect();
    if subscribed.is_empty() {
        return Ok(());
    }
    let details: BTreeMap<String, String> = serde_json::from_str(details).unwrap_or_default();
    let detail = |key: &str| details.get(key).cloned();
    let data = match event_type.family() {
        "session" => json!({"user_id": user_id.0, "session_id": detail("session_id")}),
        "identity" => json!({"user_id": user_id.0, "provider": detail("provider")}),
        "mfa" => json!({"user_id": user_id.0, "factor": detail("factor")}),
        _ if event_type == WebhookEventType::UserPurged => json!({"user_id": user_id.0}),
        _ => json!({"user": user_json(connection, user_id, at)?}),
    };
    let event_id = Uuid::now_v7();
    let body = body(event_id, event_type, at, &data).map_err(serialisation)?;
    insert_event(connection, event_id, event_type.as_str(), &body, at)?;
    for endpoint in subscribed {
        let row = NewDeliveryRow::new(endpoint, DbUuid(event_id), event_type.as_str(), at);
        diesel::insert_into(webhook_deliveries::table).values(&row).execute(connection)?;
    }
    Ok(())
}

/// An endpoint row as read.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints)]
struct EndpointRow {
    id: DbUuid,
    url: String,
    description: Option<String>,
    event_types: String,
    enabled: bool,
    disabled_reason: Option<String>,
    created_at: DbTime,
    updated_at: DbTime,
}

impl EndpointRow {
    fn into_endpoint(self) -> WebhookEndpoint {
        WebhookEndpoint {
            id: self.id.0,
            url: self.url,
            description: self.description,
            event_types: filters_of(&self.event_types),
            enabled: self.enabled,
            disabled_reason: self.disabled_reason.as_deref().map(|_| DisabledReason::Failing),
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
        }
    }
}

/// A delivery row as listed.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
struct DeliveryRow {
    id: DbUuid,
    event_id: DbUuid,
    event_type: String,
    status: String,
    attempts: i32,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    next_attempt_at: DbTime,
    created_at: DbTime,
}

impl DeliveryRow {
    fn into_delivery(self) -> anyhow::Result<Delivery> {
        let status: DeliveryStatus = self.status.parse().context("a delivery has an unknown status")?;
        Ok(Delivery {
            id: self.id.0,
            event_id: self.event_id.0,
            event_type: self.event_type.parse().context("a delivery has an unknown event type")?,
            status,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            last_status_code: self.last_status_code.and_then(|c| u16::try_from(c).ok()),
            last_error: self.last_error,
            next_attempt_at: matches!(status, DeliveryStatus::Pending | DeliveryStatus::Retrying)
                .then_some(self.next_attempt_at.0),
            created_at: self.created_at.0,
        })
    }
}

fn filters_json(filters: &[EventFilter]) -> anyhow::Result<String> {
    serde_json::to_string(&filters.iter().map(ToString::to_string).collect::<Vec<_>>())
        .context("could not serialise the event types")
}

/// Decodes a `whsec_` secret into its signing key.
fn key_of(secret: &str) -> anyhow::Result<SecretSlice<u8>> {
    let encoded = secret.strip_prefix("whsec_").context("the secret has no whsec_ prefix")?;
    let key = base64::engine::general_purpose::STANDARD.decode(encoded).context("the secret is not base64")?;
    Ok(SecretSlice::from(key))
}

fn bounded(error: &str) -> String {
    error.chars().take(ERROR_MAX_CHARS).collect()
}

/// The repository in PostgreSQL or SQLite. Obtain one with [`Database::webhooks`].
#[derive(Debug, Clone)]
pub struct DieselWebhookRepository {
    db: Database,
}

impl DieselWebhookRepository {
    /// A repository on `db`.
    #[must_use]
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn seal(&self, id: Uuid, secret: &SecretString) -> anyhow::Result<String> {
        let cipher: &dyn SecretCipher = self.db.secrets().context(
            "the database has no cipher for secrets at rest (Database::with_secret_cipher): refusing to store a \
             webhook secret in plain text",
        )?;
        cipher.seal(secret.expose_secret().as_bytes(), &sealing_context(id)).context("could not seal the secret")
    }
}

fn get_endpoint(connection: &mut AnyConnection, id: DbUuid) -> QueryResult<Option<WebhookEndpoint>> {
    Ok(webhook_endpoints::table
        .find(id)
        .select(EndpointRow::as_select())
        .first(connection)
        .optional()?
        .map(EndpointRow::into_endpoint))
}

fn exists(connection: &mut AnyConnection, id: DbUuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(webhook_endpoints::table.find(id))).get_result(connection)
}

/// A due delivery, as claimed.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
struct DueRow {
    id: DbUuid,
    endpoint_id: DbUuid,
    event_id: DbUuid,
    attempts: i32,
    created_at: DbTime,
}

/// What a claim hands out before the secrets are opened.
struct Leased {
    row: DueRow,
    url: String,
    sealed: String,
    sealed_previous: Option<String>,
    body: String,
}

fn claim_due(
    connection: &mut AnyConnection,
    now: DbTime,
    lease_until: DbTime,
    limit: u32,
    per_endpoint: u32,
    claim: DbUuid,
) -> QueryResult<Vec<Leased>> {
    let scan = i64::from(limit.saturating_mul(4).max(limit));
    macro_rules! due {
        () => {
            webhook_deliveries::table
                .filter(webhook_deliveries::status.eq_any(OPEN))
                .filter(webhook_deliveries::next_attempt_at.le(now))
                .filter(webhook_deliveries::claimed_until.is_null().or(webhook_deliveries::claimed_until.le(now)))
                .filter(webhook_deliveries::endpoint_id.eq_any(
                    webhook_endpoints::table.filter(webhook_endpoints::enabled.eq(true)).select(webhook_endpoints::id),
                ))
                .order((webhook_deliveries::next_attempt_at.asc(), webhook_deliveries::id.asc()))
                .limit(scan)
                .select(DueRow::as_select())
        };
    }
    let rows = match connection {
        AnyConnection::Postgresql(pg) => due!().for_update().skip_locked().load(pg)?,
        AnyConnection::Sqlite(sqlite) => due!().load(sqlite)?,
    };
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let in_flight: Vec<DbUuid> = webhook_deliveries::table
        .filter(webhook_deliveries::status.eq_any(OPEN))
        .filter(webhook_deliveries::claimed_until.gt(now))
        .select(webhook_deliveries::endpoint_id)
        .load(connection)?;
    let mut busy: HashMap<Uuid, u32> = HashMap::new();
    for endpoint in in_flight {
        *busy.entry(endpoint.0).or_default() += 1;
    }
    let mut chosen = Vec::new();
    for row in rows {
        if chosen.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
            break;
        }
        let count = busy.entry(row.endpoint_id.0).or_default();
        if *count < per_endpoint {
            *count += 1;
            chosen.push(row);
        }
    }
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<DbUuid> = chosen.iter().map(|row| row.id).collect();
    diesel::update(webhook_deliveries::table.filter(webhook_deliveries::id.eq_any(ids)))
        .set((
            webhook_deliveries::claim_id.eq(Some(claim)),
            webhook_deliveries::claimed_until.eq(Some(lease_until)),
            webhook_deliveries::attempts.eq(webhook_deliveries::attempts + 1),
        ))
        .execute(connection)?;
    let mut leased = Vec::with_capacity(chosen.len());
    for mut row in chosen {
        row.attempts += 1;
        let (url, sealed, sealed_previous, previous_until): (String, String, Option<String>, Option<DbTime>) =
            webhook_endpoints::table
                .find(row.endpoint_id)
                .select((
                    webhook_endpoints::url,
                    webhook_endpoints::sealed_secret,
                    webhook_endpoints::sealed_previous,
                    webhook_endpoints::previous_secret_until,
                ))
                .first(connection)?;
        let body: String = webhook_events::table.find(row.event_id).select(webhook_events::body).first(connection)?;
        let sealed_previous = sealed_previous.filter(|_| previous_until.is_some_and(|until| until.0 > now.0));
        leased.push(Leased { row, url, sealed, sealed_previous, body });
    }
    Ok(leased)
}

#[async_trait]
impl WebhookRepository for DieselWebhookRepository {
    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn create(&self, endpoint: NewEndpoint) -> anyhow::Result<WebhookEndpoint> {
        let sealed = self.seal(endpoint.id, &endpoint.secret)?;
        let filters = filters_json(&endpoint.event_types)?;
        let at = DbTime(endpoint.created_at.trunc_subsecs(6));
        let id = DbUuid(endpoint.id);
        self.db
            .run(move |connection| {
                diesel::insert_into(webhook_endpoints::table)
                    .values((
                        webhook_endpoints::id.eq(id),
                        webhook_endpoints::url.eq(&endpoint.url),
                        webhook_endpoints::description.eq(&endpoint.description),
                        webhook_endpoints::event_types.eq(&filters),
                        webhook_endpoints::enabled.eq(endpoint.enabled),
                        webhook_endpoints::disabled_reason.eq(None::<String>),
                        webhook_endpoints::sealed_secret.eq(&sealed),
                        webhook_endpoints::sealed_previous.eq(None::<String>),
                        webhook_endpoints::previous_secret_until.eq(None::<DbTime>),
                        webhook_endpoints::failing_since.eq(None::<DbTime>),
                        webhook_endpoints::created_at.eq(at),
                        webhook_endpoints::updated_at.eq(at),
                    ))
                    .execute(connection)
                    .context("could not store the webhook endpoint")?;
                get_endpoint(connection, id)?.context("the new webhook endpoint is gone")
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn list(
        &self,
        limit: PageLimit,
        after: Option<WebhookCursor>,
    ) -> anyhow::Result<Page<WebhookEndpoint, WebhookCursor>> {
        let rows = self
            .db
            .run(move |connection| {
                let mut select = webhook_endpoints::table.select(EndpointRow::as_select()).into_boxed::<MultiBackend>();
                if let Some(after) = after {
                    select = select.filter(
                        sql::<Bool>("(webhook_endpoints.created_at, webhook_endpoints.id) > (")
                            .bind::<PortableTimestamp, _>(DbTime(after.created_at))
                            .sql(", ")
                            .bind::<PortableUuid, _>(DbUuid(after.id))
                            .sql(")"),
                    );
                }
                let fetch = i64::try_from(limit.get() + 1).context("the page size does not fit a LIMIT")?;
                let rows: Vec<EndpointRow> = select
                    .order((webhook_endpoints::created_at.asc(), webhook_endpoints::id.asc()))
                    .limit(fetch)
                    .load(connection)
                    .context("could not list the webhook endpoints")?;
                anyhow::Ok(rows.into_iter().map(EndpointRow::into_endpoint).collect::<Vec<_>>())
            })
            .await?;
        Ok(Page::from_rows(rows, limit, |e| WebhookCursor { created_at: e.created_at, id: e.id }))
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn get(&self, id: Uuid) -> anyhow::Result<Option<WebhookEndpoint>> {
        self.db
            .run(move |connection| get_endpoint(connection, DbUuid(id)).context("could not read the webhook endpoint"))
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn update(
        &self,
        id: Uuid,
        changes: EndpointChanges,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Option<WebhookEndpoint>> {
        let filters = changes.event_types.as_deref().map(filters_json).transpose()?;
        let at = DbTime(at.trunc_subsecs(6));
        let id = DbUuid(id);
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| -> QueryResult<Option<WebhookEndpoint>> {
                    if !exists(connection, id)? {
                        return Ok(None);
                    }
                    let target = webhook_endpoints::table.find(id);
                    diesel::update(target).set(webhook_endpoints::updated_at.eq(at)).execute(connection)?;
                    if let Some(url) = &changes.url {
                        diesel::update(target).set(webhook_endpoints::url.eq(url)).execute(connection)?;
                    }
                    if let Some(description) = &changes.description {
                        diesel::update(target)
                            .set(webhook_endpoints::description.eq(description))
                            .execute(connection)?;
                    }
                    if let Some(filters) = &filters {
                        diesel::update(target).set(webhook_endpoints::event_types.eq(filters)).execute(connection)?;
                    }
                    match changes.enabled {
                        Some(true) => {
                            diesel::update(target)
                                .set((
                                    webhook_endpoints::enabled.eq(true),
                                    webhook_endpoints::disabled_reason.eq(None::<String>),
                                    webhook_endpoints::failing_since.eq(None::<DbTime>),
                                ))
                                .execute(connection)?;
                        }
                        Some(false) => {
                            diesel::update(target).set(webhook_endpoints::enabled.eq(false)).execute(connection)?;
                        }
                        None => {}
                    }
                    get_endpoint(connection, id)
                })
                .context("could not update the webhook endpoint")
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn delete(&self, id: Uuid) -> anyhow::Result<bool> {
        let id = DbUuid(id);
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| -> QueryResult<bool> {
                    diesel::delete(webhook_deliveries::table.filter(webhook_deliveries::endpoint_id.eq(id)))
                        .execute(connection)?;
                    diesel::delete(webhook_endpoints::table.find(id)).execute(connection).map(|n| n == 1)
                })
                .context("could not delete the webhook endpoint")
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, secret), err)]
    async fn rotate_secret(
        &self,
        id: Uuid,
        secret: SecretString,
        previous_until: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let sealed = self.seal(id, &secret)?;
        let id = DbUuid(id);
        let (until, at) = (DbTime(previous_until.trunc_subsecs(6)), DbTime(at.trunc_subsecs(6)));
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| -> QueryResult<bool> {
                    let current: Option<String> = webhook_endpoints::table
                        .find(id)
                        .select(webhook_endpoints::sealed_secret)
                        .first(connection)
                        .optional()?;
                    let Some(current) = current else { return Ok(false) };
                    diesel::update(webhook_endpoints::table.find(id))
                        .set((
                            webhook_endpoints::sealed_secret.eq(&sealed),
                            webhook_endpoints::sealed_previous.eq(Some(current)),
                            webhook_endpoints::previous_secret_until.eq(Some(until)),
                            webhook_endpoints::updated_at.eq(at),
                        ))
                        .execute(connection)
                        .map(|n| n == 1)
                })
                .context("could not rotate the webhook secret")
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn enqueue_test(&self, id: Uuid, at: DateTime<Utc>) -> anyhow::Result<Option<Uuid>> {
        let at = at.trunc_subsecs(6);
        let endpoint = DbUuid(id);
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| -> QueryResult<Option<Uuid>> {
                    if !exists(connection, endpoint)? {
                        return Ok(None);
                    }
                    let event_id = Uuid::now_v7();
                    let t = WebhookEventType::Test;
                    let body = body(event_id, t, at, &json!({})).map_err(serialisation)?;
                    insert_event(connection, event_id, t.as_str(), &body, at)?;
                    diesel::insert_into(webhook_deliveries::table)
                        .values(NewDeliveryRow::new(endpoint, DbUuid(event_id), t.as_str(), at))
                        .execute(connection)?;
                    Ok(Some(event_id))
                })
                .context("could not queue the test event")
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn deliveries(
        &self,
        endpoint: Uuid,
        limit: PageLimit,
        after: Option<WebhookCursor>,
    ) -> anyhow::Result<Option<Page<Delivery, WebhookCursor>>> {
        let id = DbUuid(endpoint);
        let rows = self
            .db
            .run(move |connection| {
                if !exists(connection, id).context("could not read the webhook endpoint")? {
                    return Ok(None);
                }
                let mut select = webhook_deliveries::table
                    .filter(webhook_deliveries::endpoint_id.eq(id))
                    .select(DeliveryRow::as_select())
                    .into_boxed::<MultiBackend>();
                if let Some(after) = after {
                    select = select.filter(
                        sql::<Bool>("(webhook_deliveries.created_at, webhook_deliveries.id) < (")
                            .bind::<PortableTimestamp, _>(DbTime(after.created_at))
                            .sql(", ")
                            .bind::<PortableUuid, _>(DbUuid(after.id))
                            .sql(")"),
                    );
                }
                let fetch = i64::try_from(limit.get() + 1).context("the page size does not fit a LIMIT")?;
                let rows: Vec<DeliveryRow> = select
                    .order((webhook_deliveries::created_at.desc(), webhook_deliveries::id.desc()))
                    .limit(fetch)
                    .load(connection)
                    .context("could not list the deliveries")?;
                rows.into_iter().map(DeliveryRow::into_delivery).collect::<anyhow::Result<Vec<_>>>().map(Some)
            })
            .await?;
        Ok(rows.map(|rows| Page::from_rows(rows, limit, |d| WebhookCursor { created_at: d.created_at, id: d.id })))
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn replay(&self, endpoint: Uuid, delivery: Uuid, at: DateTime<Utc>) -> anyhow::Result<Option<Delivery>> {
        let (endpoint, delivery) = (DbUuid(endpoint), DbUuid(delivery));
        let at = at.trunc_subsecs(6);
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| -> QueryResult<Option<DeliveryRow>> {
                    let original: Option<(DbUuid, String)> = webhook_deliveries::table
                        .find(delivery)
                        .filter(webhook_deliveries::endpoint_id.eq(endpoint))
                        .select((webhook_deliveries::event_id, webhook_deliveries::event_type))
                        .first(connection)
                        .optional()?;
                    let Some((event, event_type)) = original else { return Ok(None) };
                    let row = NewDeliveryRow::new(endpoint, event, &event_type, at);
                    let id = row.id;
                    diesel::insert_into(webhook_deliveries::table).values(row).execute(connection)?;
                    webhook_deliveries::table.find(id).select(DeliveryRow::as_select()).first(connection).map(Some)
                })
                .context("could not replay the delivery")?
                .map(DeliveryRow::into_delivery)
                .transpose()
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
        per_endpoint: u32,
    ) -> anyhow::Result<Vec<ClaimedDelivery>> {
        let now = now.trunc_subsecs(6);
        let claim = Uuid::now_v7();
        let db = self.db.clone();
        self.db
            .run(move |connection| {
                let leased = write_transaction(connection, |connection| {
                    claim_due(connection, DbTime(now), DbTime(now + lease), limit, per_endpoint, DbUuid(claim))
                })
                .context("could not claim webhook deliveries")?;
                let mut claimed = Vec::with_capacity(leased.len());
                for Leased { row, url, sealed, sealed_previous, body } in leased {
                    let open = |sealed: &str| -> anyhow::Result<SecretSlice<u8>> {
                        let cipher = db.secrets().context("the database has no cipher to open webhook secrets")?;
                        let opened = cipher
                            .open(sealed, &sealing_context(row.endpoint_id.0))
                            .context("the webhook secret does not open")?;
                        key_of(std::str::from_utf8(opened.expose_secret()).context("the secret is not UTF-8")?)
                    };
                    let keys = std::iter::once(sealed.as_str())
                        .chain(sealed_previous.as_deref())
                        .map(open)
                        .collect::<anyhow::Result<Vec<_>>>();
                    match keys {
                        Ok(keys) => claimed.push(ClaimedDelivery {
                            id: row.id.0,
                            claim,
                            endpoint_id: row.endpoint_id.0,
                            url,
                            keys,
                            event_id: row.event_id.0,
                            body,
                            attempts: u32::try_from(row.attempts).unwrap_or(0),
                            created_at: row.created_at.0,
                        }),
                        Err(error) => {
                            let error = format!("the endpoint's secret cannot be read: {error:#}");
                            tracing::error!(delivery_id = %row.id.0, error, "marking a webhook delivery failed");
                            diesel::update(webhook_deliveries::table.find(row.id))
                                .set((
                                    webhook_deliveries::status.eq(FAILED),
                                    webhook_deliveries::last_error.eq(Some(bounded(&error))),
                                    webhook_deliveries::claim_id.eq(None::<DbUuid>),
                                    webhook_deliveries::claimed_until.eq(None::<DbTime>),
                                    webhook_deliveries::finished_at.eq(Some(DbTime(now))),
                                ))
                                .execute(connection)
                                .context("could not mark an unreadable delivery failed")?;
                        }
                    }
                }
                Ok(claimed)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn record_attempt(
        &self,
        delivery: Uuid,
        claim: Uuid,
        record: AttemptRecord,
        now: DateTime<Utc>,
        disable_after: Duration,
    ) -> anyhow::Result<AttemptEffect> {
        let (id, claim) = (DbUuid(delivery), DbUuid(claim));
        let now = DbTime(now.trunc_subsecs(6));
        let admins_mail = self.db.clone();
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| -> QueryResult<AttemptEffect> {
                    let ours = || {
                        webhook_deliveries::table
                            .find(id)
                            .filter(webhook_deliveries::claim_id.eq(claim))
                            .filter(webhook_deliveries::status.eq_any(OPEN))
                    };
                    let endpoint: Option<DbUuid> =
                        ours().select(webhook_deliveries::endpoint_id).first(connection).optional()?;
                    let Some(endpoint) = endpoint else { return Ok(AttemptEffect::default()) };
                    let code = |status: Option<u16>| status.map(i32::from);
                    let failed = match &record {
                        AttemptRecord::Succeeded { status } => {
                            diesel::update(ours())
                                .set((
                                    webhook_deliveries::status.eq(SUCCEEDED),
                                    webhook_deliveries::last_status_code.eq(Some(i32::from(*status))),
                                    webhook_deliveries::last_error.eq(None::<String>),
                                    webhook_deliveries::finished_at.eq(Some(now)),
                                    webhook_deliveries::claim_id.eq(None::<DbUuid>),
                                    webhook_deliveries::claimed_until.eq(None::<DbTime>),
                                ))
                                .execute(connection)?;
                            false
                        }
                        AttemptRecord::Retry { status, error, retry_at } => {
                            diesel::update(ours())
                                .set((
                                    webhook_deliveries::status.eq(RETRYING),
                                    webhook_deliveries::last_status_code.eq(code(*status)),
                                    webhook_deliveries::last_error.eq(Some(bounded(error))),
                                    webhook_deliveries::next_attempt_at.eq(DbTime(retry_at.trunc_subsecs(6))),
                                    webhook_deliveries::claim_id.eq(None::<DbUuid>),
                                    webhook_deliveries::claimed_until.eq(None::<DbTime>),
                                ))
                                .execute(connection)?;
                            true
                        }
                        AttemptRecord::Failed { status, error } => {
                            diesel::update(ours())
                                .set((
                                    webhook_deliveries::status.eq(FAILED),
                                    webhook_deliveries::last_status_code.eq(code(*status)),
                                    webhook_deliveries::last_error.eq(Some(bounded(error))),
                                    webhook_deliveries::finished_at.eq(Some(now)),
                                    webhook_deliveries::claim_id.eq(None::<DbUuid>),
                                    webhook_deliveries::claimed_until.eq(None::<DbTime>),
                                ))
                                .execute(connection)?;
                            true
                        }
                    };
                    let target = webhook_endpoints::table.find(endpoint);
                    if !failed {
                        diesel::update(target)
                            .set(webhook_endpoints::failing_since.eq(None::<DbTime>))
                            .execute(connection)?;
                        return Ok(AttemptEffect { recorded: true, disabled_endpoint: false });
                    }
                    let (since, enabled, url): (Option<DbTime>, bool, String) = target
                        .select((webhook_endpoints::failing_since, webhook_endpoints::enabled, webhook_endpoints::url))
                        .first(connection)?;
                    let Some(since) = since else {
                        diesel::update(target)
                            .set(webhook_endpoints::failing_since.eq(Some(now)))
                            .execute(connection)?;
                        return Ok(AttemptEffect { recorded: true, disabled_endpoint: false });
                    };
                    if !enabled || now.0 - since.0 < disable_after {
                        return Ok(AttemptEffect { recorded: true, disabled_endpoint: false });
                    }
                    diesel::update(target)
                        .set((
                            webhook_endpoints::enabled.eq(false),
                            webhook_endpoints::disabled_reason.eq(Some(DisabledReason::Failing.as_str())),
                            webhook_endpoints::updated_at.eq(now),
                        ))
                        .execute(connection)?;
                    email_admins(connection, &admins_mail, &url, since.0, now.0)?;
                    Ok(AttemptEffect { recorded: true, disabled_endpoint: true })
                })
                .context("could not record the webhook attempt")
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn queue_stats(&self) -> anyhow::Result<QueueStats> {
        self.db
            .run(move |connection| {
                let open = || webhook_deliveries::table.filter(webhook_deliveries::status.eq_any(OPEN));
                let depth: i64 = open().count().get_result(connection).context("counting open deliveries")?;
                let oldest: Option<DbTime> = open()
                    .order(webhook_deliveries::created_at.asc())
                    .select(webhook_deliveries::created_at)
                    .first(connection)
                    .optional()
                    .context("reading the oldest open delivery")?;
                Ok(QueueStats { depth: u64::try_from(depth).unwrap_or(0), oldest: oldest.map(|t| t.0) })
            })
            .await
    }
}

/// Queues a "webhook endpoint disabled" email to every active admin, in the caller's
/// transaction.
fn email_admins(
    connection: &mut AnyConnection,
    db: &Database,
    url: &str,
    failing_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> QueryResult<()> {
    let admins: Vec<(String, String, Option<String>)> = users::table
        .into_boxed::<MultiBackend>()
        .filter(users::deleted_at.is_null())
        .filter(has_status(UserStatus::Active, now))
        .filter(holds_role(Role::Admin))
        .select((users::email, users::username, users::display_name))
        .load(connection)?;
    for (email, username, display_name) in admins {
        let Ok(to) = Email::parse(&email) else { continue };
        let message = OutgoingEmail {
            id: EmailId::generate(),
            to,
            recipient_name: display_name.unwrap_or(username),
            content: EmailContent::WebhookDisabled { url: url.to_owned(), failing_since },
            created_at: now,
        };
        let row = NewEmailRow::new(&message, db.secrets()).map_err(|e| {
            diesel::result::Error::SerializationError(format!("could not queue the admin email: {e:#}").into())
        })?;
        insert_email(connection, &row)?;
    }
    Ok(())
}
