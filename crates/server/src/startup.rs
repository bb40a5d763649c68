//! Wiring: configuration in, a running HTTP server out. `main` and the end-to-end tests
//! both go through [`Application::build`], so tests run exactly what production runs.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use chrono::Duration;
use gatehouse_avatar_fs::FsAvatarStore;
use gatehouse_avatar_image::ImageAvatarProcessor;
use gatehouse_cache_redis::{
    FallbackRateLimiter, InProcessRateLimiter, InProcessRevocationList, RedisChangeFeed, RedisRevocationList,
};
use gatehouse_domain::ports::EnsureAdmin;
use gatehouse_domain::ports::{
    AccessTokens, ChangeFeed, Clock, NoOtherInstances, OAuthProvider, OpaqueTokens, PasswordHasher, RateLimiter,
    RevocationList, SecretCipher, SystemClock, UserDirectory,
};
use gatehouse_domain::read_cache::{CacheSettings, Invalidating, ReadCache};
use gatehouse_domain::services::Ports;
use gatehouse_domain::services::account::AccountService;
use gatehouse_domain::services::activity::ActivityService;
use gatehouse_domain::services::admin::AdminService;
use gatehouse_domain::services::auth::{AuthService, AuthSettings};
use gatehouse_domain::services::avatars::{AvatarService, AvatarSettings};
use gatehouse_domain::services::oauth::OAuthService;
use gatehouse_domain::services::recovery::RecoveryService;
use gatehouse_domain::services::sessions::SessionService;
use gatehouse_domain::services::webhooks::WebhookService;
use gatehouse_domain::{Email, NewPassword};
use gatehouse_security::{
    Argon2Hasher, Argon2Params, AtRestCipher, CursorSealer, DerivedSuccessors, EncryptionKey, HashPoolSettings,
    JwtAccessTokens, JwtAlgorithm, RandomTokens, SigningKeyPem, VerificationKeyPem,
};
use gatehouse_store_diesel::{Backend, Database, PgChangeFeed};
use secrecy::{ExposeSecret, SecretString};
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::avatar_sweep;
use crate::background::BackgroundTask;
use crate::http::rate_limit::RateLimits;
use crate::http::{self, client_ip, cookies, extract, middleware, openapi};
use crate::metrics::TimedHasher;
use crate::relay::{self, mail_relay};
use crate::replica::{ReplicaActivityLog, ReplicaUserDirectory};
use crate::settings::{AppEnv, Settings};
use crate::state::{AppState, Dependencies};

/// Slow-request defence: a client must send its request head within this time (and finish
/// a disconnect), or the connection is closed.
const REQUEST_HEAD_TIMEOUT_SECS: u64 = 5;

/// How long in-flight requests may take to finish after a stop signal.
const SHUTDOWN_GRACE_SECS: u64 = 30;

/// A built, bound, not yet running server, with its mail relay already running (unless
/// `mail.relay_enabled` is off) and its avatar sweep (unless `storage.avatar_sweep_interval_secs`
/// is 0); with `metrics.listen` set, a second server serving only `/metrics` on that address.
pub struct Application {
    port: u16,
    server: Server,
    metrics: Option<MetricsServer>,
    relay: Option<BackgroundTask>,
    webhook_relay: Option<BackgroundTask>,
    sweep: Option<BackgroundTask>,
}

