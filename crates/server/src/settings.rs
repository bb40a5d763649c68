//! Typed configuration: the compiled-in `config/default.toml`, then
//! `config/{APP_ENV}.toml`, then `APP__SECTION__KEY` environment variables and
//! `DATABASE_URL`. Unknown keys are refused so a misspelt setting cannot go unnoticed.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use gatehouse_security::EncryptionKey;
use gatehouse_store_diesel::{BreakerSettings, PoolOptions};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use crate::secret_policy;

/// One provider's `[oauth.providers.<name>]` and its parts, defined by the providers' adapter.
pub use gatehouse_oauth_providers::{ClaimNames, ProviderSettings, TokenAuthMethod};

const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// The minimum length of an HS256 secret, in bytes.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Which deployment this is; picks `config/{APP_ENV}.toml` and tightens rules in
/// production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    /// A developer's machine.
    Development,
    /// The test suite.
    Test,
    /// A real deployment.
    Production,
}

impl AppEnv {
    fn as_str(self) -> &'static str {
        match self {
            AppEnv::Development => "development",
            AppEnv::Test => "test",
            AppEnv::Production => "production",
        }
    }
}

impl FromStr for AppEnv {
    type Err = SettingsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "development" => Ok(AppEnv::Development),
            "test" => Ok(AppEnv::Test),
            "production" => Ok(AppEnv::Production),
            other => Err(SettingsError(format!("APP_ENV: {other:?} is not one of development, test, production"))),
        }
    }
}

impl fmt::Display for AppEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration problem, as one line naming the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct SettingsError(String);

/// All settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Set from `APP_ENV`, not from files.
    #[serde(skip, default = "default_env")]
    pub env: AppEnv,
    /// Storage.
    pub database: DatabaseSettings,
    /// The HTTP listener.
    pub server: ServerSettings,
    /// Public URLs.
    pub public: PublicSettings,
    /// Cross-origin requests.
    pub cors: CorsSettings,
    /// Passwords, tokens, sign-in policy.
    pub auth: AuthSettings,
    /// Keys for data encrypted at rest.
    pub secrets: SecretsSettings,
    /// Outgoing email.
    pub mail: MailSettings,
    /// Shared cache and rate limits.
    pub redis: RedisSettings,
    /// Rate limiting.
    pub rate_limit: RateLimitSettings,
    /// Sign-in with Google and GitHub.
    pub oauth: OAuthSettings,
    /// Files.
    pub storage: StorageSettings,
    /// The first admin.
    pub bootstrap: BootstrapSettings,
    /// Logging.
    pub log: LogSettings,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// The read cache of users and sessions.
    #[serde(default)]
    pub cache: CacheSettings,
    /// Webhook delivery.
    #[serde(default)]
    pub webhooks: WebhooksSettings,
}

/// `[webhooks]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksSettings {
    /// Whether `serve` runs the delivery relay (off where `gatehouse worker` processes do).
    pub relay_enabled: bool,
    /// How often an idle relay looks for due deliveries.
    pub relay_poll_ms: u32,
    /// Deliveries claimed at once.
    pub relay_batch_size: u32,
    /// A claimed delivery is reserved this long; must exceed `request_timeout_secs`.
    pub relay_lease_secs: u32,
    /// Deliveries in flight per endpoint, across every instance.
    pub per_endpoint_concurrency: u32,
    /// Retries stop this long after a delivery was created; it is then `failed`. Fractions
    /// allowed.
    pub max_retry_hours: f64,
    /// An endpoint whose deliveries have only failed for this long is disabled and the admins
    /// are emailed. Fractions allowed.
    pub disable_after_hours: f64,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff_base_ms: u32,
    /// Longest delay between attempts.
    pub backoff_max_secs: u32,
    /// Time to connect to a receiver.
    pub connect_timeout_secs: u32,
    /// Time for a whole attempt (2xx within it delivers).
    pub request_timeout_secs: u32,
    /// Response body bytes read at most.
    pub max_response_bytes: u32,
    /// Allow loopback, private and link-local targets (tests, development). Never in production.
    pub allow_private_targets: bool,
}

impl Default for WebhooksSettings {
    fn default() -> Self {
        Self {
            relay_enabled: true,
            relay_poll_ms: 500,
            relay_batch_size: 20,
            relay_lease_secs: 60,
            per_endpoint_concurrency: 4,
            max_retry_hours: 24.0,
            disable_after_hours: 120.0,
            backoff_base_ms: 5000,
            backoff_max_secs: 3600,
            connect_timeout_secs: 5,
            request_timeout_secs: 15,
            max_response_bytes: 65536,
            allow_private_targets: false,
        }
    }
}

impl WebhooksSettings {
    /// Hours as a duration (fractions allowed; negative or not finite is zero).
    #[must_use]
    pub fn hours(hours: f64) -> chrono::Duration {
        let ms = if hours.is_finite() && hours > 0.0 { (hours * 3_600_000.0).min(1e15) } else { 0.0 };
        #[allow(clippy::cast_possible_truncation)]
        chrono::Duration::milliseconds(ms as i64)
    }
}

/// `[cache]`: users and live sessions kept in each instance so authenticated reads need no
/// database round trip; every change is pushed to every instance (PostgreSQL `LISTEN`/`NOTIFY`,
/// Redis pub/sub, or this process on SQLite).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// The most users kept, and separately the most sessions; 0 turns the cache off.
    pub capacity: usize,
    /// How long an entry is trusted without a change notification, in seconds: only a safety
    /// net for a change that escaped the feed (0 turns the cache off).
    pub ttl_secs: u32,
    /// How long a change waits for every other instance to confirm it, in milliseconds,
    /// before its request answers anyway (and the change is logged as unconfirmed).
    pub ack_timeout_ms: u32,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { capacity: 100_000, ttl_secs: 300, ack_timeout_ms: 1_000 }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// `host:port` of a listener serving only `/metrics` (the main listener then answers it
    /// with 404); `None`: `/metrics` is on the main listener.
    pub listen: Option<String>,
}

/// What `gatehouse config check` shows instead of a secret.
const REDACTED: &str = "[redacted]";

fn redacted_optional<S: Serializer>(secret: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str(REDACTED),
        None => serializer.serialize_none(),
    }
}

fn redacted_list<S: Serializer>(secrets: &[SecretString], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(secrets.iter().map(|_| REDACTED))
}

