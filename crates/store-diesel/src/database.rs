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
use crate::connection::{AnyConnection, Manager, SqlitePragmas, Target};
use crate::directory::DieselUserDirectory;
use crate::outbox::DieselEmailOutbox;
use crate::revocations::SessionTableRevocations;
use crate::sessions::DieselSessionRepository;
use crate::tokens::DieselOneTimeTokenRepository;
use crate::users::DieselUserRepository;

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// How long a caller waits for a pooled connection before getting an error (and the client
/// a 503), and how long [`Database::connect`] waits for the first connection.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

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
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.pool.state();
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .field("connections", &state.connections)
            .field("idle_connections", &state.idle_connections)
            .field("seals_secrets", &self.secrets.is_some())
            .finish()
    }
}

impl Database {
    /// Opens a pool of at most `pool_size` connections (at least one) and waits for the first
    /// one, so a wrong URL or an unreachable server fails here rather than on the first request.
    /// This blocks for up to 10 seconds: call it before the async runtime starts or from
    /// `spawn_blocking`.
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
    pub fn connect(url: &str, pool_size: u32) -> anyhow::Result<Database> {
        let target = parse_url(url)?;
        if let Target::SqliteFile(path) = &target {
            create_parent_dir(path)?;
        }
        let (backend, pool_size) = match target {
            Target::Postgres(_) => (Backend::Postgres, pool_size.max(1)),
            Target::SqliteFile(_) => (Backend::Sqlite, pool_size.max(1)),
            Target::SqliteMemory => (Backend::Sqlite, 1),
        };
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            // No `SELECT 1` before every checkout: it doubled the round trips of each query. A
            // connection that broke fails its query, r2d2 drops it (`has_broken`), and the
            // caller's error is the same as a failed validation would have been.
            .test_on_check_out(false)
            .connection_timeout(CHECKOUT_TIMEOUT)
            .connection_customizer(Box::new(SqlitePragmas))
            .build(Manager::new(target))
            .with_context(|| format!("could not connect to the {backend:?} database"))?;
        Ok(Database { pool, backend, waits: Arc::default(), secrets: None })
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
        self.run(|connection| {
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

    /// The revocation list read from the sessions table ([`SessionTableRevocations`]), for
    /// deployments without Redis.
    #[must_use]
    pub fn session_revocations(&self) -> Arc<dyn RevocationList> {
        Arc::new(SessionTableRevocations::new(self.clone()))
    }

    /// Runs `work` with a pooled connection on tokio's blocking pool, inside the caller's
    /// tracing span. Every Diesel call goes through here: Diesel blocks, and an async worker
    /// thread must never wait on the database.
    pub(crate) async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<anyhow::Error> + Send + 'static,
    {
        let pool = self.pool.clone();
        let waits = self.waits.clone();
        let span = Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let must_wait = pool.state().idle_connections == 0;
            let started = Instant::now();
            let connection = pool.get();
            if must_wait {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                waits.count.fetch_add(1, Ordering::Relaxed);
                waits.micros.fetch_add(micros, Ordering::Relaxed);
            }
            let mut connection = connection.context("no database connection available")?;
            work(&mut connection)
        })
        .await
        .map_err(|e| anyhow!(e).context("a database task panicked or was cancelled"))?
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