impl Application {
    /// Connects and migrates the database, builds every adapter and service, and binds the
    /// listener (port 0 picks a free port).
    ///
    /// # Errors
    ///
    /// Any failure to connect, migrate, build an adapter or bind.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let state = prepare(&settings).await?;
        bootstrap_admin(&settings, &state).await?;
        let relay = if settings.mail.relay_enabled {
            let relay = mail_relay(&settings, &state.database, Arc::new(SystemClock))?;
            let poll = std::time::Duration::from_millis(u64::from(settings.mail.relay_poll_ms));
            Some(relay::spawn(relay, &state.database, poll, settings.mail.relay_batch_size)?)
        } else {
            None
        };
        let webhook_relay = settings.webhooks.relay_enabled.then(|| {
            let relay = crate::webhook_relay::webhook_relay(&settings, &state.database, Arc::new(SystemClock));
            let poll = std::time::Duration::from_millis(u64::from(settings.webhooks.relay_poll_ms));
            crate::webhook_relay::spawn(relay, poll, settings.webhooks.relay_batch_size)
        });
        let sweep = avatar_sweep(&settings, &state);
        // Both listeners are bound before either server runs, so a failure leaves nothing behind.
        let metrics_listener = match &settings.metrics.listen {
            Some(address) => {
                Some(TcpListener::bind(address).with_context(|| format!("metrics.listen: binding {address}"))?)
            }
            None => None,
        };
        let separate_metrics = metrics_listener.is_some();
        let metrics_state = state.clone();
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| format!("binding {}:{}", settings.server.host, settings.server.port))?;
        let port = listener.local_addr()?.port();
        let json_limit = settings.server.json_limit_bytes;
        let origins = settings.cors_origins();
        let tls = match (&settings.server.tls_cert, &settings.server.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
            _ => None,
        };
        let server = HttpServer::new(move || {
            let (app, api) = App::new()
                .into_utoipa_app()
                .openapi(openapi::document())
                .app_data(web::Data::new(state.clone()))
                .app_data(extract::json_config(json_limit))
                .app_data(extract::form_config(json_limit))
                .app_data(extract::query_config())
                .app_data(extract::path_config())
                .app_data(http::text::BodyLimit(json_limit))
                .configure(if separate_metrics { http::routes_without_metrics } else { http::routes })
                .split_for_parts();
            let app = app
                .route("/docs", web::get().to(http::docs_redirect))
                .service(SwaggerUi::new("/docs/{_:.*}").url("/api-docs/openapi.json", api));
            let app = if separate_metrics { app.route("/metrics", web::route().to(http::not_here)) } else { app };
            app.default_service(web::to(http::fallback))
                .wrap(from_fn(http::text::reject_unstorable_text))
                .wrap(from_fn(middleware::require_https))
                .wrap(http::cors::cors(&origins))
                .wrap(from_fn(middleware::security_headers))
                .wrap(from_fn(middleware::request_span))
        })
        .workers(settings.server.effective_workers())
        .shutdown_timeout(SHUTDOWN_GRACE_SECS)
        .client_request_timeout(std::time::Duration::from_secs(REQUEST_HEAD_TIMEOUT_SECS))
        .client_disconnect_timeout(std::time::Duration::from_secs(REQUEST_HEAD_TIMEOUT_SECS));
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        }
        .run();
        let metrics = metrics_listener.map(|listener| metrics_server(listener, metrics_state)).transpose()?;
        tracing::info!(port, env = %settings.env, "gatehouse is listening");
        Ok(Self { port, server, metrics, relay, webhook_relay, sweep })
    }

    /// The bound port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bound port of the `/metrics` listener; `None` without `metrics.listen`.
    #[must_use]
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|metrics| metrics.port)
    }

    /// A handle to stop the server gracefully (the `/metrics` listener stops with it).
    #[must_use]
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped by a signal or the handle; in-flight requests finish first, then
    /// the mail relay finishes its current batch. The main and the `/metrics` listener stop
    /// together: whichever stops first stops the other.
    ///
    /// # Errors
    ///
    /// I/O failures of either server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = match self.metrics {
            None => self.server.await,
            Some(metrics) => {
                let (main_handle, metrics_handle) = (self.server.handle(), metrics.server.handle());
                let main = async {
                    let served = self.server.await;
                    metrics_handle.stop(true).await;
                    served
                };
                let scrapes = async {
                    let served = metrics.server.await;
                    main_handle.stop(true).await;
                    served
                };
                let (main, scrapes) = tokio::join!(main, scrapes);
                main.and(scrapes)
            }
        };
        if let Some(relay) = self.relay {
            relay.stop().await;
        }
        if let Some(relay) = self.webhook_relay {
            relay.stop().await;
        }
        if let Some(sweep) = self.sweep {
            sweep.stop().await;
        }
        served
    }
}