fn redacted_url<S: Serializer>(url: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_url(url.expose_secret()))
}

fn redacted_optional_url<S: Serializer>(url: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => serializer.serialize_str(&redact_url(url.expose_secret())),
        None => serializer.serialize_none(),
    }
}

/// The URL with its credentials (`user:password@`) and query (which may carry a password)
/// replaced, so the scheme, host and path stay visible to the operator.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return REDACTED.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, _)) => (rest, format!("?{REDACTED}")),
        None => (rest, String::new()),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{REDACTED}@{host}"),
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{path}{query}")
}

fn default_env() -> AppEnv {
    AppEnv::Development
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://path`. Contains credentials, hence secret.
    #[serde(serialize_with = "redacted_url")]
    pub url: SecretString,
    /// Connections per pool; 0 means cores × 4.
    pub pool_size: u32,
    /// Optional replica for list/search/audit reads.
    #[serde(serialize_with = "redacted_optional_url")]
    pub read_replica_url: Option<SecretString>,
    /// How long a request waits for a pooled connection before its 503.
    pub checkout_timeout_ms: u32,
    /// libpq `connect_timeout` for new PostgreSQL connections (libpq takes at least 2).
    pub connect_timeout_secs: u32,
    /// PostgreSQL `statement_timeout`; on SQLite, how long a writer queues for the lock.
    pub statement_timeout_ms: u32,
    /// Consecutive database failures that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open circuit fails calls at once before it probes the database again.
    pub breaker_open_ms: u32,
}

impl DatabaseSettings {
    /// The pool size with 0 resolved to cores × 4.
    #[must_use]
    pub fn effective_pool_size(&self) -> u32 {
        if self.pool_size > 0 { self.pool_size } else { u32::try_from(cores() * 4).unwrap_or(8) }
    }

    /// The pool's time bounds and circuit breaker.
    #[must_use]
    pub fn pool_options(&self) -> PoolOptions {
        PoolOptions {
            checkout_timeout: Duration::from_millis(u64::from(self.checkout_timeout_ms)),
            connect_timeout_secs: self.connect_timeout_secs,
            statement_timeout: Duration::from_millis(u64::from(self.statement_timeout_ms)),
            breaker: BreakerSettings {
                threshold: self.breaker_threshold,
                open_for: Duration::from_millis(u64::from(self.breaker_open_ms)),
            },
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Listen address.
    pub host: String,
    /// Listen port; 0 picks a free one (tests).
    pub port: u16,
    /// actix workers; 0 means one per core.
    pub workers: usize,
    /// PEM certificate chain.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// CIDRs whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Largest JSON body accepted, in bytes.
    pub json_limit_bytes: usize,
    /// What to do with a request a trusted proxy says it received over plain HTTP.
    pub plain_http: PlainHttp,
}

/// `server.plain_http`: the answer to a request that a trusted proxy received over plain HTTP
/// (`X-Forwarded-Proto: http`, or `proto=http` in `Forwarded`). Requests from other peers are
/// never affected: their forwarding headers are not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlainHttp {
    /// Serve it.
    Allow,
    /// 308 to the same path and query under `public.base_url` (which must be `https://`).
    Redirect,
    /// 403 `forbidden`: credentials sent in clear text are better refused than redirected.
    Refuse,
}

impl ServerSettings {
    /// The worker count with 0 resolved to the number of cores.
    #[must_use]
    pub fn effective_workers(&self) -> usize {
        if self.workers > 0 { self.workers } else { cores() }
    }
}

/// `[public]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublicSettings {
    /// Where the API is reachable from outside.
    pub base_url: String,
    /// Where the web front end lives.
    pub frontend_url: String,
}

/// `[cors]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins allowed to call the API from a browser.
    pub allowed_origins: Vec<String>,
}

impl Settings {
    /// The CORS origins in effect: `cors.allowed_origins`, or in development when it is empty,
    /// `public.frontend_url`.
    #[must_use]
    pub fn cors_origins(&self) -> Vec<String> {
        if self.cors.allowed_origins.is_empty() && self.env == AppEnv::Development {
            return vec![self.public.frontend_url.trim_end_matches('/').to_owned()];
        }
        self.cors.allowed_origins.clone()
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// `HS256` (default), `EdDSA` or `RS256`.
    pub jwt_algorithm: String,
    /// HS256 secret; required in production when the algorithm is HS256.
    #[serde(serialize_with = "redacted_optional")]
    pub jwt_secret: Option<SecretString>,
    /// PEM private key signing access tokens (EdDSA, RS256).
    pub jwt_private_key_file: Option<PathBuf>,
    /// `kid` of the signing key (EdDSA, RS256).
    pub jwt_key_id: Option<String>,
    /// Retired public keys still accepted during a rotation, as `kid=path/to/public.pem`.
    pub jwt_retired_keys: Vec<String>,
    /// `iss` of access tokens.
    pub issuer: String,
    /// `aud` of access tokens, required on verification; `None`: the issuer.
    pub jwt_audience: Option<String>,
    /// Access-token lifetime.
    pub access_ttl_secs: u32,
    /// Session lifetime.
    pub refresh_ttl_secs: u32,
    /// Grace window for a spent refresh token.
    pub refresh_reuse_grace_secs: u32,
    /// Lifetime of email-verification links.
    pub verification_ttl_secs: u32,
    /// Lifetime of password-reset links.
    pub password_reset_ttl_secs: u32,
    /// Whether unverified accounts are refused at login.
    pub require_verified_email: bool,
    /// argon2id memory in KiB.
    pub argon2_memory_kib: u32,
    /// argon2id iterations.
    pub argon2_iterations: u32,
    /// argon2id lanes.
    pub argon2_parallelism: u32,
    /// Hashing threads; 0 means one per core.
    pub hash_workers: usize,
    /// Hashing requests that may wait before login/register answer 503.
    pub hash_queue_capacity: usize,
    /// Hashing threads run below request threads (Linux `SCHED_IDLE`), so a sign-in flood
    /// cannot slow cheap requests.
    pub hash_background: bool,
    /// Consecutive failed sign-ins that lock an account.
    pub lockout_threshold: u32,
    /// How long a lockout lasts, in seconds.
    pub lockout_secs: u32,
}

impl AuthSettings {
    /// The `aud` of access tokens: `jwt_audience`, or the issuer when it is unset.
    #[must_use]
    pub fn effective_audience(&self) -> &str {
        self.jwt_audience.as_deref().unwrap_or(&self.issuer)
    }

