//! The end-to-end harness: [`spawn_app`] builds the real [`Application`] on a random port
//! against a fresh database, and [`TestApp`] speaks HTTP to it with typed helpers.
//!
//! Every app sends its mail to its own [`SmtpSink`] (a real SMTP server on 127.0.0.1);
//! later features add their fakes here too (a fake OAuth provider, Redis), so every test keeps
//! starting with one call.

pub mod oauth;
pub mod oidc_provider;
pub mod private_pg;
pub mod smtp;
pub mod webhooks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use gatehouse_server::settings::{AppEnv, Settings};
use gatehouse_server::{Application, telemetry};
use gatehouse_store_diesel::Database;
use gatehouse_store_diesel::testing::TestDatabase;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

pub use crate::smtp::{ReceivedMail, SmtpSink, free_port};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh database on the PostgreSQL server of `TEST_DATABASE_URL`.
    Postgres,
    /// A fresh SQLite file.
    Sqlite,
}

/// A password that meets the policy.
pub const PASSWORD: &str = "correct horse battery staple";

/// Where the links in test emails point.
pub const FRONTEND_URL: &str = "http://frontend.test";

/// How long tests wait for an email before failing.
pub const MAIL_TIMEOUT: Duration = Duration::from_secs(15);

/// The HS256 secret every test server signs with, so tests can forge tokens and sibling
/// instances accept each other's.
pub const JWT_SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

static TELEMETRY: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        let settings = test_settings_without_database();
        telemetry::init(&settings.log, std::io::stdout);
    }
});

fn test_settings_without_database() -> Settings {
    let config_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config"));
    Settings::load_from(AppEnv::Test, config_dir, &HashMap::new()).expect("config/test.toml loads")
}

/// A running server and a client for it. Stops the server and drops its database when
/// dropped.
pub struct TestApp {
    /// `http://127.0.0.1:{port}`.
    pub address: String,
    /// `http://127.0.0.1:{port}` of the `/metrics` listener, with `metrics.listen` set (use
    /// `127.0.0.1:0` for a free port).
    pub metrics_address: Option<String>,
    /// A client that keeps no cookies and follows no redirects.
    pub client: reqwest::Client,
    /// The settings the server was built with.
    pub settings: Settings,
    /// The SMTP sink `mail.smtp_url` points at (shared with siblings); `None` when a test
    /// pointed the server elsewhere.
    pub sink: Option<Arc<SmtpSink>>,
    handle: ServerHandle,
    /// Dropped (and the database with it) when the first app of a database goes.
    _database: Option<TestDatabase>,
    /// The avatar directory this app created, removed when it goes (siblings share it).
    owned_avatar_dir: Option<PathBuf>,
}

/// Starts the application with the `test` configuration on `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Like [`spawn_app`], with a chance to change the settings first.
pub async fn spawn_app_with(backend: Backend, customise: impl FnOnce(&mut Settings)) -> TestApp {
    LazyLock::force(&TELEMETRY);
    let database = match backend {
        Backend::Postgres => TestDatabase::postgres(),
        Backend::Sqlite => TestDatabase::sqlite(),
    };
    let mut settings = test_settings_without_database();
    settings.database.url = database.url().to_owned().into();
    settings.database.pool_size = 8;
    settings.server.host = "127.0.0.1".to_owned();
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.auth.jwt_secret = Some(JWT_SECRET.to_owned().into());
    settings.public.frontend_url = FRONTEND_URL.to_owned();
    let sink = Arc::new(SmtpSink::start().await);
    let sink_url = sink.url();
    settings.mail.smtp_url = Some(sink_url.clone().into());
    settings.storage.avatar_dir =
        std::env::temp_dir().join(format!("gatehouse-test-avatars-{}", uuid::Uuid::now_v7().simple()));
    customise(&mut settings);
    let sink = (settings.mail.smtp_url.as_ref().map(secrecy::ExposeSecret::expose_secret) == Some(sink_url.as_str()))
        .then_some(sink);
    let avatar_dir = settings.storage.avatar_dir.clone();
    let mut app = start(settings, Some(database), sink).await;
    app.owned_avatar_dir = Some(avatar_dir);
    app
}

