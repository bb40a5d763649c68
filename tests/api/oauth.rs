//! Sign-in with Google and GitHub against a fake provider on 127.0.0.1: the whole browser
//! flow (authorize → provider → callback), account creation and linking, the one-time code,
//! and every way a callback can be refused.

use gatehouse_tests::oauth::{CLIENT_ID, FakeProvider};
use gatehouse_tests::{
    ADMIN_EMAIL, Backend, PASSWORD, TestApp, assert_problem, free_port, on_both_backends, spawn_app_with,
};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The server's public URL in these tests; redirects to it are followed to the real address.
pub(crate) const BASE: &str = "http://gatehouse.test";
const FRONTEND_DONE: &str = "http://frontend.test/oauth/done";

on_both_backends!(
    a_new_google_identity_creates_a_verified_account_with_pkce_and_a_nonce,
    a_github_identity_with_a_verified_email_links_to_the_existing_account,
    an_unverified_provider_email_matching_an_account_links_nothing,
    a_verified_identity_is_not_linked_into_a_stranger_s_unverified_pre_registration,
    the_one_time_code_is_exchanged_once,
    unlinking_the_last_way_to_sign_in_is_refused,
    a_disabled_account_cannot_sign_in_through_a_provider,
    a_lockout_after_failed_passwords_does_not_stop_a_provider_sign_in,
);

async fn app(backend: Backend, fake: &FakeProvider, success_redirect: Option<&str>) -> TestApp {
    spawn_app_with(backend, |s| {
        s.public.base_url = BASE.to_owned();
        s.oauth.legacy.insert("google".to_owned(), fake.google_settings());
        s.oauth.legacy.insert("github".to_owned(), fake.github_settings());
        s.oauth.success_redirect = success_redirect.map(str::to_owned);
    })
    .await
}

fn location(response: &reqwest::Response) -> String {
    response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).expect("a Location header").to_owned()
}

/// The browser's side of a sign-in, step by step.
pub(crate) struct Flow {
    /// The provider's authorization URL.
    pub(crate) provider_url: String,
    /// The state cookie, as `name=value`.
    pub(crate) cookie: String,
}

pub(crate) async fn authorize(app: &TestApp, provider: &str) -> Flow {
    let response = app.get(&format!("/api/v1/auth/oauth/{provider}/authorize"), None).await;
    assert_eq!(response.status(), StatusCode::FOUND, "authorize redirects to the provider");
    let set_cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("gatehouse_oauth="))
        .expect("a state cookie")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/api/v1/auth/oauth", "Max-Age=600"] {
        assert!(set_cookie.contains(attribute), "{attribute} in {set_cookie}");
    }
    let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
    Flow { provider_url: location(&response), cookie }
}

/// Visits the provider, which redirects back; returns the callback path on the server.
async fn at_provider(app: &TestApp, flow: &Flow) -> String {
    let response = app.client.get(&flow.provider_url).send().await.expect("the fake answers");
    assert_eq!(response.status(), StatusCode::FOUND, "the provider redirects back");
    let back = location(&response);
    back.strip_prefix(BASE).expect("back to the configured base URL").to_owned()
}

pub(crate) async fn callback(app: &TestApp, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request.send().await.expect("callback sent")
}

pub(crate) async fn sign_in(app: &TestApp, provider: &str) -> reqwest::Response {
    let flow = authorize(app, provider).await;
    let path = at_provider(app, &flow).await;
    callback(app, &path, Some(&flow.cookie)).await
}

