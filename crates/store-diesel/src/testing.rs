//! Throwaway databases for tests (feature `testing`): a fresh PostgreSQL database or SQLite
//! file per test, removed again when the [`TestDatabase`] is dropped.
//!
//! PostgreSQL comes from `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`,
//! a server whose user may create databases). Tests never skip when it is down: they fail
//! with one line saying how to get one. Used by this crate's contract tests and by the
//! end-to-end suite.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use diesel::{Connection, PgConnection, RunQueryDsl};
use gatehouse_domain::{ActivityAction, ActivityId, EmailId, RequestContext, UserId};

use crate::{Backend, Database};

/// The server used when `TEST_DATABASE_URL` is not set.
const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432";

/// A database that exists for one test. Dropping it drops the PostgreSQL database (closing any
/// connections still open to it) or deletes the SQLite file.
#[derive(Debug)]
pub struct TestDatabase {
    backend: Backend,
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Postgres { server_url: String, name: String },
    Sqlite { path: PathBuf },
}

impl TestDatabase {
    /// A fresh, empty database on `backend`.
    ///
    /// # Panics
    ///
    /// When PostgreSQL is not reachable or refuses to create the database.
    #[must_use]
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => Self::postgres(),
            Backend::Sqlite => Self::sqlite(),
        }
    }

    /// A fresh, empty, uniquely named PostgreSQL database on the server of `TEST_DATABASE_URL`.
    ///
    /// # Panics
    ///
    /// With one line naming the server and the fix when it is not reachable, and when it
    /// refuses to create the database.
    #[must_use]
    pub fn postgres() -> Self {
        let server_url = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned());
        let name = format!("gatehouse_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::establish(&server_url).unwrap_or_else(|error| {
            panic!(
                "PostgreSQL is not reachable at {}: start it (see README) or set TEST_DATABASE_URL ({})",
                redact_password(&server_url),
                one_line(&error.to_string()),
            )
        });
        if let Err(error) = diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut admin) {
            panic!("could not create the test database {name}: {}", one_line(&error.to_string()));
        }
        Self {
            backend: Backend::Postgres,
            url: database_url(&server_url, &name),
            cleanup: Cleanup::Postgres { server_url, name },
        }
    }

    /// A fresh SQLite database file in the system's temporary directory.
    #[must_use]
    pub fn sqlite() -> Self {
        let path = std::env::temp_dir().join(format!("gatehouse-test-{}.db", uuid::Uuid::now_v7().simple()));
        Self {
            backend: Backend::Sqlite,
            url: format!("sqlite://{}", path.display()),
            cleanup: Cleanup::Sqlite { path },
        }
    }

    /// The URL to hand to [`Database::connect`] or to the server's configuration.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Which engine this database is on.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Connects with a pool of `pool_size` and applies the migrations.
    ///
    /// # Errors
    ///
    /// When connecting or migrating fails.
    pub async fn connect_and_migrate(&self, pool_size: u32) -> anyhow::Result<Database> {
        let url = self.url.clone();
        let db = tokio::task::spawn_blocking(move || Database::connect(&url, pool_size))
            .await
            .context("connecting panicked")??;
        db.migrate().await?;
        Ok(db)
    }
}

/// An activity event as stored, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredActivity {
    /// The event id.
    pub id: ActivityId,
    /// The account the event is about.
    pub user_id: UserId,
    /// Who acted; `None` for the system.
    pub actor_id: Option<UserId>,
    /// What happened.
    pub action: ActivityAction,
    /// Where the request came from.
    pub context: RequestContext,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Extra facts.
    pub details: BTreeMap<String, String>,
}

/// An outbox row as stored, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEmail {
    /// The message id.
    pub id: EmailId,
    /// The recipient's address.
    pub recipient: String,
    /// The template name.
    pub template: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    /// Whether the content (which may hold a token) is still stored.
    pub has_payload: bool,
    /// The `payload` column as stored (JSON text), to check what a copy of the database reveals.
    pub raw_payload: Option<String>,
    /// Delivery attempts so far.
    pub attempts: i32,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// When the current lease ends, if leased.
    pub claimed_until: Option<DateTime<Utc>>,
}

