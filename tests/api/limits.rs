//! Rate limits: per IP, per email whatever the IP, the headers, two instances sharing one
//! Redis, and an unreachable Redis. Limits are off in `config/test.toml`; these tests turn them
//! on with small numbers.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gatehouse_server::settings::{RateRule, Settings};
use gatehouse_tests::{Backend, PASSWORD, assert_problem, free_port, on_both_backends, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    logins_over_the_per_ip_limit_answer_429_with_retry_after,
    the_per_email_limit_holds_whatever_ip_the_attacker_uses,
    an_account_has_one_login_budget_whether_named_by_email_or_username,
    refreshes_are_limited_per_session_not_per_ip,
    forwarded_for_is_believed_only_from_a_trusted_proxy,
    two_instances_sharing_redis_together_admit_exactly_the_limit,
    an_unreachable_redis_degrades_readiness_and_limits_still_hold_then_recover,
);

fn limited(settings: &mut Settings, login: u32, register: u32) {
    settings.rate_limit.enabled = true;
    settings.rate_limit.login = RateRule { limit: login, window_secs: 60 };
    settings.rate_limit.register = RateRule { limit: register, window_secs: 3600 };
}

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn unique_prefix() -> String {
    format!("gatehouse-test:{}:", uuid::Uuid::now_v7())
}