pub(crate) async fn identities(app: &TestApp, token: &str) -> Value {
    let response = app.get("/api/v1/users/me/identities", Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("JSON")
}

async fn a_new_google_identity_creates_a_verified_account_with_pkce_and_a_nonce(backend: Backend) {
    let fake = FakeProvider::start().await;
    let app = app(backend, &fake, None).await;

    let response = sign_in(&app, "google").await;

    assert_eq!(response.status(), StatusCode::OK, "signed in with JSON tokens");
    let pair: Value = response.json().await.expect("a token pair");
    let token = pair["access_token"].as_str().expect("an access token");
    assert!(pair["refresh_token"].is_string());
    let me: Value = app.get("/api/v1/users/me", Some(token)).await.json().await.expect("JSON");
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["email_verified"], true, "{me}");
    let linked = identities(&app, token).await;
    assert_eq!(linked[0]["provider"], "google", "{linked}");
    assert_eq!(linked[0]["provider_user_id"], "g-1001");
    let query = &fake.authorizations()[0];
    assert_eq!(query.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(query.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(query.get("code_challenge_method").map(String::as_str), Some("S256"));
    assert_eq!(
        query.get("redirect_uri").map(String::as_str),
        Some("http://gatehouse.test/api/v1/auth/oauth/google/callback")
    );
    assert!(query.get("nonce").is_some_and(|n| n.len() >= 16), "an OpenID Connect nonce");
    assert!(query.get("scope").is_some_and(|s| s.contains("openid")));
    assert_eq!(fake.verifier_checks(), vec![true], "the verifier matched the S256 challenge");

    let again = sign_in(&app, "google").await;
    assert_eq!(again.status(), StatusCode::OK, "the linked identity signs in again");
    let again: Value = again.json().await.expect("JSON");
    let me_again: Value = app.get("/api/v1/users/me", again["access_token"].as_str()).await.json().await.expect("JSON");
    assert_eq!(me_again["id"], me["id"], "the same account");
}

/// Registers `email` and proves it with the link from the verification mail.
pub(crate) async fn verified_user(app: &TestApp, email: &str) -> Value {
    let user = app.register_user(email).await;
    let token = TestApp::token_from(&app.wait_for_mail(1).await[0], "verify-email");
    let verified = app.post_json("/api/v1/auth/verify-email", &json!({"token": token})).await;
    assert_eq!(verified.status(), StatusCode::NO_CONTENT, "the email is verified");
    user
}

async fn a_github_identity_with_a_verified_email_links_to_the_existing_account(backend: Backend) {
    let fake = FakeProvider::start().await;
    let app = app(backend, &fake, None).await;
    let user = verified_user(&app, "ada@example.com").await;

    let response = sign_in(&app, "github").await;

    assert_eq!(response.status(), StatusCode::OK);
    let pair: Value = response.json().await.expect("JSON");
    let token = pair["access_token"].as_str().expect("token");
    let me: Value = app.get("/api/v1/users/me", Some(token)).await.json().await.expect("JSON");
    assert_eq!(me["id"], user["id"], "linked to the existing account, no new one");
    let linked = identities(&app, token).await;
    assert_eq!(linked[0]["provider"], "github");
    assert_eq!(linked[0]["provider_user_id"], "4242");
    assert_eq!(linked[0]["email"], "ada@example.com", "the primary verified email");
}

async fn an_unverified_provider_email_matching_an_account_links_nothing(backend: Backend) {
    let fake = FakeProvider::start().await;
    let app = app(backend, &fake, None).await;
    app.register_user("ada@example.com").await;
    fake.script(|s| s.github_emails = json!([{"email": "ada@example.com", "primary": true, "verified": false}]));

    assert_problem(sign_in(&app, "github").await, StatusCode::CONFLICT, "conflict").await;

    let token = app.access_token("ada@example.com").await;
    assert_eq!(identities(&app, &token).await, json!([]), "nothing was linked");
}

/// Pre-account hijacking: a stranger registers the victim's address with their own password
/// and never verifies it. The victim's later sign-in with a provider that vouches for the
/// address must not land in the stranger's account, where the stranger's password would keep
/// working. Proving the address by email (a password reset) takes the account over; then the
/// provider links.
async fn a_verified_identity_is_not_linked_into_a_stranger_s_unverified_pre_registration(backend: Backend) {
    let fake = FakeProvider::start().await;
    let app = app(backend, &fake, None).await;
    app.register_user("ada@example.com").await;
    let stranger = app.token_pair("ada@example.com").await;

    for provider in ["github", "google"] {
        let refused = assert_problem(sign_in(&app, provider).await, StatusCode::CONFLICT, "conflict").await;
        assert!(refused["detail"].as_str().is_some_and(|d| d.contains("verif")), "{refused}");
    }
    let token = stranger["access_token"].as_str().expect("token");
    assert_eq!(identities(&app, token).await, json!([]), "nothing was linked into the stranger's account");

    let forgot = app.post_json("/api/v1/auth/password/forgot", &json!({"email": "ada@example.com"})).await;
    assert_eq!(forgot.status(), StatusCode::ACCEPTED);
    let reset = TestApp::token_from(&app.wait_for_mail(2).await[1], "reset-password");
    let body = json!({"token": reset, "new_password": "the victim's own passphrase"});
    assert_eq!(app.post_json("/api/v1/auth/password/reset", &body).await.status(), StatusCode::NO_CONTENT);
    let replayed = app.refresh(stranger["refresh_token"].as_str().expect("refresh")).await;
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED, "the stranger's session ended with the reset");

    assert_eq!(sign_in(&app, "github").await.status(), StatusCode::OK, "the proven address links");
}

async fn the_one_time_code_is_exchanged_once(backend: Backend) {
    let fake = FakeProvider::start().await;
    let app = app(backend, &fake, Some(FRONTEND_DONE)).await;

    let response = sign_in(&app, "github").await;

    assert_eq!(response.status(), StatusCode::FOUND);
    let target = location(&response);
    let code = target.strip_prefix(&format!("{FRONTEND_DONE}?code=")).expect("a one-time code").to_owned();
    let exchanged = app.post_json("/api/v1/auth/oauth/exchange", &json!({"code": code})).await;
    assert_eq!(exchanged.status(), StatusCode::OK);
    let pair: Value = exchanged.json().await.expect("JSON");
    assert!(pair["access_token"].is_string() && pair["refresh_token"].is_string());
    let replay = app.post_json("/api/v1/auth/oauth/exchange", &json!({"code": code})).await;
    assert_problem(replay, StatusCode::BAD_REQUEST, "invalid_token").await;

    fake.script(|s| s.deny = Some("access_denied".to_owned()));
    let denied = sign_in(&app, "github").await;
    assert_eq!(denied.status(), StatusCode::FOUND);
    assert_eq!(location(&denied), format!("{FRONTEND_DONE}?error=invalid_token"), "errors redirect too");
}

async fn unlinking_the_last_way_to_sign_in_is_refused(backend: Backend) {
    let fake = FakeProvider::start().await;
    let app = app(backend, &fake, None).await;
    let pair: Value = sign_in(&app, "google").await.json().await.expect("JSON");
    let token = pair["access_token"].as_str().expect("token");
    let unlink = |provider: &'static str| {
        app.client.delete(app.url(&format!("/api/v1/users/me/identities/{provider}"))).bearer_auth(token).send()
    };

    assert_problem(unlink("google").await.expect("sent"), StatusCode::CONFLICT, "conflict").await;
    assert_problem(unlink("github").await.expect("sent"), StatusCode::NOT_FOUND, "not_found").await;

    assert_eq!(sign_in(&app, "github").await.status(), StatusCode::OK, "GitHub links by the verified email");
    assert_eq!(unlink("google").await.expect("sent").status(), StatusCode::NO_CONTENT, "another way remains");
    let linked = identities(&app, token).await;
    assert_eq!(linked.as_array().map(Vec::len), Some(1), "{linked}");
    assert_eq!(linked[0]["provider"], "github");
}

