//! The database handle the server holds: URL parsing, the connection pool, migrations, the
//! readiness ping, and the repositories built on it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use diesel::RunQueryDsl;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use gatehouse_domain::ports::{
    ActivityLog, EmailOutbox, OneTimeTokenRepository, RevocationList, SecretCipher, SessionRepository, UserDirectory,
    UserRepository,
};
use tracing::Span;

use crate::activity::DieselActivityLog;
use crate::breaker::{Admission, Breaker, BreakerSettings};
use crate::connection::{self, AnyConnection, Manager, PoolEvents, Prepare, Target, Trouble};
use crate::directory::DieselUserDirectory;
use crate::outbox::DieselEmailOutbox;
use crate::revocations::SessionTableRevocations;
use crate::sessions::DieselSessionRepository;
use crate::tokens::DieselOneTimeTokenRepository;
use crate::users::DieselUserRepository;

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// How long [`Database::connect`] waits for the first connection.
const FIRST_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// How a pool bounds the time a call may spend on the database, so that an outage fails
/// requests within a second instead of hanging them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// How long a call waits for a pooled connection before failing with
    /// [`Unavailable`](gatehouse_domain::Unavailable).
    pub checkout_timeout: Duration,
    /// libpq's `connect_timeout` in seconds for new PostgreSQL connections (libpq takes at
    /// least 2); 0 leaves the URL as it is.
    pub connect_timeout_secs: u32,
    /// PostgreSQL's `statement_timeout` on every connection, and SQLite's busy timeout.
    pub statement_timeout: Duration,
    /// When the circuit breaker opens and for how long.
    pub breaker: BreakerSettings,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            checkout_timeout: Duration::from_millis(500),
            connect_timeout_secs: 2,
            statement_timeout: Duration::from_secs(5),
            breaker: BreakerSettings::default(),
        }
    }
}

/// Serialises migrations when several instances start at once against one PostgreSQL
/// (`pg_advisory_lock` key; any constant unique to Gatehouse).
const MIGRATION_LOCK_KEY: i64 = 0x6761_7465_686f_7573; // "gatehous"

/// Which engine a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// PostgreSQL, the production store.
    Postgres,
    /// SQLite, the embedded single-node store.
    Sqlite,
}

/// A pool of connections to PostgreSQL or SQLite. Cheap to clone: clones share the pool.
///
/// Secrets kept at rest (the tokens of outbox messages) are sealed with the cipher given to
/// [`Database::with_secret_cipher`]; without one, queuing a message that carries a token fails
/// rather than store the token in plain text.
#[derive(Clone)]
pub struct Database {
    pool: r2d2::Pool<Manager>,
    backend: Backend,
    waits: Arc<WaitCounters>,
    secrets: Option<Arc<dyn SecretCipher>>,
    breaker: Arc<Breaker>,
    outbox_signal: crate::outbox::OutboxSignal,
    /// The PostgreSQL URL, for the outbox listener's own connection.
    listen_url: Option<String>,
    /// The statement timeout every connection has, restored after [`Database::run_unbounded`].
    statement_timeout: Duration,
    /// How long a call waits for a connection at most.
    checkout_timeout: Duration,
}

/// Checkouts that found no idle connection, and the time they waited.
#[derive(Debug, Default)]
struct WaitCounters {
    count: AtomicU64,
    micros: AtomicU64,
}

/// A snapshot of the connection pool, for metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolStats {
    /// The most connections the pool opens.
    pub max_size: u32,
    /// Connections open now, idle or in use.
    pub connections: u32,
    /// Open connections that are checked out.
    pub in_use: u32,
    /// Checkouts so far that found no idle connection and had to wait.
    pub waits: u64,
    /// The total time those checkouts waited, in seconds.
    pub wait_seconds: f64,
    /// Whether the circuit breaker is open (calls fail at once) or half open (probing).
    pub circuit_open: bool,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.pool.state();
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .field("connections", &state.connections)
            .field("idle_connections", &state.idle_connections)
            .field("seals_secrets", &self.secrets.is_some())
            .field("circuit_open", &self.breaker.is_open())
            .finish()
    }
}

