//! [`EmailOutbox`] on Diesel: the `email_outbox` table.
//!
//! Messages are inserted by the other repositories of this crate with [`insert_email`], inside
//! the transaction of the change that causes them. Relays then lease due rows: on PostgreSQL
//! with `SELECT … FOR UPDATE SKIP LOCKED`, so concurrent relays take disjoint rows without
//! waiting for each other; on SQLite inside `BEGIN IMMEDIATE`, which runs claims one at a
//! time. A lease is a claim id and an end time: the outcome is recorded only under the claim
//! id, and a lease that ran out (its relay died between claim and send) makes the row
//! claimable again.
//!
//! The one-time token of a verification, reset or unlock message is sealed with the
//! database's [`SecretCipher`](gatehouse_domain::ports::SecretCipher) before it reaches the
//! row (`sealed_token` in the payload JSON, bound to the message id and template), and opened
//! when a relay claims the row; the rest of the payload (times) stays readable. Rows written
//! before sealing was introduced carry the token in plain text (`token`) and are still relayed;
//! a payload is cleared once its message is sent or given up on, so they disappear with the
//! backlog. A row whose token does not open (its key is no longer configured, or it was
//! altered) is marked failed with the reason, like any unreadable row.
//!
//! Relays need not wait for their next poll: a change that queues mail wakes the
//! [`OutboxSignal`] of its [`Database`] once it commits (in this process), and on PostgreSQL
//! it also sends `NOTIFY gatehouse_outbox` in its transaction, which an [`OutboxListener`]
//! turns into a wake-up in every other process (delivered by PostgreSQL only on commit).

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use diesel::prelude::*;
use gatehouse_domain::ports::{ClaimedEmail, EmailOutbox, SecretCipher};
use gatehouse_domain::{Email, EmailContent, EmailId, EmailTemplate, OutgoingEmail};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::connection::{AnyConnection, write_transaction};
use crate::database::Database;
use crate::schema::email_outbox;
use crate::types::{DbJson, DbTime, DbUuid};

const PENDING: &str = "pending";
const SENT: &str = "sent";
const FAILED: &str = "failed";

/// The longest error text kept per row, in characters.
const ERROR_MAX_CHARS: usize = 1000;

/// The outbox in PostgreSQL or SQLite. Obtain one with [`Database::email_outbox`].
#[derive(Debug, Clone)]
pub struct DieselEmailOutbox {
    db: Database,
}

impl DieselEmailOutbox {
    /// An outbox on `db`.
    #[must_use]
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// What a template needs besides the recipient, as the JSON of the `payload` column.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Payload {
    /// The token in plain text: only in rows written before tokens were sealed (read, never
    /// written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// The token, sealed by [`SecretCipher::seal`] for [`sealing_context`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<DateTime<Utc>>,
    /// A webhook endpoint's URL (no secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// What a sealed token is bound to: its message and template, so that it opens in no other row.
fn sealing_context(id: Uuid, template: EmailTemplate) -> Vec<u8> {
    format!("email_outbox\0{id}\0{}", template.as_str()).into_bytes()
}

impl Payload {
    fn of(email: &OutgoingEmail, secrets: Option<&dyn SecretCipher>) -> anyhow::Result<Self> {
        let seal = |token: &SecretString| -> anyhow::Result<Option<String>> {
            let secrets = secrets.context(
                "the database has no cipher for secrets at rest (Database::with_secret_cipher): refusing to store a \
                 token in plain text",
            )?;
            let context = sealing_context(*email.id.as_uuid(), email.content.template());
            Ok(Some(secrets.seal(token.expose_secret().as_bytes(), &context).context("could not seal the token")?))
        };
        Ok(match &email.content {
            EmailContent::VerifyEmail { token, expires_at } | EmailContent::PasswordReset { token, expires_at } => {
                Self { sealed_token: seal(token)?, expires_at: Some(*expires_at), ..Self::default() }
            }
            EmailContent::PasswordChanged { changed_at } => Self { at: Some(*changed_at), ..Self::default() },
            EmailContent::AccountLocked { token, locked_until } => {
                Self { sealed_token: seal(token)?, expires_at: Some(*locked_until), ..Self::default() }
            }
            EmailContent::WebhookDisabled { url, failing_since } => {
                Self { url: Some(url.clone()), at: Some(*failing_since), ..Self::default() }
            }
        })
    }