impl Database {
    /// Every outbox row, oldest first.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn outbox_rows(&self) -> anyhow::Result<Vec<StoredEmail>> {
        self.run(crate::outbox::read::all).await
    }

    /// Runs one raw SQL statement, for tests that need a state the ports cannot produce (a
    /// soft-deleted user, an expired token). Returns the number of affected rows.
    ///
    /// # Errors
    ///
    /// When the statement fails.
    pub async fn execute_sql(&self, sql: impl Into<String>) -> anyhow::Result<usize> {
        let sql = sql.into();
        self.run(move |connection| {
            diesel::sql_query(sql.as_str()).execute(connection).with_context(|| format!("could not run {sql:?}"))
        })
        .await
    }

    /// How many users the database holds, deleted or not (benchmarks check whether they
    /// still need to seed).
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn count_users(&self) -> anyhow::Result<u64> {
        self.run(|connection| {
            let count: i64 = diesel::QueryDsl::count(crate::schema::users::table)
                .get_result(connection)
                .context("could not count the users")?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    /// Every activity event about `user_id`, oldest first, so tests can check which events a
    /// change wrote (or that a failed one wrote none).
    ///
    /// # Errors
    ///
    /// When the query fails or a stored row no longer parses.
    pub async fn activity_for_user(&self, user_id: UserId) -> anyhow::Result<Vec<StoredActivity>> {
        self.run(move |connection| crate::activity::read::for_user(connection, user_id)).await
    }
    /// The raw avatar columns (`avatar_key`, `avatar_content_type`) of any user row, deleted
    /// or not, for tests that check what a change left behind.
    ///
    /// # Errors
    ///
    /// When the query fails or there is no such row.
    pub async fn avatar_columns(&self, user_id: UserId) -> anyhow::Result<(Option<String>, Option<String>)> {
        use diesel::{QueryDsl, RunQueryDsl as _};

        use crate::schema::users;
        use crate::types::DbUuid;

        let id = DbUuid(*user_id.as_uuid());
        self.run(move |connection| {
            users::table
                .find(id)
                .select((users::avatar_key, users::avatar_content_type))
                .first(connection)
                .context("could not read the avatar columns")
        })
        .await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let outcome = match &self.cleanup {
            Cleanup::Postgres { server_url, name } => PgConnection::establish(server_url)
                .map_err(anyhow::Error::new)
                .and_then(|mut admin| {
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut admin)
                        .map_err(anyhow::Error::new)
                })
                .map(|_| ()),
            Cleanup::Sqlite { path } => {
                let mut outcome = Ok(());
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    match std::fs::remove_file(&file) {
                        Err(error) if error.kind() != std::io::ErrorKind::NotFound => outcome = Err(error.into()),
                        _ => {}
                    }
                }
                outcome
            }
        };
        // Never panic in drop (it may run while a failed test unwinds); a leftover is harmless.
        if let Err(error) = outcome {
            eprintln!("warning: could not remove the test database {}: {error:#}", self.url);
        }
    }
}

/// `server_url` with its path (database name) replaced by `name`, keeping any query string.
fn database_url(server_url: &str, name: &str) -> String {
    let (base, query) = server_url.split_once('?').map_or((server_url, None), |(base, query)| (base, Some(query)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = base[authority_start..].find('/').map_or(base, |slash| &base[..authority_start + slash]);
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// The URL with any password replaced by `***`, for messages.
fn redact_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let authority_end = url[scheme_end..].find(['/', '?']).map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split_once(':').map_or(user_info, |(user, _)| user);
            format!("{}{user}:***@{host}{}", &url[..scheme_end], &url[authority_end..])
        }
        _ => url.to_owned(),
    }
}

/// libpq's messages span lines; a panic message should not.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_replaces_any_path_of_the_server_url() {
        assert_eq!(database_url("postgres://postgres@127.0.0.1:5432", "t1"), "postgres://postgres@127.0.0.1:5432/t1");
        assert_eq!(database_url("postgres://u@h/postgres", "t1"), "postgres://u@h/t1");
        assert_eq!(database_url("postgres://u@h:1/db?sslmode=disable", "t1"), "postgres://u@h:1/t1?sslmode=disable");
    }

    #[test]
    fn passwords_are_redacted_from_messages() {
        assert_eq!(redact_password("postgres://u:hunter2@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_password("postgres://postgres@127.0.0.1:5432"), "postgres://postgres@127.0.0.1:5432");
    }
}