impl Database {
    /// Opens a pool of at most `pool_size` connections (at least one) with the default
    /// [`PoolOptions`] and waits for the first one; see [`Database::connect_with`].
    ///
    /// # Errors
    ///
    /// As [`Database::connect_with`].
    pub fn connect(url: &str, pool_size: u32) -> anyhow::Result<Database> {
        Self::connect_with(url, pool_size, PoolOptions::default())
    }

    /// Opens a pool of at most `pool_size` connections (at least one) and waits for the first
    /// one, so a wrong URL or an unreachable server fails here rather than on the first request.
    /// This blocks for up to 10 seconds: call it before the async runtime starts or from
    /// `spawn_blocking`. Later calls wait at most `options.checkout_timeout` for a connection.
    ///
    /// Accepted URLs: `postgres://…` and `postgresql://…` (anything libpq accepts after the
    /// scheme); `sqlite://path/to/file.db` (relative or, with a third slash, absolute; the
    /// parent directory is created if missing); `sqlite::memory:` for a throwaway in-memory
    /// database, which always uses a single connection because each SQLite `:memory:`
    /// connection is its own database.
    ///
    /// # Errors
    ///
    /// An unknown scheme, a parent directory that cannot be created, or no connection within
    /// the timeout. The URL itself is never part of the error (it may hold a password).
    pub fn connect_with(url: &str, pool_size: u32, options: PoolOptions) -> anyhow::Result<Database> {
        let target = parse_url(url)?;
        if let Target::SqliteFile(path) = &target {
            create_parent_dir(path)?;
        }
        let (backend, pool_size) = match target {
            Target::Postgres(_) => (Backend::Postgres, pool_size.max(1)),
            Target::SqliteFile(_) => (Backend::Sqlite, pool_size.max(1)),
            Target::SqliteMemory => (Backend::Sqlite, 1),
        };
        let manager = Manager::new(target, options.connect_timeout_secs);
        let listen_url = manager.postgres_url().map(str::to_owned);
        let breaker = Arc::new(Breaker::new(options.breaker));
        let events = PoolEvents { breaker: breaker.clone() };
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            // No `SELECT 1` before every checkout: it doubled the round trips of each query. A
            // connection that broke fails its query, r2d2 drops it (`has_broken`), and the
            // caller's error is the same as a failed validation would have been.
            .test_on_check_out(false)
            .connection_timeout(options.checkout_timeout.max(Duration::from_millis(1)))
            .connection_customizer(Box::new(Prepare { statement_timeout: options.statement_timeout }))
            .error_handler(Box::new(events.clone()))
            .event_handler(Box::new(events))
            .build_unchecked(manager);
        drop(
            pool.get_timeout(FIRST_CONNECTION_TIMEOUT)
                .with_context(|| format!("could not connect to the {backend:?} database"))?,
        );
        Ok(Database {
            pool,
            backend,
            waits: Arc::default(),
            secrets: None,
            breaker,
            outbox_signal: crate::outbox::OutboxSignal::default(),
            listen_url,
            statement_timeout: options.statement_timeout,
            checkout_timeout: options.checkout_timeout.max(Duration::from_millis(1)),
        })
    }

    /// This database, sealing the secrets it keeps at rest (outbox tokens) with `cipher` and
    /// opening them with it. Every process writing or relaying the outbox needs the same keys
    /// (the current one, and retired ones while rows sealed with them remain).
    #[must_use]
    pub fn with_secret_cipher(mut self, cipher: Arc<dyn SecretCipher>) -> Self {
        self.secrets = Some(cipher);
        self
    }

    /// The cipher for secrets at rest, when one was given.
    pub(crate) fn secrets(&self) -> Option<&dyn SecretCipher> {
        self.secrets.as_deref()
    }

