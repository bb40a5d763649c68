//! Text PostgreSQL cannot store (a NUL character) is a 422 `validation_failed` naming the
//! field, on every body field and query parameter, on both engines alike, never a 500.

use gatehouse_tests::{ADMIN_EMAIL, Backend, PASSWORD, assert_problem, on_both_backends, spawn_app_with_admin};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const NUL: &str = "\u{0}";

/// Asserts a 422 whose only field error is `field` with `invalid_characters`.
async fn assert_refused(response: reqwest::Response, field: &str, what: &str) {
    let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], field, "{what}: {body}");
    assert_eq!(body["errors"][0]["code"], "invalid_characters", "{what}: {body}");
}

async fn a_nul_in_any_json_field_is_a_422_naming_it(backend: Backend) {
    let (app, admin) = spawn_app_with_admin(backend).await;
    let user = json!({"email": "ada@example.com", "password": PASSWORD});
    let anonymous: Vec<(&str, Value, &str)> = vec![
        ("/api/v1/auth/register", json!({"email": format!("a{NUL}@example.com"), "password": PASSWORD}), "email"),
        (
            "/api/v1/auth/register",
            json!({"email": "b@example.com", "password": format!("{PASSWORD}{NUL}")}),
            "password",
        ),
        (
            "/api/v1/auth/register",
            json!({"email": "c@example.com", "password": PASSWORD, "username": format!("c{NUL}")}),
            "username",
        ),
        (
            "/api/v1/auth/register",
            json!({"email": "d@example.com", "password": PASSWORD, "display_name": NUL}),
            "display_name",
        ),
        ("/api/v1/auth/login", json!({"email": NUL, "password": PASSWORD}), "email"),
        ("/api/v1/auth/login", json!({"username": format!("x{NUL}"), "password": PASSWORD}), "username"),
        ("/api/v1/auth/refresh", json!({"refresh_token": NUL}), "refresh_token"),
        ("/api/v1/auth/verify-email", json!({"token": NUL}), "token"),
        ("/api/v1/auth/verify-email/resend", json!({"email": format!("{NUL}@example.com")}), "email"),
        ("/api/v1/auth/password/forgot", json!({"email": format!("ada{NUL}@example.com")}), "email"),
        ("/api/v1/auth/password/reset", json!({"token": NUL, "new_password": PASSWORD}), "token"),
        ("/api/v1/auth/unlock", json!({"token": NUL}), "token"),
        ("/api/v1/auth/oauth/exchange", json!({"code": NUL}), "code"),
        (
            "/api/v1/auth/register",
            json!({"email": "e@example.com", "password": PASSWORD, "extra": {"nested": [NUL]}}),
            "extra.nested[0]",
        ),
    ];
    for (path, body, field) in anonymous {
        assert_refused(app.post_json(path, &body).await, field, path).await;
    }
    app.register_user("ada@example.com").await;
    let token = app.token_pair("ada@example.com").await["access_token"].as_str().expect("a token").to_owned();
    let authed: Vec<(Method, String, Value, &str, &str)> = vec![
        (
            Method::PATCH,
            "/api/v1/users/me".to_owned(),
            json!({"display_name": format!("Ada{NUL}")}),
            "display_name",
            &token,
        ),
        (Method::PATCH, "/api/v1/users/me".to_owned(), json!({"username": format!("ada{NUL}")}), "username", &token),
        (
            Method::PUT,
            "/api/v1/users/me/password".to_owned(),
            json!({"current_password": NUL, "new_password": PASSWORD}),
            "current_password",
            &token,
        ),
        (
            Method::POST,
            "/api/v1/users".to_owned(),
            json!({"email": format!("n{NUL}@example.com"), "password": PASSWORD}),
            "email",
            &admin,
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{}", uuid::Uuid::now_v7()),
            json!({"display_name": NUL}),
            "display_name",
            &admin,
        ),
    ];
    for (method, path, body, field, token) in authed {
        let what = format!("{method} {path}");
        assert_refused(app.send_authed(method, &path, token, Some(&body)).await, field, &what).await;
    }
    // Nothing was stored on the way: the account is as it was, and sign-in works.
    assert_eq!(app.login(&user).await.status(), StatusCode::OK);
}

async fn a_nul_in_any_query_parameter_is_a_422_naming_it(backend: Backend) {
    let (app, admin) = spawn_app_with_admin(backend).await;
    let token = app.access_token(ADMIN_EMAIL).await;
    for (path, field) in [
        ("/api/v1/users?q=%00", "q"),
        ("/api/v1/users?q=ada%00lovelace", "q"),
        ("/api/v1/users?role=%00", "role"),
        ("/api/v1/users?status=active%00", "status"),
        ("/api/v1/users?sort=%00", "sort"),
        ("/api/v1/users?cursor=%00", "cursor"),
        ("/api/v1/audit-events?action=%00", "action"),
        ("/api/v1/audit-events?cursor=abc%00", "cursor"),
        ("/api/v1/users/me/activity?cursor=%00", "cursor"),
        ("/api/v1/auth/sessions?x%00=1", "x"),
    ] {
        let bearer = if path.contains("/me/") || path.contains("/sessions") { token.as_str() } else { admin.as_str() };
        assert_refused(app.get(path, Some(bearer)).await, field, path).await;
    }
    for path in ["/api/v1/users?q=ada", "/api/v1/audit-events?action=auth.login_succeeded", "/api/v1/users/me/activity"]
    {
        let bearer = if path.contains("/me/") { token.as_str() } else { admin.as_str() };
        assert_eq!(app.get(path, Some(bearer)).await.status(), StatusCode::OK, "{path} without a NUL still works");
    }
}

async fn a_nul_in_a_form_field_is_a_422_naming_it(backend: Backend) {
    let (app, _admin) = spawn_app_with_admin(backend).await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=password&username=ada%00&password={}", PASSWORD.replace(' ', "+")))
        .send()
        .await
        .expect("request sent");
    assert_refused(response, "username", "the password grant").await;
}

on_both_backends!(
    a_nul_in_any_json_field_is_a_422_naming_it,
    a_nul_in_any_query_parameter_is_a_422_naming_it,
    a_nul_in_a_form_field_is_a_422_naming_it,
);
