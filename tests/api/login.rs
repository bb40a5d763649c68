use gatehouse_tests::{Backend, PASSWORD, assert_problem, on_both_backends, spawn_app, spawn_app_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

on_both_backends!(
    logging_in_by_email_returns_a_token_pair,
    logging_in_by_username_works_in_any_case,
    an_unknown_email_and_a_wrong_password_get_the_same_answer,
    a_login_needs_exactly_one_identifier,
    an_unverified_account_cannot_log_in_when_verification_is_required,
);

async fn logging_in_by_email_returns_a_token_pair(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;

    let response = app.login(&json!({"email": "ADA@example.com ", "password": PASSWORD})).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let pair: Value = response.json().await.expect("json");
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    assert_eq!(pair["refresh_expires_in"], 2_592_000);
    assert!(pair["refresh_token"].as_str().is_some_and(|t| t.len() >= 43), "{pair}");
    let access = pair["access_token"].as_str().expect("access token");
    assert_eq!(access.split('.').count(), 3, "a JWT");
}

async fn logging_in_by_username_works_in_any_case(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register(&json!({"email": "ada@example.com", "password": PASSWORD, "username": "Ada.L"})).await;

    let response = app.login(&json!({"username": "ada.l", "password": PASSWORD})).await;

    assert_eq!(response.status(), StatusCode::OK);
}

async fn an_unknown_email_and_a_wrong_password_get_the_same_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;

    let wrong_password = app.login(&json!({"email": "ada@example.com", "password": "not the password"})).await;
    let unknown_email = app.login(&json!({"email": "nobody@example.com", "password": PASSWORD})).await;

    let mut first = assert_problem(wrong_password, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let mut second = assert_problem(unknown_email, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    first.as_object_mut().map(|o| o.remove("instance"));
    second.as_object_mut().map(|o| o.remove("instance"));
    assert_eq!(first, second, "indistinguishable bodies");
}

async fn a_login_needs_exactly_one_identifier(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in [
        json!({"password": PASSWORD}),
        json!({"email": "ada@example.com", "username": "ada", "password": PASSWORD}),
        json!({"email": "not an email", "password": PASSWORD}),
        json!({"email": "ada@example.com"}),
    ] {
        let response = app.login(&body).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
}

async fn an_unverified_account_cannot_log_in_when_verification_is_required(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.auth.require_verified_email = true).await;
    app.register_user("ada@example.com").await;

    let right = app.login(&json!({"email": "ada@example.com", "password": PASSWORD})).await;
    let wrong = app.login(&json!({"email": "ada@example.com", "password": "wrong password"})).await;

    assert_problem(right, StatusCode::FORBIDDEN, "email_not_verified").await;
    assert_problem(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}
