//! What every handler can reach: the use-case services and the few adapters that
//! operations endpoints query directly.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_domain::ports::{AccessTokens, Clock, PasswordHasher};
use gatehouse_domain::read_cache::ReadCache;
use gatehouse_domain::services::account::AccountService;
use gatehouse_domain::services::activity::ActivityService;
use gatehouse_domain::services::admin::AdminService;
use gatehouse_domain::services::auth::AuthService;
use gatehouse_domain::services::avatars::AvatarService;
use gatehouse_domain::services::oauth::OAuthService;
use gatehouse_domain::services::recovery::RecoveryService;
use gatehouse_domain::services::sessions::SessionService;
use gatehouse_domain::services::webhooks::WebhookService;
use gatehouse_security::{Argon2Hasher, CursorSealer};
use gatehouse_store_diesel::Database;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;

use crate::http::client_ip::Cidr;
use crate::http::openapi::RouteTable;
use crate::http::rate_limit::RateLimits;
use crate::settings::PlainHttp;

/// Shared by all workers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Sign-up, sign-in, token verification.
    pub auth: AuthService,
    /// The caller's own account.
    pub account: AccountService,
    /// Email verification and password reset.
    pub recovery: RecoveryService,
    /// Profile images.
    pub avatars: AvatarService,
    /// Refresh, sign-out, session management, access-token checks.
    pub sessions: SessionService,
    /// User administration.
    pub admin: AdminService,
    /// The audit trail.
    pub activity: ActivityService,
    /// Webhook endpoint administration.
    pub webhooks: WebhookService,
    /// Sign-in with OAuth providers and linked identities.
    pub oauth: OAuthService,
    /// Seals and opens the OAuth state cookie.
    pub oauth_states: CursorSealer,
    /// `oauth.success_redirect`: where the callback sends the browser with a one-time code.
    pub oauth_success_redirect: Option<String>,
    /// Seals and opens list cursors.
    pub cursors: CursorSealer,
    /// Signs and checks device cookies (a key of its own).
    pub devices: CursorSealer,
    /// Password hashing, for the command-line tools.
    pub hasher: Arc<dyn PasswordHasher>,
    /// For readiness checks.
    pub database: Database,
    /// Optional dependencies that readiness reports on without failing.
    pub dependencies: Dependencies,
    /// Renders the Prometheus metrics.
    pub metrics: PrometheusHandle,
    /// The read cache of users and sessions, for its counters.
    pub read_cache: Arc<ReadCache>,
    /// The password-hashing pool itself, for its queue depth.
    pub hash_pool: Arc<Argon2Hasher>,
    /// The time, as the use cases see it.
    pub clock: Arc<dyn Clock>,
    /// Documented routes, to answer 405 with `Allow`.
    pub routes: RouteTable,
    /// The JWK Set served at `/.well-known/jwks.json`, computed once.
    pub jwks: Arc<serde_json::Value>,
    /// Rate-limit rules and their counters.
    pub rate_limits: RateLimits,
    /// `server.trusted_proxies`, parsed.
    pub trusted_proxies: Arc<[Cidr]>,
    /// Verifies access tokens (to key limits per user).
    pub access_tokens: Arc<dyn AccessTokens>,
    /// Whether responses carry `Strict-Transport-Security` (production).
    pub hsts: bool,
    /// Whether cookies carry `Secure` (everywhere but plain-HTTP loopback development).
    pub secure_cookies: bool,
    /// `server.plain_http`: what happens to requests a trusted proxy received over HTTP.
    pub plain_http: PlainHttp,
    /// `public.base_url`, where `plain_http = "redirect"` sends such requests.
    pub public_base_url: Arc<str>,
}

impl AppState {
    /// The argon2id hash of `password` with the configured parameters (for seeding).
    ///
    /// # Errors
    ///
    /// When hashing fails or is saturated.
    pub async fn password_hash_of(&self, password: &SecretString) -> anyhow::Result<SecretString> {
        let hash = self.hasher.hash(password).await.map_err(|e| anyhow::anyhow!(e))?;
        Ok(SecretString::from(hash.as_str().to_owned()))
    }

    /// The current time.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// The optional dependencies `/health/ready` checks besides Redis (which it reaches through
/// the rate limiter's self-healing connection): their failure degrades the service (mail
/// waits in the outbox) but never stops it.
#[derive(Clone, Default)]
pub struct Dependencies {
    /// The read replica, when `database.read_replica_url` is set.
    pub replica: Option<Database>,
    /// The SMTP server's `host:port` (never the URL, which may hold credentials), when
    /// `mail.smtp_url` is set.
    pub smtp_addr: Option<String>,
}