/// The listener of `metrics.listen`, serving only `/metrics`.
struct MetricsServer {
    port: u16,
    server: Server,
}

/// A one-worker server on `listener` with only `/metrics` (and the problem 404 for anything
/// else). It is plain HTTP, for a scraper on a private address, and it has no rate limit:
/// what reaches it is the operator's to decide.
fn metrics_server(listener: TcpListener, state: AppState) -> anyhow::Result<MetricsServer> {
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .service(http::metrics::scrape)
            .default_service(web::to(http::fallback))
            .wrap(from_fn(middleware::security_headers))
            .wrap(from_fn(middleware::request_span))
    })
    .workers(1)
    .shutdown_timeout(SHUTDOWN_GRACE_SECS)
    .client_request_timeout(std::time::Duration::from_secs(REQUEST_HEAD_TIMEOUT_SECS))
    .client_disconnect_timeout(std::time::Duration::from_secs(REQUEST_HEAD_TIMEOUT_SECS))
    .listen(listener)
    .context("metrics.listen")?
    .run();
    tracing::info!(port, "metrics are served on their own listener (metrics.listen)");
    Ok(MetricsServer { port, server })
}

/// Starts the periodic avatar sweep over `state`'s avatar service, unless
/// `storage.avatar_sweep_interval_secs` is 0. `serve` and `gatehouse worker` both call it.
#[must_use]
pub fn avatar_sweep(settings: &Settings, state: &AppState) -> Option<BackgroundTask> {
    let interval = settings.storage.avatar_sweep_interval_secs;
    (interval > 0)
        .then(|| avatar_sweep::spawn(state.avatars.clone(), std::time::Duration::from_secs(u64::from(interval))))
}

