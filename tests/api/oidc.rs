//! Sign-in with any OpenID Connect provider through `[oauth.providers.<name>]`: against a real,
//! certified OpenID Provider (panva's `oidc-provider`, started per test) for the flows a real
//! provider has, with the email in the ID token or only at userinfo, key rotation and both client
//! authentications; against the hand-written fake for what no real provider does (bad tokens,
//! broken discovery). Every refusal is a clear problem and links nothing; the linking rules are
//! the same as for Google and GitHub.

use gatehouse_server::settings::{ProviderSettings, TokenAuthMethod};
use gatehouse_tests::oauth::{CLIENT_ID, CLIENT_SECRET, Discovery, FakeProvider, Script};
use gatehouse_tests::oidc_provider::{BASIC_CLIENT, ClaimsIn, OpenIdProvider, POST_CLIENT};
use gatehouse_tests::{Backend, PASSWORD, TestApp, assert_problem, free_port, on_both_backends, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::oauth::{BASE, authorize, callback, identities, sign_in, verified_user};

on_both_backends!(
    a_provider_that_serves_the_email_only_at_userinfo_signs_up_a_verified_account,
    the_linking_rules_hold_for_a_generic_openid_provider,
);

/// The provider's name in these tests: nothing in the server knows it.
const OP: &str = "staff-sso";

fn redirect_uri() -> String {
    format!("{BASE}/api/v1/auth/oauth/{OP}/callback")
}

async fn app_with(backend: Backend, name: &str, provider: ProviderSettings) -> TestApp {
    spawn_app_with(backend, |s| {
        s.public.base_url = BASE.to_owned();
        s.oauth.providers.insert(name.to_owned(), provider);
    })
    .await
}

/// The whole browser flow through the real provider, logging in as `login`.
async fn sign_in_at(app: &TestApp, op: &OpenIdProvider, login: &str) -> reqwest::Response {
    let flow = authorize(app, OP).await;
    let back = op.log_in(&flow.provider_url, login).await;
    let path = back.strip_prefix(BASE).expect("back to the configured base URL").to_owned();
    callback(app, &path, Some(&flow.cookie)).await
}

async fn signed_in(response: reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::OK, "signed in");
    let pair: Value = response.json().await.expect("a token pair");
    pair["access_token"].as_str().expect("an access token").to_owned()
}

