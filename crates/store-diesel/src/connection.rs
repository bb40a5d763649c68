//! One connection type for both engines, and how the pool opens and prepares connections.
//!
//! [`AnyConnection`] is Diesel's `MultiConnection` over PostgreSQL and SQLite: repositories
//! write one typed query and it runs on either. The few engine differences live here: which
//! driver a URL opens, the session settings every pooled connection needs (SQLite pragmas, a
//! PostgreSQL statement timeout), and how a writing transaction starts ([`write_transaction`]).
//!
//! It also notices when the database itself failed a query (the connection was lost, or a
//! statement ran out of time), so that [`Database::run`](crate::Database) can tell the
//! circuit breaker and discard a dead connection instead of returning it to the pool.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{
    AnsiTransactionManager, Instrumentation, InstrumentationEvent, SimpleConnection, TransactionManager,
};
use diesel::r2d2::R2D2Connection;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{Connection, ConnectionError, PgConnection, SqliteConnection};

use crate::breaker::Breaker;

/// A connection to either engine. Typed queries against it run on both.
#[derive(diesel::MultiConnection)]
pub(crate) enum AnyConnection {
    /// The production store.
    Postgresql(PgConnection),
    /// The embedded store.
    Sqlite(SqliteConnection),
}

/// Where a pool's connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A libpq URL, `postgres://…` or `postgresql://…`.
    Postgres(String),
    /// A database file.
    SqliteFile(PathBuf),
    /// A private in-memory SQLite database; only meaningful with a pool of one connection.
    SqliteMemory,
}

/// Opens connections for r2d2. Unlike Diesel's generic `ConnectionManager`, which tries every
/// engine in turn and hides why the right one failed, this opens exactly the engine the URL
/// names and reports its error.
#[derive(Debug)]
pub(crate) struct Manager {
    target: Target,
}

impl Manager {
    /// A manager for `target`; PostgreSQL connections give up connecting after
    /// `connect_timeout_secs` (libpq's `connect_timeout`, unless the URL sets its own; libpq
    /// takes at least 2 s) so that no pool thread waits forever on an unreachable host.
    pub(crate) fn new(target: Target, connect_timeout_secs: u32) -> Self {
        let target = match target {
            Target::Postgres(url) if connect_timeout_secs > 0 && !url.contains("connect_timeout=") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                Target::Postgres(format!("{url}{separator}connect_timeout={connect_timeout_secs}"))
            }
            other => other,
        };
        Self { target }
    }

    /// The PostgreSQL URL connections open (with the connect timeout), if this is PostgreSQL.
    pub(crate) fn postgres_url(&self) -> Option<&str> {
        match &self.target {
            Target::Postgres(url) => Some(url),
            Target::SqliteFile(_) | Target::SqliteMemory => None,
        }
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        let connection = match &self.target {
            Target::Postgres(url) => PgConnection::establish(url).map(AnyConnection::Postgresql),
            Target::SqliteFile(path) => {
                let path = path.to_str().ok_or_else(|| {
                    ConnectionError::InvalidConnectionUrl("the SQLite path is not valid UTF-8".to_owned())
                })?;
                SqliteConnection::establish(path).map(AnyConnection::Sqlite)
            }
            Target::SqliteMemory => SqliteConnection::establish(":memory:").map(AnyConnection::Sqlite),
        };
        connection.map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, connection: &mut AnyConnection) -> Result<(), Self::Error> {
        connection.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, connection: &mut AnyConnection) -> bool {
        std::thread::panicking() || connection.is_broken() || trouble() == Some(Trouble::ConnectionLost)
    }
}

/// How the database failed the work on this thread since [`reset_trouble`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trouble {
    /// The connection died (the server went away or closed it).
    ConnectionLost,
    /// A statement ran past `statement_timeout`.
    TimedOut,
}

thread_local! {
    /// Set by [`TroubleDetector`] on the thread that ran the failing query: Diesel calls run
    /// synchronously on the blocking thread of [`Database::run`](crate::Database), which
    /// resets it before the work and reads it after.
    static TROUBLE: Cell<Option<Trouble>> = const { Cell::new(None) };
}

/// Forgets any trouble recorded on this thread.
pub(crate) fn reset_trouble() {
    TROUBLE.with(|cell| cell.set(None));
}

/// The trouble recorded on this thread since [`reset_trouble`], if any.
pub(crate) fn trouble() -> Option<Trouble> {
    TROUBLE.with(Cell::get)
}

