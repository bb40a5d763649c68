//! A fake OAuth provider on 127.0.0.1, for the sign-in tests: an OpenID Connect provider
//! (discovery, authorize, token, JWKS, an RS256 id token, userinfo) under `/google`, GitHub
//! (authorize, access token, `/user`, `/user/emails`) under `/github`. It checks PKCE (S256)
//! like a real provider and lets a test script the identity it vouches for, the id token's
//! claims, header and keys, userinfo, and how discovery misbehaves. (The real OpenID Provider
//! the suite also runs is in [`crate::oidc_provider`]; this fake is for what no real one does.)

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_server::settings::ProviderSettings;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::LineEnding;
use rsa::traits::PublicKeyParts;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The client id the fake expects.
pub const CLIENT_ID: &str = "gatehouse-test-client";

/// The signing key of the fake Google, generated once per test binary.
static SIGNING_KEY: LazyLock<rsa::RsaPrivateKey> =
    LazyLock::new(|| rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("rsa keygen"));

/// The client secret the fake expects (and the HMAC key of its HS256 tokens).
pub const CLIENT_SECRET: &str = "test-client-secret";

/// How the fake's discovery document is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// A correct document.
    Normal,
    /// After a minute (a client without a timeout would hang).
    Slow,
    /// An HTML page with status 200 (a login portal in front of the issuer).
    Html,
}

/// What the fake answers; tests change it before walking the flow.
#[derive(Debug, Clone)]
pub struct Script {
    /// Answer the authorization with `error=<this>` instead of a code.
    pub deny: Option<String>,
    /// Claims merged over the id token's defaults (`iss`, `aud`, `exp`, `nonce`…); a
    /// `null` removes the claim.
    pub id_token_overrides: Map<String, Value>,
    /// The Google account: `sub`, `email`, `email_verified`, `name`.
    pub google: Value,
    /// GitHub's `/user`.
    pub github_user: Value,
    /// GitHub's `/user/emails`.
    pub github_emails: Value,
    /// Claims merged over the account at userinfo; a `null` removes the claim.
    pub userinfo_overrides: Map<String, Value>,
    /// The id token's `alg`: `RS256` (signed with the published key), `HS256` (with the client
    /// secret) or `none` (unsigned).
    pub alg: String,
    /// The id token's `kid`.
    pub kid: String,
    /// The `kid`s the JWKS publishes (all for the same key).
    pub published_kids: Vec<String>,
    /// `id_token_signing_alg_values_supported` in discovery.
    pub announced_algs: Vec<String>,
    /// How discovery answers.
    pub discovery: Discovery,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            deny: None,
            id_token_overrides: Map::new(),
            google: json!({"sub": "g-1001", "email": "ada@example.com", "email_verified": true, "name": "Ada"}),
            github_user: json!({"id": 4242, "login": "ada-gh", "name": "Ada"}),
            github_emails: json!([
                {"email": "old@example.com", "primary": false, "verified": true},
                {"email": "ada@example.com", "primary": true, "verified": true}
            ]),
            userinfo_overrides: Map::new(),
            alg: "RS256".to_owned(),
            kid: "fake-1".to_owned(),
            published_kids: vec!["fake-1".to_owned()],
            announced_algs: vec!["RS256".to_owned()],
            discovery: Discovery::Normal,
        }
    }
}

#[derive(Debug, Clone)]
struct Grant {
    challenge: String,
    method: String,
    nonce: Option<String>,
    provider: &'static str,
}

#[derive(Default)]
struct Shared {
    script: Script,
    grants: HashMap<String, Grant>,
    /// Every authorization request's query, in order.
    authorizations: Vec<HashMap<String, String>>,
    /// Whether each token request's verifier matched its challenge (S256).
    verifier_checks: Vec<bool>,
    /// How each token request authenticated the client (`basic`, `post`, `none`).
    client_auth: Vec<&'static str>,
    jwks_fetches: usize,
    discovery_fetches: usize,
    userinfo_fetches: usize,
    next_code: u64,
}

