//! The caller's own account: profile edits, password change, deletion.

use gatehouse_tests::{Backend, PASSWORD, assert_problem, on_both_backends, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

on_both_backends!(
    the_profile_can_be_edited_and_the_display_name_cleared,
    a_profile_edit_is_validated_and_a_taken_username_refused,
    changing_the_password_needs_the_current_one_and_revokes_other_sessions,
    a_weak_new_password_is_refused_on_its_field,
    deleting_the_account_needs_the_password_and_frees_the_email,
);

fn token(pair: &Value, field: &str) -> String {
    pair[field].as_str().expect("a token").to_owned()
}

async fn the_profile_can_be_edited_and_the_display_name_cleared(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    let access = app.access_token("ada@example.com").await;

    let response = app
        .send_authed(
            Method::PATCH,
            "/api/v1/users/me",
            &access,
            Some(&json!({"display_name": " Ada L. ", "username": "Lovelace"})),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let user: Value = response.json().await.expect("json");
    assert_eq!(user["display_name"], "Ada L.");
    assert_eq!(user["username"], "Lovelace");
    assert_ne!(user["updated_at"], user["created_at"]);
    let cleared: Value = app
        .send_authed(Method::PATCH, "/api/v1/users/me", &access, Some(&json!({"display_name": null})))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cleared["display_name"], Value::Null);
    assert_eq!(cleared["username"], "Lovelace", "left-out fields stay");
    let unchanged = app.send_authed(Method::PATCH, "/api/v1/users/me", &access, Some(&json!({}))).await;
    assert_eq!(unchanged.status(), StatusCode::OK);
    let by_username = app.login(&json!({"username": "lovelace", "password": PASSWORD})).await;
    assert_eq!(by_username.status(), StatusCode::OK, "the new username signs in");
}

async fn a_profile_edit_is_validated_and_a_taken_username_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register(&json!({"email": "grace@example.com", "password": PASSWORD, "username": "grace"})).await;
    app.register_user("ada@example.com").await;
    let access = app.access_token("ada@example.com").await;

    let taken = app.send_authed(Method::PATCH, "/api/v1/users/me", &access, Some(&json!({"username": "GRACE"}))).await;
    assert_problem(taken, StatusCode::CONFLICT, "username_taken").await;
    for (body, field) in [
        (json!({"username": "a b"}), "username"),
        (json!({"display_name": ""}), "display_name"),
        (json!({"display_name": "x".repeat(101)}), "display_name"),
    ] {
        let response = app.send_authed(Method::PATCH, "/api/v1/users/me", &access, Some(&body)).await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
    }
    let anonymous =
        app.client.patch(app.url("/api/v1/users/me")).json(&json!({"username": "x"})).send().await.expect("sent");
    assert_problem(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn changing_the_password_needs_the_current_one_and_revokes_other_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    let current = app.token_pair("ada@example.com").await;
    let other = app.token_pair("ada@example.com").await;
    let new_password = "an entirely different passphrase";

    let wrong = app
        .send_authed(
            Method::PUT,
            "/api/v1/users/me/password",
            &token(&current, "access_token"),
            Some(&json!({"current_password": "not it", "new_password": new_password})),
        )
        .await;
    assert_problem(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    let response = app
        .send_authed(
            Method::PUT,
            "/api/v1/users/me/password",
            &token(&current, "access_token"),
            Some(&json!({"current_password": PASSWORD, "new_password": new_password})),
        )
        .await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get("/api/v1/users/me", Some(&token(&other, "access_token"))).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_problem(app.refresh(&token(&other, "refresh_token")).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(app.get("/api/v1/users/me", Some(&token(&current, "access_token"))).await.status(), StatusCode::OK);
    let old = app.login(&json!({"email": "ada@example.com", "password": PASSWORD})).await;
    assert_problem(old, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let new = app.login(&json!({"email": "ada@example.com", "password": new_password})).await;
    assert_eq!(new.status(), StatusCode::OK);
}

async fn a_weak_new_password_is_refused_on_its_field(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_user("ada@example.com").await;
    let access = app.access_token("ada@example.com").await;
    for (new_password, code) in
        [("short", "too_short"), ("ada@example.com", "equals_email"), ("password123", "too_common")]
    {
        let response = app
            .send_authed(
                Method::PUT,
                "/api/v1/users/me/password",
                &access,
                Some(&json!({"current_password": PASSWORD, "new_password": new_password})),
            )
            .await;
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "new_password");
        assert_eq!(problem["errors"][0]["code"], code);
    }
    let missing =
        app.send_authed(Method::PUT, "/api/v1/users/me/password", &access, Some(&json!({"new_password": "x"}))).await;
    assert_problem(missing, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

async fn deleting_the_account_needs_the_password_and_frees_the_email(backend: Backend) {
    let app = spawn_app(backend).await;
    let original = app.register_user("ada@example.com").await;
    let pair = app.token_pair("ada@example.com").await;
    let access = token(&pair, "access_token");

    let without = app.send_authed(Method::DELETE, "/api/v1/users/me", &access, None).await;
    let problem = assert_problem(without, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "password");
    let wrong =
        app.send_authed(Method::DELETE, "/api/v1/users/me", &access, Some(&json!({"password": "not it"}))).await;
    assert_problem(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    let response =
        app.send_authed(Method::DELETE, "/api/v1/users/me", &access, Some(&json!({"password": PASSWORD}))).await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get("/api/v1/users/me", Some(&access)).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_problem(app.refresh(&token(&pair, "refresh_token")).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let login = app.login(&json!({"email": "ada@example.com", "password": PASSWORD})).await;
    assert_problem(login, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let again = app.register_user("ada@example.com").await;
    assert_ne!(again["id"], original["id"], "a new account with the freed email");
    assert_eq!(again["username"], "ada", "the username is free again too");
}