    fn into_content(
        self,
        id: Uuid,
        template: EmailTemplate,
        secrets: Option<&dyn SecretCipher>,
    ) -> anyhow::Result<EmailContent> {
        let token = || -> anyhow::Result<SecretString> {
            match (&self.sealed_token, &self.token) {
                (Some(sealed), _) => {
                    let secrets = secrets.context("the token is sealed and the database has no cipher to open it")?;
                    let opened = secrets
                        .open(sealed, &sealing_context(id, template))
                        .context("the sealed token does not open")?;
                    let token = std::str::from_utf8(opened.expose_secret()).context("the token is not UTF-8")?;
                    Ok(SecretString::from(token.to_owned()))
                }
                (None, Some(plain)) => Ok(SecretString::from(plain.clone())),
                (None, None) => anyhow::bail!("the payload has no token"),
            }
        };
        let expires_at = || self.expires_at.context("the payload has no expiry");
        Ok(match template {
            EmailTemplate::VerifyEmail => EmailContent::VerifyEmail { token: token()?, expires_at: expires_at()? },
            EmailTemplate::PasswordReset => EmailContent::PasswordReset { token: token()?, expires_at: expires_at()? },
            EmailTemplate::PasswordChanged => {
                EmailContent::PasswordChanged { changed_at: self.at.context("the payload has no time")? }
            }
            EmailTemplate::AccountLocked => {
                EmailContent::AccountLocked { token: token()?, locked_until: expires_at()? }
            }
            EmailTemplate::WebhookDisabled => EmailContent::WebhookDisabled {
                url: self.url.clone().context("the payload has no URL")?,
                failing_since: self.at.context("the payload has no time")?,
            },
        })
    }
}

/// An email_outbox row to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = email_outbox, treat_none_as_default_value = false)]
pub(crate) struct NewEmailRow {
    id: DbUuid,
    recipient: String,
    recipient_name: String,
    template: &'static str,
    payload: Option<DbJson>,
    status: &'static str,
    attempts: i32,
    next_attempt_at: DbTime,
    claim_id: Option<DbUuid>,
    claimed_until: Option<DbTime>,
    last_error: Option<String>,
    created_at: DbTime,
    sent_at: Option<DbTime>,
}

impl NewEmailRow {
    /// The row for `email`, due at once, its token sealed with `secrets`. Built before the
    /// transaction starts.
    ///
    /// # Errors
    ///
    /// When the message carries a token and there is no cipher (or sealing fails), or when the
    /// payload cannot be serialised (in practice never).
    pub(crate) fn new(email: &OutgoingEmail, secrets: Option<&dyn SecretCipher>) -> anyhow::Result<Self> {
        let payload =
            serde_json::to_string(&Payload::of(email, secrets)?).context("could not serialise the email payload")?;
        Ok(Self {
            id: DbUuid(*email.id.as_uuid()),
            recipient: email.to.as_ref().to_owned(),
            recipient_name: email.recipient_name.clone(),
            template: email.content.template().as_str(),
            payload: Some(DbJson(payload)),
            status: PENDING,
            attempts: 0,
            next_attempt_at: DbTime(email.created_at),
            claim_id: None,
            claimed_until: None,
            last_error: None,
            created_at: DbTime(email.created_at),
            sent_at: None,
        })
    }
}

/// Queues one message. Call it inside the transaction of the change that causes it.
pub(crate) fn insert_email(connection: &mut AnyConnection, email: &NewEmailRow) -> QueryResult<()> {
    diesel::insert_into(email_outbox::table).values(email).execute(connection)?;
    if let AnyConnection::Postgresql(pg) = connection {
        diesel::sql_query(format!("NOTIFY {CHANNEL}")).execute(pg)?;
    }
    QUEUED.with(|queued| queued.set(true));
    Ok(())
}

/// The PostgreSQL channel that outbox writes notify.
const CHANNEL: &str = "gatehouse_outbox";

thread_local! {
    /// Whether the work running on this thread queued mail (read by `Database::run`, which
    /// wakes the relay when that work succeeded, i.e. after its transaction committed).
    static QUEUED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Forgets whether this thread queued mail.
pub(crate) fn reset_queued() {
    QUEUED.with(|queued| queued.set(false));
}

/// Whether this thread queued mail since [`reset_queued`], forgetting it.
pub(crate) fn take_queued() -> bool {
    QUEUED.with(|queued| queued.replace(false))
}

/// Wakes a relay when mail was queued. Cheap to clone: clones share one signal. A wake-up with
/// no waiter is kept for the next wait, so none is lost between two waits.
#[derive(Debug, Clone, Default)]
pub struct OutboxSignal {
    notify: std::sync::Arc<tokio::sync::Notify>,
}

impl OutboxSignal {
    /// Wakes the waiter, or the next one to wait.
    pub fn notify(&self) {
        self.notify.notify_one();
    }

    /// Waits for the next wake-up.
    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

/// How often the listener reads notifications from its connection (no round trip: it only
/// reads what PostgreSQL already sent), and how long it waits before reconnecting.
const LISTEN_POLL: std::time::Duration = std::time::Duration::from_millis(10);
const LISTEN_RECONNECT: std::time::Duration = std::time::Duration::from_secs(1);

/// A thread holding its own PostgreSQL connection with `LISTEN gatehouse_outbox`, waking an
/// [`OutboxSignal`] on each notification (and once after every reconnect, for anything sent
/// while it was away). Stops when dropped.
#[derive(Debug)]
pub struct OutboxListener {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl OutboxListener {
    /// Starts listening on `url` (a PostgreSQL URL) for `signal`.
    pub(crate) fn start(url: String, signal: OutboxSignal) -> anyhow::Result<Self> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("outbox-listen".to_owned())
            .spawn(move || listen(&url, &signal, &stopped))
            .context("could not start the outbox listener thread")?;
        Ok(Self { stop })
    }
}

impl Drop for OutboxListener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn listen(url: &str, signal: &OutboxSignal, stop: &std::sync::atomic::AtomicBool) {
    use diesel::connection::SimpleConnection;
    let stopped = || stop.load(std::sync::atomic::Ordering::Relaxed);
    while !stopped() {
        let connection = diesel::PgConnection::establish(url)
            .map_err(anyhow::Error::new)
            .and_then(|mut pg| pg.batch_execute(&format!("LISTEN {CHANNEL}")).map(|()| pg).map_err(Into::into));
        let mut pg = match connection {
            Ok(pg) => pg,
            Err(e) => {
                tracing::debug!(error = format!("{e:#}"), "the outbox listener cannot connect; retrying");
                std::thread::sleep(LISTEN_RECONNECT);
                continue;
            }
        };
        tracing::debug!("the outbox listener is listening");
        signal.notify();
        'listening: while !stopped() {
            let mut woken = false;
            for notification in pg.notifications_iter() {
                match notification {
                    Ok(_) => woken = true,
                    Err(e) => {
                        tracing::debug!(error = %e, "the outbox listener lost its connection; reconnecting");
                        break 'listening;
                    }
                }
            }
            if woken {
                signal.notify();
            }
            std::thread::sleep(LISTEN_POLL);
        }
    }
}

/// A due row, as claimed.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = email_outbox)]
struct DueRow {
    id: DbUuid,
    recipient: String,
    recipient_name: String,
    template: String,
    payload: Option<DbJson>,
    attempts: i32,
    created_at: DbTime,
}

impl DueRow {
    fn into_claimed(self, claim: Uuid, secrets: Option<&dyn SecretCipher>) -> anyhow::Result<ClaimedEmail> {
        let template: EmailTemplate = self.template.parse()?;
        let payload: Payload = match &self.payload {
            Some(json) => serde_json::from_str(&json.0).context("the payload is not valid JSON")?,
            None => anyhow::bail!("the payload was cleared"),
        };
        Ok(ClaimedEmail {
            email: OutgoingEmail {
                id: EmailId::from_uuid(self.id.0),
                to: Email::parse(&self.recipient).context("the recipient is not a valid address")?,
                recipient_name: self.recipient_name,
                content: payload.into_content(self.id.0, template, secrets)?,
                created_at: self.created_at.0,
            },
            claim,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
        })
    }
}

/// How many messages are still pending (for the outbox-depth metric).
pub(crate) fn pending_count(connection: &mut AnyConnection) -> anyhow::Result<u64> {
    let count: i64 = email_outbox::table
        .filter(email_outbox::status.eq(PENDING))
        .count()
        .get_result(connection)
        .context("counting pending outbox messages")?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Selects due, unleased rows (locking them, skipping rows other claims hold, on PostgreSQL)
/// and leases them under `claim`. Must run inside [`write_transaction`]. Returns the rows with
/// their attempt count already raised.
fn claim_due(
    connection: &mut AnyConnection,
    now: DbTime,
    lease_until: DbTime,
    limit: i64,
    claim: DbUuid,
) -> QueryResult<Vec<DueRow>> {
    // A macro, not a value: `as_select()` fixes the backend, and each arm has its own.
    macro_rules! due {
        () => {
            email_outbox::table
                .filter(email_outbox::status.eq(PENDING))
                .filter(email_outbox::next_attempt_at.le(now))
                .filter(email_outbox::claimed_until.is_null().or(email_outbox::claimed_until.le(now)))
                .order((email_outbox::next_attempt_at.asc(), email_outbox::id.asc()))
                .limit(limit)
                .select(DueRow::as_select())
        };
    }
    let mut rows = match connection {
        AnyConnection::Postgresql(pg) => due!().for_update().skip_locked().load(pg)?,
        AnyConnection::Sqlite(sqlite) => due!().load(sqlite)?,
    };
    if rows.is_empty() {
        return Ok(rows);
    }
    let ids: Vec<DbUuid> = rows.iter().map(|row| row.id).collect();
    diesel::update(email_outbox::table.filter(email_outbox::id.eq_any(ids)))
        .set((
            email_outbox::claim_id.eq(Some(claim)),
            email_outbox::claimed_until.eq(Some(lease_until)),
            email_outbox::attempts.eq(email_outbox::attempts + 1),
        ))
        .execute(connection)?;
    for row in &mut rows {
        row.attempts += 1;
    }
    Ok(rows)
}

/// Cuts an error message to what a row keeps.
fn bounded(error: &str) -> String {
    error.chars().take(ERROR_MAX_CHARS).collect()
}

#[async_trait]
impl EmailOutbox for DieselEmailOutbox {
    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn claim(&self, now: DateTime<Utc>, lease: Duration, limit: u32) -> anyhow::Result<Vec<ClaimedEmail>> {
        let now = now.trunc_subsecs(6);
        let claim = Uuid::now_v7();
        let db = self.db.clone();
        self.db
            .run(move |connection| {
                let rows = write_transaction(connection, |connection| {
                    claim_due(connection, DbTime(now), DbTime(now + lease), i64::from(limit), DbUuid(claim))
                })
                .context("could not claim outbox messages")?;
                let mut claimed = Vec::with_capacity(rows.len());
                for row in rows {
                    let id = row.id;
                    match row.into_claimed(claim, db.secrets()) {
                        Ok(message) => claimed.push(message),
                        Err(error) => {
                            let error = format!("unreadable outbox row: {error:#}");
                            tracing::error!(email_id = %id.0, error, "an outbox message cannot be read; marking it failed");
                            diesel::update(email_outbox::table.find(id))
                                .set((
                                    email_outbox::status.eq(FAILED),
                                    email_outbox::payload.eq(None::<DbJson>),
                                    email_outbox::last_error.eq(Some(bounded(&error))),
                                    email_outbox::claim_id.eq(None::<DbUuid>),
                                    email_outbox::claimed_until.eq(None::<DbTime>),
                                ))
                                .execute(connection)
                                .context("could not mark an unreadable outbox message failed")?;
                        }
                    }
                }
                Ok(claimed)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn mark_sent(&self, id: EmailId, claim: Uuid, at: DateTime<Utc>) -> anyhow::Result<bool> {
        let (id, claim) = (DbUuid(*id.as_uuid()), DbUuid(claim));
        self.db
            .run(move |connection| {
                let updated = diesel::update(
                    email_outbox::table
                        .find(id)
                        .filter(email_outbox::claim_id.eq(claim))
                        .filter(email_outbox::status.eq(PENDING)),
                )
                .set((
                    email_outbox::status.eq(SENT),
                    email_outbox::sent_at.eq(Some(DbTime(at))),
                    email_outbox::payload.eq(None::<DbJson>),
                    email_outbox::claim_id.eq(None::<DbUuid>),
                    email_outbox::claimed_until.eq(None::<DbTime>),
                ))
                .execute(connection)
                .context("could not mark the email sent")?;
                Ok(updated == 1)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn schedule_retry(
        &self,
        id: EmailId,
        claim: Uuid,
        retry_at: DateTime<Utc>,
        error: String,
    ) -> anyhow::Result<bool> {
        let (id, claim) = (DbUuid(*id.as_uuid()), DbUuid(claim));
        self.db
            .run(move |connection| {
                let updated = diesel::update(
                    email_outbox::table
                        .find(id)
                        .filter(email_outbox::claim_id.eq(claim))
                        .filter(email_outbox::status.eq(PENDING)),
                )
                .set((
                    email_outbox::next_attempt_at.eq(DbTime(retry_at)),
                    email_outbox::last_error.eq(Some(bounded(&error))),
                    email_outbox::claim_id.eq(None::<DbUuid>),
                    email_outbox::claimed_until.eq(None::<DbTime>),
                ))
                .execute(connection)
                .context("could not schedule the email's retry")?;
                Ok(updated == 1)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn mark_failed(&self, id: EmailId, claim: Uuid, at: DateTime<Utc>, error: String) -> anyhow::Result<bool> {
        let (id, claim) = (DbUuid(*id.as_uuid()), DbUuid(claim));
        self.db
            .run(move |connection| {
                let updated = diesel::update(
                    email_outbox::table
                        .find(id)
                        .filter(email_outbox::claim_id.eq(claim))
                        .filter(email_outbox::status.eq(PENDING)),
                )
                .set((
                    email_outbox::status.eq(FAILED),
                    email_outbox::next_attempt_at.eq(DbTime(at)),
                    email_outbox::payload.eq(None::<DbJson>),
                    email_outbox::last_error.eq(Some(bounded(&error))),
                    email_outbox::claim_id.eq(None::<DbUuid>),
                    email_outbox::claimed_until.eq(None::<DbTime>),
                ))
                .execute(connection)
                .context("could not mark the email failed")?;
                Ok(updated == 1)
            })
            .await
    }
}

/// Reading the outbox back, for tests (feature `testing`).
#[cfg(feature = "testing")]
pub(crate) mod read {
    use anyhow::Context;
    use diesel::prelude::*;
    use gatehouse_domain::EmailId;

    use crate::connection::AnyConnection;
    use crate::schema::email_outbox;
    use crate::testing::StoredEmail;
    use crate::types::{DbJson, DbTime, DbUuid};

    /// The columns tests look at, in select order.
    type Columns = (DbUuid, String, String, String, Option<DbJson>, i32, Option<String>, Option<DbTime>);

    /// Every outbox row, oldest first.
    pub(crate) fn all(connection: &mut AnyConnection) -> anyhow::Result<Vec<StoredEmail>> {
        let rows: Vec<Columns> = email_outbox::table
            .order((email_outbox::created_at.asc(), email_outbox::id.asc()))
            .select((
                email_outbox::id,
                email_outbox::recipient,
                email_outbox::template,
                email_outbox::status,
                email_outbox::payload,
                email_outbox::attempts,
                email_outbox::last_error,
                email_outbox::claimed_until,
            ))
            .load(connection)
            .context("could not read the outbox")?;
        Ok(rows
            .into_iter()
            .map(|(id, recipient, template, status, payload, attempts, last_error, claimed_until)| StoredEmail {
                id: EmailId::from_uuid(id.0),
                recipient,
                template,
                status,
                has_payload: payload.is_some(),
                raw_payload: payload.map(|json| json.0),
                attempts,
                last_error,
                claimed_until: claimed_until.map(|t| t.0),
            })
            .collect())
    }
}