async fn start(settings: Settings, database: Option<TestDatabase>, sink: Option<Arc<SmtpSink>>) -> TestApp {
    let application = Application::build(settings.clone()).await.expect("the application builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    let metrics_address = application.metrics_port().map(|port| format!("http://127.0.0.1:{port}"));
    let handle = application.handle();
    tokio::spawn(application.run_until_stopped());
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a reqwest client");
    TestApp { address, metrics_address, client, settings, sink, handle, _database: database, owned_avatar_dir: None }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
        if let Some(dir) = &self.owned_avatar_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl TestApp {
    /// A second server instance on the same database (and secret), as behind a load
    /// balancer, with a chance to change its settings. Keep `self` alive while it runs.
    pub async fn spawn_sibling(&self, customise: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings.clone();
        customise(&mut settings);
        start(settings, None, self.sink.clone()).await
    }

    /// A connection pool to the app's database, for checks the API cannot make, with the app's
    /// keys for secrets at rest.
    pub async fn database(&self) -> Database {
        let url = secrecy::ExposeSecret::expose_secret(&self.settings.database.url).to_owned();
        let cipher = gatehouse_server::startup::secret_cipher(&self.settings).expect("the app's keys parse");
        tokio::task::spawn_blocking(move || Database::connect(&url, 2))
            .await
            .expect("connecting does not panic")
            .expect("the test database is reachable")
            .with_secret_cipher(cipher)
    }

    /// The app's SMTP sink.
    ///
    /// # Panics
    ///
    /// When the test pointed `mail.smtp_url` elsewhere.
    #[must_use]
    pub fn mailbox(&self) -> &SmtpSink {
        self.sink.as_deref().expect("this app sends to the test SMTP sink")
    }

    /// Waits for at least `count` emails in the sink and returns them all.
    pub async fn wait_for_mail(&self, count: usize) -> Vec<ReceivedMail> {
        self.mailbox().wait_for(count, MAIL_TIMEOUT).await
    }

    /// The token of the `path` link (`verify-email`, `reset-password`) in `mail`.
    ///
    /// # Panics
    ///
    /// When the message has no such link.
    #[must_use]
    pub fn token_from(mail: &ReceivedMail, path: &str) -> String {
        mail.token_in_link(FRONTEND_URL, path).unwrap_or_else(|| panic!("no {path} link in {}", mail.decoded()))
    }

    /// The absolute URL of `path`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client.post(self.url(path)).json(body).send().await.expect("request sent")
    }

    /// `GET path`, with a bearer token when given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    /// GETs `path` until `done` holds for its JSON body, and returns that body. For effects
    /// that land after the response (the bookkeeping of a refused sign-in); gives up after
    /// 10 s with the last body.
    ///
    /// # Panics
    ///
    /// When `done` never holds, or a body is not JSON.
    pub async fn get_until(&self, path: &str, token: Option<&str>, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let body: Value = self.get(path, token).await.json().await.expect("a JSON body");
            if done(&body) {
                return body;
            }
            assert!(std::time::Instant::now() < deadline, "GET {path} never became what the test waits for: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `POST /api/v1/auth/register`.
    pub async fn register(&self, body: &Value) -> Response {
        self.post_json("/api/v1/auth/register", body).await
    }

    /// Registers `email` with [`PASSWORD`] and returns the created user.
    pub async fn register_user(&self, email: &str) -> Value {
        let response = self.register(&json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(response.status(), StatusCode::CREATED, "registering {email}");
        response.json().await.expect("a user body")
    }

    /// Registers `email` with [`PASSWORD`], asserting only that it was created (for bulk
    /// set-up).
    pub async fn register_user_quietly(&self, email: &str) {
        let response = self.register(&json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(response.status(), StatusCode::CREATED, "registering {email}");
    }

    /// `POST /api/v1/auth/login`.
    pub async fn login(&self, body: &Value) -> Response {
        self.post_json("/api/v1/auth/login", body).await
    }

    /// Signs in as `email` with [`PASSWORD`] and returns the token pair.
    pub async fn token_pair(&self, email: &str) -> Value {
        let response = self.login(&json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(response.status(), StatusCode::OK, "signing in as {email}");
        response.json().await.expect("a token pair")
    }

    /// Signs in as `email` with `password` and returns the access token.
    pub async fn access_token_with(&self, email: &str, password: &str) -> String {
        let response = self.login(&json!({"email": email, "password": password})).await;
        assert_eq!(response.status(), StatusCode::OK, "signing in as {email}");
        let pair: Value = response.json().await.expect("a token pair");
        pair["access_token"].as_str().expect("an access token").to_owned()
    }

    /// Signs in as `email` with [`PASSWORD`] and returns the access token.
    pub async fn access_token(&self, email: &str) -> String {
        let pair = self.token_pair(email).await;
        pair["access_token"].as_str().expect("an access token").to_owned()
    }

    /// `POST /api/v1/auth/refresh` with the token in the body.
    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json("/api/v1/auth/refresh", &json!({"refresh_token": refresh_token})).await
    }

    /// A request with a bearer token and an optional JSON body.
    pub async fn send_authed(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }
}

/// The email of the admin [`spawn_app_with_admin`] bootstraps; its password is [`PASSWORD`].
pub const ADMIN_EMAIL: &str = "root@example.com";

/// Starts the application with a bootstrapped admin, and returns the admin's access token.
pub async fn spawn_app_with_admin(backend: Backend) -> (TestApp, String) {
    let app = spawn_app_with(backend, |s| {
        s.bootstrap.admin_email = Some(ADMIN_EMAIL.to_owned());
        s.bootstrap.admin_password = Some(PASSWORD.to_owned().into());
    })
    .await;
    let token = app.access_token(ADMIN_EMAIL).await;
    (app, token)
}

/// One part of a hand-built `multipart/form-data` body.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    /// The `name` of its `Content-Disposition`.
    pub name: &'a str,
    /// The `filename`, if any.
    pub filename: Option<&'a str>,
    /// The part's `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// The content.
    pub bytes: &'a [u8],
}

impl<'a> Part<'a> {
    /// A part named `file`, claiming to be `avatar.png` of type `image/png` whatever it holds.
    #[must_use]
    pub fn file(bytes: &'a [u8]) -> Self {
        Self { name: "file", filename: Some("avatar.png"), content_type: Some("image/png"), bytes }
    }
}

/// The multipart boundary of [`multipart`] bodies.
const BOUNDARY: &str = "gatehouse-test-boundary-6c1f0e";

/// A `multipart/form-data` body and its `Content-Type`, written by hand so tests control every
/// byte (two parts, odd names, lying content types).
#[must_use]
pub fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", part.name);
        if let Some(filename) = part.filename {
            disposition.push_str(&format!("; filename=\"{filename}\""));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(content_type) = part.content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(part.bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

impl TestApp {
    /// `PUT /api/v1/users/me/avatar` with a raw body and content type.
    pub async fn put_avatar_raw(&self, token: &str, content_type: &str, body: Vec<u8>) -> Response {
        self.client
            .put(self.url("/api/v1/users/me/avatar"))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `PUT /api/v1/users/me/avatar` with `parts`.
    pub async fn put_avatar_parts(&self, token: &str, parts: &[Part<'_>]) -> Response {
        let (content_type, body) = multipart(parts);
        self.put_avatar_raw(token, &content_type, body).await
    }

    /// Uploads `bytes` as the caller's avatar (one `file` part) and returns the response.
    pub async fn upload_avatar(&self, token: &str, bytes: &[u8]) -> Response {
        self.put_avatar_parts(token, &[Part::file(bytes)]).await
    }

    /// The files in the avatar directory, sorted (none when it does not exist yet).
    #[must_use]
    pub fn avatar_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.settings.storage.avatar_dir)
            .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }
}

/// Asserts that `response` is a problem with `status` and `code`, and returns its body.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "content type of {body}");
    assert_eq!(body["code"], code, "code in {body}");
    assert_eq!(body["status"], status.as_u16(), "status in {body}");
    assert_eq!(body["type"], "about:blank", "type in {body}");
    assert!(body["title"].is_string() && body["detail"].is_string(), "title and detail in {body}");
    body
}

/// Runs an async test function once per backend, as `mod name { postgres, sqlite }`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await;
                }
            }
        )*
    };
}