/// What a failed query says about the database, if anything.
fn classify(error: &DieselError) -> Option<Trouble> {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand, _) => {
            Some(Trouble::ConnectionLost)
        }
        DieselError::DatabaseError(_, info) => {
            let message = info.message();
            if message.contains("statement timeout") {
                Some(Trouble::TimedOut)
            } else if message.starts_with("terminating connection") || message.contains("server closed the connection")
            {
                Some(Trouble::ConnectionLost)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Diesel instrumentation on every PostgreSQL connection: records [`Trouble`] for the thread.
#[derive(Debug, Clone, Copy)]
struct TroubleDetector;

impl Instrumentation for TroubleDetector {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::FinishQuery { error: Some(error), .. } = event
            && let Some(found) = classify(error)
        {
            TROUBLE.with(|cell| {
                // A lost connection outranks a timeout seen earlier in the same work.
                if cell.get() != Some(Trouble::ConnectionLost) {
                    cell.set(Some(found));
                }
            });
        }
    }
}

/// Prepares every new connection. SQLite: WAL (readers never block the writer), a busy
/// timeout of `statement_timeout` (writers queue for the lock that long instead of failing at
/// once), and foreign keys, which SQLite leaves off unless asked per connection. PostgreSQL:
/// `statement_timeout`, so a stuck query fails instead of holding a request, and the
/// [`TroubleDetector`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prepare {
    /// PostgreSQL's `statement_timeout` and SQLite's busy timeout.
    pub(crate) statement_timeout: Duration,
}

impl r2d2::CustomizeConnection<AnyConnection, diesel::r2d2::Error> for Prepare {
    fn on_acquire(&self, connection: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        let millis = self.statement_timeout.as_millis();
        match connection {
            AnyConnection::Postgresql(pg) => {
                pg.set_instrumentation(TroubleDetector);
                pg.batch_execute(&format!("SET statement_timeout = {millis}")).map_err(diesel::r2d2::Error::QueryError)
            }
            // busy_timeout first, so that switching to WAL waits for a lock instead of failing.
            AnyConnection::Sqlite(sqlite) => sqlite
                .batch_execute(&format!(
                    "PRAGMA busy_timeout = {millis}; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;"
                ))
                .map_err(diesel::r2d2::Error::QueryError),
        }
    }
}

/// Tells the breaker about the pool's own connection attempts: a failure counts, a new
/// connection closes the circuit at once (the database is back), and failures are logged at
/// debug level (the breaker logs the outage once).
#[derive(Debug, Clone)]
pub(crate) struct PoolEvents {
    pub(crate) breaker: Arc<Breaker>,
}

impl r2d2::HandleError<diesel::r2d2::Error> for PoolEvents {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        tracing::debug!(error = %error, "the pool could not open a database connection");
        self.breaker.failed(crate::breaker::Admission::Go);
    }
}

impl r2d2::HandleEvent for PoolEvents {
    fn handle_acquire(&self, _event: r2d2::event::AcquireEvent) {
        self.breaker.succeeded();
    }
}

/// Runs `body` in a transaction meant to write, committing on `Ok` and rolling back on `Err`.
///
/// On SQLite the transaction starts with `BEGIN IMMEDIATE`, taking the write lock up front. A
/// plain (deferred) `BEGIN` that reads first and writes later fails at once with
/// `SQLITE_BUSY` when another connection committed in between, whatever the busy timeout;
/// taking the lock first makes concurrent writers queue instead. On PostgreSQL it is an
/// ordinary transaction.
pub(crate) fn write_transaction<T, E>(
    connection: &mut AnyConnection,
    body: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<DieselError>,
{
    match connection {
        AnyConnection::Postgresql(_) => connection.transaction(body),
        AnyConnection::Sqlite(sqlite) => {
            AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
            match body(connection) {
                Ok(value) => {
                    <AnyConnection as TransactionManager<AnyConnection>>::commit_transaction(connection)?;
                    Ok(value)
                }
                Err(error) => {
                    match <AnyConnection as TransactionManager<AnyConnection>>::rollback_transaction(connection) {
                        // A broken transaction manager is reported by the pool, which discards the
                        // connection; the caller is better served by the error that caused it.
                        Ok(()) | Err(DieselError::BrokenTransactionManager) => Err(error),
                        Err(rollback_error) => Err(rollback_error.into()),
                    }
                }
            }
        }
    }
}
