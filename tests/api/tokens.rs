//! Access tokens: the password grant, expiry, forgeries, signing keys and the JWKS.

use std::time::Duration;

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use gatehouse_tests::{Backend, JWT_SECRET, PASSWORD, assert_problem, on_both_backends, spawn_app, spawn_app_with};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use jwt_compact::AlgorithmExt as _;
use rand::RngExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    the_password_grant_signs_in_by_username_or_email,
    the_password_grant_refuses_bad_forms,
    an_expired_access_token_is_refused,
    a_token_signed_with_another_key_is_refused,
    a_token_whose_session_belongs_to_another_user_is_refused,
    a_token_with_our_key_but_another_audience_or_type_is_refused,
);

async fn the_password_grant_signs_in_by_username_or_email(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register(&json!({"email": "ada@example.com", "password": PASSWORD, "username": "ada"})).await;

    for username in ["ada", "ADA@example.com"] {
        let response = app
            .client
            .post(app.url("/api/v1/auth/token"))
            .form(&[("grant_type", "password"), ("username", username), ("password", PASSWORD), ("scope", "")])
            .send()
            .await
            .expect("sent");

        assert_eq!(response.status(), StatusCode::OK, "{username}");
        let pair: Value = response.json().await.expect("json");
        assert_eq!(pair["token_type"], "Bearer");
        let me = app.get("/api/v1/users/me", pair["access_token"].as_str()).await;
        assert_eq!(me.status(), StatusCode::OK);
    }
    let wrong = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .form(&[("username", "ada"), ("password", "nope")])
        .send()
        .await
        .expect("sent");
    assert_problem(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

async fn the_password_grant_refuses_bad_forms(backend: Backend) {
    let app = spawn_app(backend).await;
    let post =
        |form: Vec<(&'static str, &'static str)>| app.client.post(app.url("/api/v1/auth/token")).form(&form).send();

    let missing = post(vec![("username", "ada")]).await.expect("sent");
    assert_problem(missing, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let grant =
        post(vec![("grant_type", "client_credentials"), ("username", "ada"), ("password", "x")]).await.expect("sent");
    let problem = assert_problem(grant, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "grant_type");
    let json_body = app.post_json("/api/v1/auth/token", &json!({"username": "ada", "password": "x"})).await;
    assert_problem(json_body, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
}

async fn an_expired_access_token_is_refused(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.auth.access_ttl_secs = 3).await;
    app.register_user("ada@example.com").await;
    let access = app.access_token("ada@example.com").await;
    assert_eq!(app.get("/api/v1/users/me", Some(&access)).await.status(), StatusCode::OK);

    // Wait past `exp` itself (a fixed sleep after a slow sign-in on a busy machine could
    // start the clock late or early).
    let expires = claims_of(&access)["exp"].as_i64().expect("exp");
    let left_ms = (expires * 1000 - chrono::Utc::now().timestamp_millis()).max(0);
    tokio::time::sleep(Duration::from_millis(u64::try_from(left_ms).expect("non-negative") + 1_100)).await;

    assert_problem(app.get("/api/v1/users/me", Some(&access)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

/// The claims of a token this server would issue, from a real one, with changes.
fn claims_of(access_token: &str) -> Value {
    let payload = access_token.split('.').nth(1).expect("a JWT");
    let bytes = base64_url_decode(payload);
    serde_json::from_slice(&bytes).expect("JSON claims")
}

fn base64_url_decode(input: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(input).expect("base64url")
}

/// Signs `claims` as this server signs access tokens (HS256, `typ: at+jwt`).
fn sign_hs256(claims: &Value, secret: &str) -> String {
    sign_hs256_typed(claims, secret, Some("at+jwt"))
}

fn sign_hs256_typed(claims: &Value, secret: &str, typ: Option<&str>) -> String {
    let header = Header { typ: typ.map(str::to_owned), ..Header::new(Algorithm::HS256) };
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret.as_bytes())).expect("signed")
}

fn header_of(access_token: &str) -> Value {
    let header = access_token.split('.').next().expect("a JWT");
    serde_json::from_slice(&base64_url_decode(header)).expect("a JSON header")
}

async fn a_token_with_our_key_but_another_audience_or_type_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    let access = app.access_token("ada@example.com").await;
    assert_eq!(header_of(&access)["typ"], "at+jwt", "access tokens are typed (RFC 9068)");
    let claims = claims_of(&access);
    assert_eq!(claims["aud"], app.settings.auth.issuer, "the audience defaults to the issuer");
    assert_eq!(
        app.get("/api/v1/users/me", Some(&sign_hs256(&claims, JWT_SECRET))).await.status(),
        StatusCode::OK,
        "control: re-signed with our key as an access token"
    );

    let mut other_audience = claims.clone();
    other_audience["aud"] = json!("https://another-service.test");
    let mut no_audience = claims.clone();
    no_audience.as_object_mut().expect("an object").remove("aud");
    let forgeries = [
        ("another audience", sign_hs256(&other_audience, JWT_SECRET)),
        ("no audience", sign_hs256(&no_audience, JWT_SECRET)),
        ("typ JWT", sign_hs256_typed(&claims, JWT_SECRET, Some("JWT"))),
        ("no typ", sign_hs256_typed(&claims, JWT_SECRET, None)),
    ];
    for (what, token) in forgeries {
        let response = app.get("/api/v1/users/me", Some(&token)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
}

/// `auth.jwt_audience`: two deployments sharing a secret but not an audience do not accept
/// each other's tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_audience_is_issued_and_tokens_for_another_audience_are_refused() {
    let app =
        spawn_app_with(Backend::Postgres, |s| s.auth.jwt_audience = Some("https://api.gatehouse.test".into())).await;
    let default_audience = app.spawn_sibling(|s| s.auth.jwt_audience = None).await;
    app.register_user("ada@example.com").await;
    let access = app.access_token("ada@example.com").await;
    assert_eq!(claims_of(&access)["aud"], "https://api.gatehouse.test");
    assert_eq!(app.get("/api/v1/users/me", Some(&access)).await.status(), StatusCode::OK);

    let elsewhere = default_audience.get("/api/v1/users/me", Some(&access)).await;

    assert_problem(elsewhere, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let theirs = default_audience.access_token("ada@example.com").await;
    assert_problem(app.get("/api/v1/users/me", Some(&theirs)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn a_token_signed_with_another_key_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    let claims = claims_of(&app.access_token("ada@example.com").await);

    let ours = sign_hs256(&claims, JWT_SECRET);
    let theirs = sign_hs256(&claims, "another-secret-that-is-32-bytes-long!!");

    assert_eq!(
        app.get("/api/v1/users/me", Some(&ours)).await.status(),
        StatusCode::OK,
        "control: re-signed with our key"
    );
    assert_problem(app.get("/api/v1/users/me", Some(&theirs)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn a_token_whose_session_belongs_to_another_user_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    app.register_user("grace@example.com").await;
    let ada = claims_of(&app.access_token("ada@example.com").await);
    let grace = claims_of(&app.access_token("grace@example.com").await);

    let mut forged = ada.clone();
    forged["sid"] = grace["sid"].clone();
    let forged = sign_hs256(&forged, JWT_SECRET);

    assert_problem(app.get("/api/v1/users/me", Some(&forged)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn with_hs256_the_jwks_is_empty() {
    let app = spawn_app(Backend::Sqlite).await;

    let response = app.get("/.well-known/jwks.json", None).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.expect("json"), json!({"keys": []}));
}

/// An EdDSA deployment: tokens carry a `kid`, the JWKS publishes the public key, and an
/// independent JWT library (jwt-compact) verifies a token with nothing but the JWKS.
#[tokio::test]
async fn an_eddsa_token_verifies_with_an_independent_library_from_the_jwks() {
    let dir = std::env::temp_dir().join(format!("gatehouse-keys-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let seed: [u8; 32] = rand::rng().random();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let key_file = dir.join("signing.pem");
    std::fs::write(&key_file, key.to_pkcs8_pem(LineEnding::LF).expect("pem").as_bytes()).expect("written");
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.auth.jwt_algorithm = "EdDSA".to_owned();
        s.auth.jwt_private_key_file = Some(key_file.clone());
        s.auth.jwt_key_id = Some("2026-11".to_owned());
    })
    .await;
    app.register_user("ada@example.com").await;
    let access = app.access_token("ada@example.com").await;

    let jwks: Value = app.get("/.well-known/jwks.json", None).await.json().await.expect("json");
    let untrusted = jwt_compact::UntrustedToken::new(&access).expect("a JWT");
    assert_eq!(untrusted.header().key_id.as_deref(), Some("2026-11"));
    let jwk = jwks["keys"].as_array().expect("keys").iter().find(|k| k["kid"] == "2026-11").expect("the key");
    assert_eq!(jwk["kty"], "OKP");
    assert!(jwk.get("d").is_none(), "no private part is published");
    let jwk: jwt_compact::jwk::JsonWebKey<'_> = serde_json::from_value(jwk.clone()).expect("a JWK");
    let public = ed25519_dalek::VerifyingKey::try_from(&jwk).expect("an Ed25519 key");
    let verified = jwt_compact::alg::Ed25519.validator::<Value>(&public).validate(&untrusted).expect("verifies");
    assert!(verified.claims().custom["sid"].is_string(), "the claims carry the session");
    assert_eq!(app.get("/api/v1/users/me", Some(&access)).await.status(), StatusCode::OK);
    let hs256_forgery = sign_hs256(&claims_of(&access), JWT_SECRET);
    assert_problem(app.get("/api/v1/users/me", Some(&hs256_forgery)).await, StatusCode::UNAUTHORIZED, "unauthorized")
        .await;
    std::fs::remove_dir_all(&dir).ok();
}
