//! Refresh-token rotation, reuse detection, sign-out and session management.

use std::time::Duration;

use futures::future::join_all;
use gatehouse_tests::{Backend, assert_problem, on_both_backends, spawn_app, spawn_app_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    a_refresh_rotates_the_refresh_token_and_keeps_the_session,
    a_spent_refresh_token_revokes_the_whole_session,
    concurrent_refreshes_of_one_token_let_exactly_one_rotate,
    within_the_grace_window_a_spent_token_gets_the_same_successor_and_the_session_stays_one,
    outside_the_grace_window_a_spent_token_still_revokes_the_session,
    an_expired_session_cannot_refresh,
    an_unknown_refresh_token_is_unauthorized,
    logout_ends_the_session_and_its_access_tokens_at_once,
    the_session_list_shows_live_sessions_and_marks_the_current_one,
    revoking_a_session_stops_its_tokens_and_foreign_ids_are_not_found,
    revoking_the_other_sessions_keeps_the_current_one,
);

fn refresh_token(pair: &Value) -> &str {
    pair["refresh_token"].as_str().expect("a refresh token")
}

fn access_token(pair: &Value) -> &str {
    pair["access_token"].as_str().expect("an access token")
}

async fn a_refresh_rotates_the_refresh_token_and_keeps_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    let first = app.token_pair("ada@example.com").await;

    let response = app.refresh(refresh_token(&first)).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let second: Value = response.json().await.expect("json");
    assert_ne!(refresh_token(&second), refresh_token(&first), "a new refresh token");
    assert!(second["refresh_expires_in"].as_i64().is_some_and(|s| s > 2_591_000 && s <= 2_592_000), "{second}");
    let me = app.get("/api/v1/users/me", Some(access_token(&second))).await;
    assert_eq!(me.status(), StatusCode::OK, "the new access token works");
    let sessions: Value =
        app.get("/api/v1/auth/sessions", Some(access_token(&second))).await.json().await.expect("json");
    assert_eq!(sessions.as_array().map(Vec::len), Some(1), "still one session: {sessions}");
    let third = app.refresh(refresh_token(&second)).await;
    assert_eq!(third.status(), StatusCode::OK, "the successor rotates in turn");
}

