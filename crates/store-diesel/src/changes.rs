//! [`ChangeFeed`] on PostgreSQL's `LISTEN`/`NOTIFY`, for several instances sharing one
//! database without Redis.
//!
//! Each instance keeps one dedicated connection (application name `gatehouse-cache`) that
//! listens on two channels:
//!
//! - `gatehouse_changes`: change texts ([`Change::encode`]). Triggers on `users` and
//!   `sessions` send one in the same transaction as every change (migration
//!   `change_notifications`), so nothing committed escapes the listeners. A publishing
//!   instance also sends `b:<barrier>|<change>` after its commit.
//! - `gatehouse_acks`: every listener that applied a barrier answers `<barrier>`. The
//!   publisher waits for as many answers as there are listeners (counted in
//!   `pg_stat_activity`), at most the configured timeout, before its request answers: the
//!   next read anywhere sees the change.
//!
//! The connection is polled (a non-blocking read of its socket, not a query) every
//! [`POLL_INTERVAL`]; liveness is checked with `SELECT 1` every [`PING_INTERVAL`]. While it is
//! down the cache is switched off ([`ReadCache::set_connected`]); on reconnection it is flushed,
//! because notifications sent in between are lost.

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use gatehouse_domain::ports::{Change, ChangeFeed};
use gatehouse_domain::read_cache::ReadCache;
use tokio::sync::{Notify, oneshot};

/// How often the listening connection is read for notifications.
pub const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// How often the listening connection is checked with a query.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// How long to wait before reconnecting after a failure.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// The application name that identifies listeners in `pg_stat_activity`.
const APPLICATION_NAME: &str = "gatehouse-cache";
const CHANGES: &str = "gatehouse_changes";
const ACKS: &str = "gatehouse_acks";

/// Acknowledgements received for one barrier, and who waits for them.
#[derive(Default)]
struct Barrier {
    acks: usize,
    notify: Arc<Notify>,
}

type Barriers = Arc<Mutex<HashMap<String, Barrier>>>;

/// A barrier to send: its text, and where to answer with the number of listeners.
struct Publish {
    barrier: String,
    change: String,
    reply: oneshot::Sender<anyhow::Result<usize>>,
}

/// The PostgreSQL change feed; see the module documentation.
#[derive(Clone)]
pub struct PgChangeFeed {
    requests: Arc<Mutex<mpsc::Sender<Publish>>>,
    barriers: Barriers,
    ack_timeout: Duration,
}

impl std::fmt::Debug for PgChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgChangeFeed").field("ack_timeout", &self.ack_timeout).finish_non_exhaustive()
    }
}

impl PgChangeFeed {
    /// Opens the listening connection on `url` (so when this returns, this instance hears
    /// every later change) and starts the thread that applies every change to `cache`.
    /// Publishing waits at most `ack_timeout` for the other listeners. This blocks while
    /// connecting: call it from `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// When PostgreSQL cannot be reached or the thread cannot be started.
    pub fn start(url: &str, cache: Arc<ReadCache>, ack_timeout: Duration) -> anyhow::Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let barriers: Barriers = Arc::default();
        let connection = open(url)?;
        cache.set_connected(true);
        let url = url.to_owned();
        let listener_barriers = barriers.clone();
        std::thread::Builder::new()
            .name("gatehouse-cache-listener".to_owned())
            .spawn(move || listen_forever(&url, connection, &cache, &receiver, &listener_barriers))
            .context("could not start the change listener")?;
        Ok(Self { requests: Arc::new(Mutex::new(sender)), barriers, ack_timeout })
    }
}

#[async_trait]
impl ChangeFeed for PgChangeFeed {
    async fn publish(&self, change: Change) -> anyhow::Result<()> {
        let barrier = uuid::Uuid::now_v7().to_string();
        let notify = {
            let mut barriers = self.barriers.lock().unwrap_or_else(PoisonError::into_inner);
            barriers.entry(barrier.clone()).or_default().notify.clone()
        };
        let outcome = self.wait_for_listeners(&barrier, change, &notify).await;
        self.barriers.lock().unwrap_or_else(PoisonError::into_inner).remove(&barrier);
        outcome
    }
}

impl PgChangeFeed {
    async fn wait_for_listeners(&self, barrier: &str, change: Change, notify: &Notify) -> anyhow::Result<()> {
        let (reply, answer) = oneshot::channel();
        let request = Publish { barrier: barrier.to_owned(), change: change.encode(), reply };
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(request)
            .map_err(|_| anyhow!("the change listener has stopped"))?;
        let listeners = answer.await.map_err(|_| anyhow!("the change listener has stopped"))??;
        let deadline = tokio::time::Instant::now() + self.ack_timeout;
        loop {
            let notified = notify.notified();
            let acks = self.barriers.lock().unwrap_or_else(PoisonError::into_inner).get(barrier).map_or(0, |b| b.acks);
            if acks >= listeners {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                anyhow::bail!(
                    "only {acks} of {listeners} instances confirmed a change within {:?}; the others may answer \
                     from their cache until its time-to-live",
                    self.ack_timeout
                );
            }
        }
    }
}

