//! The admin API: RBAC, the first admin, listing, changes, soft delete and restore.

use std::collections::HashSet;

use futures::future::join_all;
use gatehouse_tests::{
    ADMIN_EMAIL, Backend, PASSWORD, TestApp, assert_problem, on_both_backends, spawn_app, spawn_app_with_admin,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    every_admin_route_refuses_plain_users_and_anonymous_callers,
    the_first_admin_comes_from_configuration_once,
    pages_are_disjoint_complete_and_ordered_for_every_sort,
    pagination_is_stable_under_concurrent_inserts,
    every_filter_narrows_the_list,
    bad_limits_and_cursors_are_refused_cleanly,
    an_admin_reads_creates_and_edits_users,
    changing_roles_or_disabling_revokes_the_users_sessions,
    the_last_active_admin_cannot_demote_disable_or_delete_themself,
    soft_deleted_users_can_be_restored_unless_their_email_was_taken,
);

async fn admin_send(app: &TestApp, token: &str, method: Method, path: &str, body: Option<&Value>) -> reqwest::Response {
    app.send_authed(method, path, token, body).await
}

async fn create_user(app: &TestApp, token: &str, body: Value) -> Value {
    let response = admin_send(app, token, Method::POST, "/api/v1/users", Some(&body)).await;
    assert_eq!(response.status(), StatusCode::CREATED, "creating {body}");
    response.json().await.expect("json")
}

async fn list(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app.get(&format!("/api/v1/users?{query}"), Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK, "listing ?{query}");
    response.json().await.expect("json")
}

async fn every_admin_route_refuses_plain_users_and_anonymous_callers(backend: Backend) {
    let (app, admin) = spawn_app_with_admin(backend).await;
    let target = create_user(&app, &admin, json!({"email": "target@example.com"})).await;
    let id = target["id"].as_str().expect("id");
    app.register_user("plain@example.com").await;
    let plain = app.access_token("plain@example.com").await;
    let routes = [
        (Method::GET, "/api/v1/users".to_owned(), None),
        (Method::POST, "/api/v1/users".to_owned(), Some(json!({"email": "new@example.com"}))),
        (Method::GET, format!("/api/v1/users/{id}"), None),
        (Method::PATCH, format!("/api/v1/users/{id}"), Some(json!({"roles": ["admin"]}))),
        (Method::DELETE, format!("/api/v1/users/{id}"), None),
        (Method::POST, format!("/api/v1/users/{id}/restore"), None),
        (Method::GET, "/api/v1/audit-events".to_owned(), None),
    ];

    for (method, path, body) in &routes {
        let as_user = admin_send(&app, &plain, method.clone(), path, body.as_ref()).await;
        assert_problem(as_user, StatusCode::FORBIDDEN, "forbidden").await;
        let mut anonymous = app.client.request(method.clone(), app.url(path));
        if let Some(body) = body {
            anonymous = anonymous.json(body);
        }
        assert_problem(anonymous.send().await.expect("sent"), StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let unchanged = admin_send(&app, &admin, Method::GET, &format!("/api/v1/users/{id}"), None).await;
    let unchanged: Value = unchanged.json().await.expect("json");
    assert_eq!(unchanged["roles"], json!(["user"]), "nothing a plain user sent took effect");
    assert_eq!(unchanged["deleted_at"], Value::Null);
}

async fn the_first_admin_comes_from_configuration_once(backend: Backend) {
    let (app, admin) = spawn_app_with_admin(backend).await;
    let siblings = join_all((0..3).map(|_| app.spawn_sibling(|_| {}))).await;

    let admins = list(&app, &admin, "role=admin").await;

    assert_eq!(admins["items"].as_array().map(Vec::len), Some(1), "{admins}");
    assert_eq!(admins["items"][0]["email"], ADMIN_EMAIL);
    assert_eq!(admins["items"][0]["email_verified"], true);
    drop(siblings);
}

fn emails(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|u| u["email"].as_str().expect("email").to_owned()).collect()
}

async fn walk(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let suffix = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let page = list(app, token, &format!("{query}{suffix}")).await;
        seen.extend(emails(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return seen,
        }
    }
}

async fn seed(app: &TestApp, token: &str, count: usize) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(16) {
        join_all(chunk.iter().map(|i| {
            create_user(
                app,
                token,
                json!({"email": format!("user{i:03}@example.com"), "display_name": format!("Person {i}")}),
            )
        }))
        .await;
    }
}

