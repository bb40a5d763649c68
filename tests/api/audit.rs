//! The audit trail: what is recorded, and who can read it.

use gatehouse_tests::{Backend, PASSWORD, TestApp, assert_problem, on_both_backends, spawn_app_with_admin};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    a_users_own_activity_lists_their_events_newest_first,
    failed_sign_ins_are_recorded_without_the_password,
    admins_search_the_audit_trail_with_filters_and_pages,
    a_refused_change_records_nothing,
);

fn actions(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|e| e["action"].as_str().expect("action").to_owned()).collect()
}

async fn my_activity(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app.get(&format!("/api/v1/users/me/activity?{query}"), Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

async fn a_users_own_activity_lists_their_events_newest_first(backend: Backend) {
    let (app, _admin) = spawn_app_with_admin(backend).await;
    app.register_user("ada@example.com").await;
    let token = app.access_token("ada@example.com").await;
    app.send_authed(Method::PATCH, "/api/v1/users/me", &token, Some(&json!({"display_name": "Ada"}))).await;
    app.register_user("grace@example.com").await;

    let page = my_activity(&app, &token, "").await;

    assert_eq!(actions(&page), ["user.updated", "auth.login_succeeded", "user.registered"]);
    let login = &page["items"][1];
    assert_eq!(login["ip"], "127.0.0.1");
    assert!(login["details"]["session_id"].is_string(), "{login}");
    assert_eq!(login["actor_id"], login["user_id"]);
    let first = my_activity(&app, &token, "limit=2").await;
    let rest =
        my_activity(&app, &token, &format!("limit=2&cursor={}", first["next_cursor"].as_str().expect("more"))).await;
    assert_eq!(actions(&rest), ["user.registered"]);
    assert_eq!(rest["next_cursor"], Value::Null);
    assert_problem(
        app.get("/api/v1/users/me/activity?limit=500", Some(&token)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_problem(
        app.get("/api/v1/users/me/activity?cursor=xyz", Some(&token)).await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    )
    .await;
}

async fn failed_sign_ins_are_recorded_without_the_password(backend: Backend) {
    let (app, admin) = spawn_app_with_admin(backend).await;
    app.register_user("ada@example.com").await;
    app.login(&json!({"email": "ada@example.com", "password": "hunter2-the-wrong-one"})).await;

    // The failure is recorded after the answer.
    let path = "/api/v1/audit-events?action=auth.login_failed";
    app.get_until(path, Some(&admin), |page| page["items"].as_array().is_some_and(|items| !items.is_empty())).await;
    let response = app.get(path, Some(&admin)).await;

    let text = response.text().await.expect("body");
    assert!(!text.contains("hunter2"), "{text}");
    let page: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(actions(&page), ["auth.login_failed"]);
    assert_eq!(page["items"][0]["details"]["reason"], "wrong_password");
    assert_eq!(page["items"][0]["actor_id"], Value::Null);
}

async fn admins_search_the_audit_trail_with_filters_and_pages(backend: Backend) {
    let (app, admin) = spawn_app_with_admin(backend).await;
    let ada = app.register_user("ada@example.com").await;
    let ada_id = ada["id"].as_str().expect("id");
    app.register_user("grace@example.com").await;
    let before_promotion = chrono::Utc::now();
    app.send_authed(Method::PATCH, &format!("/api/v1/users/{ada_id}"), &admin, Some(&json!({"roles": ["admin"]})))
        .await;
    let me: Value = app.get("/api/v1/users/me", Some(&admin)).await.json().await.expect("json");

    let by_user: Value =
        app.get(&format!("/api/v1/audit-events?user_id={ada_id}"), Some(&admin)).await.json().await.expect("json");
    assert_eq!(actions(&by_user), ["user.roles_changed", "user.registered"]);
    assert_eq!(by_user["items"][0]["actor_id"], me["id"], "the admin is the actor");
    assert_eq!(by_user["items"][0]["details"]["roles"], "user,admin");

    let registered: Value =
        app.get("/api/v1/audit-events?action=user.registered&limit=1", Some(&admin)).await.json().await.expect("json");
    assert_eq!(registered["items"].as_array().map(Vec::len), Some(1));
    let next = registered["next_cursor"].as_str().expect("a second page");
    let second: Value = app
        .get(&format!("/api/v1/audit-events?action=user.registered&limit=1&cursor={next}"), Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    assert_ne!(second["items"][0]["id"], registered["items"][0]["id"]);

    let since = before_promotion.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let recent: Value = app
        .get(&format!("/api/v1/audit-events?since={}", urlencode(&since)), Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(actions(&recent), ["user.roles_changed"], "{recent}");
    let until: Value = app
        .get(&format!("/api/v1/audit-events?user_id={ada_id}&until={}", urlencode(&since)), Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(actions(&until), ["user.registered"], "{until}");

    assert_problem(
        app.get("/api/v1/audit-events?action=user.exploded", Some(&admin)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_problem(
        app.get("/api/v1/audit-events?since=yesterday", Some(&admin)).await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    )
    .await;
    assert_problem(
        app.get("/api/v1/audit-events?user_id=42", Some(&admin)).await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    )
    .await;
}

fn urlencode(value: &str) -> String {
    value.replace('+', "%2B").replace(':', "%3A")
}

async fn a_refused_change_records_nothing(backend: Backend) {
    let (app, _admin) = spawn_app_with_admin(backend).await;
    app.register(&json!({"email": "grace@example.com", "password": PASSWORD, "username": "grace"})).await;
    app.register_user("ada@example.com").await;
    let token = app.access_token("ada@example.com").await;

    let refused = app.send_authed(Method::PATCH, "/api/v1/users/me", &token, Some(&json!({"username": "grace"}))).await;
    assert_problem(refused, StatusCode::CONFLICT, "username_taken").await;

    let page = my_activity(&app, &token, "").await;
    assert_eq!(actions(&page), ["auth.login_succeeded", "user.registered"], "no user.updated for a change that failed");
}
