//! The read cache across instances: two servers on one PostgreSQL, told of each other's
//! changes by `LISTEN`/`NOTIFY` (no Redis) or Redis pub/sub. Every case reads on B first so
//! B has the user and session cached, changes them through A, and expects B's very next read
//! to see the change. No case waits on time: A's request answers only once B confirmed.

use gatehouse_server::settings::Settings;
use gatehouse_tests::{ADMIN_EMAIL, Backend, PASSWORD, TestApp, assert_problem, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Which channel carries the changes between the two instances.
#[derive(Debug, Clone, Copy)]
enum Feed {
    Postgres,
    Redis,
}

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn configure(feed: Feed, settings: &mut Settings) {
    settings.bootstrap.admin_email = Some(ADMIN_EMAIL.to_owned());
    settings.bootstrap.admin_password = Some(PASSWORD.to_owned().into());
    if let Feed::Redis = feed {
        settings.redis.url = Some(redis_url().into());
        settings.redis.key_prefix = format!("gatehouse-test:{}:", uuid::Uuid::now_v7());
    }
}

/// A, B, and a user signed in (through A) whose account B has cached.
async fn two_instances(feed: Feed) -> (TestApp, TestApp, String) {
    let a = spawn_app_with(Backend::Postgres, |s| configure(feed, s)).await;
    let b = a.spawn_sibling(|_| {}).await;
    a.register_user("ada@example.com").await;
    let token = a.access_token("ada@example.com").await;
    for _ in 0..2 {
        assert_eq!(b.get("/api/v1/users/me", Some(&token)).await.status(), StatusCode::OK, "B caches ada");
    }
    (a, b, token)
}

async fn me(app: &TestApp, token: &str) -> Value {
    let response = app.get("/api/v1/users/me", Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

async fn a_profile_change_on_one_instance_is_seen_by_the_next_read_on_another(feed: Feed) {
    let (a, b, token) = two_instances(feed).await;

    let patched =
        a.send_authed(Method::PATCH, "/api/v1/users/me", &token, Some(&json!({"display_name": "Ada L."}))).await;
    assert_eq!(patched.status(), StatusCode::OK);

    assert_eq!(me(&b, &token).await["display_name"], "Ada L.");
}

async fn a_user_disabled_on_one_instance_is_refused_at_once_on_another(feed: Feed) {
    let (a, b, token) = two_instances(feed).await;
    let id = me(&b, &token).await["id"].as_str().expect("id").to_owned();
    let admin = a.access_token(ADMIN_EMAIL).await;

    let disabled = a
        .send_authed(Method::PATCH, &format!("/api/v1/users/{id}"), &admin, Some(&json!({"status": "disabled"})))
        .await;
    assert_eq!(disabled.status(), StatusCode::OK);

    assert_problem(b.get("/api/v1/users/me", Some(&token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn an_account_deleted_on_one_instance_is_refused_at_once_on_another(feed: Feed) {
    let (a, b, token) = two_instances(feed).await;

    let deleted = a.send_authed(Method::DELETE, "/api/v1/users/me", &token, Some(&json!({"password": PASSWORD}))).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    assert_problem(b.get("/api/v1/users/me", Some(&token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn a_session_revoked_on_one_instance_is_refused_at_once_on_another(feed: Feed) {
    let (a, b, token) = two_instances(feed).await;
    let sessions: Value = b.get("/api/v1/auth/sessions", Some(&token)).await.json().await.expect("json");
    let id = sessions[0]["id"].as_str().expect("a session id").to_owned();

    let revoked = a.send_authed(Method::DELETE, &format!("/api/v1/auth/sessions/{id}"), &token, None).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);

    assert_problem(b.get("/api/v1/users/me", Some(&token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

macro_rules! on_both_feeds {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_notify() {
                    super::$name(super::Feed::Postgres).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis_pubsub() {
                    super::$name(super::Feed::Redis).await;
                }
            }
        )*
    };
}

on_both_feeds!(
    a_profile_change_on_one_instance_is_seen_by_the_next_read_on_another,
    a_user_disabled_on_one_instance_is_refused_at_once_on_another,
    an_account_deleted_on_one_instance_is_refused_at_once_on_another,
    a_session_revoked_on_one_instance_is_refused_at_once_on_another,
);

/// On one SQLite node the process applies its own changes: a profile change and a sign-out
/// are seen by the next read, and `/metrics` counts what the cache did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_the_process_invalidates_its_own_cache_and_metrics_count_it() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    app.register_user("ada@example.com").await;
    let pair = app.token_pair("ada@example.com").await;
    let token = pair["access_token"].as_str().expect("token").to_owned();
    me(&app, &token).await;
    me(&app, &token).await;

    let patched =
        app.send_authed(Method::PATCH, "/api/v1/users/me", &token, Some(&json!({"display_name": "Ada L."}))).await;
    assert_eq!(patched.status(), StatusCode::OK);
    assert_eq!(me(&app, &token).await["display_name"], "Ada L.");
    app.post_json("/api/v1/auth/logout", &json!({"refresh_token": pair["refresh_token"]})).await;
    assert_problem(app.get("/api/v1/users/me", Some(&token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let metrics = app.get("/metrics", None).await.text().await.expect("text");
    let value = |name: &str| {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert!(value("gatehouse_read_cache_hits_total") >= 2.0, "the second read of the user and session hit");
    assert!(value("gatehouse_read_cache_misses_total") >= 2.0, "the first reads missed");
    assert!(value("gatehouse_read_cache_invalidations_total") >= 2.0, "the change and the sign-out");
    assert_eq!(value("gatehouse_read_cache_evictions_total"), 0.0);
    assert_eq!(value("gatehouse_read_cache_connected"), 1.0);
}

/// `cache.capacity = 0` turns the cache off: every read goes to the database and nothing is
/// kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_of_capacity_zero_keeps_nothing() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.cache.capacity = 0).await;
    app.register_user("ada@example.com").await;
    let token = app.access_token("ada@example.com").await;
    me(&app, &token).await;
    me(&app, &token).await;

    let metrics = app.get("/metrics", None).await.text().await.expect("text");
    assert!(metrics.contains("gatehouse_read_cache_hits_total 0"), "{metrics}");
    assert!(metrics.contains("gatehouse_read_cache_entries{kind=\"user\"} 0"), "{metrics}");
}