async fn pages_are_disjoint_complete_and_ordered_for_every_sort(backend: Backend) {
    let (app, admin) = spawn_app_with_admin(backend).await;
    seed(&app, &admin, 120).await;

    for sort in ["created_at", "-created_at", "email", "-email"] {
        let walked = walk(&app, &admin, &format!("sort={sort}&limit=25")).await;

        assert_eq!(walked.len(), 121, "{sort}: every user once");
        assert_eq!(walked.iter().collect::<HashSet<_>>().len(), 121, "{sort}: pages are disjoint");
        if sort.ends_with("email") {
            let mut expected = walked.clone();
            expected.sort();
            if sort.starts_with('-') {
                expected.reverse();
            }
            assert_eq!(walked, expected, "{sort}: ordered");
        }
    }
    let oldest_first = walk(&app, &admin, "sort=created_at&limit=50").await;
    let newest_first = walk(&app, &admin, "limit=50").await;
    assert_eq!(oldest_first.first().map(String::as_str), Some(ADMIN_EMAIL), "the admin was created first");
    assert_eq!(newest_first.iter().rev().cloned().collect::<Vec<_>>(), oldest_first, "the default is newest first");
}

async fn pagination_is_stable_under_concurrent_inserts(backend: Backend) {
    let (app, admin) = spawn_app_with_admin(backend).await;
    seed(&app, &admin, 60).await;
    let before: HashSet<String> = walk(&app, &admin, "limit=100").await.into_iter().collect();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut inserted = 0;
    loop {
        let suffix = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let page = list(&app, &admin, &format!("sort=email&limit=10{suffix}")).await;
        seen.extend(emails(&page));
        for _ in 0..3 {
            create_user(&app, &admin, json!({"email": format!("aaa-late{inserted}@example.com")})).await;
            create_user(&app, &admin, json!({"email": format!("zzz-late{inserted}@example.com")})).await;
            inserted += 1;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }

    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len(), "no user twice");
    assert!(before.iter().all(|email| seen.contains(email)), "no pre-existing user skipped");
}

async fn every_filter_narrows_the_list(backend: Backend) {
    let (app, admin) = spawn_app_with_admin(backend).await;
    create_user(
        &app,
        &admin,
        json!({"email": "grace.hopper@navy.example", "username": "amazing_grace", "display_name": "Grace Hopper"}),
    )
    .await;
    create_user(&app, &admin, json!({"email": "ada@example.com", "display_name": "Ada Lovelace", "roles": ["admin"]}))
        .await;
    let percent = create_user(&app, &admin, json!({"email": "percent@example.com", "display_name": "100% real"})).await;
    let disabled = create_user(&app, &admin, json!({"email": "off@example.com"})).await;
    admin_send(
        &app,
        &admin,
        Method::PATCH,
        &format!("/api/v1/users/{}", disabled["id"].as_str().expect("id")),
        Some(&json!({"status": "disabled"})),
    )
    .await;
    let gone = create_user(&app, &admin, json!({"email": "gone@example.com"})).await;
    admin_send(&app, &admin, Method::DELETE, &format!("/api/v1/users/{}", gone["id"].as_str().expect("id")), None)
        .await;

    for (query, expected) in [
        ("q=HOPPER", vec!["grace.hopper@navy.example"]),
        ("q=navy", vec!["grace.hopper@navy.example"]),
        ("q=amazing", vec!["grace.hopper@navy.example"]),
        ("q=lovelace", vec!["ada@example.com"]),
        ("q=100%25", vec!["percent@example.com"]),
        ("q=_", vec!["grace.hopper@navy.example"]),
        ("q=nobody-has-this", vec![]),
        ("role=admin&sort=email", vec!["ada@example.com", ADMIN_EMAIL]),
        ("status=disabled", vec!["off@example.com"]),
        ("q=gone", vec![]),
        ("q=gone&include_deleted=true", vec!["gone@example.com"]),
        ("role=admin&status=active&sort=email", vec!["ada@example.com", ADMIN_EMAIL]),
    ] {
        let page = list(&app, &admin, query).await;
        assert_eq!(emails(&page), expected, "?{query}");
    }
    let page = list(&app, &admin, "q=gone&include_deleted=true").await;
    assert!(page["items"][0]["deleted_at"].is_string(), "admin views carry deleted_at");
    let _ = percent;
}