    /// The pool's size and usage now, and its waits so far.
    #[must_use]
    pub fn pool_stats(&self) -> PoolStats {
        let state = self.pool.state();
        #[allow(clippy::cast_precision_loss)] // microseconds fit an f64 for centuries
        let wait_seconds = self.waits.micros.load(Ordering::Relaxed) as f64 / 1e6;
        PoolStats {
            max_size: self.pool.max_size(),
            connections: state.connections,
            in_use: state.connections.saturating_sub(state.idle_connections),
            waits: self.waits.count.load(Ordering::Relaxed),
            wait_seconds,
            circuit_open: self.breaker.is_open(),
        }
    }

    /// Which engine this database runs on.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the embedded migrations of this backend that have not run yet. Safe to call on
    /// every start; on PostgreSQL, instances starting together take turns (advisory lock).
    ///
    /// # Errors
    ///
    /// No connection, or a migration that fails (it is rolled back).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.run_unbounded(|connection| {
            match connection {
                AnyConnection::Postgresql(pg) => {
                    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                        .execute(pg)
                        .context("could not take the migration lock")?;
                    let outcome = pg.run_pending_migrations(POSTGRES_MIGRATIONS).map(|applied| applied.len());
                    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                        .execute(pg)
                        .context("could not release the migration lock")?;
                    outcome
                }
                AnyConnection::Sqlite(sqlite) => {
                    sqlite.run_pending_migrations(SQLITE_MIGRATIONS).map(|applied| applied.len())
                }
            }
            .map(|applied| tracing::info!(applied, "database migrations are up to date"))
            .map_err(|e| anyhow!(e).context("could not run the database migrations"))
        })
        .await
    }

    /// Checks that a connection can be had and answers `SELECT 1` (readiness probe).
    ///
    /// # Errors
    ///
    /// No connection within the timeout, or the query fails.
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.run(|connection| {
            diesel::sql_query("SELECT 1").execute(connection).context("the database did not answer SELECT 1")?;
            Ok(())
        })
        .await
    }

    /// How many outbox messages wait to be sent (pending, due or not), for metrics.
    ///
    /// # Errors
    ///
    /// No connection within the timeout, or the query fails.
    pub async fn outbox_depth(&self) -> anyhow::Result<u64> {
        self.run(crate::outbox::pending_count).await
    }

    /// The user repository on this database.
    #[must_use]
    pub fn users(&self) -> Arc<dyn UserRepository> {
        Arc::new(DieselUserRepository::new(self.clone()))
    }

    /// The administrators' view of the users on this database: search, filters, keyset
    /// pagination, and changes under the last-admin rule.
    #[must_use]
    pub fn directory(&self) -> Arc<dyn UserDirectory> {
        Arc::new(DieselUserDirectory::new(self.clone()))
    }

    /// The audit trail on this database.
    #[must_use]
    pub fn activity(&self) -> Arc<dyn ActivityLog> {
        Arc::new(DieselActivityLog::new(self.clone()))
    }

    /// The session repository on this database.
    #[must_use]
    pub fn sessions(&self) -> Arc<dyn SessionRepository> {
        Arc::new(DieselSessionRepository::new(self.clone()))
    }

    /// The one-time token repository on this database.
    #[must_use]
    pub fn one_time_tokens(&self) -> Arc<dyn OneTimeTokenRepository> {
        Arc::new(DieselOneTimeTokenRepository::new(self.clone()))
    }

    /// The linked OAuth identities (and OAuth login codes and spent states) on this database.
    #[must_use]
    pub fn identities(&self) -> Arc<dyn gatehouse_domain::ports::IdentityRepository> {
        Arc::new(crate::identities::DieselIdentityRepository::new(self.clone()))
    }

    /// The email outbox on this database, as relays use it.
    #[must_use]
    pub fn email_outbox(&self) -> Arc<dyn EmailOutbox> {
        Arc::new(DieselEmailOutbox::new(self.clone()))
    }

    /// Webhook endpoints and deliveries on this database.
    #[must_use]
    pub fn webhooks(&self) -> Arc<dyn gatehouse_domain::ports::WebhookRepository> {
        Arc::new(crate::webhooks::DieselWebhookRepository::new(self.clone()))
    }

    /// The revocation list read from the sessions table ([`SessionTableRevocations`]), for
    /// deployments without Redis.
    #[must_use]
    pub fn session_revocations(&self) -> Arc<dyn RevocationList> {
        Arc::new(SessionTableRevocations::new(self.clone()))
    }

    /// Runs `work` with a pooled connection on tokio's blocking pool, inside the caller's
    /// tracing span. Every Diesel call goes through here: Diesel blocks, and an async worker
    /// thread must never wait on the database.
    ///
    /// Fails fast with [`Unavailable`](gatehouse_domain::Unavailable) in the cause chain when
    /// the circuit is open, when no connection comes within the checkout timeout, or when the
    /// database itself failed the work (lost connection, statement timeout); the breaker counts
    /// those, and a lost connection is discarded rather than pooled again.
    pub(crate) async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
    {
        let pool = self.pool.clone();
        let waits = self.waits.clone();
        let breaker = self.breaker.clone();
        let checkout_timeout = self.checkout_timeout;
        let signal = self.outbox_signal.clone();
        let span = Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let admission = breaker.admit();
            if admission == Admission::Refuse {
                return Err(anyhow::Error::new(breaker.unavailable()).context("the database circuit is open").into());
            }
            let must_wait = pool.state().idle_connections == 0;
            let started = Instant::now();
            let connection = checkout(&pool, &breaker, admission, checkout_timeout);
            if must_wait {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                waits.count.fetch_add(1, Ordering::Relaxed);
                waits.micros.fetch_add(micros, Ordering::Relaxed);
            }
            let mut connection = match connection {
                Ok(connection) => connection,
                Err(e) => {
                    // Every connection open and busy is overload, not an outage: refuse this
                    // call, but leave the circuit alone.
                    let state = pool.state();
                    if state.connections >= pool.max_size() && state.idle_connections == 0 {
                        breaker.probe_abandoned(admission);
                    } else {
                        breaker.failed(admission);
                    }
                    return Err(anyhow::Error::new(breaker.unavailable())
                        .context(format!("no database connection within the checkout timeout ({e})"))
                        .into());
                }
            };
            connection::reset_trouble();
            crate::outbox::reset_queued();
            let outcome = work(&mut connection);
            // Returning the connection reads the trouble: a lost one is discarded, not pooled.
            drop(connection);
            let trouble = connection::trouble();
            connection::reset_trouble();
            match trouble {
                None => {
                    breaker.succeeded();
                    if outcome.is_ok() && crate::outbox::take_queued() {
                        signal.notify();
                    }
                    outcome
                }
                Some(trouble) => {
                    breaker.failed(admission);
                    let what = match trouble {
                        Trouble::ConnectionLost => "the database connection was lost",
                        Trouble::TimedOut => "a database statement timed out",
                    };
                    match outcome {
                        Ok(value) => Ok(value),
                        Err(_) => Err(anyhow::Error::new(breaker.unavailable()).context(what).into()),
                    }
                }
            }
        })
        .await
        .map_err(|e| anyhow!(e).context("a database task panicked or was cancelled"))?
    }

    /// Like [`Database::run`], without the statement timeout on PostgreSQL, for the few
    /// operator tasks that may rightly take long (migrations, seeding); the connection gets its
    /// timeout back afterwards, or is discarded when that fails.
    pub(crate) async fn run_unbounded<T, F>(&self, work: F) -> anyhow::Result<T>
    where
        F: FnOnce(&mut AnyConnection) -> anyhow::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let millis = self.statement_timeout.as_millis();
        self.run(move |connection| {
            if !matches!(connection, AnyConnection::Postgresql(_)) {
                return work(connection);
            }
            diesel::sql_query("SET statement_timeout = 0")
                .execute(connection)
                .context("lifting the statement timeout")?;
            let outcome = work(connection);
            diesel::sql_query(format!("SET statement_timeout = {millis}"))
                .execute(connection)
                .context("restoring the statement timeout")?;
            outcome
        })
        .await
    }

    /// On PostgreSQL, a listener that wakes [`Database::outbox_signal`] when any process queues
    /// mail on this database (`LISTEN/NOTIFY`); `None` on SQLite, where only this process writes.
    ///
    /// # Errors
    ///
    /// The listener thread cannot be started.
    pub fn listen_for_outbox(&self) -> anyhow::Result<Option<crate::outbox::OutboxListener>> {
        match &self.listen_url {
            Some(url) => crate::outbox::OutboxListener::start(url.clone(), self.outbox_signal.clone()).map(Some),
            None => Ok(None),
        }
    }

    /// Wakes whoever waits on [`Database::outbox_signal`] each time a change that queued mail
    /// commits through this database (any clone of it).
    #[must_use]
    pub fn outbox_signal(&self) -> crate::outbox::OutboxSignal {
        self.outbox_signal.clone()
    }
}