/// Connects and migrates the database and builds every adapter and service: everything the
/// server needs but the listener. The command-line tools use it too.
///
/// # Errors
///
/// Any failure to connect, migrate or build an adapter.
pub async fn prepare(settings: &Settings) -> anyhow::Result<AppState> {
    let database = connect_database(settings).await?;
    database.migrate().await.context("applying database migrations")?;
    let replica = connect_replica(settings).await?;
    let revocations = revocation_list(settings, &database).await;
    let dependencies = Dependencies {
        replica,
        smtp_addr: settings.mail.smtp_url.as_ref().and_then(|url| smtp_address(url.expose_secret())),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cache = Arc::new(ReadCache::new(
        CacheSettings { capacity: settings.cache.capacity, ttl: Duration::seconds(i64::from(settings.cache.ttl_secs)) },
        clock.clone(),
    ));
    let feed = change_feed(settings, &database, &cache).await?;
    build_state(settings, database, revocations, dependencies, ReadPath { clock, cache, feed })
}

/// The read cache, the feed that keeps every instance's cache right, and the clock.
struct ReadPath {
    clock: Arc<dyn Clock>,
    cache: Arc<ReadCache>,
    feed: Arc<dyn ChangeFeed>,
}

/// How changes reach the other instances: Redis pub/sub when `redis.url` is set (PostgreSQL
/// `LISTEN`/`NOTIFY` when Redis is unreachable at start); PostgreSQL `LISTEN`/`NOTIFY`
/// without Redis; nobody on SQLite, a single node whose one process applies every change
/// itself.
async fn change_feed(
    settings: &Settings,
    database: &Database,
    cache: &Arc<ReadCache>,
) -> anyhow::Result<Arc<dyn ChangeFeed>> {
    let ack_timeout = std::time::Duration::from_millis(u64::from(settings.cache.ack_timeout_ms));
    if let Some(url) = &settings.redis.url {
        match RedisChangeFeed::start(url.expose_secret(), &settings.redis.key_prefix, cache.clone(), ack_timeout).await
        {
            Ok(feed) => return Ok(Arc::new(feed)),
            Err(e) => tracing::error!(error = %e, "redis.url: Redis is unreachable; changes travel by the database"),
        }
    }
    Ok(match database.backend() {
        Backend::Sqlite => Arc::new(NoOtherInstances),
        Backend::Postgres => {
            let (url, cache) = (settings.database.url.clone(), cache.clone());
            let feed =
                tokio::task::spawn_blocking(move || PgChangeFeed::start(url.expose_secret(), cache, ack_timeout))
                    .await
                    .context("the change listener task failed")?
                    .context("database: starting the change listener")?;
            Arc::new(feed)
        }
    })
}

/// `host:port` of an `smtp://` or `smtps://` URL, without credentials; `None` when it cannot
/// be made out (the SMTP adapter reports that URL's error itself).
#[must_use]
pub fn smtp_address(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "smtp" => 25,
        "smtps" => 465,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if host_port.is_empty() {
        return None;
    }
    let has_port = host_port.rsplit_once(':').is_some_and(|(_, port)| !port.contains(']'));
    Some(if has_port { host_port.to_owned() } else { format!("{host_port}:{default_port}") })
}

/// Creates the first admin from `bootstrap.admin_email`/`admin_password` when both are set
/// and no active admin exists. Instances starting together agree on one.
async fn bootstrap_admin(settings: &Settings, state: &AppState) -> anyhow::Result<()> {
    let (Some(email), Some(password)) = (&settings.bootstrap.admin_email, &settings.bootstrap.admin_password) else {
        return Ok(());
    };
    let email = Email::parse(email).context("bootstrap.admin_email")?;
    let password = NewPassword::parse(password.clone(), &email).context("bootstrap.admin_password")?;
    match state.admin.bootstrap_first_admin(email, password).await.map_err(|e| anyhow::anyhow!(e))? {
        EnsureAdmin::AlreadyPresent => tracing::debug!("an admin exists; bootstrap.admin_email is not needed"),
        EnsureAdmin::Created(user) => tracing::info!(user_id = %user.id, "created the first admin"),
        EnsureAdmin::Promoted { admin, revoked } => tracing::info!(
            user_id = %admin.id,
            revoked_sessions = revoked.len(),
            "handed the existing account to the operator as the first admin (their password, sessions ended)"
        ),
    }
    Ok(())
}

/// The HKDF label of the at-rest key derived from `auth.jwt_secret`.
const DERIVED_KEY_LABEL: &[u8] = b"gatehouse secrets.encryption_key v1";

/// The material of the at-rest key in development and tests when neither
/// `secrets.encryption_key` nor `auth.jwt_secret` is set: fixed, so that `serve` and `worker`
/// processes agree, and public, so it protects nothing (production refuses to start without
/// a real key).
const DEVELOPMENT_KEY_MATERIAL: &[u8] = b"gatehouse development-only key material; not a secret";

/// The cipher for data encrypted at rest: sealing with `secrets.encryption_key` (or, unset,
/// with a key derived from `auth.jwt_secret`), opening with that key, the retired keys, and,
/// while `auth.jwt_secret` is set, the key derived from it (so that setting an explicit key
/// later leaves no queued message unreadable).
///
/// # Errors
///
/// A key that does not parse, or production without any key (validation catches both first).
pub fn secret_cipher(settings: &Settings) -> anyhow::Result<Arc<dyn SecretCipher>> {
    let parse = |key: &SecretString, name: &str| {
        EncryptionKey::from_base64(key.expose_secret()).map_err(|e| anyhow::anyhow!("{name} {e}"))
    };
    let derived = settings
        .auth
        .jwt_secret
        .as_ref()
        .map(|secret| EncryptionKey::derive(secret.expose_secret().as_bytes(), DERIVED_KEY_LABEL));
    let mut retired = settings
        .secrets
        .retired_keys
        .iter()
        .map(|key| parse(key, "secrets.retired_keys"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let current = match (&settings.secrets.encryption_key, derived) {
        (Some(key), derived) => {
            retired.extend(derived);
            parse(key, "secrets.encryption_key")?
        }
        (None, Some(derived)) => derived,
        (None, None) => {
            anyhow::ensure!(
                settings.env != AppEnv::Production,
                "secrets.encryption_key is required in production when auth.jwt_secret is not set"
            );
            tracing::warn!(
                "neither secrets.encryption_key nor auth.jwt_secret is set: secrets at rest are sealed with a public \
                 development key"
            );
            EncryptionKey::derive(DEVELOPMENT_KEY_MATERIAL, DERIVED_KEY_LABEL)
        }
    };
    Ok(Arc::new(AtRestCipher::new(current, retired)))
}

/// Opens the pool off the async workers (r2d2 connects eagerly and blocks), sealing secrets at
/// rest with [`secret_cipher`].
///
/// # Errors
///
/// When the database cannot be reached, or a key in `secrets.*` does not parse.
pub async fn connect_database(settings: &Settings) -> anyhow::Result<Database> {
    let url = settings.database.url.clone();
    let pool_size = settings.database.effective_pool_size();
    let options = settings.database.pool_options();
    let cipher = secret_cipher(settings)?;
    let database = tokio::task::spawn_blocking(move || Database::connect_with(url.expose_secret(), pool_size, options))
        .await
        .context("the database connection task failed")?
        .context("connecting to the database")?;
    Ok(database.with_secret_cipher(cipher))
}

/// Opens the read-replica pool when `database.read_replica_url` is set. Migrations are not
/// run on it: a replica receives them from the primary.
///
/// # Errors
///
/// When the replica cannot be reached.
pub async fn connect_replica(settings: &Settings) -> anyhow::Result<Option<Database>> {
    let Some(url) = settings.database.read_replica_url.clone() else {
        return Ok(None);
    };
    let pool_size = settings.database.effective_pool_size();
    let options = settings.database.pool_options();
    let replica = tokio::task::spawn_blocking(move || Database::connect_with(url.expose_secret(), pool_size, options))
        .await
        .context("the replica connection task failed")?
        .context("database.read_replica_url: connecting to the read replica")?;
    Ok(Some(replica.with_secret_cipher(secret_cipher(settings)?)))
}

/// Where revocations are published besides the read cache: Redis when configured (shared by
/// all instances); the process itself for SQLite (one node by construction); otherwise the
/// sessions table. Token checks answer from the read cache and, on a miss, from storage.
async fn revocation_list(settings: &Settings, database: &Database) -> Arc<dyn RevocationList> {
    if let Some(url) = &settings.redis.url {
        match RedisRevocationList::connect(url.expose_secret(), &settings.redis.key_prefix).await {
            Ok(list) => return Arc::new(list),
            Err(e) => {
                tracing::error!(error = %e, "redis.url: Redis is unreachable; checking revocations in the database")
            }
        }
    }
    match database.backend() {
        Backend::Sqlite => Arc::new(InProcessRevocationList::new(Arc::new(SystemClock))),
        Backend::Postgres => database.session_revocations(),
    }
}

/// The rate limiter: on Redis (falling back to this process while Redis is unreachable) when
/// `redis.url` is set, in this process otherwise.
fn rate_limits(settings: &Settings) -> RateLimits {
    let limits = settings.rate_limit.clone();
    match &settings.redis.url {
        Some(url) => {
            let redis = Arc::new(FallbackRateLimiter::new(url.expose_secret(), &settings.redis.key_prefix));
            let limiter: Arc<dyn RateLimiter> = redis.clone();
            RateLimits::new(limits, limiter, Some(redis))
        }
        None => RateLimits::new(limits, Arc::new(InProcessRateLimiter::new()), None),
    }
}

/// The access-token signer and verifier the configuration asks for, and the secret
/// material it signs with (from which the cursor key is derived). Public for the benchmark's
/// floor server, which verifies tokens exactly as the server does.
///
/// # Errors
///
/// A bad algorithm, secret or key file.
pub fn access_tokens(settings: &Settings, random: &RandomTokens) -> anyhow::Result<(JwtAccessTokens, SecretString)> {
    let auth = &settings.auth;
    let algorithm: JwtAlgorithm = auth.jwt_algorithm.parse().context("auth.jwt_algorithm")?;
    if algorithm == JwtAlgorithm::Hs256 {
        let secret = match &auth.jwt_secret {
            Some(secret) => secret.clone(),
            None => {
                tracing::warn!("auth.jwt_secret is not set: using a random secret; tokens die with this process");
                SecretString::from(random.generate().secret.expose_secret().to_owned())
            }
        };
        let tokens = JwtAccessTokens::hs256(&secret, &auth.issuer)
            .and_then(|tokens| tokens.with_audience(auth.effective_audience()))
            .context("auth.jwt_secret")?;
        return Ok((tokens, secret));
    }
    let (Some(path), Some(kid)) = (&auth.jwt_private_key_file, &auth.jwt_key_id) else {
        anyhow::bail!("auth.jwt_private_key_file and auth.jwt_key_id are required with {algorithm:?}");
    };
    let private_pem = std::fs::read_to_string(path)
        .with_context(|| format!("auth.jwt_private_key_file: cannot read {}", path.display()))?;
    let retired = auth
        .jwt_retired_keys
        .iter()
        .map(|entry| {
            let (kid, path) = entry.split_once('=').context("auth.jwt_retired_keys: expected kid=path")?;
            let public_pem =
                std::fs::read_to_string(path).with_context(|| format!("auth.jwt_retired_keys: cannot read {path}"))?;
            Ok(VerificationKeyPem { algorithm, kid: kid.to_owned(), public_pem })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let private_pem = SecretString::from(private_pem);
    let signing = SigningKeyPem { algorithm, kid: kid.clone(), private_pem: private_pem.clone() };
    let tokens = JwtAccessTokens::asymmetric(signing, retired, &auth.issuer)
        .and_then(|tokens| tokens.with_audience(auth.effective_audience()))
        .context("auth.jwt_private_key_file")?;
    Ok((tokens, private_pem))
}

/// The configured sign-in providers, each calling back at
/// `{public.base_url}/api/v1/auth/oauth/{name}/callback`; none configured means none.
fn oauth_providers(settings: &Settings) -> anyhow::Result<Vec<Arc<dyn OAuthProvider>>> {
    let base = settings.public.base_url.trim_end_matches('/');
    settings
        .oauth
        .all()
        .map(|(name, provider)| {
            gatehouse_oauth_providers::build(name, provider, format!("{base}/api/v1/auth/oauth/{name}/callback"))
        })
        .collect()
}

fn build_state(
    settings: &Settings,
    database: Database,
    revocations: Arc<dyn RevocationList>,
    dependencies: Dependencies,
    read_path: ReadPath,
) -> anyhow::Result<AppState> {
    let auth = &settings.auth;
    let ReadPath { clock, cache, feed } = read_path;
    let opaque_tokens = RandomTokens;
    let (access_tokens, key_material) = access_tokens(settings, &opaque_tokens)?;
    let jwks = serde_json::to_value(access_tokens.jwks()).context("serialising the JWK Set")?;
    let hasher = Argon2Hasher::new(
        Argon2Params {
            memory_kib: auth.argon2_memory_kib,
            iterations: auth.argon2_iterations,
            parallelism: auth.argon2_parallelism,
        },
        HashPoolSettings {
            workers: auth.effective_hash_workers(),
            queue_capacity: auth.hash_queue_capacity,
            background: auth.hash_background,
        },
    )
    .context("auth.argon2_*: invalid hashing parameters")?;
    let hash_pool = Arc::new(hasher);
    let hasher: Arc<dyn PasswordHasher> = Arc::new(TimedHasher::new(hash_pool.clone()));
    let avatar_dir = &settings.storage.avatar_dir;
    let avatar_store = FsAvatarStore::open(avatar_dir)
        .with_context(|| format!("storage.avatar_dir: cannot use {}", avatar_dir.display()))?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let access_tokens: Arc<dyn AccessTokens> = Arc::new(access_tokens);
    let directory: Arc<dyn UserDirectory> = match &dependencies.replica {
        Some(replica) => Arc::new(ReplicaUserDirectory::new(database.directory(), replica.directory())),
        None => database.directory(),
    };
    let ports = Ports {
        users: Arc::new(Invalidating::new(database.users(), cache.clone(), feed.clone())),
        sessions: Arc::new(Invalidating::new(database.sessions(), cache.clone(), feed.clone())),
        tokens: database.one_time_tokens(),
        hasher: hasher.clone(),
        access_tokens: access_tokens.clone(),
        opaque_tokens: Arc::new(opaque_tokens),
        refresh_successors: Arc::new(DerivedSuccessors::new(key_material.expose_secret().as_bytes())),
        clock: clock.clone(),
        revocations,
        directory: Arc::new(Invalidating::new(directory, cache.clone(), feed)),
        activity: match &dependencies.replica {
            Some(replica) => Arc::new(ReplicaActivityLog::new(database.activity(), replica.activity())),
            None => database.activity(),
        },
        avatar_processor: Arc::new(ImageAvatarProcessor::new(gatehouse_avatar_image::Limits::default(), cores)),
        avatar_store: Arc::new(avatar_store),
        cache: cache.clone(),
    };
    let auth_settings = AuthSettings {
        require_verified_email: auth.require_verified_email,
        access_ttl: Duration::seconds(i64::from(auth.access_ttl_secs)),
        refresh_ttl: Duration::seconds(i64::from(auth.refresh_ttl_secs)),
        refresh_reuse_grace: Duration::seconds(i64::from(auth.refresh_reuse_grace_secs)),
        verification_ttl: Duration::seconds(i64::from(auth.verification_ttl_secs)),
        password_reset_ttl: Duration::seconds(i64::from(auth.password_reset_ttl_secs)),
        lockout_threshold: auth.lockout_threshold,
        lockout_duration: Duration::seconds(i64::from(auth.lockout_secs)),
    };
    let providers = oauth_providers(settings).context("oauth")?;
    Ok(AppState {
        oauth: OAuthService::new(ports.clone(), auth_settings.clone(), database.identities(), providers),
        oauth_states: CursorSealer::new(format!("oauth state\0{}", key_material.expose_secret()).as_bytes()),
        oauth_success_redirect: settings.oauth.success_redirect.clone(),
        auth: AuthService::new(ports.clone(), auth_settings.clone()),
        account: AccountService::new(ports.clone(), auth_settings.clone()),
        recovery: RecoveryService::new(ports.clone(), auth_settings.clone()),
        avatars: AvatarService::new(
            ports.clone(),
            AvatarSettings { sweep_grace: Duration::seconds(i64::from(settings.storage.avatar_sweep_grace_secs)) },
        ),
        sessions: SessionService::new(ports.clone(), auth_settings.clone()),
        admin: AdminService::new(ports.clone(), auth_settings),
        webhooks: WebhookService::new(database.webhooks(), crate::webhook_relay::transport(settings), clock.clone()),
        activity: ActivityService::new(ports),
        cursors: CursorSealer::new(key_material.expose_secret().as_bytes()),
        devices: CursorSealer::new(&[b"device cookies\0".as_slice(), key_material.expose_secret().as_bytes()].concat()),
        hasher,
        database,
        dependencies,
        metrics: crate::metrics::handle(),
        hash_pool,
        read_cache: cache,
        clock,
        routes: openapi::RouteTable::from_document(&openapi::document()),
        jwks: Arc::new(jwks),
        rate_limits: rate_limits(settings),
        hsts: settings.env == crate::settings::AppEnv::Production,
        trusted_proxies: client_ip::parse_trusted(&settings.server.trusted_proxies).into(),
        access_tokens,
        secure_cookies: cookies::cookies_must_be_secure(&settings.public.base_url),
        plain_http: settings.server.plain_http,
        public_base_url: settings.public.base_url.trim_end_matches('/').into(),
    })
}

#[cfg(test)]
mod tests {
    use super::smtp_address;

    #[test]
    fn the_smtp_address_leaves_credentials_out_and_defaults_the_port() {
        assert_eq!(smtp_address("smtp://127.0.0.1:1025").as_deref(), Some("127.0.0.1:1025"));
        assert_eq!(smtp_address("smtps://user:secret@mail.example.com").as_deref(), Some("mail.example.com:465"));
        assert_eq!(smtp_address("smtp://mail.example.com/?tls=required").as_deref(), Some("mail.example.com:25"));
        assert_eq!(smtp_address("http://mail.example.com"), None);
        assert_eq!(smtp_address("smtp://"), None);
    }
}