async fn bad_limits_and_cursors_are_refused_cleanly(backend: Backend) {
    let (app, admin) = spawn_app_with_admin(backend).await;
    seed(&app, &admin, 5).await;
    let page = list(&app, &admin, "limit=2&sort=email").await;
    let cursor = page["next_cursor"].as_str().expect("a next page").to_owned();
    let mut altered: Vec<char> = cursor.chars().collect();
    altered[2] = if altered[2] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();

    for (query, status, code) in [
        ("limit=0".to_owned(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("limit=101".to_owned(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("limit=ten".to_owned(), StatusCode::BAD_REQUEST, "malformed_request"),
        ("role=root".to_owned(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("status=asleep".to_owned(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("sort=password".to_owned(), StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        ("include_deleted=maybe".to_owned(), StatusCode::BAD_REQUEST, "malformed_request"),
        (format!("sort=email&cursor={altered}"), StatusCode::BAD_REQUEST, "malformed_request"),
        (format!("sort=created_at&cursor={cursor}"), StatusCode::BAD_REQUEST, "malformed_request"),
        ("cursor=not-a-cursor".to_owned(), StatusCode::BAD_REQUEST, "malformed_request"),
        ("cursor=".to_owned(), StatusCode::BAD_REQUEST, "malformed_request"),
    ] {
        let response = app.get(&format!("/api/v1/users?{query}"), Some(&admin)).await;
        assert_problem(response, status, code).await;
    }
}

async fn an_admin_reads_creates_and_edits_users(backend: Backend) {
    let (app, admin) = spawn_app_with_admin(backend).await;
    let created = create_user(
        &app,
        &admin,
        json!({"email": "grace@example.com", "password": "a long initial passphrase", "display_name": "Grace", "email_verified": true}),
    )
    .await;
    let id = created["id"].as_str().expect("id");
    assert_eq!(created["email_verified"], true);
    assert_eq!(created["roles"], json!(["user"]));
    let signed_in = app.login(&json!({"email": "grace@example.com", "password": "a long initial passphrase"})).await;
    assert_eq!(signed_in.status(), StatusCode::OK, "the admin-set password works");

    let taken =
        admin_send(&app, &admin, Method::POST, "/api/v1/users", Some(&json!({"email": "GRACE@example.com"}))).await;
    assert_problem(taken, StatusCode::CONFLICT, "email_taken").await;
    let invalid =
        admin_send(&app, &admin, Method::POST, "/api/v1/users", Some(&json!({"email": "x", "roles": ["root"]}))).await;
    assert_problem(invalid, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let fetched: Value =
        admin_send(&app, &admin, Method::GET, &format!("/api/v1/users/{id}"), None).await.json().await.expect("json");
    assert_eq!(fetched["display_name"], "Grace");
    let missing = admin_send(&app, &admin, Method::GET, &format!("/api/v1/users/{}", uuid::Uuid::now_v7()), None).await;
    assert_problem(missing, StatusCode::NOT_FOUND, "not_found").await;

    let edited = admin_send(
        &app,
        &admin,
        Method::PATCH,
        &format!("/api/v1/users/{id}"),
        Some(&json!({"email": "hopper@example.com", "username": "hopper", "display_name": null})),
    )
    .await;
    assert_eq!(edited.status(), StatusCode::OK);
    let edited: Value = edited.json().await.expect("json");
    assert_eq!(
        (edited["email"].as_str(), edited["username"].as_str(), &edited["display_name"]),
        (Some("hopper@example.com"), Some("hopper"), &Value::Null)
    );
    let clash =
        admin_send(&app, &admin, Method::PATCH, &format!("/api/v1/users/{id}"), Some(&json!({"email": ADMIN_EMAIL})))
            .await;
    assert_problem(clash, StatusCode::CONFLICT, "email_taken").await;
    let bad =
        admin_send(&app, &admin, Method::PATCH, &format!("/api/v1/users/{id}"), Some(&json!({"status": "sleeping"})))
            .await;
    assert_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

async fn changing_roles_or_disabling_revokes_the_users_sessions(backend: Backend) {
    let (app, admin) = spawn_app_with_admin(backend).await;
    let user = app.register_user("ada@example.com").await;
    let id = user["id"].as_str().expect("id");
    let before = app.access_token("ada@example.com").await;

    let promoted = admin_send(
        &app,
        &admin,
        Method::PATCH,
        &format!("/api/v1/users/{id}"),
        Some(&json!({"roles": ["user", "admin"]})),
    )
    .await;

    assert_eq!(promoted.status(), StatusCode::OK);
    assert_problem(app.get("/api/v1/users/me", Some(&before)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let after = app.access_token("ada@example.com").await;
    assert_eq!(
        app.get("/api/v1/users", Some(&after)).await.status(),
        StatusCode::OK,
        "the new role is in the new token"
    );

    admin_send(&app, &admin, Method::PATCH, &format!("/api/v1/users/{id}"), Some(&json!({"status": "disabled"}))).await;

    assert_problem(app.get("/api/v1/users/me", Some(&after)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let login = app.login(&json!({"email": "ada@example.com", "password": PASSWORD})).await;
    assert_problem(login, StatusCode::FORBIDDEN, "account_disabled").await;
    admin_send(&app, &admin, Method::PATCH, &format!("/api/v1/users/{id}"), Some(&json!({"status": "active"}))).await;
    assert_eq!(app.login(&json!({"email": "ada@example.com", "password": PASSWORD})).await.status(), StatusCode::OK);
}

async fn the_last_active_admin_cannot_demote_disable_or_delete_themself(backend: Backend) {
    let (app, admin) = spawn_app_with_admin(backend).await;
    let me: Value = app.get("/api/v1/users/me", Some(&admin)).await.json().await.expect("json");
    let id = me["id"].as_str().expect("id");

    for body in [json!({"roles": ["user"]}), json!({"status": "disabled"}), json!({"status": "locked"})] {
        let response = admin_send(&app, &admin, Method::PATCH, &format!("/api/v1/users/{id}"), Some(&body)).await;
        assert_problem(response, StatusCode::CONFLICT, "conflict").await;
    }
    let delete = admin_send(&app, &admin, Method::DELETE, &format!("/api/v1/users/{id}"), None).await;
    assert_problem(delete, StatusCode::CONFLICT, "conflict").await;
    let delete_me =
        admin_send(&app, &admin, Method::DELETE, "/api/v1/users/me", Some(&json!({"password": PASSWORD}))).await;
    assert_problem(delete_me, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(
        app.get("/api/v1/users", Some(&admin)).await.status(),
        StatusCode::OK,
        "still an admin, still signed in"
    );

    create_user(&app, &admin, json!({"email": "second@example.com", "roles": ["admin"]})).await;
    let demoted =
        admin_send(&app, &admin, Method::PATCH, &format!("/api/v1/users/{id}"), Some(&json!({"roles": ["user"]})))
            .await;
    assert_eq!(demoted.status(), StatusCode::OK, "with another active admin, demoting oneself is allowed");
}

async fn soft_deleted_users_can_be_restored_unless_their_email_was_taken(backend: Backend) {
    let (app, admin) = spawn_app_with_admin(backend).await;
    let first = app.register_user("ada@example.com").await;
    let first_id = first["id"].as_str().expect("id");
    let token = app.access_token("ada@example.com").await;

    let deleted = admin_send(&app, &admin, Method::DELETE, &format!("/api/v1/users/{first_id}"), None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get("/api/v1/users/me", Some(&token)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let again = admin_send(&app, &admin, Method::DELETE, &format!("/api/v1/users/{first_id}"), None).await;
    assert_problem(again, StatusCode::NOT_FOUND, "not_found").await;
    let fetched: Value = admin_send(&app, &admin, Method::GET, &format!("/api/v1/users/{first_id}"), None)
        .await
        .json()
        .await
        .expect("json");
    assert!(fetched["deleted_at"].is_string(), "{fetched}");

    let restored = admin_send(&app, &admin, Method::POST, &format!("/api/v1/users/{first_id}/restore"), None).await;
    assert_eq!(restored.status(), StatusCode::OK);
    assert_eq!(restored.json::<Value>().await.expect("json")["deleted_at"], Value::Null);
    assert_eq!(app.login(&json!({"email": "ada@example.com", "password": PASSWORD})).await.status(), StatusCode::OK);
    let not_deleted = admin_send(&app, &admin, Method::POST, &format!("/api/v1/users/{first_id}/restore"), None).await;
    assert_problem(not_deleted, StatusCode::NOT_FOUND, "not_found").await;

    admin_send(&app, &admin, Method::DELETE, &format!("/api/v1/users/{first_id}"), None).await;
    app.register(&json!({"email": "ADA@example.com", "password": PASSWORD, "username": "someone"})).await;
    let clash = admin_send(&app, &admin, Method::POST, &format!("/api/v1/users/{first_id}/restore"), None).await;
    assert_problem(clash, StatusCode::CONFLICT, "email_taken").await;
}

#[tokio::test]
async fn a_plain_spawned_app_has_no_admin() {
    let app = spawn_app(Backend::Sqlite).await;
    app.register_user("ada@example.com").await;
    let token = app.access_token("ada@example.com").await;
    assert_problem(app.get("/api/v1/users", Some(&token)).await, StatusCode::FORBIDDEN, "forbidden").await;
}