    /// The hashing thread count with 0 resolved to the number of cores: every core hashes,
    /// and background scheduling (`hash_background`) keeps cheap requests ahead of them.
    #[must_use]
    pub fn effective_hash_workers(&self) -> usize {
        if self.hash_workers > 0 { self.hash_workers } else { cores() }
    }
}

/// `[secrets]`: the keys of data encrypted at rest (the one-time tokens of queued emails; TOTP
/// secrets later). Each is 32 random bytes in base64 (`openssl rand -base64 32`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    /// The key new values are sealed with; derived from `auth.jwt_secret` (HKDF, its own label)
    /// when unset. Required in production when there is no `auth.jwt_secret`.
    #[serde(serialize_with = "redacted_optional")]
    pub encryption_key: Option<SecretString>,
    /// Former keys, still used to open what they sealed until it is gone (see "Encryption at
    /// rest" in the README).
    #[serde(serialize_with = "redacted_list")]
    pub retired_keys: Vec<SecretString>,
}

/// `[mail]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MailSettings {
    /// SMTP server URL, possibly with credentials.
    #[serde(serialize_with = "redacted_optional_url")]
    pub smtp_url: Option<SecretString>,
    /// Sender address.
    pub from: String,
    /// Where mail goes without SMTP.
    pub outbox_dir: PathBuf,
    /// The product name in subjects and bodies.
    pub product_name: String,
    /// Bound on connecting and on each SMTP command, in seconds.
    pub timeout_secs: u32,
    /// Whether `serve` runs the outbox relay too (turn it off when `gatehouse worker`
    /// processes run the relay instead).
    pub relay_enabled: bool,
    /// How often an idle relay looks for due mail, in milliseconds.
    pub relay_poll_ms: u32,
    /// Messages a relay claims at once.
    pub relay_batch_size: u32,
    /// How long a claimed message is reserved for its relay, in seconds; must exceed
    /// `relay_batch_size × timeout_secs`.
    pub relay_lease_secs: u32,
    /// Delivery attempts before a message is marked failed.
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; doubled for each further one.
    pub backoff_base_ms: u32,
    /// The longest delay between attempts, in seconds.
    pub backoff_max_secs: u32,
}

/// `[redis]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Redis URL, possibly with credentials.
    #[serde(serialize_with = "redacted_optional_url")]
    pub url: Option<SecretString>,
    /// Prefix of every key, so several deployments (or test runs) can share one Redis.
    pub key_prefix: String,
}

/// `[rate_limit]`: one rule per row of API.md's table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Master switch.
    pub enabled: bool,
    /// `POST /auth/login` and `/auth/token`, per IP and separately per email.
    pub login: RateRule,
    /// `POST /auth/register`, per IP.
    pub register: RateRule,
    /// `POST /auth/password/forgot` and `/auth/verify-email/resend`, per IP and per email.
    pub recovery: RateRule,
    /// `POST /auth/refresh`, per session (the session the presented token belongs to).
    pub refresh: RateRule,
    /// Everything else, per user when authenticated, per IP otherwise.
    pub general: RateRule,
}

/// At most `limit` requests per `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateRule {
    /// Requests allowed per window.
    pub limit: u32,
    /// The window, in seconds.
    pub window_secs: u32,
}

impl RateRule {
    /// The window as a duration.
    #[must_use]
    pub fn window(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.window_secs))
    }
}

/// `[oauth]`.
///
/// Every `[oauth.<name>]` table other than `providers` is the old spelling of
/// `[oauth.providers.<name>]` (`[oauth.google]`, `[oauth.github]`); a misspelt key inside a
/// provider is still refused by name. (Read by hand rather than with `#[serde(flatten)]`, which
/// would lose the configuration's reading of `12345` as the string a client id is.)
#[derive(Debug, Clone, Serialize)]
pub struct OAuthSettings {
    /// Where the callback redirects with a one-time code.
    pub success_redirect: Option<String>,
    /// `[oauth.providers.<name>]`: the sign-in providers, by name; none configured means none.
    pub providers: BTreeMap<String, ProviderSettings>,
    /// `[oauth.<name>]`: providers configured with the old spelling.
    #[serde(flatten)]
    pub legacy: BTreeMap<String, ProviderSettings>,
}

impl<'de> Deserialize<'de> for OAuthSettings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = OAuthSettings;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the [oauth] table")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<OAuthSettings, A::Error> {
                let mut settings =
                    OAuthSettings { success_redirect: None, providers: BTreeMap::new(), legacy: BTreeMap::new() };
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "success_redirect" => settings.success_redirect = map.next_value()?,
                        "providers" => settings.providers = map.next_value()?,
                        _ => {
                            let provider = map.next_value()?;
                            settings.legacy.insert(key, provider);
                        }
                    }
                }
                Ok(settings)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

impl OAuthSettings {
    /// Every configured provider by name, whichever spelling configured it.
    pub fn all(&self) -> impl Iterator<Item = (&String, &ProviderSettings)> {
        self.providers.iter().chain(self.legacy.iter())
    }
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// Where avatars are kept.
    pub avatar_dir: PathBuf,
    /// Avatar files written more recently than this many seconds are never removed (a
    /// request may be about to reference them); older unreferenced ones are removed when
    /// replaced or by the sweep. Must exceed the longest upload request.
    pub avatar_sweep_grace_secs: u32,
    /// How often `serve` and `worker` sweep unreferenced avatar files, in seconds (the first
    /// sweep runs at start-up); 0 turns the periodic sweep off in this process.
    pub avatar_sweep_interval_secs: u32,
}

/// `[bootstrap]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapSettings {
    /// Email of the first admin.
    pub admin_email: Option<String>,
    /// Password of the first admin.
    #[serde(serialize_with = "redacted_optional")]
    pub admin_password: Option<SecretString>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-friendly, coloured.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// `RUST_LOG`-style filter.
    pub level: String,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