async fn a_provider_that_serves_the_email_only_at_userinfo_signs_up_a_verified_account(backend: Backend) {
    let op = OpenIdProvider::start(ClaimsIn::UserinfoOnly, &[redirect_uri()]).await;
    op.account("ada-1", json!({"email": "ada@example.com", "email_verified": true, "name": "Ada Lovelace"})).await;
    let app = app_with(backend, OP, op.settings(BASIC_CLIENT)).await;

    let token = signed_in(sign_in_at(&app, &op, "ada-1").await).await;

    let me: Value = app.get("/api/v1/users/me", Some(&token)).await.json().await.expect("JSON");
    assert_eq!(me["email"], "ada@example.com", "the email came from userinfo: {me}");
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["display_name"], "Ada Lovelace", "the name claim");
    let linked = identities(&app, &token).await;
    assert_eq!(linked[0]["provider"], OP, "{linked}");
    assert_eq!(linked[0]["provider_user_id"], "ada-1");
    let again = signed_in(sign_in_at(&app, &op, "ada-1").await).await;
    let me_again: Value = app.get("/api/v1/users/me", Some(&again)).await.json().await.expect("JSON");
    assert_eq!(me_again["id"], me["id"], "the linked identity signs in to the same account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_puts_the_email_in_the_id_token_signs_in_with_client_secret_post() {
    let op = OpenIdProvider::start(ClaimsIn::IdToken, &[redirect_uri()]).await;
    op.account("grace", json!({"email": "grace@example.com", "email_verified": true})).await;
    let settings =
        ProviderSettings { token_auth_method: Some(TokenAuthMethod::ClientSecretPost), ..op.settings(POST_CLIENT) };
    let app = app_with(Backend::Sqlite, OP, settings).await;

    let token = signed_in(sign_in_at(&app, &op, "grace").await).await;

    let me: Value = app.get("/api/v1/users/me", Some(&token)).await.json().await.expect("JSON");
    assert_eq!(me["email"], "grace@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_keeps_working_when_the_provider_rotates_its_signing_keys() {
    let op = OpenIdProvider::start(ClaimsIn::IdToken, &[redirect_uri()]).await;
    op.account("ada-1", json!({"email": "ada@example.com", "email_verified": true})).await;
    op.account("bob-2", json!({"email": "bob@example.com", "email_verified": true})).await;
    let app = app_with(Backend::Sqlite, OP, op.settings(BASIC_CLIENT)).await;
    signed_in(sign_in_at(&app, &op, "ada-1").await).await;

    let new_kid = op.rotate_keys().await;

    assert_eq!(op.published_kids().await.len(), 2, "old and new key published");
    let token = signed_in(sign_in_at(&app, &op, "bob-2").await).await;
    let me: Value = app.get("/api/v1/users/me", Some(&token)).await.json().await.expect("JSON");
    assert_eq!(me["email"], "bob@example.com", "the token signed with {new_kid} was verified after a refresh");
}

async fn the_linking_rules_hold_for_a_generic_openid_provider(backend: Backend) {
    let op = OpenIdProvider::start(ClaimsIn::UserinfoOnly, &[redirect_uri()]).await;
    op.account("stranger", json!({"email": "victim@example.com", "email_verified": true})).await;
    op.account("unvouched", json!({"email": "ada@example.com", "email_verified": false})).await;
    op.account("no-mail", json!({"name": "Nobody"})).await;
    op.account("ada-1", json!({"email": "ada@example.com", "email_verified": true})).await;
    let app = spawn_app_with(backend, |s| {
        s.public.base_url = BASE.to_owned();
        s.oauth.providers.insert(OP.to_owned(), op.settings(BASIC_CLIENT));
        s.auth.lockout_threshold = 3;
    })
    .await;
    let ada = verified_user(&app, "ada@example.com").await;
    app.register_user("victim@example.com").await;

    let refused = assert_problem(sign_in_at(&app, &op, "stranger").await, StatusCode::CONFLICT, "conflict").await;
    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("has not verified")), "{refused}");
    let refused = assert_problem(sign_in_at(&app, &op, "unvouched").await, StatusCode::CONFLICT, "conflict").await;
    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("does not vouch")), "{refused}");
    let missing =
        assert_problem(sign_in_at(&app, &op, "no-mail").await, StatusCode::BAD_REQUEST, "email_missing").await;
    assert!(missing["detail"].as_str().is_some_and(|d| d.contains("no email")), "{missing}");
    for email in ["victim@example.com", "ada@example.com"] {
        let token = app.access_token(email).await;
        assert_eq!(identities(&app, &token).await, json!([]), "nothing was linked to {email}");
    }

    // From a device that never signed in (the app's client has a device cookie by now).
    let device = reqwest::Client::new();
    let login = |password: &'static str| {
        device
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"email": "ada@example.com", "password": password}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(login("not the password").await.expect("sent").status(), StatusCode::UNAUTHORIZED);
    }
    // Two verification emails, then the lock's: once it is out, the lock holds.
    app.wait_for_mail(3).await;
    assert_problem(login(PASSWORD).await.expect("sent"), StatusCode::FORBIDDEN, "account_locked").await;
    let token = signed_in(sign_in_at(&app, &op, "ada-1").await).await;
    let me: Value = app.get("/api/v1/users/me", Some(&token)).await.json().await.expect("JSON");
    assert_eq!(me["id"], ada["id"], "the verified identity links to the verified account despite the timed lockout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_outside_the_allowed_domains_are_forbidden() {
    let op = OpenIdProvider::start(ClaimsIn::IdToken, &[redirect_uri()]).await;
    op.account("outsider", json!({"email": "eve@other.example", "email_verified": true})).await;
    op.account("insider", json!({"email": "ada@example.com", "email_verified": true})).await;
    let settings = ProviderSettings { allowed_domains: vec!["example.com".to_owned()], ..op.settings(BASIC_CLIENT) };
    let app = app_with(Backend::Sqlite, OP, settings).await;

    let refused = assert_problem(sign_in_at(&app, &op, "outsider").await, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("other.example")), "{refused}");
    signed_in(sign_in_at(&app, &op, "insider").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enabled_providers_are_listed_for_sign_in_uis() {
    let fake = FakeProvider::start().await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.oauth.legacy.insert("github".to_owned(), fake.github_settings());
        let corp = ProviderSettings { display_name: Some("Corp SSO".to_owned()), ..fake.oidc_settings() };
        s.oauth.providers.insert("corp".to_owned(), corp);
        s.oauth.providers.insert("google".to_owned(), fake.google_settings());
    })
    .await;

    let response = app.get("/api/v1/auth/providers", None).await;

    assert_eq!(response.status(), StatusCode::OK);
    let listed: Value = response.json().await.expect("JSON");
    assert_eq!(
        listed,
        json!([
            {"name": "corp", "display_name": "Corp SSO", "kind": "oidc"},
            {"name": "github", "display_name": "GitHub", "kind": "github"},
            {"name": "google", "display_name": "Google", "kind": "oidc"},
        ])
    );
    let none = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let empty: Value = none.get("/api/v1/auth/providers", None).await.json().await.expect("JSON");
    assert_eq!(empty, json!([]), "no provider configured, none listed");
}

