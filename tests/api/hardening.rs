//! HTTP hardening: security headers, CORS preflights, the JSON body limit, built-in TLS.

use gatehouse_tests::{Backend, assert_problem, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::json;

const FRONTEND: &str = "https://app.example.com";

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_docs_a_restrictive_csp() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;

    for path in ["/health/live", "/api/v1/users/me", "/no/such/route"] {
        let response = app.get(path, None).await;
        assert_eq!(header(&response, "x-content-type-options").as_deref(), Some("nosniff"), "{path}");
        assert_eq!(header(&response, "x-frame-options").as_deref(), Some("DENY"), "{path}");
        assert_eq!(header(&response, "referrer-policy").as_deref(), Some("no-referrer"), "{path}");
        assert!(header(&response, "strict-transport-security").is_none(), "HSTS only in production: {path}");
    }
    let docs = app.get("/docs/", None).await;
    let csp = header(&docs, "content-security-policy").expect("a CSP on /docs");
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header(&docs, "x-content-type-options").as_deref(), Some("nosniff"));
}

async fn preflight(app: &gatehouse_tests::TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url("/api/v1/auth/login"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .expect("request sent")
}

#[tokio::test]
async fn cors_preflights_from_allowed_origins_pass_and_others_are_refused() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.cors.allowed_origins = vec![FRONTEND.to_owned()]).await;

    let allowed = preflight(&app, FRONTEND).await;
    let refused = preflight(&app, "https://evil.example").await;

    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(header(&allowed, "access-control-allow-origin").as_deref(), Some(FRONTEND));
    assert_eq!(header(&allowed, "access-control-allow-credentials").as_deref(), Some("true"));
    assert!(!refused.status().is_success(), "{}", refused.status());
    assert!(header(&refused, "access-control-allow-origin").is_none());
    let simple = app.client.get(app.url("/health/live")).header("Origin", FRONTEND).send().await.expect("sent");
    assert_eq!(header(&simple, "access-control-allow-origin").as_deref(), Some(FRONTEND));
}

#[tokio::test]
async fn a_json_body_over_the_limit_answers_413() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let big = "x".repeat(70 * 1024);

    let response = app.post_json("/api/v1/auth/login", &json!({"email": "a@example.com", "password": big})).await;

    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn tls_is_served_with_the_configured_certificate() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("a self-signed certificate");
    let dir = std::env::temp_dir().join(format!("gatehouse-tls-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, certified.cert.pem()).expect("cert written");
    std::fs::write(&key_path, certified.key_pair.serialize_pem()).expect("key written");
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.tls_cert = Some(cert_path.clone());
        s.server.tls_key = Some(key_path.clone());
    })
    .await;
    let port = app.address.rsplit(':').next().expect("a port").to_owned();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).expect("PEM"))
        .build()
        .expect("a client");

    let response = client.get(format!("https://127.0.0.1:{port}/health/live")).send().await.expect("TLS handshake");
    let plain = app.client.get(format!("http://127.0.0.1:{port}/health/live")).send().await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(plain.map_or(true, |r| !r.status().is_success()), "plain HTTP is not served on the TLS port");
    let _ = std::fs::remove_dir_all(dir);
}

async fn via_proxy(app: &gatehouse_tests::TestApp, headers: &[(&str, &str)]) -> reqwest::Response {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client");
    let mut request = client.get(app.url("/api/v1/users/me?fields=all"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request sent")
}

#[tokio::test]
async fn plain_http_behind_a_trusted_proxy_is_refused_when_configured() {
    use gatehouse_server::settings::PlainHttp;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.trusted_proxies = vec!["127.0.0.1".to_owned()];
        s.server.plain_http = PlainHttp::Refuse;
    })
    .await;

    let refused = via_proxy(&app, &[("X-Forwarded-Proto", "http")]).await;
    let problem = assert_problem(refused, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("HTTPS")), "{problem}");
    let forwarded = via_proxy(&app, &[("Forwarded", "for=203.0.113.9;proto=http")]).await;
    assert_eq!(forwarded.status(), StatusCode::FORBIDDEN, "the standard header counts too");

    for served in [vec![("X-Forwarded-Proto", "https")], vec![]] {
        let response = via_proxy(&app, &served).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "served (no token): {served:?}");
    }
}

#[tokio::test]
async fn plain_http_behind_a_trusted_proxy_is_redirected_to_the_public_https_url() {
    use gatehouse_server::settings::PlainHttp;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.trusted_proxies = vec!["127.0.0.1".to_owned()];
        s.server.plain_http = PlainHttp::Redirect;
        s.public.base_url = "https://id.example.com".to_owned();
    })
    .await;

    let response = via_proxy(&app, &[("X-Forwarded-Proto", "http"), ("Host", "evil.example.net")]).await;

    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&response, "location").as_deref(), Some("https://id.example.com/api/v1/users/me?fields=all"));
    assert_eq!(header(&response, "x-content-type-options").as_deref(), Some("nosniff"), "still hardened");
}

#[tokio::test]
async fn the_forwarded_protocol_of_an_untrusted_peer_is_ignored() {
    use gatehouse_server::settings::PlainHttp;
    let app = spawn_app_with(Backend::Sqlite, |s| s.server.plain_http = PlainHttp::Refuse).await;

    let response = via_proxy(&app, &[("X-Forwarded-Proto", "http")]).await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "not a trusted proxy: served as usual");
}

/// The operator names as the first admin an address someone registered earlier with their
/// own password. Start-up hands the account over: the operator's password, every session of
/// the registrant ended, and the registrant's password refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_never_keeps_a_stranger_s_password() {
    let app = gatehouse_tests::spawn_app(Backend::Postgres).await;
    app.register_user("root@example.com").await;
    let stranger = app.token_pair("root@example.com").await;
    let operator_password = "the operator's own passphrase";

    let operator = app
        .spawn_sibling(|s| {
            s.bootstrap.admin_email = Some("root@example.com".to_owned());
            s.bootstrap.admin_password = Some(operator_password.to_owned().into());
        })
        .await;

    let refused = operator.login(&json!({"email": "root@example.com", "password": gatehouse_tests::PASSWORD})).await;
    assert_problem(refused, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let refresh = operator.refresh(stranger["refresh_token"].as_str().expect("refresh token")).await;
    assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED, "the registrant's session ended");
    let old_access = stranger["access_token"].as_str().expect("access token");
    assert_eq!(operator.get("/api/v1/users/me", Some(old_access)).await.status(), StatusCode::UNAUTHORIZED);
    let admin = operator.access_token_with("root@example.com", operator_password).await;
    let me: serde_json::Value = operator.get("/api/v1/users/me", Some(&admin)).await.json().await.expect("json");
    assert_eq!(me["roles"], json!(["user", "admin"]), "{me}");
    assert_eq!(me["email_verified"], true);
}