/// How often a waiting checkout looks whether the circuit opened meanwhile.
const CHECKOUT_SLICE: Duration = Duration::from_millis(25);

/// Waits up to `timeout` for a pooled connection, in slices: when the circuit opens while it
/// waits (the pool's own attempts to connect failed), a call that is not the probe gives up at
/// once instead of waiting out the whole timeout.
fn checkout(
    pool: &r2d2::Pool<Manager>,
    breaker: &Breaker,
    admission: Admission,
    timeout: Duration,
) -> Result<r2d2::PooledConnection<Manager>, r2d2::Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match pool.get_timeout(left.min(CHECKOUT_SLICE).max(Duration::from_millis(1))) {
            Ok(connection) => return Ok(connection),
            Err(e) if left <= CHECKOUT_SLICE || (admission == Admission::Go && breaker.is_open()) => return Err(e),
            Err(_) => {}
        }
    }
}

/// Picks the engine from the URL scheme.
fn parse_url(url: &str) -> anyhow::Result<Target> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres(url.to_owned()));
    }
    if matches!(url, "sqlite::memory:" | "sqlite://:memory:") {
        return Ok(Target::SqliteMemory);
    }
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split_once('?').map_or(rest, |(path, _query)| path);
        if path.is_empty() {
            bail!("the SQLite URL has no file path (expected sqlite://path/to/file.db)");
        }
        return Ok(Target::SqliteFile(PathBuf::from(path)));
    }
    bail!("unsupported database URL: expected postgres://, postgresql://, sqlite://path or sqlite::memory:")
}