/// An app with the fake as a discovered OpenID Connect provider named `corp`, and a verified
/// account whose email the fake vouches for.
async fn corp_app(fake: &FakeProvider, change: impl FnOnce(&mut ProviderSettings)) -> (TestApp, String) {
    let mut settings = fake.oidc_settings();
    change(&mut settings);
    let app = app_with(Backend::Sqlite, "corp", settings).await;
    verified_user(&app, "ada@example.com").await;
    let token = app.access_token("ada@example.com").await;
    (app, token)
}

/// A misbehaviour: its name and how it changes the fake.
type Case = (&'static str, fn(&mut Script));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_id_tokens_are_refused_and_link_nothing() {
    let fake = FakeProvider::start().await;
    let (app, token) = corp_app(&fake, |_| {}).await;
    let past = chrono::Utc::now().timestamp() - 3600;
    let cases: [Case; 7] = [
        ("wrong iss", |s| {
            s.id_token_overrides.insert("iss".to_owned(), json!("https://evil.example"));
        }),
        ("wrong aud", |s| {
            s.id_token_overrides.insert("aud".to_owned(), json!("someone-else"));
        }),
        ("several aud, no azp", |s| {
            s.id_token_overrides.insert("aud".to_owned(), json!([CLIENT_ID, "other"]));
        }),
        ("alg none", |s| s.alg = "none".to_owned()),
        ("HS256 with the client secret", |s| {
            s.alg = "HS256".to_owned();
            s.announced_algs = vec!["RS256".to_owned(), "HS256".to_owned()];
        }),
        ("unknown kid", |s| s.kid = "never-published".to_owned()),
        ("no iat", |s| {
            s.id_token_overrides.insert("iat".to_owned(), Value::Null);
        }),
    ];
    for (case, script) in cases {
        fake.script(|s| {
            *s = Script { google: s.google.clone(), ..Default::default() };
            script(s);
        });
        let refused = assert_problem(sign_in(&app, "corp").await, StatusCode::BAD_REQUEST, "invalid_token").await;
        assert!(refused["detail"].as_str().is_some_and(|d| d.contains("ID token")), "{case}: {refused}");
    }
    fake.script(|s| {
        *s = Script { google: s.google.clone(), ..Default::default() };
        s.id_token_overrides.insert("exp".to_owned(), json!(past));
    });
    assert_problem(sign_in(&app, "corp").await, StatusCode::BAD_REQUEST, "invalid_token").await;
    assert_eq!(identities(&app, &token).await, json!([]), "nothing was linked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_id_tokens_are_accepted_only_when_configured_and_announced() {
    let fake = FakeProvider::start().await;
    fake.script(|s| {
        s.alg = "HS256".to_owned();
        s.announced_algs = vec!["HS256".to_owned()];
    });
    let (app, _) = corp_app(&fake, |p| p.allow_hmac_id_tokens = true).await;

    assert_eq!(sign_in(&app, "corp").await.status(), StatusCode::OK, "opted in: HS256 keyed by {CLIENT_SECRET:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_verified_that_is_missing_or_the_string_false_links_nothing() {
    let fake = FakeProvider::start().await;
    let (app, token) = corp_app(&fake, |_| {}).await;
    for flag in [Value::Null, json!("false"), json!("true")] {
        fake.script(|s| {
            s.id_token_overrides.insert("email_verified".to_owned(), flag.clone());
            s.userinfo_overrides.insert("email_verified".to_owned(), flag.clone());
            if flag.is_null() {
                s.google.as_object_mut().map(|o| o.remove("email_verified"));
            }
        });
        let refused = assert_problem(sign_in(&app, "corp").await, StatusCode::CONFLICT, "conflict").await;
        assert!(refused["detail"].as_str().is_some_and(|d| d.contains("does not vouch")), "{flag}: {refused}");
    }
    assert_eq!(identities(&app, &token).await, json!([]), "nothing was linked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_about_another_subject_is_refused() {
    let fake = FakeProvider::start().await;
    let (app, token) = corp_app(&fake, |_| {}).await;
    fake.script(|s| {
        s.id_token_overrides.insert("email".to_owned(), Value::Null);
        s.id_token_overrides.insert("email_verified".to_owned(), Value::Null);
        s.userinfo_overrides.insert("sub".to_owned(), json!("someone-else"));
    });

    let refused = assert_problem(sign_in(&app, "corp").await, StatusCode::BAD_REQUEST, "invalid_token").await;

    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("sub")), "{refused}");
    assert_eq!(identities(&app, &token).await, json!([]), "nothing was linked");
    fake.script(|s| {
        s.userinfo_overrides.remove("sub");
    });
    assert_eq!(sign_in(&app, "corp").await.status(), StatusCode::OK, "the email from userinfo of the same sub links");
    assert_eq!(fake.fetches().2, 2, "userinfo was asked because the ID token had no email");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_refreshes_the_keys_and_a_rotated_key_is_accepted() {
    let fake = FakeProvider::start().await;
    let (app, _) = corp_app(&fake, |_| {}).await;
    assert_eq!(sign_in(&app, "corp").await.status(), StatusCode::OK);
    let (jwks_before, _, _) = fake.fetches();

    fake.script(|s| s.kid = "fake-2".to_owned());
    assert_problem(sign_in(&app, "corp").await, StatusCode::BAD_REQUEST, "invalid_token").await;
    let (jwks_after, _, _) = fake.fetches();
    assert_eq!(jwks_after, jwks_before + 1, "an unknown kid fetched the keys again, once");

    fake.script(|s| s.published_kids.push("fake-2".to_owned()));
    assert_eq!(sign_in(&app, "corp").await.status(), StatusCode::OK, "after rotation the new key is fetched");
    assert_eq!(fake.client_auth(), ["basic", "basic", "basic"], "client_secret_basic, the first one announced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_that_is_html_slow_or_unreachable_answers_bad_gateway() {
    let fake = FakeProvider::start().await;
    let (app, _) = corp_app(&fake, |p| p.timeout_secs = Some(1)).await;
    let authorize_status = || async { app.get("/api/v1/auth/oauth/corp/authorize", None).await };

    fake.script(|s| s.discovery = Discovery::Html);
    assert_problem(authorize_status().await, StatusCode::BAD_GATEWAY, "bad_gateway").await;
    fake.script(|s| s.discovery = Discovery::Slow);
    let started = std::time::Instant::now();
    assert_problem(authorize_status().await, StatusCode::BAD_GATEWAY, "bad_gateway").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "the timeout cut discovery short");
    fake.script(|s| s.discovery = Discovery::Normal);
    let flow = authorize(&app, "corp").await;
    assert!(flow.provider_url.contains("nonce="), "discovered again after the failures: {}", flow.provider_url);
    assert_eq!(fake.fetches().1, 3, "nothing broken was cached");

    let unreachable =
        ProviderSettings { issuer: Some(format!("http://127.0.0.1:{}", free_port())), ..fake.oidc_settings() };
    let app = app_with(Backend::Sqlite, "corp", unreachable).await;
    assert_problem(app.get("/api/v1/auth/oauth/corp/authorize", None).await, StatusCode::BAD_GATEWAY, "bad_gateway")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_domains_and_tenants_outside_the_allowed_ones_are_forbidden() {
    let fake = FakeProvider::start().await;
    let google = ProviderSettings { allowed_domains: vec!["example.com".to_owned()], ..fake.google_settings() };
    let app = app_with(Backend::Sqlite, "google", google).await;
    let flow = authorize(&app, "google").await;
    assert!(flow.provider_url.contains("hd=example.com"), "Google is told the hosted domain: {}", flow.provider_url);
    assert_problem(sign_in(&app, "google").await, StatusCode::FORBIDDEN, "forbidden").await;
    fake.script(|s| s.google["hd"] = json!("example.com"));
    assert_eq!(sign_in(&app, "google").await.status(), StatusCode::OK, "a Workspace account of the domain");

    let entra = ProviderSettings { allowed_tenants: vec!["tenant-a".to_owned()], ..fake.oidc_settings() };
    let app = app_with(Backend::Sqlite, "entra", entra).await;
    fake.script(|s| s.google["tid"] = json!("tenant-b"));
    let refused = assert_problem(sign_in(&app, "entra").await, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("tenant")), "{refused}");
    fake.script(|s| s.google["tid"] = json!("tenant-a"));
    assert_eq!(sign_in(&app, "entra").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_names_are_configurable() {
    let fake = FakeProvider::start().await;
    fake.script(|s| {
        let account = s.google.as_object_mut().expect("an object");
        account.remove("email_verified");
        account.insert("mail".to_owned(), json!("grace@example.com"));
        account.insert("xms_edov".to_owned(), json!(true));
        account.insert("given".to_owned(), json!("Grace Hopper"));
        account.remove("email");
    });
    let mut settings = fake.oidc_settings();
    settings.claims.email = "mail".to_owned();
    settings.claims.email_verified = "xms_edov".to_owned();
    settings.claims.name = "given".to_owned();
    let app = app_with(Backend::Sqlite, "entra", settings).await;

    let token = signed_in(sign_in(&app, "entra").await).await;

    let me: Value = app.get("/api/v1/users/me", Some(&token)).await.json().await.expect("JSON");
    assert_eq!(me["email"], "grace@example.com", "{me}");
    assert_eq!(me["display_name"], "Grace Hopper");
    fake.script(|s| s.google["xms_edov"] = json!(false));
    fake.script(|s| s.google["sub"] = json!("g-2002"));
    assert_problem(sign_in(&app, "entra").await, StatusCode::CONFLICT, "conflict").await;
}