/// A running fake provider.
pub struct FakeProvider {
    /// `http://127.0.0.1:{port}`.
    pub address: String,
    shared: Arc<Mutex<Shared>>,
    handle: ServerHandle,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl FakeProvider {
    /// Starts a fake on a free port.
    pub async fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let data = web::Data::new(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/google/.well-known/openid-configuration", web::get().to(discovery))
                .route("/google/authorize", web::get().to(authorize_google))
                .route("/google/token", web::post().to(token))
                .route("/google/jwks", web::get().to(jwks))
                .route("/google/userinfo", web::get().to(userinfo))
                .route("/github/authorize", web::get().to(authorize_github))
                .route("/github/token", web::post().to(token))
                .route("/github/slow-token", web::post().to(slow_token))
                .route("/github/api/user", web::get().to(github_user))
                .route("/github/api/user/emails", web::get().to(github_emails))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .expect("the fake provider binds");
        let port = server.addrs()[0].port();
        shared.lock().expect("fake state").script.google["iss"] = json!(format!("http://127.0.0.1:{port}/google"));
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { address: format!("http://127.0.0.1:{port}"), shared, handle }
    }

    /// Changes what the fake answers.
    pub fn script(&self, change: impl FnOnce(&mut Script)) {
        change(&mut self.shared.lock().expect("fake state").script);
    }

    /// The queries of every authorization request so far.
    #[must_use]
    pub fn authorizations(&self) -> Vec<HashMap<String, String>> {
        self.shared.lock().expect("fake state").authorizations.clone()
    }

    /// Whether each token request so far brought a verifier matching its S256 challenge.
    #[must_use]
    pub fn verifier_checks(&self) -> Vec<bool> {
        self.shared.lock().expect("fake state").verifier_checks.clone()
    }

    /// How each token request so far authenticated the client (`basic`, `post` or `none`).
    #[must_use]
    pub fn client_auth(&self) -> Vec<&'static str> {
        self.shared.lock().expect("fake state").client_auth.clone()
    }

    /// How often the JWKS, the discovery document and userinfo were fetched so far.
    #[must_use]
    pub fn fetches(&self) -> (usize, usize, usize) {
        let shared = self.shared.lock().expect("fake state");
        (shared.jwks_fetches, shared.discovery_fetches, shared.userinfo_fetches)
    }

    /// Old-style `[oauth.google]` settings pointing at this fake: every endpoint explicit, so
    /// nothing is discovered.
    #[must_use]
    pub fn google_settings(&self) -> ProviderSettings {
        let base = format!("{}/google", self.address);
        ProviderSettings {
            auth_url: Some(format!("{base}/authorize")),
            token_url: Some(format!("{base}/token")),
            userinfo_url: Some(format!("{base}/userinfo")),
            issuer: Some(self.issuer()),
            jwks_url: Some(format!("{base}/jwks")),
            ..ProviderSettings::new(CLIENT_ID, CLIENT_SECRET)
        }
    }

    /// Old-style `[oauth.github]` settings pointing at this fake.
    #[must_use]
    pub fn github_settings(&self) -> ProviderSettings {
        let base = format!("{}/github", self.address);
        ProviderSettings {
            auth_url: Some(format!("{base}/authorize")),
            token_url: Some(format!("{base}/token")),
            api_url: Some(format!("{base}/api")),
            ..ProviderSettings::new(CLIENT_ID, CLIENT_SECRET)
        }
    }

    /// `[oauth.providers.<name>]` with `kind = "oidc"` and only the issuer: everything else is
    /// discovered from this fake.
    #[must_use]
    pub fn oidc_settings(&self) -> ProviderSettings {
        ProviderSettings {
            kind: Some("oidc".to_owned()),
            issuer: Some(self.issuer()),
            ..ProviderSettings::new(CLIENT_ID, CLIENT_SECRET)
        }
    }

    /// The issuer of the fake Google's id tokens.
    #[must_use]
    pub fn issuer(&self) -> String {
        format!("{}/google", self.address)
    }
}

type Data = web::Data<Arc<Mutex<Shared>>>;

async fn authorize_google(data: Data, query: web::Query<HashMap<String, String>>) -> HttpResponse {
    authorize(&data, query.into_inner(), "google")
}

async fn authorize_github(data: Data, query: web::Query<HashMap<String, String>>) -> HttpResponse {
    authorize(&data, query.into_inner(), "github")
}

fn authorize(data: &Data, query: HashMap<String, String>, provider: &'static str) -> HttpResponse {
    let mut shared = data.lock().expect("fake state");
    shared.authorizations.push(query.clone());
    let redirect = query.get("redirect_uri").cloned().unwrap_or_default();
    let state = query.get("state").cloned().unwrap_or_default();
    let location = if let Some(error) = shared.script.deny.clone() {
        format!("{redirect}?error={error}&state={state}")
    } else {
        shared.next_code += 1;
        let code = format!("code-{provider}-{}", shared.next_code);
        let grant = Grant {
            challenge: query.get("code_challenge").cloned().unwrap_or_default(),
            method: query.get("code_challenge_method").cloned().unwrap_or_default(),
            nonce: query.get("nonce").cloned(),
            provider,
        };
        shared.grants.insert(code.clone(), grant);
        format!("{redirect}?code={code}&state={state}")
    };
    HttpResponse::Found().insert_header(("Location", location)).finish()
}

#[derive(Deserialize)]
struct TokenForm {
    code: String,
    code_verifier: Option<String>,
    client_secret: Option<String>,
}

