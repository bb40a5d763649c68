//! A real, certified OpenID Provider for the sign-in tests: panva's `oidc-provider` from npm
//! (`tests/oidc-provider/`, installed by `scripts/install-deps.sh`), run by Node on a free port
//! on 127.0.0.1 for the duration of a test. Its two static clients and the login form are
//! described in `tests/oidc-provider/server.mjs`; [`OpenIdProvider::log_in`] plays the browser.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use gatehouse_server::settings::ProviderSettings;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::free_port;

/// The client that authenticates with HTTP Basic at the token endpoint.
pub const BASIC_CLIENT: &str = "gatehouse-basic";
/// The client that authenticates with the secret in the form body.
pub const POST_CLIENT: &str = "gatehouse-post";
/// Both clients' secret.
pub const CLIENT_SECRET: &str = "gatehouse-test-secret";

/// Where the claims of the `email` and `profile` scopes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsIn {
    /// In the ID token as well as at userinfo.
    IdToken,
    /// Only at userinfo (`conformIdTokenClaims`, the provider's default).
    UserinfoOnly,
}

/// A running OpenID Provider, stopped when dropped.
pub struct OpenIdProvider {
    /// `http://127.0.0.1:{port}`, also its issuer.
    pub issuer: String,
    child: Child,
    http: reqwest::Client,
}

impl OpenIdProvider {
    /// Starts the provider with the clients' `redirect_uris`.
    ///
    /// # Panics
    ///
    /// When Node or the npm package is missing, or the provider does not start within 30 s.
    pub async fn start(claims: ClaimsIn, redirect_uris: &[String]) -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc-provider");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "tests/oidc-provider is not installed: run scripts/install-deps.sh (npm ci)"
        );
        let port = free_port();
        let conform = if claims == ClaimsIn::UserinfoOnly { "true" } else { "false" };
        let mut child = Command::new("node")
            .current_dir(&dir)
            .arg("server.mjs")
            .arg(port.to_string())
            .arg(redirect_uris.join(","))
            .arg(conform)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts (Node 20 is required)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(ready, Ok(true), "the OpenID Provider did not start");
        // The provider logs notices to stdout; a closed pipe would kill it (EPIPE).
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .expect("a client");
        Self { issuer: format!("http://127.0.0.1:{port}"), child, http }
    }

    /// `[oauth.providers.<name>]` for `client`: `kind = "oidc"` and the issuer, nothing else.
    #[must_use]
    pub fn settings(&self, client: &str) -> ProviderSettings {
        ProviderSettings {
            kind: Some("oidc".to_owned()),
            issuer: Some(self.issuer.clone()),
            ..ProviderSettings::new(client, CLIENT_SECRET)
        }
    }

    /// Creates or replaces the account `id` (its `sub`) with `claims`.
    pub async fn account(&self, id: &str, claims: Value) {
        let response = self
            .http
            .put(format!("{}/__test/accounts/{id}", self.issuer))
            .header(CONTENT_TYPE, "application/json")
            .body(claims.to_string())
            .send()
            .await
            .expect("the provider answers");
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "account stored");
    }

    /// Signs with a new key from now on (the old one stays published); returns its `kid`.
    pub async fn rotate_keys(&self) -> String {
        let response = self.http.post(format!("{}/__test/rotate", self.issuer)).send().await.expect("answers");
        let body: Value = response.json().await.expect("JSON");
        body["kid"].as_str().expect("a kid").to_owned()
    }

    /// The `kid`s the provider publishes.
    pub async fn published_kids(&self) -> Vec<String> {
        let jwks: Value =
            self.http.get(format!("{}/jwks", self.issuer)).send().await.expect("answers").json().await.expect("JSON");
        jwks["keys"].as_array().into_iter().flatten().filter_map(|k| k["kid"].as_str().map(str::to_owned)).collect()
    }

    /// Plays the browser from the provider's authorization URL: follows redirects, submits the
    /// login form as `login` (consent is automatic) and returns the URL the provider finally
    /// redirects to, off the provider (the client's callback).
    ///
    /// # Panics
    ///
    /// When the provider answers anything but redirects and its login form.
    pub async fn log_in(&self, authorization_url: &str, login: &str) -> String {
        let mut jar: BTreeMap<String, String> = BTreeMap::new();
        let mut url = authorization_url.to_owned();
        let mut form: Option<String> = None;
        for _ in 0..20 {
            if !url.starts_with(&self.issuer) {
                return url;
            }
            let cookies = jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
            let request = match form.take() {
                Some(body) => self.http.post(&url).header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(body),
                None => self.http.get(&url),
            };
            let response = request.header(COOKIE, cookies).send().await.expect("the provider answers");
            for set in response.headers().get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()) {
                let pair = set.split(';').next().unwrap_or_default();
                if let Some((name, value)) = pair.split_once('=') {
                    if value.is_empty() {
                        jar.remove(name);
                    } else {
                        jar.insert(name.to_owned(), value.to_owned());
                    }
                }
            }
            let status = response.status();
            if status.is_redirection() {
                let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).expect("Location");
                url =
                    if location.starts_with('/') { format!("{}{location}", self.issuer) } else { location.to_owned() };
                continue;
            }
            let page = response.text().await.expect("a page");
            assert_eq!(status, StatusCode::OK, "the provider answered {status}: {page}");
            let action = page
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("a login form in {page}"));
            url = format!("{}{action}", self.issuer);
            form = Some(format!("login={login}"));
        }
        panic!("too many redirects at the provider");
    }
}

impl Drop for OpenIdProvider {
    fn drop(&mut self) {
        drop(self.child.start_kill());
    }
}
