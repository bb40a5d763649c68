//! What every handler can reach: the use-case services and the few adapters that
//! operations endpoints query directly.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_domain::ports::Clock;
use gatehouse_domain::services::account::AccountService;
use gatehouse_domain::services::auth::AuthService;
use gatehouse_store_diesel::Database;

use crate::http::openapi::RouteTable;

/// Shared by all workers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Sign-up, sign-in, token verification.
    pub auth: AuthService,
    /// The caller's own account.
    pub account: AccountService,
    /// For readiness checks.
    pub database: Database,
    /// The time, as the use cases see it.
    pub clock: Arc<dyn Clock>,
    /// Documented routes, to answer 405 with `Allow`.
    pub routes: RouteTable,
}

impl AppState {
    /// The current time.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