async fn login_from(app: &gatehouse_tests::TestApp, email: &str, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request =
        app.client.post(app.url("/api/v1/auth/login")).json(&json!({"email": email, "password": "wrong password"}));
    if let Some(ip) = forwarded_for {
        request = request.header("X-Forwarded-For", ip);
    }
    request.send().await.expect("request sent")
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn logins_over_the_per_ip_limit_answer_429_with_retry_after(backend: Backend) {
    let app = spawn_app_with(backend, |s| limited(s, 3, 5)).await;

    for i in 0..3 {
        let response = login_from(&app, &format!("nobody{i}@example.com"), None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {i} is within the limit");
        assert_eq!(header(&response, "ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(header(&response, "ratelimit-remaining"), Some((2 - i).to_string()));
        assert!(header(&response, "ratelimit-reset").is_some());
    }
    let response = login_from(&app, "nobody9@example.com", None).await;

    let retry_after: u32 = header(&response, "retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&response, "ratelimit-remaining").as_deref(), Some("0"));
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let other_rule = app.get("/api/v1/users/me", None).await;
    assert_eq!(other_rule.status(), StatusCode::UNAUTHORIZED, "other routes have their own budget");
}

async fn the_per_email_limit_holds_whatever_ip_the_attacker_uses(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        limited(s, 3, 5);
        s.server.trusted_proxies = vec!["127.0.0.1".to_owned()];
    })
    .await;
    app.register_user("victim@example.com").await;

    for i in 0..3 {
        let response = login_from(&app, "victim@example.com", Some(&format!("203.0.113.{i}"))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let response = login_from(&app, "Victim@Example.com", Some("203.0.113.77")).await;

    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let response = login_from(&app, "someone-else@example.com", Some("203.0.113.78")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "other emails are not affected");
}

async fn an_account_has_one_login_budget_whether_named_by_email_or_username(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        limited(s, 3, 5);
        s.server.trusted_proxies = vec!["127.0.0.1".to_owned()];
    })
    .await;
    app.register(&json!({"email": "victim@example.com", "username": "victim", "password": PASSWORD})).await;
    let attempt = |i: u8, body: Value| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("X-Forwarded-For", format!("203.0.113.{i}"))
            .json(&body)
            .send()
    };
    let by_email = |i| attempt(i, json!({"email": "victim@example.com", "password": "wrong"}));
    let by_username = |i| attempt(i, json!({"username": "VICTIM", "password": "wrong"}));

    assert_eq!(by_email(1).await.expect("sent").status(), StatusCode::UNAUTHORIZED);
    assert_eq!(by_username(2).await.expect("sent").status(), StatusCode::UNAUTHORIZED);
    assert_eq!(by_email(3).await.expect("sent").status(), StatusCode::UNAUTHORIZED);

    assert_problem(by_username(4).await.expect("sent"), StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let form = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .header("X-Forwarded-For", "203.0.113.5")
        .form(&[("username", "victim"), ("password", "wrong")])
        .send()
        .await
        .expect("sent");
    assert_problem(form, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

async fn refreshes_are_limited_per_session_not_per_ip(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.refresh = RateRule { limit: 2, window_secs: 5 };
    })
    .await;
    app.register_user("busy@example.com").await;
    let first = app.token_pair("busy@example.com").await;
    let second = app.token_pair("busy@example.com").await;

    let mut refresh_token = first["refresh_token"].as_str().expect("a refresh token").to_owned();
    for i in 0..2 {
        let response = app.refresh(&refresh_token).await;
        assert_eq!(response.status(), StatusCode::OK, "refresh {i} is within the limit");
        let pair: Value = response.json().await.expect("a token pair");
        refresh_token = pair["refresh_token"].as_str().expect("a refresh token").to_owned();
    }
    let response = app.refresh(&refresh_token).await;
    assert!(header(&response, "retry-after").is_some(), "a 429 says when to retry");
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let spent = app.refresh(first["refresh_token"].as_str().expect("a refresh token")).await;
    assert_problem(spent, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    let other_session = app.refresh(second["refresh_token"].as_str().expect("a refresh token")).await;
    assert_eq!(other_session.status(), StatusCode::OK, "another session from the same IP has its own budget");
    let still_refused = app.refresh(&refresh_token).await;
    assert_eq!(still_refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let reset: u64 = header(&still_refused, "retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");

    tokio::time::sleep(Duration::from_secs(reset) + Duration::from_millis(200)).await;
    let next_window = app.refresh(&refresh_token).await;
    assert_eq!(next_window.status(), StatusCode::OK, "a refused refresh neither spends the token nor ends the session");
    for _ in 0..3 {
        let unknown = app.refresh("made-up-token").await;
        assert_problem(unknown, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
}

async fn register_from(app: &gatehouse_tests::TestApp, email: &str, forwarded_for: &str) -> StatusCode {
    app.client
        .post(app.url("/api/v1/auth/register"))
        .header("X-Forwarded-For", forwarded_for)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .expect("request sent")
        .status()
}

async fn forwarded_for_is_believed_only_from_a_trusted_proxy(backend: Backend) {
    let trusting = spawn_app_with(backend, |s| {
        limited(s, 10, 1);
        s.server.trusted_proxies = vec!["127.0.0.0/8".to_owned()];
    })
    .await;
    let untrusting = spawn_app_with(backend, |s| {
        limited(s, 10, 1);
        s.server.trusted_proxies = vec!["10.0.0.0/8".to_owned()];
    })
    .await;

    assert_eq!(register_from(&trusting, "a@example.com", "198.51.100.1").await, StatusCode::CREATED);
    assert_eq!(
        register_from(&trusting, "b@example.com", "198.51.100.2").await,
        StatusCode::CREATED,
        "behind a trusted proxy each forwarded client has its own budget"
    );
    assert_eq!(register_from(&trusting, "c@example.com", "198.51.100.1").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(register_from(&untrusting, "a@example.com", "198.51.100.1").await, StatusCode::CREATED);
    assert_eq!(
        register_from(&untrusting, "b@example.com", "198.51.100.2").await,
        StatusCode::TOO_MANY_REQUESTS,
        "from an untrusted peer the header is ignored: both come from 127.0.0.1"
    );
    let token = trusting.access_token("a@example.com").await;
    let activity: Value = trusting.get("/api/v1/users/me/activity", Some(&token)).await.json().await.expect("json");
    let registered = activity["items"].as_array().expect("items").iter().find(|e| e["action"] == "user.registered");
    assert_eq!(registered.expect("registered event")["ip"], "198.51.100.1", "{activity}");
}

async fn two_instances_sharing_redis_together_admit_exactly_the_limit(backend: Backend) {
    let prefix = unique_prefix();
    let one = spawn_app_with(backend, |s| {
        limited(s, 4, 5);
        s.redis.url = Some(redis_url().into());
        s.redis.key_prefix = prefix.clone();
    })
    .await;
    let other = one.spawn_sibling(|_| {}).await;

    let mut statuses = Vec::new();
    for i in 0..10 {
        let app = if i % 2 == 0 { &one } else { &other };
        statuses.push(login_from(app, &format!("n{i}@example.com"), None).await.status());
    }

    let admitted = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((admitted, refused), (4, 6), "{statuses:?}");
    let ready: Value = one.get("/health/ready", None).await.json().await.expect("json");
    assert_eq!(ready["checks"]["redis"]["status"], "ok", "{ready}");
}

/// A Redis server of our own on `port`, stopped when dropped.
struct ThrowawayRedis(Child);

impl ThrowawayRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (install redis-server)");
        Self(child)
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn readiness(app: &gatehouse_tests::TestApp) -> (StatusCode, Value) {
    let response = app.get("/health/ready", None).await;
    (response.status(), response.json().await.expect("json"))
}

async fn an_unreachable_redis_degrades_readiness_and_limits_still_hold_then_recover(backend: Backend) {
    let port = free_port();
    let app = spawn_app_with(backend, |s| {
        limited(s, 2, 5);
        s.redis.url = Some(format!("redis://127.0.0.1:{port}").into());
        s.redis.key_prefix = unique_prefix();
    })
    .await;

    let statuses: Vec<StatusCode> = {
        let mut statuses = Vec::new();
        for i in 0..3 {
            statuses.push(login_from(&app, &format!("n{i}@example.com"), None).await.status());
        }
        statuses
    };
    assert_eq!(
        statuses,
        [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS],
        "in-process limits hold while Redis is away"
    );
    let (status, body) = readiness(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["checks"]["redis"]["status"], "degraded", "{body}");
    assert_eq!(degraded_gauge(&app).await, Some(1.0), "the metric says limits are per instance");

    let _redis = ThrowawayRedis::start(port);
    let mut recovered = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, body) = readiness(&app).await;
        if body["checks"]["redis"]["status"] == "ok" {
            assert_eq!(body["status"], "ok", "{body}");
            recovered = true;
            break;
        }
    }
    assert!(recovered, "readiness recovers by itself once Redis is back");
    assert_eq!(degraded_gauge(&app).await, Some(0.0), "and so does the metric");
}

/// `gatehouse_rate_limit_degraded` as `/metrics` reports it.
async fn degraded_gauge(app: &gatehouse_tests::TestApp) -> Option<f64> {
    let text = app.get("/metrics", None).await.text().await.expect("a body");
    text.lines().find_map(|line| line.strip_prefix("gatehouse_rate_limit_degraded ")?.trim().parse().ok())
}