async fn a_spent_refresh_token_revokes_the_whole_session(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    let first = app.token_pair("ada@example.com").await;
    let second: Value = app.refresh(refresh_token(&first)).await.json().await.expect("json");

    let replay = app.refresh(refresh_token(&first)).await;

    assert_problem(replay, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    let newest = app.refresh(refresh_token(&second)).await;
    assert_problem(newest, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let me = app.get("/api/v1/users/me", Some(access_token(&second))).await;
    assert_problem(me, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn concurrent_refreshes_of_one_token_let_exactly_one_rotate(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    let pair = app.token_pair("ada@example.com").await;

    let attempts = (0..6).map(|_| app.refresh(refresh_token(&pair)));
    let responses = join_all(attempts).await;

    let statuses: Vec<StatusCode> = responses.iter().map(reqwest::Response::status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count(), 5, "{statuses:?}");
    let mut codes = Vec::new();
    for response in responses.into_iter().filter(|r| r.status() == StatusCode::UNAUTHORIZED) {
        codes.push(response.json::<Value>().await.expect("a problem")["code"].as_str().expect("code").to_owned());
    }
    // The first loser detects the replay and revokes the session; later ones may find it
    // already revoked.
    assert!(codes.iter().any(|c| c == "refresh_token_reused"), "{codes:?}");
    assert!(codes.iter().all(|c| c == "refresh_token_reused" || c == "unauthorized"), "{codes:?}");
}

async fn within_the_grace_window_a_spent_token_gets_the_same_successor_and_the_session_stays_one(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.auth.refresh_reuse_grace_secs = 30).await;
    app.register_user("ada@example.com").await;
    let pair = app.token_pair("ada@example.com").await;
    let first: Value = app.refresh(refresh_token(&pair)).await.json().await.expect("json");

    let again = app.refresh(refresh_token(&pair)).await;

    assert_eq!(again.status(), StatusCode::OK, "a second tab refreshing at once is not a replay");
    let again: Value = again.json().await.expect("json");
    assert_eq!(refresh_token(&again), refresh_token(&first), "the same successor, not a second chain");
    assert_ne!(access_token(&again), access_token(&first), "a fresh access token");
    for token in [access_token(&first), access_token(&again)] {
        assert_eq!(app.get("/api/v1/users/me", Some(token)).await.status(), StatusCode::OK, "the session lives on");
    }
    let sessions: Value =
        app.get("/api/v1/auth/sessions", Some(access_token(&again))).await.json().await.expect("json");
    assert_eq!(sessions.as_array().map(Vec::len), Some(1), "still one session: {sessions}");

    let next: Value = app.refresh(refresh_token(&again)).await.json().await.expect("json");
    let next_again: Value = app.refresh(refresh_token(&first)).await.json().await.expect("json");
    assert_eq!(refresh_token(&next), refresh_token(&next_again), "both tabs hold one chain and stay on it");
}

async fn outside_the_grace_window_a_spent_token_still_revokes_the_session(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.auth.refresh_reuse_grace_secs = 1).await;
    app.register_user("ada@example.com").await;
    let pair = app.token_pair("ada@example.com").await;
    let first: Value = app.refresh(refresh_token(&pair)).await.json().await.expect("json");

    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let late = app.refresh(refresh_token(&pair)).await;

    assert_problem(late, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    let successor = app.refresh(refresh_token(&first)).await;
    assert_problem(successor, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

/// Two instances on one database: the retry may land on the other instance and still gets
/// the successor the first one issued (nothing is kept in a process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_within_the_grace_window_on_another_instance_gets_the_same_successor() {
    let first = spawn_app_with(Backend::Postgres, |s| s.auth.refresh_reuse_grace_secs = 30).await;
    let second = first.spawn_sibling(|_| {}).await;
    first.register_user("ada@example.com").await;
    let pair = first.token_pair("ada@example.com").await;

    let here: Value = first.refresh(refresh_token(&pair)).await.json().await.expect("json");
    let there = second.refresh(refresh_token(&pair)).await;

    assert_eq!(there.status(), StatusCode::OK);
    let there: Value = there.json().await.expect("json");
    assert_eq!(refresh_token(&there), refresh_token(&here));
    let sessions: Value =
        second.get("/api/v1/auth/sessions", Some(access_token(&there))).await.json().await.expect("json");
    assert_eq!(sessions.as_array().map(Vec::len), Some(1), "still one session: {sessions}");
}

async fn an_expired_session_cannot_refresh(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.auth.refresh_ttl_secs = 1).await;
    app.register_user("ada@example.com").await;
    let pair = app.token_pair("ada@example.com").await;

    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let response = app.refresh(refresh_token(&pair)).await;

    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn an_unknown_refresh_token_is_unauthorized(backend: Backend) {
    let app = spawn_app(backend).await;

    let unknown = app.refresh("not-a-token-we-issued").await;
    let missing = app.post_json("/api/v1/auth/refresh", &json!({})).await;

    assert_problem(unknown, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let body = assert_problem(missing, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "refresh_token");
}

async fn logout_ends_the_session_and_its_access_tokens_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    let pair = app.token_pair("ada@example.com").await;

    let response = app.post_json("/api/v1/auth/logout", &json!({"refresh_token": refresh_token(&pair)})).await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let me = app.get("/api/v1/users/me", Some(access_token(&pair))).await;
    assert_problem(me, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let refresh = app.refresh(refresh_token(&pair)).await;
    assert_problem(refresh, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let again = app.post_json("/api/v1/auth/logout", &json!({"refresh_token": refresh_token(&pair)})).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT, "signing out twice is harmless");
    let unknown = app.post_json("/api/v1/auth/logout", &json!({"refresh_token": "unknown"})).await;
    assert_eq!(unknown.status(), StatusCode::NO_CONTENT, "and reveals nothing");
}

async fn the_session_list_shows_live_sessions_and_marks_the_current_one(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    let laptop = app.token_pair("ada@example.com").await;
    let phone = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("user-agent", "Phone/1.0")
        .json(&json!({"email": "ada@example.com", "password": gatehouse_tests::PASSWORD}))
        .send()
        .await
        .expect("sent");
    let phone: Value = phone.json().await.expect("json");
    let ended = app.token_pair("ada@example.com").await;
    app.post_json("/api/v1/auth/logout", &json!({"refresh_token": refresh_token(&ended)})).await;

    let response = app.get("/api/v1/auth/sessions", Some(access_token(&laptop))).await;

    assert_eq!(response.status(), StatusCode::OK);
    let sessions: Vec<Value> = response.json().await.expect("json");
    assert_eq!(sessions.len(), 2, "the ended session is not listed: {sessions:?}");
    assert_eq!(sessions[0]["user_agent"], "Phone/1.0", "newest first");
    assert_eq!(sessions[0]["current"], false);
    assert_eq!(sessions[1]["current"], true);
    assert_eq!(sessions[1]["ip"], "127.0.0.1");
    for field in ["id", "created_at", "last_used_at", "expires_at"] {
        assert!(sessions[0][field].is_string(), "{field} in {}", sessions[0]);
    }
    let _ = phone;
}

async fn revoking_a_session_stops_its_tokens_and_foreign_ids_are_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    app.register_user("grace@example.com").await;
    let ada_laptop = app.token_pair("ada@example.com").await;
    let ada_phone = app.token_pair("ada@example.com").await;
    let grace = app.token_pair("grace@example.com").await;
    let sessions: Vec<Value> =
        app.get("/api/v1/auth/sessions", Some(access_token(&ada_laptop))).await.json().await.expect("json");
    let phone_id =
        sessions.iter().find(|s| s["current"] == false).expect("the phone")["id"].as_str().expect("id").to_owned();

    let by_grace =
        app.send_authed(Method::DELETE, &format!("/api/v1/auth/sessions/{phone_id}"), access_token(&grace), None).await;
    assert_problem(by_grace, StatusCode::NOT_FOUND, "not_found").await;
    let malformed =
        app.send_authed(Method::DELETE, "/api/v1/auth/sessions/not-a-uuid", access_token(&ada_laptop), None).await;
    assert_problem(malformed, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.get("/api/v1/users/me", Some(access_token(&ada_phone))).await.status(), StatusCode::OK);

    let by_ada = app
        .send_authed(Method::DELETE, &format!("/api/v1/auth/sessions/{phone_id}"), access_token(&ada_laptop), None)
        .await;

    assert_eq!(by_ada.status(), StatusCode::NO_CONTENT);
    let me = app.get("/api/v1/users/me", Some(access_token(&ada_phone))).await;
    assert_problem(me, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(app.get("/api/v1/users/me", Some(access_token(&ada_laptop))).await.status(), StatusCode::OK);
}

async fn revoking_the_other_sessions_keeps_the_current_one(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    let current = app.token_pair("ada@example.com").await;
    let others = [app.token_pair("ada@example.com").await, app.token_pair("ada@example.com").await];

    let response = app.send_authed(Method::DELETE, "/api/v1/auth/sessions", access_token(&current), None).await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for other in &others {
        assert_problem(
            app.get("/api/v1/users/me", Some(access_token(other))).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
        assert_problem(app.refresh(refresh_token(other)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    assert_eq!(app.get("/api/v1/users/me", Some(access_token(&current))).await.status(), StatusCode::OK);
    assert_eq!(app.refresh(refresh_token(&current)).await.status(), StatusCode::OK);
}

/// Two instances on one PostgreSQL and one Redis: a session revoked through one is refused
/// by the other on the very next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_takes_effect_on_another_at_once_with_redis() {
    let redis = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let first = spawn_app_with(Backend::Postgres, |s| s.redis.url = Some(redis.into())).await;
    let second = first.spawn_sibling(|_| {}).await;
    first.register_user("ada@example.com").await;
    let pair = first.token_pair("ada@example.com").await;
    assert_eq!(second.get("/api/v1/users/me", Some(access_token(&pair))).await.status(), StatusCode::OK);

    first.post_json("/api/v1/auth/logout", &json!({"refresh_token": refresh_token(&pair)})).await;

    let me = second.get("/api/v1/users/me", Some(access_token(&pair))).await;
    assert_problem(me, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

/// The same without Redis: the instances agree through PostgreSQL `LISTEN`/`NOTIFY`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_takes_effect_on_another_at_once_without_redis() {
    let first = spawn_app(Backend::Postgres).await;
    let second = first.spawn_sibling(|_| {}).await;
    first.register_user("ada@example.com").await;
    let pair = first.token_pair("ada@example.com").await;
    assert_eq!(second.get("/api/v1/users/me", Some(access_token(&pair))).await.status(), StatusCode::OK);

    first.post_json("/api/v1/auth/logout", &json!({"refresh_token": refresh_token(&pair)})).await;

    let me = second.get("/api/v1/users/me", Some(access_token(&pair))).await;
    assert_problem(me, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