/// The lockout is there to stop password guessing; it must not keep the owner out of a
/// sign-in the provider vouches for.
async fn a_lockout_after_failed_passwords_does_not_stop_a_provider_sign_in(backend: Backend) {
    let fake = FakeProvider::start().await;
    let app = app(backend, &fake, None).await;
    verified_user(&app, "ada@example.com").await;
    for _ in 0..5 {
        let wrong = app.login(&json!({"email": "ada@example.com", "password": "a wrong guess"})).await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    app.wait_for_mail(2).await;
    let locked = app.login(&json!({"email": "ada@example.com", "password": PASSWORD})).await;
    assert_problem(locked, StatusCode::FORBIDDEN, "account_locked").await;

    assert_eq!(sign_in(&app, "github").await.status(), StatusCode::OK, "the provider proves who signs in");
}

async fn a_disabled_account_cannot_sign_in_through_a_provider(backend: Backend) {
    let fake = FakeProvider::start().await;
    let app = spawn_app_with(backend, |s| {
        s.public.base_url = BASE.to_owned();
        s.oauth.legacy.insert("google".to_owned(), fake.google_settings());
        s.bootstrap.admin_email = Some(ADMIN_EMAIL.to_owned());
        s.bootstrap.admin_password = Some(PASSWORD.to_owned().into());
    })
    .await;
    let admin = app.access_token(ADMIN_EMAIL).await;
    let user = verified_user(&app, "ada@example.com").await;
    let id = user["id"].as_str().expect("id");
    let disable = json!({"status": "disabled"});
    let changed = app.send_authed(Method::PATCH, &format!("/api/v1/users/{id}"), &admin, Some(&disable)).await;
    assert_eq!(changed.status(), StatusCode::OK, "disabled by the admin");

    assert_problem(sign_in(&app, "google").await, StatusCode::FORBIDDEN, "account_disabled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_state_must_come_back_with_its_cookie_once_and_untampered() {
    let fake = FakeProvider::start().await;
    let app = app(Backend::Sqlite, &fake, None).await;

    let flow = authorize(&app, "github").await;
    let path = at_provider(&app, &flow).await;
    assert_problem(callback(&app, &path, None).await, StatusCode::BAD_REQUEST, "invalid_token").await;

    let flow = authorize(&app, "github").await;
    let path = at_provider(&app, &flow).await;
    let tampered = path.replace("state=", "state=x");
    assert_problem(callback(&app, &tampered, Some(&flow.cookie)).await, StatusCode::BAD_REQUEST, "invalid_token").await;
    let mut forged = flow.cookie.clone();
    forged.push('A');
    assert_problem(callback(&app, &path, Some(&forged)).await, StatusCode::BAD_REQUEST, "invalid_token").await;

    let flow = authorize(&app, "github").await;
    let path = at_provider(&app, &flow).await;
    assert_eq!(callback(&app, &path, Some(&flow.cookie)).await.status(), StatusCode::OK);
    let replay = callback(&app, &path, Some(&flow.cookie)).await;
    assert_problem(replay, StatusCode::BAD_REQUEST, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_error_answers_a_problem() {
    let fake = FakeProvider::start().await;
    let app = app(Backend::Sqlite, &fake, None).await;
    fake.script(|s| s.deny = Some("access_denied".to_owned()));

    let body = assert_problem(sign_in(&app, "google").await, StatusCode::BAD_REQUEST, "invalid_token").await;

    assert!(body["detail"].as_str().is_some_and(|d| d.contains("access_denied")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_with_a_wrong_audience_issuer_nonce_or_expiry_are_refused() {
    let fake = FakeProvider::start().await;
    let app = app(Backend::Sqlite, &fake, None).await;
    let past = chrono::Utc::now().timestamp() - 3600;
    let cases = [
        ("aud", json!("someone-else")),
        ("iss", json!("https://evil.example.com")),
        ("nonce", json!("not-the-nonce")),
        ("nonce", Value::Null),
        ("exp", json!(past)),
    ];
    for (claim, value) in cases {
        fake.script(|s| {
            s.id_token_overrides.clear();
            s.id_token_overrides.insert(claim.to_owned(), value.clone());
        });
        let response = sign_in(&app, "google").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{claim} = {value}");
        assert_problem(response, StatusCode::BAD_REQUEST, "invalid_token").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_provider_answers_bad_gateway() {
    let fake = FakeProvider::start().await;
    let closed = format!("http://127.0.0.1:{}/token", free_port());
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.public.base_url = BASE.to_owned();
        let mut github = fake.github_settings();
        github.token_url = Some(closed);
        s.oauth.legacy.insert("github".to_owned(), github);
    })
    .await;

    assert_problem(sign_in(&app, "github").await, StatusCode::BAD_GATEWAY, "bad_gateway").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_times_out_answers_bad_gateway() {
    let fake = FakeProvider::start().await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.public.base_url = BASE.to_owned();
        let mut github = fake.github_settings();
        github.token_url = Some(format!("{}/github/slow-token", fake.address));
        github.timeout_secs = Some(1);
        s.oauth.legacy.insert("github".to_owned(), github);
    })
    .await;

    let started = std::time::Instant::now();
    assert_problem(sign_in(&app, "github").await, StatusCode::BAD_GATEWAY, "bad_gateway").await;
    // The provider would answer after 60 s; a 1 s timeout answers long before, even on a busy machine.
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "the timeout cut the call short");
}

/// `redirect_to` is a plain path: spellings a browser would turn into another origin are
/// refused with 422 on `redirect_to`, whatever the encoding they arrive in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_is_a_plain_path_and_nothing_a_browser_could_reinterpret() {
    let fake = FakeProvider::start().await;
    let app = app(Backend::Sqlite, &fake, Some(FRONTEND_DONE)).await;
    let authorize = |redirect_to: &'static str| {
        app.client.get(app.url("/api/v1/auth/oauth/github/authorize")).query(&[("redirect_to", redirect_to)]).send()
    };
    for evil in [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\\evil.example",
        "\\/evil.example",
        "//evil.example",
        "https://evil.example",
        "/ /evil.example",
        "/\u{a0}/evil.example",
        "/%2Fevil.example",
        "/%5cevil.example",
        "/%09/evil.example",
        "evil.example",
    ] {
        let response = authorize(evil).await.expect("sent");
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "redirect_to", "{evil:?}: {problem}");
    }
    let fine = authorize("/settings/security?tab=keys").await.expect("sent");
    assert_eq!(fine.status(), StatusCode::FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_providers_are_not_found() {
    let fake = FakeProvider::start().await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.oauth.legacy.insert("github".to_owned(), fake.github_settings());
    })
    .await;

    let response = app.get("/api/v1/auth/oauth/google/authorize", None).await;
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app.get("/api/v1/auth/oauth/google/callback?code=c&state=s", None).await;
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
}
