//! What every handler can reach: the use-case services and the few adapters that
//! operations endpoints query directly.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_domain::ports::Clock;
use gatehouse_domain::services::account::AccountService;
use gatehouse_domain::services::auth::AuthService;
use gatehouse_domain::services::avatars::AvatarService;
use gatehouse_domain::services::sessions::SessionService;
use gatehouse_store_diesel::Database;

use crate::http::openapi::RouteTable;

/// Shared by all workers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Sign-up, sign-in, token verification.
    pub auth: AuthService,
    /// The caller's own account.
    pub account: AccountService,
    /// Profile images.
    pub avatars: AvatarService,
    /// Refresh, sign-out, session management, access-token checks.
    pub sessions: SessionService,
    /// For readiness checks.
    pub database: Database,
    /// The time, as the use cases see it.
    pub clock: Arc<dyn Clock>,
    /// Documented routes, to answer 405 with `Allow`.
    pub routes: RouteTable,
    /// The JWK Set served at `/.well-known/jwks.json`, computed once.
    pub jwks: Arc<serde_json::Value>,
    /// Whether cookies carry `Secure` (everywhere but plain-HTTP loopback development).
    pub secure_cookies: bool,
}

impl AppState {
    /// The current time.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