fn create_parent_dir(path: &Path) -> anyhow::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent)
            .with_context(|| format!("could not create the SQLite directory {}", parent.display())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_their_engine() {
        let pg = "postgres://u:secret@db:5432/gatehouse";
        assert_eq!(parse_url(pg).ok(), Some(Target::Postgres(pg.to_owned())));
        let pg = "postgresql://db/gatehouse";
        assert_eq!(parse_url(pg).ok(), Some(Target::Postgres(pg.to_owned())));
        assert_eq!(parse_url("sqlite://data/gatehouse.db").ok(), Some(Target::SqliteFile("data/gatehouse.db".into())));
        assert_eq!(parse_url("sqlite:///var/lib/g.db?mode=rwc").ok(), Some(Target::SqliteFile("/var/lib/g.db".into())));
        assert_eq!(parse_url("sqlite::memory:").ok(), Some(Target::SqliteMemory));
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        for url in ["mysql://root:hunter2@db/g", "sqlite://", "hunter2"] {
            let error = parse_url(url).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(!error.is_empty(), "{url} should be refused");
            assert!(!error.contains("hunter2"), "the error must not echo the URL: {error}");
        }
    }

    #[tokio::test]
    async fn an_in_memory_database_migrates_and_answers_pings() {
        let db = Database::connect("sqlite::memory:", 8).expect("in-memory SQLite opens");
        assert_eq!(db.backend(), Backend::Sqlite);
        db.migrate().await.expect("migrations apply");
        db.ping().await.expect("ping answers");
    }
}