async fn token(req: HttpRequest, data: Data, form: web::Form<TokenForm>) -> HttpResponse {
    let mut shared = data.lock().expect("fake state");
    let basic =
        req.headers().get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Basic "));
    let how = match (basic, form.client_secret.as_deref()) {
        (true, _) => "basic",
        (false, Some(CLIENT_SECRET)) => "post",
        _ => "none",
    };
    shared.client_auth.push(how);
    let Some(grant) = shared.grants.remove(&form.code) else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_grant"}));
    };
    let verifier = form.code_verifier.clone().unwrap_or_default();
    let matches =
        grant.method == "S256" && URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == grant.challenge;
    shared.verifier_checks.push(matches);
    if !matches {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_grant", "error_description": "PKCE"}));
    }
    let mut body = json!({"access_token": format!("access-{}", form.code), "token_type": "bearer", "expires_in": 3600});
    if grant.provider == "google" {
        body["id_token"] = Value::String(id_token(&shared.script, grant.nonce.as_deref(), &issuer_of(&shared)));
    }
    HttpResponse::Ok().json(body)
}

/// The fake's own `/google` URL, set at start-up (an `iss` override replaces it in the token).
fn issuer_of(shared: &Shared) -> String {
    shared.script.google.get("iss").and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn id_token(script: &Script, nonce: Option<&str>, issuer: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = Map::new();
    claims.insert("iss".to_owned(), json!(issuer));
    claims.insert("aud".to_owned(), json!(CLIENT_ID));
    claims.insert("iat".to_owned(), json!(now));
    claims.insert("exp".to_owned(), json!(now + 3600));
    if let Some(nonce) = nonce {
        claims.insert("nonce".to_owned(), json!(nonce));
    }
    if let Some(account) = script.google.as_object() {
        for (key, value) in account {
            if key != "iss" {
                claims.insert(key.clone(), value.clone());
            }
        }
    }
    for (key, value) in &script.id_token_overrides {
        if value.is_null() {
            claims.remove(key);
        } else {
            claims.insert(key.clone(), value.clone());
        }
    }
    match script.alg.as_str() {
        "none" => {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("JSON"));
            format!("{header}.{body}.")
        }
        "HS256" => {
            let header = Header { kid: Some(script.kid.clone()), ..Header::new(Algorithm::HS256) };
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(CLIENT_SECRET.as_bytes())).expect("signed")
        }
        _ => {
            let pem = SIGNING_KEY.to_pkcs1_pem(LineEnding::LF).expect("pkcs1");
            let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("an RSA key");
            let header = Header { kid: Some(script.kid.clone()), ..Header::new(Algorithm::RS256) };
            jsonwebtoken::encode(&header, &claims, &key).expect("signed")
        }
    }
}

async fn discovery(data: Data) -> HttpResponse {
    let (mode, issuer, algs) = {
        let mut shared = data.lock().expect("fake state");
        shared.discovery_fetches += 1;
        (shared.script.discovery, issuer_of(&shared), shared.script.announced_algs.clone())
    };
    match mode {
        Discovery::Slow => {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            HttpResponse::ServiceUnavailable().finish()
        }
        Discovery::Html => HttpResponse::Ok()
            .content_type("text/html")
            .body("<!doctype html><title>Sign in</title><p>Please sign in to the portal first."),
        Discovery::Normal => HttpResponse::Ok().json(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        })),
    }
}

/// A token endpoint that answers far too late (a client without a timeout would wait a minute).
async fn slow_token() -> HttpResponse {
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    HttpResponse::ServiceUnavailable().finish()
}

async fn jwks(data: Data) -> HttpResponse {
    let kids = {
        let mut shared = data.lock().expect("fake state");
        shared.jwks_fetches += 1;
        shared.script.published_kids.clone()
    };
    let public = SIGNING_KEY.to_public_key();
    let keys: Vec<Value> = kids
        .iter()
        .map(|kid| {
            json!({
                "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({"keys": keys}))
}

fn bearer(req: &HttpRequest) -> bool {
    req.headers().get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Bearer access-"))
}

async fn userinfo(req: HttpRequest, data: Data) -> HttpResponse {
    if !bearer(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    let mut shared = data.lock().expect("fake state");
    shared.userinfo_fetches += 1;
    let mut claims = shared.script.google.as_object().cloned().unwrap_or_default();
    claims.remove("iss");
    for (key, value) in &shared.script.userinfo_overrides {
        if value.is_null() {
            claims.remove(key);
        } else {
            claims.insert(key.clone(), value.clone());
        }
    }
    HttpResponse::Ok().json(claims)
}

async fn github_user(req: HttpRequest, data: Data) -> HttpResponse {
    if !bearer(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    HttpResponse::Ok().json(data.lock().expect("fake state").script.github_user.clone())
}

async fn github_emails(req: HttpRequest, data: Data) -> HttpResponse {
    if !bearer(&req) {
        return HttpResponse::Unauthorized().finish();
    }
    HttpResponse::Ok().json(data.lock().expect("fake state").script.github_emails.clone())
}
