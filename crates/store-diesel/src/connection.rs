//! One connection type for both engines, and how the pool opens and prepares connections.
//!
//! [`AnyConnection`] is Diesel's `MultiConnection` over PostgreSQL and SQLite: repositories
//! write one typed query and it runs on either. The few engine differences live here: which
//! driver a URL opens, the SQLite pragmas every pooled connection needs, and how a writing
//! transaction starts ([`write_transaction`]).

use std::path::PathBuf;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::R2D2Connection;
use diesel::result::Error as DieselError;
use diesel::{Connection, ConnectionError, PgConnection, SqliteConnection};

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
    pub(crate) fn new(target: Target) -> Self {
        Self { target }
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
        std::thread::panicking() || connection.is_broken()
    }
}

/// Prepares every new SQLite connection: WAL (readers never block the writer), a 5 s busy
/// timeout (writers queue instead of failing at once), and foreign keys, which SQLite leaves
/// off unless asked per connection. PostgreSQL connections are left as they are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SqlitePragmas;

impl r2d2::CustomizeConnection<AnyConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, connection: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        match connection {
            AnyConnection::Postgresql(_) => Ok(()),
            // busy_timeout first, so that switching to WAL waits for a lock instead of failing.
            AnyConnection::Sqlite(sqlite) => sqlite
                .batch_execute("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
                .map_err(diesel::r2d2::Error::QueryError),
        }
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