impl Settings {
    /// Loads the settings of this process: `APP_ENV`, the config folder
    /// (`GATEHOUSE_CONFIG_DIR`, default `./config`), and the environment.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the offending key.
    pub fn load() -> Result<Self, SettingsError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        let env = vars.get("APP_ENV").map_or(Ok(AppEnv::Development), |v| v.parse())?;
        let dir = vars.get("GATEHOUSE_CONFIG_DIR").map_or_else(|| PathBuf::from("config"), PathBuf::from);
        Self::load_from(env, &dir, &vars)
    }

    /// Loads the settings for `env` from `config_dir` and the given environment variables.
    /// A missing `config/{env}.toml` is fine: the compiled-in defaults stand.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the offending key.
    pub fn load_from(env: AppEnv, config_dir: &Path, vars: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let app_vars: HashMap<String, String> =
            vars.iter().filter(|(k, _)| k.starts_with("APP__")).map(|(k, v)| (k.clone(), v.clone())).collect();
        let env_file = config_dir.join(format!("{env}.toml"));
        let mut environment = Environment::with_prefix("APP")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("cors.allowed_origins")
            .with_list_parse_key("server.trusted_proxies")
            .with_list_parse_key("auth.jwt_retired_keys")
            .with_list_parse_key("secrets.retired_keys");
        for key in provider_list_keys(app_vars.keys()) {
            environment = environment.with_list_parse_key(&key);
        }
        let config = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .add_source(File::from(env_file).required(false))
            .add_source(environment.source(Some(app_vars.into_iter().collect())))
            .set_override_option("database.url", vars.get("DATABASE_URL").cloned())
            .map_err(|e| SettingsError(e.to_string()))?
            .build()
            .map_err(|e| SettingsError(e.to_string()))?;
        let mut settings: Settings = config.try_deserialize().map_err(|e| SettingsError(e.to_string()))?;
        settings.env = env;
        settings.validate()?;
        Ok(settings)
    }

    /// The effective settings as pretty JSON with every secret redacted (passwords in URLs
    /// too), for `gatehouse config check`.
    ///
    /// # Errors
    ///
    /// When serialisation fails (it does not for these types).
    pub fn redacted_json(&self) -> Result<String, SettingsError> {
        serde_json::to_string_pretty(self).map_err(|e| SettingsError(format!("printing the configuration: {e}")))
    }

    /// Checks rules that span keys or depend on the environment.
    ///
    /// # Errors
    ///
    /// A [`SettingsError`] naming the offending key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let symmetric = self.auth.jwt_algorithm == "HS256";
        if !["HS256", "EdDSA", "RS256"].contains(&self.auth.jwt_algorithm.as_str()) {
            return Err(SettingsError(format!(
                "auth.jwt_algorithm must be HS256, EdDSA or RS256, not {:?}",
                self.auth.jwt_algorithm
            )));
        }
        if !symmetric && (self.auth.jwt_private_key_file.is_none() || self.auth.jwt_key_id.is_none()) {
            return Err(SettingsError(format!(
                "auth.jwt_private_key_file and auth.jwt_key_id are required with auth.jwt_algorithm = {:?}",
                self.auth.jwt_algorithm
            )));
        }
        if let Some(entry) = self.auth.jwt_retired_keys.iter().find(|entry| !entry.contains('=')) {
            return Err(SettingsError(format!("auth.jwt_retired_keys: {entry:?} is not of the form kid=path")));
        }
        match &self.auth.jwt_secret {
            None if symmetric && self.env == AppEnv::Production => {
                return Err(SettingsError(
                    "auth.jwt_secret is required in production (set APP__AUTH__JWT_SECRET to at least 32 random bytes)"
                        .to_owned(),
                ));
            }
            Some(secret) if secret.expose_secret().len() < MIN_JWT_SECRET_BYTES => {
                return Err(SettingsError(format!("auth.jwt_secret must be at least {MIN_JWT_SECRET_BYTES} bytes")));
            }
            Some(secret) if self.env == AppEnv::Production => {
                let secret = secret.expose_secret();
                secret_policy::check(secret, secret.as_bytes()).map_err(|refusal| {
                    SettingsError(format!(
                        "auth.jwt_secret {}; set APP__AUTH__JWT_SECRET to a generated value: openssl rand -base64 48",
                        refusal.describe()
                    ))
                })?;
            }
            _ => {}
        }
        self.validate_secrets()?;
        let db = &self.database;
        if db.checkout_timeout_ms == 0
            || db.statement_timeout_ms == 0
            || db.breaker_threshold == 0
            || db.breaker_open_ms == 0
        {
            return Err(SettingsError(
                "database.checkout_timeout_ms, database.statement_timeout_ms, database.breaker_threshold and \
                 database.breaker_open_ms must be positive"
                    .to_owned(),
            ));
        }
        let url = self.database.url.expose_secret();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite://")) {
            return Err(SettingsError(
                "database.url must start with postgres://, postgresql:// or sqlite://".to_owned(),
            ));
        }
        check_http_url("public.base_url", &self.public.base_url)?;
        check_http_url("public.frontend_url", &self.public.frontend_url)?;
        for (key, url) in [
            ("database.read_replica_url", &self.database.read_replica_url),
            ("mail.smtp_url", &self.mail.smtp_url),
            ("redis.url", &self.redis.url),
        ] {
            if let Some(url) = url {
                check_secret_url(key, url.expose_secret())?;
            }
        }
        if self.env == AppEnv::Production && self.webhooks.allow_private_targets {
            return Err(SettingsError(
                "webhooks.allow_private_targets must be false in production (it lets webhooks reach internal services)"
                    .to_owned(),
            ));
        }
        if self.webhooks.relay_batch_size == 0 || self.webhooks.per_endpoint_concurrency == 0 {
            return Err(SettingsError(
                "webhooks.relay_batch_size and webhooks.per_endpoint_concurrency must be positive".to_owned(),
            ));
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(SettingsError("server.tls_cert and server.tls_key must be set together".to_owned()));
        }
        if let Some(origin) =
            self.cors.allowed_origins.iter().find(|o| o.contains('*') || o.trim_end_matches('/') != o.as_str())
        {
            return Err(SettingsError(format!(
                "cors.allowed_origins: {origin:?} must be an exact origin like https://app.example.com (no wildcard: \
                 credentials are allowed, no trailing slash)"
            )));
        }
        if self.auth.access_ttl_secs == 0 || self.auth.refresh_ttl_secs == 0 {
            return Err(SettingsError("auth.access_ttl_secs and auth.refresh_ttl_secs must be positive".to_owned()));
        }
        if self.auth.verification_ttl_secs == 0 || self.auth.password_reset_ttl_secs == 0 {
            return Err(SettingsError(
                "auth.verification_ttl_secs and auth.password_reset_ttl_secs must be positive".to_owned(),
            ));
        }
        let mail = &self.mail;
        if mail.relay_batch_size == 0 || mail.max_attempts == 0 || mail.relay_poll_ms == 0 || mail.timeout_secs == 0 {
            return Err(SettingsError(
                "mail.relay_batch_size, mail.max_attempts, mail.relay_poll_ms and mail.timeout_secs must be positive"
                    .to_owned(),
            ));
        }
        if u64::from(mail.relay_lease_secs) <= u64::from(mail.relay_batch_size) * u64::from(mail.timeout_secs) {
            return Err(SettingsError(format!(
                "mail.relay_lease_secs ({}) must exceed mail.relay_batch_size × mail.timeout_secs ({} s), or a slow \
                 batch could be sent twice",
                mail.relay_lease_secs,
                u64::from(mail.relay_batch_size) * u64::from(mail.timeout_secs)
            )));
        }
        let limits = &self.rate_limit;
        if [limits.login, limits.register, limits.recovery, limits.refresh, limits.general]
            .iter()
            .any(|rule| rule.limit == 0 || rule.window_secs == 0)
        {
            return Err(SettingsError("rate_limit.*: every limit and window_secs must be positive".to_owned()));
        }
        if let Some(bad) =
            self.server.trusted_proxies.iter().find(|cidr| cidr.parse::<crate::http::client_ip::Cidr>().is_err())
        {
            return Err(SettingsError(format!("server.trusted_proxies: {bad:?} is not an IP address or CIDR")));
        }
        if self.auth.lockout_threshold == 0 || self.auth.lockout_secs == 0 {
            return Err(SettingsError("auth.lockout_threshold and auth.lockout_secs must be positive".to_owned()));
        }
        if self.server.plain_http == PlainHttp::Redirect && !self.public.base_url.starts_with("https://") {
            return Err(SettingsError(
                "server.plain_http = \"redirect\" needs public.base_url to be an https:// URL".to_owned(),
            ));
        }
        if self.auth.hash_queue_capacity == 0 {
            return Err(SettingsError("auth.hash_queue_capacity must be at least 1".to_owned()));
        }
        if self.auth.jwt_audience.as_deref().is_some_and(|audience| audience.trim().is_empty()) {
            return Err(SettingsError(
                "auth.jwt_audience must not be empty (leave it unset for the issuer)".to_owned(),
            ));
        }
        if let Some(listen) = &self.metrics.listen {
            let port = listen.rsplit_once(':').and_then(|(host, port)| (!host.is_empty()).then_some(port));
            if port.and_then(|port| port.parse::<u16>().ok()).is_none() {
                return Err(SettingsError(format!(
                    "metrics.listen must be host:port like 127.0.0.1:9090, not {listen:?}"
                )));
            }
        }
        self.validate_oauth()?;
        if self.env == AppEnv::Production && self.mail.smtp_url.is_none() {
            return Err(SettingsError(
                "mail.smtp_url is required in production: without it emails, and the tokens in their links, are \
                 written to files and the log (set APP__MAIL__SMTP_URL, e.g. smtp://user:pass@mail.example.com:587?tls=starttls)"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// `oauth.*`: every provider is valid, named once, and its URLs are URLs.
    fn validate_oauth(&self) -> Result<(), SettingsError> {
        if let Some(name) = self.oauth.legacy.keys().find(|name| self.oauth.providers.contains_key(*name)) {
            return Err(SettingsError(format!(
                "oauth.{name} and oauth.providers.{name} configure the same provider; keep oauth.providers.{name}"
            )));
        }
        for (name, provider) in self.oauth.all() {
            let key = if self.oauth.providers.contains_key(name) {
                format!("oauth.providers.{name}")
            } else {
                format!("oauth.{name}")
            };
            gatehouse_oauth_providers::validate(name, provider)
                .map_err(|why| SettingsError(format!("{key}: {why}")))?;
            for (field, url) in [
                ("issuer", &provider.issuer),
                ("auth_url", &provider.auth_url),
                ("token_url", &provider.token_url),
                ("userinfo_url", &provider.userinfo_url),
                ("jwks_url", &provider.jwks_url),
                ("api_url", &provider.api_url),
            ] {
                if let Some(url) = url {
                    check_http_url(&format!("{key}.{field}"), url)?;
                }
            }
        }
        Ok(())
    }

    /// `secrets.*`: every key parses; production needs a key (explicit or derived from
    /// `auth.jwt_secret`) and refuses a published or predictable current key. Retired keys are
    /// not held to the strength rule: retiring a weak key is how one gets rid of it.
    fn validate_secrets(&self) -> Result<(), SettingsError> {
        let generate = "generate one with: openssl rand -base64 32";
        if let Some(key) = &self.secrets.encryption_key {
            let bytes = EncryptionKey::decode_base64(key.expose_secret())
                .map_err(|e| SettingsError(format!("secrets.encryption_key {e}")))?;
            if self.env == AppEnv::Production {
                secret_policy::check(key.expose_secret(), &bytes).map_err(|refusal| {
                    SettingsError(format!(
                        "secrets.encryption_key {}; set APP__SECRETS__ENCRYPTION_KEY to a new key ({generate})",
                        refusal.describe()
                    ))
                })?;
            }
        } else if self.env == AppEnv::Production && self.auth.jwt_secret.is_none() {
            return Err(SettingsError(format!(
                "secrets.encryption_key is required in production when auth.jwt_secret is not set (set \
                 APP__SECRETS__ENCRYPTION_KEY; {generate})"
            )));
        }
        for (index, key) in self.secrets.retired_keys.iter().enumerate() {
            EncryptionKey::decode_base64(key.expose_secret())
                .map_err(|e| SettingsError(format!("secrets.retired_keys[{index}] {e}")))?;
        }
        Ok(())
    }
}

/// The list keys of providers named in the environment
/// (`APP__OAUTH__PROVIDERS__<NAME>__SCOPES`, `…__ALLOWED_DOMAINS`, `…__ALLOWED_TENANTS`, and
/// the same under the old `APP__OAUTH__<NAME>__…`), which take comma-separated values like every
/// list key. Provider names are not known in advance, so they are read off the variables.
fn provider_list_keys<'a>(vars: impl Iterator<Item = &'a String>) -> Vec<String> {
    const LISTS: [&str; 3] = ["scopes", "allowed_domains", "allowed_tenants"];
    vars.filter_map(|var| {
        let path = var.strip_prefix("APP__")?.to_ascii_lowercase();
        let parts: Vec<&str> = path.split("__").collect();
        let listed = match parts.as_slice() {
            ["oauth", "providers", _, field] | ["oauth", _, field] => LISTS.contains(field),
            _ => false,
        };
        listed.then(|| parts.join("."))
    })
    .collect()
}

/// `key` must be an absolute `http://` or `https://` URL with a host.
fn check_http_url(key: &str, url: &str) -> Result<(), SettingsError> {
    let host = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let host = host.map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    match host {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(()),
        _ => Err(SettingsError(format!("{key} must be an absolute http:// or https:// URL, not {url:?}"))),
    }
}

/// `key` must look like `scheme://host…`; the value is never echoed (it may hold a password).
fn check_secret_url(key: &str, url: &str) -> Result<(), SettingsError> {
    match url.split_once("://") {
        Some((scheme, rest))
            if !scheme.is_empty()
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
                && !url.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(SettingsError(format!("{key} must be a URL of the form scheme://host (value not shown)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: AppEnv, vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Settings::load_from(env, Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config")), &vars)
    }

    #[test]
    fn the_defaults_match_the_documented_ones() {
        let settings = load(AppEnv::Development, &[]).expect("loads");
        assert_eq!(settings.database.url.expose_secret(), "sqlite://data/gatehouse.db");
        assert_eq!(settings.server.port, 8080);
        assert_eq!(settings.auth.access_ttl_secs, 900);
        assert_eq!(settings.auth.refresh_ttl_secs, 2_592_000);
        assert_eq!(settings.auth.argon2_memory_kib, 19_456);
        assert!(settings.auth.require_verified_email, "development verifies too: links are logged");
        assert_eq!(settings.auth.verification_ttl_secs, 86_400);
        assert_eq!(settings.auth.password_reset_ttl_secs, 3_600);
        assert!(settings.mail.smtp_url.is_none(), "mail goes to files by default");
        assert!(settings.mail.relay_enabled);
        assert_eq!(settings.auth.jwt_audience, None);
        assert_eq!(settings.auth.effective_audience(), "gatehouse", "the audience defaults to the issuer");
        assert_eq!(settings.metrics.listen, None, "/metrics is on the main listener by default");
    }

    #[test]
    fn the_jwt_audience_and_the_metrics_listener_are_read_and_checked() {
        let settings = load(
            AppEnv::Development,
            &[("APP__AUTH__JWT_AUDIENCE", "https://api.example.com"), ("APP__METRICS__LISTEN", "127.0.0.1:9090")],
        )
        .expect("loads");
        assert_eq!(settings.auth.effective_audience(), "https://api.example.com");
        assert_eq!(settings.metrics.listen.as_deref(), Some("127.0.0.1:9090"));

        let error = load(AppEnv::Development, &[("APP__AUTH__JWT_AUDIENCE", " ")]).expect_err("refused").to_string();
        assert!(error.contains("auth.jwt_audience"), "{error}");
        for bad in ["9090", "127.0.0.1", ":9090", "127.0.0.1:http"] {
            let error = load(AppEnv::Development, &[("APP__METRICS__LISTEN", bad)]).expect_err("refused").to_string();
            assert!(error.contains("metrics.listen"), "{bad}: {error}");
        }
    }

    #[test]
    fn environment_variables_override_files() {
        let settings = load(
            AppEnv::Development,
            &[
                ("APP__SERVER__PORT", "9000"),
                ("APP__CORS__ALLOWED_ORIGINS", "https://a.example,https://b.example"),
                ("DATABASE_URL", "postgres://db/gatehouse"),
            ],
        )
        .expect("loads");
        assert_eq!(settings.server.port, 9000);
        assert_eq!(settings.cors.allowed_origins, vec!["https://a.example", "https://b.example"]);
        assert_eq!(settings.database.url.expose_secret(), "postgres://db/gatehouse");
    }

    #[test]
    fn production_refuses_to_start_without_a_jwt_secret() {
        let error = load(AppEnv::Production, &[]).expect_err("refused").to_string();
        assert!(error.contains("auth.jwt_secret"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }

    #[test]
    fn production_with_an_asymmetric_key_needs_no_secret_but_a_key() {
        let error =
            load(AppEnv::Production, &[("APP__AUTH__JWT_ALGORITHM", "EdDSA")]).expect_err("refused").to_string();
        assert!(error.contains("auth.jwt_private_key_file"), "{error}");
        let key = generated_key();
        let settings = load(
            AppEnv::Production,
            &[
                ("APP__AUTH__JWT_ALGORITHM", "EdDSA"),
                ("APP__AUTH__JWT_PRIVATE_KEY_FILE", "/etc/gatehouse/jwt.pem"),
                ("APP__AUTH__JWT_KEY_ID", "2026-11"),
                ("APP__AUTH__JWT_RETIRED_KEYS", "2026-05=/etc/gatehouse/old.pub.pem"),
                ("APP__SECRETS__ENCRYPTION_KEY", &key),
                SMTP,
            ],
        );
        assert!(settings.is_ok(), "{settings:?}");
    }

    /// A mail server, which production requires.
    const SMTP: (&str, &str) = ("APP__MAIL__SMTP_URL", "smtp://mail.internal:25");

    /// A fresh random HS256 secret (no fixed secret in the repository: production would refuse
    /// it as published).
    fn generated_secret() -> String {
        use gatehouse_domain::ports::OpaqueTokens as _;
        gatehouse_security::RandomTokens.generate().secret.expose_secret().to_owned()
    }

    /// A fresh random encryption key, in standard base64.
    fn generated_key() -> String {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(generated_secret()).expect("32 bytes");
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn production_error(vars: &[(&str, &str)]) -> String {
        let error = load(AppEnv::Production, vars).expect_err("refused").to_string();
        assert_eq!(error.lines().count(), 1, "one line: {error}");
        error
    }

    #[test]
    fn production_refuses_to_start_without_smtp() {
        let secret = generated_secret();

        let error = production_error(&[("APP__AUTH__JWT_SECRET", &secret)]);

        assert!(error.contains("mail.smtp_url is required in production"), "{error}");
        assert!(load(AppEnv::Production, &[("APP__AUTH__JWT_SECRET", &secret), SMTP]).is_ok(), "with SMTP it starts");
        assert!(load(AppEnv::Development, &[]).is_ok(), "development still writes mail to files");
    }

    #[test]
    fn production_without_a_jwt_secret_needs_an_encryption_key() {
        let error = production_error(&[
            ("APP__AUTH__JWT_ALGORITHM", "EdDSA"),
            ("APP__AUTH__JWT_PRIVATE_KEY_FILE", "/etc/gatehouse/jwt.pem"),
            ("APP__AUTH__JWT_KEY_ID", "2026-11"),
            SMTP,
        ]);
        assert!(error.contains("secrets.encryption_key is required in production"), "{error}");
        assert!(error.contains("openssl rand -base64 32"), "{error}");
    }

    #[test]
    fn production_refuses_the_sample_jwt_secret_of_the_compose_file() {
        let sample = "local-only-secret-change-me-0123456789abcdef";

        let error = production_error(&[("APP__AUTH__JWT_SECRET", sample), SMTP]);

        assert!(error.contains("auth.jwt_secret is a sample value"), "{error}");
        assert!(error.contains("openssl rand -base64 48"), "says what to do: {error}");
        assert!(!error.contains(sample), "the value is not echoed: {error}");
        assert!(load(AppEnv::Development, &[("APP__AUTH__JWT_SECRET", sample)]).is_ok(), "only production refuses");
    }

    #[test]
    fn production_refuses_predictable_jwt_secrets() {
        for secret in ["a".repeat(48), "0123456789abcdef".repeat(3), "password".repeat(5), "hunter2!".repeat(6)] {
            let error = production_error(&[("APP__AUTH__JWT_SECRET", &secret), SMTP]);
            assert!(error.contains("auth.jwt_secret is too predictable"), "{secret}: {error}");
            assert!(!error.contains(&secret), "{error}");
        }
    }

    #[test]
    fn production_refuses_a_sample_or_predictable_encryption_key_but_not_a_retired_one() {
        let secret = generated_secret();
        let jwt = ("APP__AUTH__JWT_SECRET", secret.as_str());
        let zeros = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let sample = crate::secret_policy::SHIPPED_SECRETS
            .iter()
            .find(|value| gatehouse_security::EncryptionKey::from_base64(value).is_ok())
            .expect("a shipped key");

        let weak = production_error(&[jwt, SMTP, ("APP__SECRETS__ENCRYPTION_KEY", zeros)]);
        let published = production_error(&[jwt, SMTP, ("APP__SECRETS__ENCRYPTION_KEY", sample)]);
        let key = generated_key();
        let rotating_away = load(
            AppEnv::Production,
            &[jwt, SMTP, ("APP__SECRETS__ENCRYPTION_KEY", &key), ("APP__SECRETS__RETIRED_KEYS", zeros)],
        );

        assert!(weak.contains("secrets.encryption_key is too predictable"), "{weak}");
        assert!(published.contains("secrets.encryption_key is a sample value"), "{published}");
        assert!(rotating_away.is_ok(), "a weak key may be retired: {rotating_away:?}");
    }

    #[test]
    fn a_malformed_encryption_key_is_refused_by_name_without_echoing_it() {
        let error = load(AppEnv::Development, &[("APP__SECRETS__ENCRYPTION_KEY", "hunter2 hunter2")])
            .expect_err("refused")
            .to_string();
        assert!(error.contains("secrets.encryption_key is not base64"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let error = load(AppEnv::Development, &[("APP__SECRETS__ENCRYPTION_KEY", "c2hvcnQ=")])
            .expect_err("refused")
            .to_string();
        assert!(error.contains("secrets.encryption_key must decode to exactly 32 bytes, not 5"), "{error}");
        let key = generated_key();
        let error = load(AppEnv::Development, &[("APP__SECRETS__RETIRED_KEYS", &format!("{key},c2hvcnQ="))])
            .expect_err("refused")
            .to_string();
        assert!(error.contains("secrets.retired_keys[1]"), "{error}");
    }

    #[test]
    fn an_unknown_jwt_algorithm_is_refused() {
        let error =
            load(AppEnv::Development, &[("APP__AUTH__JWT_ALGORITHM", "none")]).expect_err("refused").to_string();
        assert!(error.contains("auth.jwt_algorithm"), "{error}");
    }

    #[test]
    fn a_short_jwt_secret_is_refused() {
        let error = load(AppEnv::Production, &[("APP__AUTH__JWT_SECRET", "short")]).expect_err("refused").to_string();
        assert!(error.contains("at least 32 bytes"), "{error}");
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let error = load(AppEnv::Development, &[("APP__SERVER__PROT", "9000")]).expect_err("refused").to_string();
        assert!(error.contains("prot"), "{error}");
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_by_name() {
        let error = load(AppEnv::Development, &[("APP__SERVER__PORT", "eighty")]).expect_err("refused").to_string();
        assert!(error.contains("port"), "{error}");
    }

    #[test]
    fn a_lease_shorter_than_a_batch_can_take_is_refused() {
        let error =
            load(AppEnv::Development, &[("APP__MAIL__RELAY_LEASE_SECS", "5")]).expect_err("refused").to_string();
        assert!(error.contains("mail.relay_lease_secs"), "{error}");
    }

    #[test]
    fn redirecting_plain_http_needs_an_https_base_url() {
        let redirect = ("APP__SERVER__PLAIN_HTTP", "redirect");
        let error = load(AppEnv::Development, &[redirect]).expect_err("refused").to_string();
        assert!(error.contains("server.plain_http") && error.contains("public.base_url"), "{error}");
        let settings = load(AppEnv::Development, &[redirect, ("APP__PUBLIC__BASE_URL", "https://id.example.com")])
            .expect("accepted");
        assert_eq!(settings.server.plain_http, PlainHttp::Redirect);
        let error = load(AppEnv::Development, &[("APP__SERVER__PLAIN_HTTP", "sometimes")]).expect_err("refused");
        assert!(error.to_string().contains("plain_http"), "{error}");
    }

    #[test]
    fn a_base_url_that_is_not_a_url_is_refused_by_name() {
        let error =
            load(AppEnv::Development, &[("APP__PUBLIC__BASE_URL", "localhost:8080")]).expect_err("refused").to_string();
        assert!(error.contains("public.base_url"), "{error}");
        assert_eq!(error.lines().count(), 1, "one line");
    }

    #[test]
    fn a_malformed_secret_url_is_refused_by_name_without_echoing_it() {
        let error = load(AppEnv::Development, &[("APP__REDIS__URL", "hunter2")]).expect_err("refused").to_string();
        assert!(error.contains("redis.url"), "{error}");
        assert!(!error.contains("hunter2"), "the value may be a password: {error}");
    }

    #[test]
    fn providers_are_a_map_and_the_old_keys_keep_working() {
        let settings = load(
            AppEnv::Development,
            &[
                ("APP__OAUTH__PROVIDERS__KEYCLOAK__KIND", "oidc"),
                ("APP__OAUTH__PROVIDERS__KEYCLOAK__ISSUER", "https://sso.example.com/realms/staff"),
                ("APP__OAUTH__PROVIDERS__KEYCLOAK__CLIENT_ID", "gatehouse"),
                ("APP__OAUTH__PROVIDERS__KEYCLOAK__CLIENT_SECRET", "keycloak-secret"),
                ("APP__OAUTH__PROVIDERS__KEYCLOAK__ALLOWED_DOMAINS", "example.com,example.org"),
                ("APP__OAUTH__PROVIDERS__KEYCLOAK__SCOPES", "openid,email"),
                ("APP__OAUTH__GITHUB__CLIENT_ID", "12345"),
                ("APP__OAUTH__GITHUB__CLIENT_SECRET", "github-secret"),
            ],
        )
        .expect("valid");

        let keycloak = &settings.oauth.providers["keycloak"];
        assert_eq!(keycloak.allowed_domains, ["example.com", "example.org"], "a list key splits on commas");
        assert_eq!(keycloak.scopes.as_deref(), Some(&["openid".to_owned(), "email".to_owned()][..]));
        assert_eq!(settings.oauth.legacy["github"].client_id, "12345", "[oauth.github] still configures GitHub");
        let names: Vec<_> = settings.oauth.all().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["keycloak", "github"]);
        let printed = settings.redacted_json().expect("printed");
        assert!(!printed.contains("keycloak-secret") && !printed.contains("github-secret"), "{printed}");
    }

    #[test]
    fn a_bad_provider_is_refused_by_name() {
        let unknown = load(
            AppEnv::Development,
            &[
                ("APP__OAUTH__PROVIDERS__CORP__KIND", "saml"),
                ("APP__OAUTH__PROVIDERS__CORP__CLIENT_ID", "x"),
                ("APP__OAUTH__PROVIDERS__CORP__CLIENT_SECRET", "y"),
            ],
        );
        assert!(unknown.is_err_and(|e| e.to_string().contains("oauth.providers.corp: unknown kind")));
        let no_issuer = load(
            AppEnv::Development,
            &[
                ("APP__OAUTH__PROVIDERS__CORP__KIND", "oidc"),
                ("APP__OAUTH__PROVIDERS__CORP__CLIENT_ID", "x"),
                ("APP__OAUTH__PROVIDERS__CORP__CLIENT_SECRET", "y"),
            ],
        );
        assert!(no_issuer.is_err_and(|e| e.to_string().contains("issuer is required")));
        let twice = load(
            AppEnv::Development,
            &[
                ("APP__OAUTH__PROVIDERS__GITHUB__CLIENT_ID", "x"),
                ("APP__OAUTH__PROVIDERS__GITHUB__CLIENT_SECRET", "y"),
                ("APP__OAUTH__GITHUB__CLIENT_ID", "x"),
                ("APP__OAUTH__GITHUB__CLIENT_SECRET", "y"),
            ],
        );
        assert!(twice.is_err_and(|e| e.to_string().contains("configure the same provider")));
        let misspelt = load(
            AppEnv::Development,
            &[
                ("APP__OAUTH__PROVIDERS__GOOGLE__CLIENT_ID", "x"),
                ("APP__OAUTH__PROVIDERS__GOOGLE__CLIENT_SECRET", "y"),
                ("APP__OAUTH__PROVIDERS__GOOGLE__ISSUER_URI", "https://accounts.google.com"),
            ],
        );
        assert!(misspelt.is_err_and(|e| e.to_string().contains("issuer_uri")));
    }

    #[test]
    fn config_check_redacts_every_secret() {
        let (current, retired) = (generated_key(), generated_key());
        let settings = load(
            AppEnv::Development,
            &[
                ("DATABASE_URL", "postgres://gatehouse:db-password@db.internal:5432/gatehouse"),
                ("APP__AUTH__JWT_SECRET", "jwt-secret-that-is-at-least-32-bytes-long"),
                ("APP__MAIL__SMTP_URL", "smtps://mailer:smtp-password@mail.internal:465"),
                ("APP__REDIS__URL", "redis://:redis-password@cache.internal:6379/0"),
                ("APP__BOOTSTRAP__ADMIN_PASSWORD", "admin-password"),
                ("APP__SECRETS__ENCRYPTION_KEY", &current),
                ("APP__SECRETS__RETIRED_KEYS", &retired),
            ],
        )
        .expect("valid");

        let printed = settings.redacted_json().expect("printed");

        for secret in
            ["db-password", "jwt-secret", "smtp-password", "redis-password", "admin-password", &current, &retired]
        {
            assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
        }
        assert!(printed.contains("\"retired_keys\": [\n      \"[redacted]\"\n    ]"), "{printed}");
        assert!(printed.contains("postgres://[redacted]@db.internal:5432/gatehouse"), "{printed}");
        assert!(printed.contains("\"jwt_secret\": \"[redacted]\""), "{printed}");
    }

    #[test]
    fn a_wildcard_origin_and_half_a_tls_configuration_are_refused() {
        let error = load(AppEnv::Development, &[("APP__CORS__ALLOWED_ORIGINS", "*")]).expect_err("refused").to_string();
        assert!(error.contains("cors.allowed_origins"), "{error}");
        let error =
            load(AppEnv::Development, &[("APP__SERVER__TLS_CERT", "/etc/cert.pem")]).expect_err("refused").to_string();
        assert!(error.contains("server.tls_key"), "{error}");
        let error = load(AppEnv::Development, &[("APP__SERVER__TRUSTED_PROXIES", "10.0.0.0/99")])
            .expect_err("refused")
            .to_string();
        assert!(error.contains("server.trusted_proxies"), "{error}");
    }

    #[test]
    fn an_unknown_app_env_is_refused() {
        assert!("staging".parse::<AppEnv>().is_err());
    }
}
