//! Gatehouse's persistence ports on Diesel, for PostgreSQL (production) and SQLite (embedded).
//!
//! One code path serves both engines: queries are written once against a Diesel
//! `MultiConnection`, and the column types that differ (UUIDs, timestamps) are mapped per
//! engine in one place. The server opens a [`Database`], runs [`Database::migrate`] and takes
//! the repositories it needs as `Arc<dyn Port>`. No Diesel type or error leaves this crate:
//! driver errors become the domain's error variants or `anyhow::Error`s with context.
//!
//! Every Diesel call runs on tokio's blocking pool, never on an async worker.
//!
//! This crate depends on `gatehouse-domain` only; it must never depend on the server, a web
//! framework or another adapter.

mod activity;
mod admins;
mod breaker;
mod changes;
mod connection;
mod database;
mod directory;
mod identities;
mod outbox;
mod revocations;
mod schema;
mod seed;
mod sessions;
mod tokens;
mod types;
mod users;
mod webhooks;

#[cfg(feature = "testing")]
pub mod testing;

pub use activity::DieselActivityLog;
pub use breaker::BreakerSettings;
pub use changes::{POLL_INTERVAL, PgChangeFeed};
pub use database::{Backend, Database, PoolOptions, PoolStats};
pub use directory::DieselUserDirectory;
pub use identities::DieselIdentityRepository;
pub use outbox::{DieselEmailOutbox, OutboxListener, OutboxSignal};
pub use revocations::SessionTableRevocations;
pub use sessions::DieselSessionRepository;
pub use tokens::DieselOneTimeTokenRepository;
pub use users::DieselUserRepository;
pub use webhooks::DieselWebhookRepository;