#[derive(QueryableByName)]
struct Listeners {
    #[diesel(sql_type = BigInt)]
    listeners: i64,
}

/// A connection listening on both channels, named for `pg_stat_activity`.
fn open(url: &str) -> anyhow::Result<PgConnection> {
    let mut connection = PgConnection::establish(url).context("could not connect to listen for changes")?;
    connection
        .batch_execute(&format!("SET application_name = '{APPLICATION_NAME}'; LISTEN {CHANGES}; LISTEN {ACKS};"))
        .context("could not listen for changes")?;
    Ok(connection)
}

/// Listens on `connection` until it fails, then reconnects and listens again.
fn listen_forever(
    url: &str,
    connection: PgConnection,
    cache: &ReadCache,
    requests: &mpsc::Receiver<Publish>,
    barriers: &Barriers,
) {
    let mut connection = Some(connection);
    loop {
        let next = match connection.take() {
            Some(connection) => Ok(connection),
            None => open(url).inspect(|_| {
                // Anything may have changed while nobody listened.
                cache.set_connected(true);
                tracing::info!("listening for changes on PostgreSQL again; the read cache is back on");
            }),
        };
        match next {
            Ok(mut connection) => {
                let stop = listen(&mut connection, cache, requests, barriers);
                cache.set_connected(false);
                match stop {
                    Stop::Dropped => return,
                    Stop::Failed(e) => {
                        tracing::error!(error = %e, "the change listener lost PostgreSQL; the read cache is off");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "the change listener cannot reach PostgreSQL; the read cache is off"),
        }
        // Publishers waiting now would wait for nothing: answer them.
        while let Ok(request) = requests.try_recv() {
            let _ = request.reply.send(Err(anyhow!("the change listener is not connected")));
        }
        std::thread::sleep(RECONNECT_DELAY);
    }
}

enum Stop {
    /// Every feed handle is gone: the server is shutting down.
    Dropped,
    Failed(anyhow::Error),
}

fn listen(
    connection: &mut PgConnection,
    cache: &ReadCache,
    requests: &mpsc::Receiver<Publish>,
    barriers: &Barriers,
) -> Stop {
    let mut last_ping = Instant::now();
    loop {
        match requests.recv_timeout(POLL_INTERVAL) {
            Ok(request) => {
                let outcome = send_barrier(connection, &request);
                let failed = outcome.as_ref().err().map(|e| anyhow!("{e:#}"));
                let _ = request.reply.send(outcome);
                if let Some(e) = failed {
                    return Stop::Failed(e);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Stop::Dropped,
        }
        if let Err(e) = drain(connection, cache, barriers) {
            return Stop::Failed(e);
        }
        if last_ping.elapsed() >= PING_INTERVAL {
            if let Err(e) = connection.batch_execute("SELECT 1") {
                return Stop::Failed(e.into());
            }
            last_ping = Instant::now();
        }
    }
}

/// Sends `b:<barrier>|<change>` and counts the listeners that must acknowledge it.
fn send_barrier(connection: &mut PgConnection, request: &Publish) -> anyhow::Result<usize> {
    let payload = format!("b:{}|{}", request.barrier, request.change);
    let counted: Listeners = diesel::sql_query(
        "SELECT (SELECT count(*) FROM pg_stat_activity \
                  WHERE application_name = $2 AND datname = current_database()) AS listeners \
           FROM pg_notify($1, $3)",
    )
    .bind::<Text, _>(CHANGES)
    .bind::<Text, _>(APPLICATION_NAME)
    .bind::<Text, _>(payload)
    .get_result(connection)
    .context("could not send a change notification")?;
    Ok(usize::try_from(counted.listeners).unwrap_or(0))
}

/// Applies every notification received so far.
fn drain(connection: &mut PgConnection, cache: &ReadCache, barriers: &Barriers) -> anyhow::Result<()> {
    loop {
        let Some(notification) = connection.notifications_iter().next().transpose()? else {
            return Ok(());
        };
        if notification.channel == ACKS {
            let mut barriers = barriers.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(barrier) = barriers.get_mut(&notification.payload) {
                barrier.acks += 1;
                barrier.notify.notify_one();
            }
            continue;
        }
        let (barrier, text) = match notification.payload.strip_prefix("b:").and_then(|rest| rest.split_once('|')) {
            Some((barrier, text)) => (Some(barrier.to_owned()), text.to_owned()),
            None => (None, notification.payload),
        };
        match Change::decode(&text) {
            Some(change) => cache.apply(&change),
            None => {
                tracing::warn!(payload = %text, "an unreadable change notification; forgetting everything");
                cache.flush();
            }
        }
        if let Some(barrier) = barrier {
            diesel::sql_query("SELECT pg_notify($1, $2) IS NULL AS sent")
                .bind::<Text, _>(ACKS)
                .bind::<Text, _>(barrier)
                .execute(connection)
                .context("could not acknowledge a change")?;
        }
    }
}
